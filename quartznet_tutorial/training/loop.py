"""Train a QuartzNet on Speech Commands with NeMo's recipe, on one device or many (``torchrun``).

The loop reads top to bottom, nanoGPT style: a :class:`TrainConfig` dataclass, DDP detected
from the environment ``torchrun`` sets, one mixed-precision path
(``torch.autocast`` + ``GradScaler(enabled=(dtype == torch.float16))``), Novograd
:cite:`ginsburg2019stochastic` with the warmup-hold-poly-decay schedule stepped per optimizer
step, cross-entropy on ``(B, 64, 128)`` MFCC batches from
:func:`~quartznet_tutorial.datasets.pipeline.make_pipeline`.

Reliability. After every epoch rank 0 writes ``last.pt`` (and ``best.pt`` when the validation
accuracy improves) atomically; ``resume=True`` continues from ``last.pt`` bit for bit (on the
same hardware and thread count): the checkpoint holds the model, optimizer, scheduler, grad
scaler, RNG states, the epoch, the step inside it and the epoch's running totals, and the
pipelines' batches are a pure function of ``(seed, epoch, step, rank)``. On ``SIGTERM`` (what
clusters send before pre-emption) training stops at the next step boundary, saves ``last.pt``
with the step inside the epoch, and raises
:class:`~quartznet_tutorial.training.config.TrainingInterrupted`; the ``quartznet``
CLI turns that into exit status 143 (``128 + SIGTERM``), and a rerun with ``--resume``
continues mid-epoch. A ``SIGKILL`` at any moment (even mid-save) loses at most the current
epoch: the previous ``last.pt`` is intact and resuming from it gives the same final weights.

Outputs in ``out_dir``: ``last.pt``, ``best.pt``, ``metrics.jsonl`` (one JSON line per
epoch), ``summary.json`` (:meth:`~quartznet_tutorial.training.config.TrainResult.summary`).

Example:
    >>> result = train(TrainConfig(data_root="data/speech_commands_v0.01", epochs=200))
    >>> result.test_accuracy

The pieces around the loop have modules of their own: the settings and the result in
:mod:`~quartznet_tutorial.training.config`, the data in
:mod:`~quartznet_tutorial.training.data`, the processes and the device in
:mod:`~quartznet_tutorial.utils.runtime`, stopping and resuming in
:mod:`~quartznet_tutorial.training.resume`.

Multi-GPU, as NVIDIA trained (2 GPUs, batch 128 each)::

    torchrun --nproc_per_node 2 -m quartznet_tutorial.cli.main train --data-root ... \\
        --precision 16-mixed
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from quartznet_tutorial.audio.features import FeatureConfig
from quartznet_tutorial.checkpoints.checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    save_checkpoint,
)
from quartznet_tutorial.evaluation.accuracy import EvalResult, confusion_totals
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.models.cpu_fast import cpu_eval_forward, training_module
from quartznet_tutorial.models.families import build
from quartznet_tutorial.training.config import (
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    TrainResult,
    default_out_dir,
)
from quartznet_tutorial.training.data import TrainData, build_data
from quartznet_tutorial.training.optim import Novograd, WarmupHoldPolyDecay
from quartznet_tutorial.training.resume import START, StopFlag, open_run, restore_run, rng_state
from quartznet_tutorial.training.transfer import freeze_encoder, init_from
from quartznet_tutorial.utils.files import append_json_line, write_json, write_json_lines
from quartznet_tutorial.utils.precision import (
    autocast,
    autocast_dtype,
    precision_warning,
)
from quartznet_tutorial.utils.progress import progress_bar
from quartznet_tutorial.utils.runtime import (
    Env,
    barrier,
    gather,
    hardware,
    setup,
    teardown,
    versions,
)

__all__ = ["train", "train_seeds", "train_step"]

logger = logging.getLogger(__name__)


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
    deterministic, cudnn_benchmark = (
        torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)  # fmt: skip
    try:
        with StopFlag() as stop:
            return _train(config, env, stop)
    finally:
        if torch.are_deterministic_algorithms_enabled() != deterministic:  # loads torch._inductor
            torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark = cudnn_benchmark
        teardown(env)


def train_seeds(config: TrainConfig, seeds: Iterable[int]) -> list[TrainResult]:
    """:func:`train` once per seed (initialisation, shuffling, augmentation), one after another.

    Each run has its own folder: ``runs/MODEL-vV-seedS`` by default, else ``OUT_DIR/seedS``.
    Its result (:meth:`~quartznet_tutorial.training.config.TrainResult.summary`) is what the Results
    page aggregates into a mean and standard deviation over seeds.

    Raises:
        ValueError: no seeds, or a seed given twice.
    """
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    default = config.out_dir == default_out_dir(config.model, config.version, config.seed)
    runs = []
    for seed in seeds:
        out_dir = default_out_dir(config.model, config.version, seed)
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
    data: TrainData
    model: torch.nn.Module
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
        features = FeatureConfig(frames=self.config.frames)
        return {
            "format": CHECKPOINT_FORMAT,
            "classifier": Classifier(self.model, self.data.labels, features).to_dict(),
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


def _new_run(config: TrainConfig, env: Env, data: TrainData, dtype: torch.dtype | None) -> _Run:
    """The model (seeded: the same initial weights on every rank), Novograd, its schedule over
    every step of the run, and a grad scaler (enabled for float16 only)."""
    model = build(config.model, num_classes=len(data.labels))
    if config.init_checkpoint is not None:
        init_from(model, config.init_checkpoint, data.labels)
    model = model.to(env.device)
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


def _step_module(model: torch.nn.Module, config: TrainConfig, env: Env) -> torch.nn.Module:
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
    data = build_data(config, env)
    run = _new_run(config, env, data, dtype)
    position = START
    if saved is not None:
        stateful = (run.model, run.optimizer, run.scheduler, run.scaler)
        position = restore_run(saved, config, env, data.labels, data.clips, *stateful)
        logger.info(
            "resuming %s at epoch %d, step %d", last_path, position.epoch + 1, position.start_step
        )
    del saved
    run.epoch, run.global_step = position.epoch, position.global_step
    run.best_val, run.history = position.best_val, list(position.history)
    if env.main:  # after a kill metrics.jsonl may be ahead of last.pt: write what it holds
        write_json_lines(out_dir / "metrics.jsonl", run.history)
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
        write_json(out_dir / "summary.json", result.summary())
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
    :class:`~quartznet_tutorial.training.config.TrainingInterrupted` when a stop is requested."""
    config, env = run.config, run.env
    run.model.train()
    if config.freeze_encoder_epochs:
        freeze_encoder(run.model, run.epoch < config.freeze_encoder_epochs)
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
        append_json_line(last_path.parent / "metrics.jsonl", record)
        logger.info(_describe(record, config.epochs))
    del state
    barrier(env)


def _check_finite(model: torch.nn.Module, epoch: int, last_path: Path, config: TrainConfig) -> None:
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
    model: torch.nn.Module, pipeline, labels, env: Env, dtype: torch.dtype | None
) -> EvalResult:
    """Each rank evaluates its shard with the bare model (no DDP hooks), totals reduced."""
    was_training = model.training
    model.eval()
    forward = cpu_eval_forward(model) if env.device.type == "cpu" else model
    with autocast(env.device, dtype):
        batches = pipeline.batches(0)
        confusion, loss_sum = confusion_totals(forward, batches, len(labels), env.device)
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
