"""What a training run takes and gives back: :class:`TrainConfig` in, :class:`TrainResult` out,
or one of the two ways a run stops early (:class:`TrainingInterrupted`, :class:`TrainingDiverged`).

All four are documented with :mod:`quartznet_tutorial.training.loop`, which re-exports them; the
``quartznet train`` CLI makes one option per :class:`TrainConfig` field.
"""

from __future__ import annotations

import datetime
import math
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from quartznet_tutorial.datasets.pipeline import KINDS as PIPELINES
from quartznet_tutorial.datasets.speech_commands import TASKS
from quartznet_tutorial.evaluation.accuracy import EvalResult
from quartznet_tutorial.models.cpu_fast import CPU_LAYOUTS
from quartznet_tutorial.models.families import model_names
from quartznet_tutorial.utils.precision import PRECISIONS
from quartznet_tutorial.utils.runtime import versions

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "default_out_dir",
]


def default_out_dir(model: str, version: int, seed: int) -> str:
    return f"runs/{model}-v{version}-seed{seed}"


def _help(text: str, choices: Iterable[str] | None = None) -> dict:
    """Field metadata the CLI turns into an option (``choices`` are checked when parsing)."""
    return {"help": text} if choices is None else {"help": text, "choices": tuple(choices)}


@dataclass
class TrainConfig:
    """One training run. The ``quartznet train`` CLI makes one option per field.

    The defaults are NeMo's speech-commands recipe (``quartznet_speech_commands_3x1_v1.yaml``).
    """

    model: str = field(default="quartznet-3x1", metadata=_help("model to train", model_names()))
    data_root: str | None = field(
        default=None, metadata=_help("extracted Speech Commands folder (word folders + lists)")
    )
    version: int = field(default=1, metadata=_help("Speech Commands version: 1 or 2"))
    task: str = field(
        default="all",
        metadata=_help("all: every word a class; 12: ten keywords, _silence_, _unknown_", TASKS),
    )
    epochs: int = field(default=200, metadata=_help("training epochs"))
    batch_size: int = field(default=128, metadata=_help("clips per batch per process (GPU)"))
    lr: float = field(default=0.05, metadata=_help("peak learning rate"))
    beta1: float = field(default=0.95, metadata=_help("Novograd momentum"))
    # NeMo's 0.5 (not Adam's 0.999): the per-layer gradient-norm average forgets fast.
    beta2: float = field(default=0.5, metadata=_help("Novograd decay of the squared grad norm"))
    weight_decay: float = field(default=0.001, metadata=_help("Novograd weight decay"))
    warmup_ratio: float = field(default=0.05, metadata=_help("fraction of steps warming up"))
    hold_ratio: float = field(default=0.45, metadata=_help("fraction of steps at the peak lr"))
    min_lr: float = field(default=0.001, metadata=_help("lr at the end of the power-2 decay"))
    precision: str = field(default="32", metadata=_help("32, 16-mixed or bf16-mixed", PRECISIONS))
    pipeline: str = field(
        default="auto",
        metadata=_help(
            "batches built on the device, by a DataLoader, or auto",
            PIPELINES,
        ),
    )
    augment: bool = field(default=True, metadata=_help("NeMo's training augmentation"))
    # NeMo's CropOrPadSpectrogramAugmentation(audio_length=128): a 1 s clip's 101 frames are
    # centred in 128 (27 zero frames), longer clips cropped. 101 keeps one second as it is.
    frames: int = field(
        default=128, metadata=_help("crop or pad every example to this many MFCC frames")
    )
    # Off, as in NeMo's example configs; its tutorial prepares the data with --rebalance.
    rebalance: bool = field(
        default=False,
        metadata=_help("repeat each word's training clips up to the largest word's count (NeMo)"),
    )
    num_workers: int = field(default=4, metadata=_help("DataLoader workers (dataloader only)"))
    out_dir: str | None = field(
        default=None, metadata=_help("checkpoints and metrics (default: runs/MODEL-vV-seedS)")
    )
    seed: int = field(default=0, metadata=_help("seed of initialisation, shuffle, augmentation"))
    resume: bool = field(default=False, metadata=_help("continue from OUT_DIR/last.pt"))
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda or cuda:N"))
    compile: bool = field(default=False, metadata=_help("torch.compile the model (CUDA only)"))
    # The (C, B, T) layout computes the same model from the same weights (sums in another
    # order), ~1.5x faster per CPU step in float32 and ~3x in bf16
    # (quartznet_tutorial.models.cpu_fast).
    cpu_layout: str = field(
        default="auto",
        metadata={
            **_help("training forward: cbt ((C, B, T) layout), eager, or auto (cbt on CPU)"),
            "choices": CPU_LAYOUTS,
        },
    )
    deterministic: bool = field(
        default=False, metadata=_help("torch.use_deterministic_algorithms (slower on CUDA)")
    )
    # Off by default as in NeMo's 2020 multi-GPU runs: each GPU normalises its own batch.
    sync_batchnorm: bool = field(
        default=False, metadata=_help("synchronise BatchNorm statistics across GPUs (CUDA)")
    )
    max_steps: int | None = field(
        default=None, metadata=_help("stop after this many optimizer steps (smoke runs)")
    )
    limit_clips: int | None = field(
        default=None, metadata=_help("use only this many clips of each split (smoke runs)")
    )
    eval_every: int = field(default=1, metadata=_help("validate every N epochs (and the last)"))
    skip_bad_files: bool = field(
        default=False, metadata=_help("leave out unreadable clips instead of failing")
    )
    progress: bool = field(default=True, metadata=_help("progress bars (rank 0 only)"))
    # Fine-tuning (quartznet_tutorial.training.finetune): your own words, a trained model to start
    # from.
    words: list[str] | None = field(
        default=None,
        metadata=_help("your own class names, the data's folders (default: the version's)"),
    )
    init_checkpoint: str | None = field(
        default=None,
        metadata=_help("start from this model (.pt or shipped name); a new decoder for new words"),
    )
    freeze_encoder_epochs: int = field(
        default=0, metadata=_help("train only the decoder for this many first epochs")
    )

    def __post_init__(self) -> None:
        if self.out_dir is None:
            self.out_dir = default_out_dir(self.model, self.version, self.seed)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.pipeline not in PIPELINES:
            raise ValueError(f"pipeline={self.pipeline!r}: choose one of {', '.join(PIPELINES)}")
        if self.cpu_layout not in CPU_LAYOUTS:
            raise ValueError(
                f"cpu_layout={self.cpu_layout!r}: choose one of {', '.join(CPU_LAYOUTS)}"
            )
        for name in ("epochs", "batch_size", "eval_every", "frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.freeze_encoder_epochs < 0:
            raise ValueError(f"freeze_encoder_epochs={self.freeze_encoder_epochs}: must be >= 0")
        if self.freeze_encoder_epochs and self.init_checkpoint is None:
            raise ValueError("freeze_encoder_epochs needs init_checkpoint (a trained encoder)")
        for name in ("max_steps", "limit_clips"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value}: must be >= 1, or None for no limit")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name}={value}: must be a finite number")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(
                f"lr={self.lr}, min_lr={self.min_lr}: need lr > 0 and 0 <= min_lr <= lr"
            )


