"""Train a QuartzNet on Speech Commands with NeMo's recipe, on one device or many (``torchrun``).

The loop reads top to bottom, nanoGPT style: a :class:`TrainConfig` dataclass, DDP detected
from the environment ``torchrun`` sets, one mixed-precision path
(``torch.autocast`` + ``GradScaler(enabled=(dtype == torch.float16))``), Novograd
:cite:`ginsburg2019stochastic` with the warmup-hold-poly-decay schedule stepped per optimizer
step, cross-entropy on ``(B, 64, 128)`` MFCC batches from
:func:`~quartznet_tutorial.pipeline.make_pipeline`.

Reliability. After every epoch rank 0 writes ``last.pt`` (and ``best.pt`` when the validation
accuracy improves) atomically; ``resume=True`` continues from ``last.pt`` bit for bit (on the
same hardware and thread count): the checkpoint holds the model, optimizer, scheduler, grad
scaler, RNG states, the epoch, the step inside it and the epoch's running totals, and the
pipelines' batches are a pure function of ``(seed, epoch, step, rank)``. On ``SIGTERM`` (what
clusters send before pre-emption) training stops at the next step boundary, saves ``last.pt``
with the step inside the epoch, and raises :class:`TrainingInterrupted`; the ``quartznet``
CLI turns that into exit status 143 (``128 + SIGTERM``), and a rerun with ``--resume``
continues mid-epoch. A ``SIGKILL`` at any moment (even mid-save) loses at most the current
epoch: the previous ``last.pt`` is intact and resuming from it gives the same final weights.

Outputs in ``out_dir``: ``last.pt``, ``best.pt``, ``metrics.jsonl`` (one JSON line per
epoch), ``summary.json`` (:meth:`TrainResult.summary`).

Example:
    >>> result = train(TrainConfig(data_root="data/speech_commands_v0.01", epochs=200))
    >>> result.test_accuracy

Multi-GPU, as NVIDIA trained (2 GPUs, batch 128 each)::

    torchrun --nproc_per_node 2 -m quartznet_tutorial.cli train --data-root ... \\
        --precision 16-mixed
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import random
import signal
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint, versions
from .classifier import Classifier
from .config import VARIANTS
from .cpu_fast import CPU_LAYOUTS, training_module
from .data import TASKS
from .evaluate import EvalResult, confusion_totals
from .features import FeatureConfig
from .files import write_text_atomic
from .model import QuartzNet, build_model
from .optim import Novograd, WarmupHoldPolyDecay
from .pipeline import KINDS as PIPELINES
from .precision import PRECISIONS, autocast, autocast_dtype, precision_warning
from .progress import progress_bar
from .resume import START, StopFlag, open_run, restore_run, rng_state
from .runtime import Env, barrier, gather, hardware, setup, teardown

__all__ = [
    "PRECISIONS",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "train",
    "train_seeds",
    "train_step",
]

logger = logging.getLogger(__name__)


def _default_out_dir(model: str, version: int, seed: int) -> str:
    return f"runs/{model}-v{version}-seed{seed}"


def _help(text: str, choices: Iterable[str] | None = None) -> dict:
    """Field metadata the CLI turns into an option (``choices`` are checked when parsing)."""
    return {"help": text} if choices is None else {"help": text, "choices": tuple(choices)}


@dataclass
class TrainConfig:
    """One training run. The ``quartznet train`` CLI makes one option per field.

    The defaults are NeMo's speech-commands recipe (``quartznet_speech_commands_3x1_v1.yaml``).
    """

    model: str = field(default="quartznet-3x1", metadata=_help("variant to train", VARIANTS))
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
    # order), ~1.5x faster per CPU step in float32 and ~3x in bf16 (quartznet_tutorial.cpu_fast).
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

    def __post_init__(self) -> None:
        if self.out_dir is None:
            self.out_dir = _default_out_dir(self.model, self.version, self.seed)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.pipeline not in PIPELINES:
            raise ValueError(f"pipeline={self.pipeline!r}: choose one of {', '.join(PIPELINES)}")
        if self.cpu_layout not in CPU_LAYOUTS:
            raise ValueError(
                f"cpu_layout={self.cpu_layout!r}: choose one of {', '.join(CPU_LAYOUTS)}"
            )
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
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
    """Raised by :func:`train` after ``SIGTERM`` or Ctrl-C, once ``last.pt`` holds the exact
    position; rerun with ``resume=True`` to continue mid-epoch.

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
    """Raised by :func:`train` when the weights stop being finite numbers (``nan``/``inf``),
    before anything non-finite is saved; the CLI exits with status 1."""

    exit_code = 1


