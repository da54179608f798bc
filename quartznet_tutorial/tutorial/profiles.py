"""The two profiles the tutorial notebooks run under: ``smoke`` (default) and ``full``.

The notebooks are one code path; the profile, chosen by the ``QUARTZNET_PROFILE`` environment
variable, decides the data, the length of training and the hardware:

- ``smoke`` (default): a small synthetic Speech Commands V1 set spoken by eSpeak NG, generated
  on first use into a cache directory, short fp32 runs on the CPU. This is what CI and Read the
  Docs execute; its numbers say that the code runs and learns, not how well QuartzNet does.
- ``full``: the real Speech Commands V1 at ``SPEECH_COMMANDS_ROOT`` and NeMo's recipe
  :cite:`kriman2020quartznet`: 200 epochs, batch 128 per GPU, mixed precision, every GPU.

Example:
    >>> profile = get_profile()  # QUARTZNET_PROFILE unset: smoke
    >>> root = profile.data_root()  # generates the synthetic set once, then reuses it
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from quartznet_tutorial.utils.files import default_cache_dir, write_text_atomic
from quartznet_tutorial.utils.runtime import cpu_description

if TYPE_CHECKING:
    from quartznet_tutorial.evaluation.accuracy import EvalResult
    from quartznet_tutorial.models.classifier import Classifier
    from quartznet_tutorial.training.config import TrainConfig

__all__ = [
    "DATA_ENV",
    "PROFILES",
    "PROFILE_ENV",
    "Profile",
    "Run",
    "get_profile",
]

PROFILE_ENV = "QUARTZNET_PROFILE"
DATA_ENV = "SPEECH_COMMANDS_ROOT"
#: NeMo's global batch for Speech Commands: batch 128 on each of 2 GPUs.
NEMO_GLOBAL_BATCH = 256


@dataclass(frozen=True)
class Profile:
    """How much the notebooks do, and on what.

    Args:
        name (str): ``"smoke"`` or ``"full"``.
        data (str): the dataset's name in result files: ``"synthetic-v1"`` or
            ``"speech-commands-v1"``.
        epochs (int): training epochs per model.
        batch_size (int): batch size per process (per GPU with ``torchrun``).
        precision (str): ``"32"``, ``"16-mixed"`` or ``"bf16-mixed"``.
        device (str): ``"cpu"`` or ``"cuda"``.
        nproc (int): training processes, one per GPU (``torchrun --nproc_per_node``).
        quartznet_models (tuple of str): variants the "Train QuartzNet" notebook trains.
        se_models (tuple of str): variants the "Train SE-QuartzNet" notebook trains.
        per_word (int, optional): synthetic clips per word (smoke only). (Default: ``None``)
        speakers (int, optional): synthetic speakers sharing them (smoke only; ``None``:
            ``make_synthetic``'s default, ``max(10, per_word // 2)``). (Default: ``None``)
        seed (int, optional): seed of data generation and training. (Default: ``0``)
        lr (float, optional): Novograd's peak learning rate. (Default: ``0.05``, NeMo's)
        hold_ratio (float, optional): fraction of the steps held at the peak rate, after 5 %
            warmup, before the polynomial decay. (Default: ``0.45``, NeMo's)
        augment (bool, optional): NeMo's training augmentation (shift, noise, SpecCutout,
            SpecAugment). (Default: ``True``)
        frames (int, optional): MFCC frames each training example is cropped or padded to.
            (Default: ``128``, NeMo's; ``101`` is one second, no padding)
        task12_epochs (int, optional): epochs of the 12-class task, whose training set is
            about 40 % of the 30-word one. (Default: ``None``: ``epochs``)
        task12_finetune (bool, optional): train the 12-class model from the profile's 30-word
            model of the same variant, as ``quartznet finetune`` does (its encoder, a new
            decoder for the 12 classes, fine-tuning's learning rate
            :data:`~quartznet_tutorial.training.finetune.FINETUNE_DEFAULTS`), instead of from
            scratch; smoke only. (Default: ``False``)
        task12_decoder_only (bool, optional): with ``task12_finetune``, train only the new
            decoder on the 30-word model's encoder, kept as it is (``freeze_encoder_epochs``
            for every epoch), at the profile's ``lr``. (Default: ``False``)
    """

    name: str
    data: str
    epochs: int
    batch_size: int
    precision: str
    device: str
    nproc: int
    quartznet_models: tuple[str, ...]
    se_models: tuple[str, ...]
    per_word: int | None = None
    speakers: int | None = None
    seed: int = 0
    lr: float = 0.05
    hold_ratio: float = 0.45
    augment: bool = True
    frames: int = 128
    task12_epochs: int | None = None
    task12_finetune: bool = False
    task12_decoder_only: bool = False

    @property
    def version(self) -> int:
        """Speech Commands version, 1 (30 words) or 2 (35 words)."""
        return 2 if self.data.endswith("v2") else 1

    def data_root(self) -> Path:
        """The dataset's root directory, generating the synthetic set on first use.

        Raises:
            ValueError: ``full`` without ``SPEECH_COMMANDS_ROOT`` pointing at a directory.
        """
        if self.name == "full":
            root = os.environ.get(DATA_ENV)
            if not root:
                raise ValueError(
                    f"the full profile trains on the real Speech Commands V1: set {DATA_ENV} to "
                    "the folder holding its word folders and testing_list.txt "
                    "(see docs/reproduce.md), or unset QUARTZNET_PROFILE for the smoke profile"
                )
            path = Path(root).expanduser()
            nested = path / "SpeechCommands" / f"speech_commands_v0.0{self.version}"
            for candidate in (path, nested):
                if (candidate / "testing_list.txt").is_file():
                    return candidate
            raise ValueError(
                f"{DATA_ENV}={root}: no testing_list.txt there; point it at the extracted "
                f"speech_commands_v0.0{self.version} folder"
            )
        return _synthetic(self.per_word or 1, self.speakers, self.seed, self.version)

    def describe(self, task: str = "all") -> str:
        """Two lines naming the profile, data, length, precision, hardware (the CPU's or GPU's
        model) and the date: every notebook prints them so that its outputs say what produced
        them, and when. ``task="12"`` describes the 12-class training instead."""
        if self.device == "cuda":
            gpu = torch.cuda.get_device_name(0)
            hardware = f"{self.nproc} × {gpu}"
        else:
            hardware = cpu_description()
        data = self.data
        if self.per_word:
            speakers = f" by {self.speakers} speakers" if self.speakers else ""
            data = f"{self.data} ({self.per_word} clips per word{speakers})"
        per_gpu = ""
        if self.device == "cuda":
            per_gpu = f" per GPU (global {self.batch_size * self.nproc})"
        augment = "NeMo's augmentation" if self.augment else "no augmentation"
        augment += f", {self.frames}-frame examples"
        epochs, lr = self._epochs_and_lr(task)
        length = f"{epochs} epoch{'s' * (epochs != 1)}"
        if task == "12":
            start = "fine-tuned from the 30-word model" if self.task12_finetune else "from scratch"
            if self._decoder_only(task):
                start = "of its new decoder on the 30-word model's encoder"
            length = f"12-class task, {length} {start}"
        return (
            f"profile {self.name!r}: data {data}, {length}, "
            f"batch {self.batch_size}{per_gpu}, lr {lr:g} (hold {self.hold_ratio:.0%}), "
            f"{augment}\n"
            f"precision {self.precision} on {hardware}, torch {torch.__version__}, "
            f"{datetime.date.today().isoformat()}"
        )

    def train_config(
        self, model: str, out_dir: str | Path, task: str = "all", init_checkpoint: str = ""
    ) -> TrainConfig:
        """The :class:`~quartznet_tutorial.training.config.TrainConfig` of ``model`` under this
        profile (NeMo's recipe for everything the profile does not set) for ``task`` (``"all"`` or
        ``"12"``, see :class:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands`); with
        ``init_checkpoint`` (the 30-word model, see ``task12_finetune``), a fine-tuning run."""
        from quartznet_tutorial.training.config import TrainConfig

        epochs, lr = self._epochs_and_lr(task)
        return TrainConfig(
            model=model,
            data_root=str(self.data_root()),
            version=self.version,
            task=task,
            epochs=epochs,
            batch_size=self.batch_size,
            lr=lr,
            hold_ratio=self.hold_ratio,
            augment=self.augment,
            frames=self.frames,
            precision=self.precision,
            device=self.device,
            seed=self.seed,
            out_dir=str(out_dir),
            resume=self.name == "full",  # a long run picks up where it stopped
            progress=False,
            init_checkpoint=init_checkpoint or None,
            freeze_encoder_epochs=epochs if self._decoder_only(task) else 0,
        )

    def _decoder_only(self, task: str) -> bool:
        return task == "12" and self.task12_finetune and self.task12_decoder_only

    def _epochs_and_lr(self, task: str) -> tuple[int, float]:
        if task != "12":
            return self.epochs, self.lr
        if self.task12_finetune and not self._decoder_only(task):
            from quartznet_tutorial.training.finetune import FINETUNE_DEFAULTS

            return self.task12_epochs or self.epochs, FINETUNE_DEFAULTS["lr"]
        return self.task12_epochs or self.epochs, self.lr

    def train(self, model: str, task: str = "all") -> Run:
        """Train ``model`` as this profile says and evaluate it on the test split.

        ``task="12"`` trains the 12-class keyword task (ten keywords, ``_silence_``,
        ``_unknown_``) instead of every word.

        ``smoke`` trains in this process and keeps the run (best checkpoint, history, test
        result) in the cache directory under a name that hashes its configuration and the
        package's version, so that a later notebook asking for the same run gets it without
        training; ``nox -s docs`` keeps that cache in ``docs/_build``, which ``--fresh`` empties.
        ``full`` keeps its run in the
        repository's ``runs/full-<model>`` (resumed if interrupted) and, with several GPUs,
        trains under ``torchrun`` in a child process, one process per GPU, as NVIDIA did; then
        the best checkpoint is evaluated here. The result record of a ``full`` run is written to
        ``results/`` (see ``results/README.md``), ready to commit.
        """
        from quartznet_tutorial.tutorial.results import checkout

        if self.name != "full":
            return self._cached_run(model, task)
        if task == "12" and self.task12_finetune:
            raise ValueError("task12_finetune is for the smoke profile; full trains from scratch")
        name = model if task == "all" else f"{model}-task{task}"
        repo = checkout()  # before the hours of training: a clear error outside a checkout
        out_dir = repo / "runs" / f"full-{name}"
        run = (
            self._train_here(model, out_dir, task)
            if self.nproc == 1
            else self._torchrun(model, out_dir, task)
        )
        path = repo / "results" / f"{self.data}-{name}.json"
        write_text_atomic(path, json.dumps(run.record, indent=2, default=str) + "\n")
        return run

    def _command(self, model: str, task: str = "all") -> str:
        extra = "" if task == "all" else f", task={task!r}"
        return f"QUARTZNET_PROFILE={self.name} notebook: Profile.train({model!r}{extra})"

    def _cached_run(self, model: str, task: str) -> Run:
        """The run of ``model`` from the cache, trained (in a temporary folder) if missing."""
        from quartznet_tutorial.checkpoints.loading import load_classifier
        from quartznet_tutorial.evaluation.accuracy import EvalResult

        init = ""
        if task == "12" and self.task12_finetune:
            init = str(self._cache_folder(model, "all") / "best.pt")
            self._cached_run(model, "all")  # the 30-word model first, trained if missing
        folder = self._cache_folder(model, task, init)
        if (folder / "run.json").is_file():
            saved = json.loads((folder / "run.json").read_text(encoding="utf-8"))
            t = saved["test"]
            test = EvalResult(t["labels"], np.asarray(t["confusion"], dtype=np.int64), t["loss"])
            classifier = load_classifier(folder / "best.pt")
            record = saved["record"]
            if "data_args" not in record:  # cached before runs recorded it
                from quartznet_tutorial.synthetic.speakers import data_args

                record["data_args"] = data_args(self.data_root())
            return Run(model, saved["history"], test, record, classifier)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".run-") as tmp:
            run = self._train_here(model, Path(tmp) / "out", task, init)
            out = Path(tmp) / "run"
            out.mkdir()
            best = Path(tmp) / "out" / "best.pt"
            shutil.copy2(best if best.is_file() else Path(tmp) / "out" / "last.pt", out / "best.pt")
            saved = {"history": run.history, "record": run.record, "test": run.test.to_dict()}
            (out / "run.json").write_text(json.dumps(saved, default=str), encoding="utf-8")
            with contextlib.suppress(OSError):  # another process cached it first: keep that
                os.replace(out, folder)
        return run

    def _cache_folder(self, model: str, task: str, init: str = "") -> Path:
        """Where the smoke run of ``model`` is cached: a name that hashes its configuration
        and the package's version."""
        from quartznet_tutorial import __version__

        config = asdict(self.train_config(model, "", task, init))
        config.pop("out_dir")
        key = json.dumps([config, __version__], sort_keys=True, default=str)
        name = model if task == "all" else f"{model}-task{task}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return default_cache_dir() / "runs" / f"{self.name}-{name}-{digest}"

    def _train_here(
        self, model: str, out_dir: str | Path, task: str = "all", init: str = ""
    ) -> Run:
        from quartznet_tutorial.checkpoints.loading import load_classifier
        from quartznet_tutorial.synthetic.speakers import data_args
        from quartznet_tutorial.training.loop import train

        result = train(self.train_config(model, out_dir, task, init))
        record = result.summary(
            profile=self.name,
            command=self._command(model, task),
            data_args=data_args(self.data_root()),
        )
        classifier = load_classifier(result.best_checkpoint or result.last_checkpoint)
        return Run(model, result.history, result.test, record, classifier)

    def _torchrun(self, model: str, out_dir: Path, task: str = "all") -> Run:
        from quartznet_tutorial.checkpoints.loading import load_classifier
        from quartznet_tutorial.evaluation.accuracy import evaluate_checkpoint

        config = self.train_config(model, out_dir, task)
        summary = out_dir / "summary.json"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={self.nproc}", "-m", "quartznet_tutorial", "-q", "train",
            "--model", model, "--data-root", config.data_root,
            "--dataset-version", str(self.version), "--task", task,
            "--epochs", str(self.epochs), "--batch-size", str(self.batch_size),
            "--lr", str(self.lr), "--hold-ratio", str(self.hold_ratio),
            "--augment" if self.augment else "--no-augment",
            "--precision", self.precision, "--seed", str(self.seed), "--out-dir", str(out_dir),
            "--resume", "--no-progress", "--profile", self.name, "--results", str(summary),
        ]  # fmt: skip
        subprocess.run(command, check=True)
        record = json.loads(summary.read_text(encoding="utf-8"))
        record["command"] = shlex.join(command[2:])
        history = [json.loads(line) for line in (out_dir / "metrics.jsonl").open()]
        test = evaluate_checkpoint(
            out_dir / "best.pt",
            config.data_root,
            version=self.version,
            device=self.device,
            precision=self.precision,
            progress=False,
            task=task,
        )
        return Run(model, history, test, record, load_classifier(out_dir / "best.pt"))


@dataclass
class Run:
    """A trained model as the notebooks show it.

    Args:
        model (str): the variant.
        history (list of dict): per-epoch metrics (``TrainResult.history``).
        test (EvalResult): the best checkpoint on the test split: accuracy, per-class
            accuracy and confusion matrix.
        record (dict): the results-file record (``TrainResult.summary``).
        classifier (Classifier): the best checkpoint (by validation accuracy), on the CPU.
    """

    model: str
    history: list[dict]
    test: EvalResult
    record: dict
    classifier: Classifier


def _smoke() -> Profile:
    # Both training notebooks, and the data they share, in a few minutes on 2 CPU cores. The
    # lever is data, not epochs: 30 words x 1,750 clips by 875 speakers (42,000 clips for
    # training), 2 epochs of batch 64 (1,312 steps, 84,000 clips through a step), NeMo's lr
    # and schedule, no augmentation (NeMo's SpecCutout + SpecAugment are tuned for 200 epochs
    # and slow a short run down). Measured by examples/tune_smoke.py
    # (results/smoke-recipes.json) on a 2-core AMD EPYC VM limited to AVX2
    # (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2), 2 threads, fp32, 2026-12-01: with
    # 1,500 clips per word (72,000 clip-steps) the set took 41 s (1,100 clips/s, 2 workers)
    # and se-quartznet-3x1 reached 94.8 % and 95.4 % on the test speakers (seeds 0, 1) in
    # 103-106 s of training (~735 clips/s on a quiet machine), quartznet-3x1 94.9 % (seed 1);
    # 3 epochs of 1,000 clips per word (72,000 too): 95.6 %, 95.5 % (quartznet-3x1), 95.0 %,
    # 93.7 % (SE); 2 epochs of those (48,000) 91-93 % for quartznet-3x1 whatever the batch
    # (32-128) or lr (0.025-0.1). 72,000 clip-steps sit at the 95 % goal; 84,000 buy a margin
    # for ~17 s more training per model at that speed.
    return Profile(
        name="smoke",
        data="synthetic-v1",
        epochs=2,
        batch_size=64,
        precision="32",
        device="cpu",
        nproc=1,
        quartznet_models=("quartznet-3x1",),
        se_models=("se-quartznet-3x1",),
        per_word=1750,
        speakers=875,
        augment=False,
        # One second as it is (101 frames), not padded to NeMo's 128: the padding is a fifth
        # of the network's work. See results/smoke-recipes.json (pw1750-e2-b64 against
        # pw1750-e2-b64-f101) and the seed runs of examples/smoke_seeds.py in results/.
        frames=101,
        # The 12-class set (ten keywords of 1,750 clips, 10 % silence, 10 % unknown) is ~40 %
        # of the 30-word one. From scratch, 5 epochs gave quartznet-3x1 96.4 % test in 114 s of
        # training (2 epochs: 92.2 %); fine-tuned from the 30-word model, 1 epoch at lr 0.01
        # gave 96.5 % in 36 s (2 epochs at lr 0.05: 96.5 %, 82 s). Same VM, 2026-12-02, the
        # first at AVX2 with 2 threads, the others at AVX-512 with 1 thread. With 101-frame
        # examples, the docs build at AVX2 (2 threads, 2026-12-02) fine-tuned every weight to
        # 96.78 % in 16.7 s; the new decoder alone, on the 30-word encoder, at lr 0.05: 96.12 %
        # in 8.1 s (the Keyword spotting page prints each build's own figures).
        task12_epochs=1,
        task12_finetune=True,
        task12_decoder_only=True,
    )


def _full() -> Profile:
    cuda = torch.cuda.is_available()
    # NeMo trained with fp16 mixed precision on V100s; bf16 needs no loss scaling where the
    # GPU has it (Ampere and later).
    precision = "32"
    if cuda:
        precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    # NeMo's global batch, 2 GPUs x 128 = 256, on any number of GPUs: the same steps per epoch
    # and the same learning rate per step (1 GPU: 256; 4: 64 each; 8: 32 each). Past 8 GPUs
    # (a per-GPU batch under 32 wastes them) the global batch grows and the step count shrinks.
    nproc = max(torch.cuda.device_count(), 1)
    per_process = max(NEMO_GLOBAL_BATCH // nproc, 32)
    return Profile(
        name="full",
        data="speech-commands-v1",
        epochs=200,
        batch_size=per_process,
        precision=precision,
        device="cuda" if cuda else "cpu",
        nproc=nproc,
        quartznet_models=(
            "quartznet-3x1",
            "quartznet-3x2",
            "quartznet-5x1-480k",
            "quartznet-5x1-1m",
        ),
        se_models=("se-quartznet-3x1", "se-quartznet-5x1-510k", "se-quartznet-5x1-1m"),
    )


#: The profiles by name; functions, because ``full`` looks at the GPUs present.
PROFILES = {"smoke": _smoke, "full": _full}


def get_profile(name: str | None = None) -> Profile:
    """The profile named, or by ``QUARTZNET_PROFILE`` (default ``smoke``)."""
    name = name or os.environ.get(PROFILE_ENV) or "smoke"
    try:
        return PROFILES[name.strip().lower()]()
    except KeyError:
        raise ValueError(
            f"{PROFILE_ENV}={name!r}: unknown profile; choose one of {', '.join(PROFILES)}"
        ) from None


def _synthetic(per_word: int, speakers: int | None, seed: int, version: int) -> Path:
    """The synthetic set in the cache; ``make_synthetic`` skips a complete one, finishes an
    interrupted one, and the name (sizes, seed, generator's version) keeps other sets apart."""
    from quartznet_tutorial.synthetic.espeak import GENERATOR_VERSION, make_synthetic

    spk = "" if speakers is None else f"x{speakers}"
    name = f"synthetic-v{version}-{per_word}{spk}-seed{seed}-gen{GENERATOR_VERSION}"
    return make_synthetic(
        default_cache_dir() / name,
        version=version,
        per_word=per_word,
        seed=seed,
        speakers=speakers,
        progress=False,
    )