class TrainingInterrupted(RuntimeError):
    """Raised by :func:`~quartznet_tutorial.training.loop.train` after ``SIGTERM`` or Ctrl-C, once
    ``last.pt`` holds the exact position; rerun with ``resume=True`` to continue mid-epoch.

    The CLI exits with :attr:`exit_code`, 128 + the signal: 143 after SIGTERM (what a job
    stopped by its scheduler reports), 130 after Ctrl-C (what shells report).

    A SIGTERM during setup (reading the data, building the model) is acted on just before
    the first step, without training further; Ctrl-C during setup stops at once (there is
    nothing to save yet). Ctrl-C pressed twice stops at once too, without saving.

    Attributes:
        checkpoint (Path or None): ``last.pt``, or None if there is none yet.
        epoch (int): the interrupted epoch (0-based).
        step (int): batches of that epoch already done.
        exit_code (int): 128 + the signal number.
    """

    def __init__(
        self, checkpoint: Path | None, epoch: int, step: int, signum: int = signal.SIGTERM
    ) -> None:
        how = "interrupted by Ctrl-C" if signum == signal.SIGINT else "stopped by SIGTERM"
        where = f"after epoch {epoch}" if step == 0 else f"in epoch {epoch + 1} after {step} steps"
        if checkpoint is None:
            message = f"{how} before the first step; nothing to resume from"
        else:
            message = (
                f"{how} {where}; {checkpoint} holds the position: rerun with --resume to continue"
            )
        super().__init__(message)
        self.checkpoint, self.epoch, self.step = checkpoint, epoch, step
        self.exit_code = 128 + int(signum)