@dataclass
class TrainResult:
    """What :func:`train` returns (the same on every rank).

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
            "task": self.config.task,
            "rebalance": self.config.rebalance,
        }
        record.update(extra)
        return record


# --- data ---------------------------------------------------------------------------------


class _Data(NamedTuple):
    labels: list[str]
    train: Any  # Pipeline: len() batches, batches(epoch, start=0)
    val: Any
    test: Any
    clips: dict[str, int]  # clips per split: a resumed run must see the same data


def _build_data(config: TrainConfig, env: Env) -> _Data:
    """SpeechCommands splits -> this rank's pipelines (rank 0 first: it fills the caches)."""
    from .augment import AugmentConfig
    from .data import SpeechCommands, limit_clips, rebalance
    from .pipeline import make_pipeline

    if config.data_root is None:
        raise ValueError("data_root is not set: pass the extracted Speech Commands folder")

    def build() -> _Data:
        pipes, clips = {}, {}
        for subset in ("training", "validation", "testing"):
            ds = SpeechCommands(
                config.data_root,
                subset=subset,
                version=config.version,
                task=config.task,
                skip_bad_files=config.skip_bad_files,
                progress=config.progress and env.main,
            )
            train = subset == "training"
            ds = limit_clips(ds, config.limit_clips)
            if train and config.rebalance:
                ds = rebalance(ds)
            clips[subset] = len(ds)
            pipes[subset] = make_pipeline(
                ds,
                batch_size=config.batch_size,
                train=train,
                device=env.device,
                kind=config.pipeline,
                augment=AugmentConfig() if train and config.augment else None,
                seed=config.seed,
                rank=env.rank,
                world_size=env.world_size,
                num_workers=config.num_workers,
                progress=config.progress,
            )
        return _Data(ds.labels, pipes["training"], pipes["validation"], pipes["testing"], clips)

    if not env.main:
        barrier(env)  # rank 0 first: it fills the caches the others read
    data = build()
    if env.main:
        barrier(env)
    return data


# --- the loop -----------------------------------------------------------------------------


def train(config: TrainConfig) -> TrainResult:
    """Train ``config.model`` and evaluate its best checkpoint on the test split.

    Run it as is for one device, or under ``torchrun --nproc_per_node N`` for DDP (NCCL on
    CUDA, gloo on CPU); only rank 0 writes files and shows progress bars.

    Raises:
        TrainingInterrupted: after SIGTERM, once ``last.pt`` is saved (resume to continue).
        ValueError: bad settings, or ``out_dir`` holding another run (message says which).
        CheckpointError: ``resume`` from a checkpoint that is corrupt or does not match.
    """
    env = setup(config.device)
    deterministic = torch.are_deterministic_algorithms_enabled()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    try:
        with StopFlag() as stop:
            return _train(config, env, stop)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark = cudnn_benchmark
        teardown(env)


def train_seeds(config: TrainConfig, seeds: Iterable[int]) -> list[TrainResult]:
    """:func:`train` once per seed (initialisation, shuffling, augmentation), one after another.

    Each run has its own folder: ``runs/MODEL-vV-seedS`` by default, else ``OUT_DIR/seedS``.
    Its result (:meth:`TrainResult.summary`) is what the Results page aggregates into a mean
    and standard deviation over seeds.

    Raises:
        ValueError: no seeds, or a seed given twice.
    """
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    default = config.out_dir == _default_out_dir(config.model, config.version, config.seed)
    runs = []
    for seed in seeds:
        out_dir = _default_out_dir(config.model, config.version, seed)
        if not default:
            out_dir = str(Path(config.out_dir) / f"seed{seed}")
        runs.append(train(replace(config, seed=seed, out_dir=out_dir)))
    return runs


@dataclass
class _Run:
    """What the loop advances and ``last.pt`` saves: the model, its optimizer, schedule and
    grad scaler, and the counters."""

    config: TrainConfig
    env: Env
    data: _Data
    model: QuartzNet
    optimizer: Novograd
    scheduler: WarmupHoldPolyDecay
    scaler: torch.amp.GradScaler
    total_steps: int
    epoch: int = 0
    global_step: int = 0
    best_val: float = -1.0  # -1 before the first validation
    history: list[dict] = field(default_factory=list)

    def snapshot(self, step_in_epoch: int, partial: dict | None) -> dict:
        """The checkpoint of this moment. Collective: every rank calls it, rank 0 writes. Each
        rank has its own RNG state and, mid-epoch, its own running totals (of its shard)."""
        rng = gather(rng_state(self.env.device), self.env)
        partials = None if partial is None else gather(partial, self.env)
        classifier = Classifier(self.model, self.data.labels, FeatureConfig())
        return {
            "format": CHECKPOINT_FORMAT,
            "classifier": classifier.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_config": asdict(self.config),
            "world_size": self.env.world_size,
            "clips": self.data.clips,
            "epoch": self.epoch,
            "step_in_epoch": step_in_epoch,
            "step": self.global_step,
            "best_val_accuracy": self.best_val,
            "partial": partials,
            "history": self.history,
            "rng": rng,
            "versions": versions(),
        }


def _new_run(config: TrainConfig, env: Env, data: _Data, dtype: torch.dtype | None) -> _Run:
    """The model (seeded: the same initial weights on every rank), Novograd, its schedule over
    every step of the run, and a grad scaler (enabled for float16 only)."""
    model = build_model(config.model, num_classes=len(data.labels)).to(env.device)
    if config.sync_batchnorm and env.world_size > 1:
        if env.device.type != "cuda":
            raise ValueError("sync_batchnorm=True needs CUDA (SyncBatchNorm does not run on CPU)")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = Novograd(
        model.parameters(),
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        weight_decay=config.weight_decay,
    )
    total_steps = config.epochs * len(data.train)
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    scheduler = WarmupHoldPolyDecay(
        optimizer,
        max_steps=total_steps,
        warmup_ratio=config.warmup_ratio,
        hold_ratio=config.hold_ratio,
        min_lr=config.min_lr,
    )
    scaler = torch.amp.GradScaler(env.device.type, enabled=dtype == torch.float16)
    return _Run(config, env, data, model, optimizer, scheduler, scaler, total_steps)


def _step_module(model: QuartzNet, config: TrainConfig, env: Env) -> torch.nn.Module:
    """What each training step calls: the model in its training layout (sharing every
    parameter and buffer), in DDP across ranks, compiled on request (CUDA)."""
    net = training_module(model, layout=config.cpu_layout, device=env.device)
    if env.world_size > 1:
        device_ids = [env.device.index] if env.device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
    if config.compile:
        if env.device.type == "cuda":
            return torch.compile(net)
        logger.info("compile=True is applied on CUDA only; on the CPU it does not pay off")
    return net


def _train(config: TrainConfig, env: Env, stop: StopFlag) -> TrainResult:
    out_dir = Path(config.out_dir)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    dtype = autocast_dtype(config.precision, env.device)
    if env.main and (warning := precision_warning(config.precision, env.device)):
        logger.warning(warning)

    saved = open_run(config, env, last_path)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    random.seed(config.seed)
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
    elif env.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed (B, 64, 128) shapes: tune once
    data = _build_data(config, env)
    run = _new_run(config, env, data, dtype)
    position = START
    if saved is not None:
        stateful = (run.model, run.optimizer, run.scheduler, run.scaler)
        position = restore_run(saved, config, env, data.labels, data.clips, *stateful)
        logger.info(
            "resuming %s at epoch %d, step %d", last_path, position.epoch + 1, position.start_step
        )
    del saved
    run.epoch, run.global_step, run.best_val = (
        position.epoch,
        position.global_step,
        position.best_val,
    )
    run.history = list(position.history)
    if env.main:  # after a kill metrics.jsonl may be ahead of last.pt: write what it holds
        _write_lines(out_dir / "metrics.jsonl", run.history)
    step_fn = _step_module(run.model, config, env)

    if signum := stop.requested(0, env):  # SIGTERM during setup: nothing new to save
        checkpoint = last_path if last_path.is_file() else None
        raise TrainingInterrupted(checkpoint, run.epoch, position.start_step, signum)
    stop.catch_interrupt()
    start_step, partial = position.start_step, position.partial
    while run.epoch < config.epochs and run.global_step < run.total_steps:
        totals, seconds = _train_epoch(run, step_fn, dtype, stop, start_step, partial, last_path)
        _end_epoch(run, totals, seconds, dtype, best_path, last_path)
        start_step, partial = 0, None
        if signum := stop.requested(0 if env.world_size > 1 else run.global_step, env):
            raise TrainingInterrupted(last_path, run.epoch, 0, signum)
    stop.release_interrupt()  # Ctrl-C during the test evaluation stops at once

    # The final weights on the test split (what NeMo 2020 logged), then the weights of the
    # best validation accuracy (an unbiased choice: the test split played no part in it).
    final = _evaluate(run.model, data.test, data.labels, env, dtype) if run.history else None
    test = None
    if best_path.is_file():
        best = load_checkpoint(best_path, map_location="cpu")
        if best["epoch"] == run.epoch:  # the final weights are the best ones
            test = final
        else:
            run.model.load_state_dict(best["classifier"]["state_dict"])
            test = _evaluate(run.model, data.test, data.labels, env, dtype)
    result = TrainResult(
        config=config,
        labels=data.labels,
        history=run.history,
        last_checkpoint=last_path,
        best_checkpoint=best_path if best_path.is_file() else None,
        val_accuracy=run.best_val if run.best_val >= 0 else None,
        test_accuracy=None if test is None else test.accuracy,
        test=test,
        final_test_accuracy=None if final is None else final.accuracy,
        train_seconds=sum(r["seconds"] for r in run.history),
        world_size=env.world_size,
        device=env.device.type,
        hardware=hardware(env),
    )
    if env.main:
        _write_json(out_dir / "summary.json", result.summary())
        logger.info(
            "done: best val accuracy %s, test accuracy %s (%s)",
            _pct(result.val_accuracy),
            _pct(result.test_accuracy),
            best_path,
        )
    return result