class TrainingDiverged(RuntimeError):
    """Raised by :func:`~quartznet_tutorial.training.loop.train` when the weights stop being finite
    numbers (``nan``/``inf``), before anything non-finite is saved; the CLI then exits
    with 1."""

    exit_code = 1


@dataclass
class TrainResult:
    """What :func:`~quartznet_tutorial.training.loop.train` returns (the same on every rank).

    Attributes:
        config (TrainConfig): the run's settings.
        labels (list of str): class names.
        history (list of dict): per-epoch metrics, as in ``metrics.jsonl``.
        last_checkpoint (Path): ``out_dir/last.pt``.
        best_checkpoint (Path or None): ``out_dir/best.pt`` (best validation accuracy).
        val_accuracy (float or None): best validation accuracy (a fraction).
        test_accuracy (float or None): test accuracy of the best checkpoint (a fraction).
        test (EvalResult or None): the full test evaluation (confusion matrix, per class).
        final_test_accuracy (float or None): test accuracy of the final weights, what NeMo's
            2020 runs logged (the best checkpoint's is the unbiased one).
        train_seconds (float): wall time of the epochs, validation included, over resumes.
        world_size (int): processes that trained.
        device (str): ``"cuda"`` or ``"cpu"``.
        hardware (str): e.g. ``"2 × NVIDIA H100 80GB HBM3"``.
    """

    config: TrainConfig
    labels: list[str]
    history: list[dict]
    last_checkpoint: Path
    best_checkpoint: Path | None
    val_accuracy: float | None
    test_accuracy: float | None
    test: EvalResult | None
    train_seconds: float
    world_size: int
    device: str
    hardware: str
    final_test_accuracy: float | None = None

    @property
    def clips_per_second(self) -> float:
        """Training throughput over all epochs and ranks (validation time excluded)."""
        clips = sum(r["clips"] for r in self.history)
        seconds = sum(r["train_seconds"] for r in self.history)
        return clips / seconds if seconds > 0 else 0.0

    def summary(self, **extra: Any) -> dict:
        """The results-file record (``results/README.md``); ``extra`` adds or overrides keys
        (the CLI adds ``profile`` and ``command``)."""
        root = Path(self.config.data_root or ".")
        synthetic = (root / ".synthetic.json").is_file()
        record = {
            "kind": "training",
            "model": self.config.model,
            "data": f"{'synthetic' if synthetic else 'speech-commands'}-v{self.config.version}",
            "epochs": len(self.history),
            "test_accuracy": self.test_accuracy,
            "final_test_accuracy": self.final_test_accuracy,
            "val_accuracy": self.val_accuracy,
            "train_seconds": round(self.train_seconds, 1),
            "hardware": self.hardware,
            "device": self.device,
            "precision": self.config.precision,
            "date": datetime.date.today().isoformat(),
            "versions": versions(),
            "seed": self.config.seed,
            "clips_per_second": round(self.clips_per_second, 1),
            "world_size": self.world_size,
            "batch_size": self.config.batch_size,
            "steps": self.history[-1]["step"] if self.history else 0,
            "limit_clips": self.config.limit_clips,
            "lr": self.config.lr,
            "hold_ratio": self.config.hold_ratio,
            "augment": self.config.augment,
            "frames": self.config.frames,
            "task": self.config.task,
            "rebalance": self.config.rebalance,
        }
        if self.config.words is not None or self.config.init_checkpoint is not None:
            record["words"] = self.labels
            record["init_checkpoint"] = self.config.init_checkpoint
            record["freeze_encoder_epochs"] = self.config.freeze_encoder_epochs
        record.update(extra)
        return record