def _train_epoch(
    run: _Run,
    step_fn: torch.nn.Module,
    dtype: torch.dtype | None,
    stop: StopFlag,
    start_step: int,
    partial: dict | None,
    last_path: Path,
) -> tuple[torch.Tensor, float]:
    """The steps of ``run.epoch`` from ``start_step``: returns this rank's running totals
    (loss·B, correct, B) and the seconds spent, or saves the position and raises
    :class:`TrainingInterrupted` when a stop is requested."""
    config, env = run.config, run.env
    run.model.train()
    totals = torch.zeros(3, dtype=torch.float64, device=env.device)  # loss·B, correct, B
    seconds = 0.0
    if partial is not None:  # resumed mid-epoch
        totals.copy_(partial["totals"])
        seconds = partial["seconds"]
    begin = time.perf_counter()
    steps = len(run.data.train)
    bar = progress_bar(
        total=steps,
        initial=start_step,
        desc=f"epoch {run.epoch + 1}/{config.epochs}",
        disable=not (config.progress and env.main),
        leave=False,
        dynamic_ncols=True,
    )
    step = start_step
    for features, target in run.data.train.batches(run.epoch, start=start_step):
        # features (B, 64, 128) float32, target (B,) long, on env.device
        logits, loss = train_step(step_fn, run.optimizer, run.scaler, dtype, features, target)
        run.scheduler.step()
        with torch.no_grad():
            n = target.shape[0]
            totals[0] += loss.detach().double() * n
            totals[1] += (logits.argmax(-1) == target).sum()
            totals[2] += n
        step += 1
        run.global_step += 1
        bar.update()
        if not bar.disable and step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if run.global_step >= run.total_steps:
            break
        if signum := stop.requested(run.global_step, env):
            elapsed = seconds + time.perf_counter() - begin
            state = run.snapshot(step, {"totals": totals.cpu(), "seconds": elapsed})
            if env.main:
                save_checkpoint(last_path, state)
            barrier(env)
            bar.close()
            raise TrainingInterrupted(last_path, run.epoch, step, signum)
    bar.close()
    if env.device.type == "cuda":
        torch.cuda.synchronize(env.device)
    return totals, seconds + time.perf_counter() - begin


def _end_epoch(
    run: _Run,
    totals: torch.Tensor,
    train_seconds: float,
    dtype: torch.dtype | None,
    best_path: Path,
    last_path: Path,
) -> None:
    """Reduce the epoch's totals over ranks, validate, record the epoch's metrics and save
    ``best.pt`` (if validation improved) and ``last.pt``."""
    config, env = run.config, run.env
    begin = time.perf_counter()
    if env.world_size > 1:
        dist.all_reduce(totals)
        # DDP copies rank 0's buffers to the others at the start of each forward, so after
        # the last step each rank holds the BatchNorm statistics of its own last batch:
        # validate and save rank 0's on every rank.
        for buffer in run.model.buffers():
            dist.broadcast(buffer, src=0)
    loss_sum, correct, clips = totals.tolist()
    if not math.isfinite(loss_sum):
        _check_finite(run.model, run.epoch, last_path, config)
    last_epoch = run.epoch + 1 == config.epochs or run.global_step >= run.total_steps
    val = None
    if (run.epoch + 1) % config.eval_every == 0 or last_epoch:
        val = _evaluate(run.model, run.data.val, run.data.labels, env, dtype)
    record = {
        "epoch": run.epoch + 1,
        "step": run.global_step,
        "lr": run.scheduler.get_last_lr()[0],
        "train_loss": loss_sum / clips,
        "train_accuracy": correct / clips,
        "val_loss": None if val is None else val.loss,
        "val_accuracy": None if val is None else val.accuracy,
        "clips": int(clips),
        "train_seconds": train_seconds,
        "seconds": train_seconds + time.perf_counter() - begin,
        "clips_per_second": clips / max(train_seconds, 1e-9),
    }
    run.history.append(record)
    improved = val is not None and val.accuracy > run.best_val
    if improved:
        run.best_val = val.accuracy
    run.epoch += 1
    state = run.snapshot(0, None)
    if env.main:
        # best first: a kill between the two saves re-runs this epoch from the old
        # last.pt, which rewrites the same best.pt.
        if improved:
            save_checkpoint(best_path, state)
        save_checkpoint(last_path, state)
        _append_line(last_path.parent / "metrics.jsonl", record)
        logger.info(_describe(record, config.epochs))
    del state
    barrier(env)


def _check_finite(model: QuartzNet, epoch: int, last_path: Path, config: TrainConfig) -> None:
    """After an epoch with a non-finite loss: stop if the weights are lost too (the same
    answer on every rank: DDP keeps their weights equal)."""
    finite = torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all()
    if not finite:
        kept = f"{last_path} holds epoch {epoch}" if epoch > 0 else "nothing was saved"
        raise TrainingDiverged(
            f"training diverged in epoch {epoch + 1}: the weights are nan/inf ({kept}); "
            f"lower the learning rate (lr={config.lr}) and start in another out_dir"
        )
    logger.warning(
        "epoch %d: the loss was nan/inf on some batches (the weights are still finite)",
        epoch + 1,
    )


def train_step(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    dtype: torch.dtype | None,
    features: torch.Tensor,
    target: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step of :func:`train` (the benchmarks time this same function).

    Forward and loss under ``torch.autocast(dtype)`` (none for ``dtype=None``), then
    ``zero_grad(set_to_none=True)``, the backward of the scaled loss, ``scaler.step`` and
    ``scaler.update`` (a ``GradScaler`` is enabled for float16 only). The learning-rate
    schedule is the caller's.

    Args:
        features (torch.Tensor): with shape ``(B, 64, T)``.
        target (torch.Tensor): with shape ``(B,)``, class indices.

    Returns:
        (torch.Tensor, torch.Tensor): the logits ``(B, num_classes)`` and the loss (a scalar
        with its graph; nothing here waits for the device).
    """
    with autocast(features.device, dtype):
        logits = module(features)
        loss = F.cross_entropy(logits, target)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return logits, loss


def _evaluate(
    model: QuartzNet, pipeline, labels, env: Env, dtype: torch.dtype | None
) -> EvalResult:
    """Each rank evaluates its shard with the bare model (no DDP hooks), totals reduced."""
    was_training = model.training
    model.eval()
    with autocast(env.device, dtype):
        confusion, loss_sum = confusion_totals(model, pipeline.batches(0), len(labels), env.device)
    model.train(was_training)
    if env.world_size > 1:
        dist.all_reduce(confusion)
        dist.all_reduce(loss_sum)
    return EvalResult.from_totals(confusion, loss_sum, labels)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _describe(record: dict, epochs: int) -> str:
    val = _pct(record["val_accuracy"])
    return (
        f"epoch {record['epoch']}/{epochs}: loss {record['train_loss']:.4f}, "
        f"train acc {_pct(record['train_accuracy'])}, val acc {val}, lr {record['lr']:.5f}, "
        f"{record['clips_per_second']:.0f} clips/s, {record['seconds']:.1f} s"
    )


def _json_safe(record: dict) -> dict:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }


def _append_line(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(_json_safe(record)) + "\n")


def _write_lines(path: Path, records: Iterable[dict]) -> None:
    text = "".join(json.dumps(_json_safe(r)) + "\n" for r in records)
    write_text_atomic(path, text)


def _write_json(path: Path, record: dict) -> None:
    write_text_atomic(path, json.dumps(_json_safe(record), indent=1) + "\n")
