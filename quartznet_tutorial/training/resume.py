"""Stopping a run cleanly and resuming it bit for bit.

:class:`StopFlag` records SIGTERM (what clusters send before pre-emption) and Ctrl-C; the
training loop asks :meth:`StopFlag.requested` at step boundaries and, when told to stop, saves
``last.pt`` with the exact position. :func:`open_run` checks ``out_dir`` before anything is
written (a run to resume, with the same settings, or a new one), :func:`restore_run` loads
``last.pt`` into the model, optimizer, scheduler, grad scaler and this rank's RNGs and returns
the :class:`Position` the loop starts from.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.distributed as dist

from quartznet_tutorial.checkpoints.checkpoint import (
    CheckpointError,
    check_compatible,
    load_checkpoint,
    remove_stale_temporaries,
)
from quartznet_tutorial.utils.runtime import Env, barrier

if TYPE_CHECKING:
    from quartznet_tutorial.training.config import TrainConfig

__all__ = [
    "RESUME_MAY_DIFFER",
    "START",
    "Position",
    "StopFlag",
    "open_run",
    "restore_run",
    "rng_state",
]

logger = logging.getLogger(__name__)

#: The settings that may change between a run and its resumption (where things are, how fast
#: and how loudly it runs). Everything else changes the trajectory and must match.
RESUME_MAY_DIFFER = frozenset(
    {"data_root", "out_dir", "resume", "progress", "num_workers", "device", "compile", "cpu_layout"}
)
# Under DDP the ranks agree on a pending SIGTERM every this many steps (one tiny all-reduce).
_STOP_CHECK_EVERY = 10


class StopFlag:
    """Records SIGTERM (from the start) and Ctrl-C (while the loop runs, see
    :meth:`catch_interrupt`); the loop polls :meth:`requested` at step boundaries and saves the
    exact position before stopping. Restores the old handlers on exit."""

    def __init__(self) -> None:
        self.signum = 0  # the first stop signal received, 0 if none
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        self._catch(signal.SIGTERM)
        return self

    def catch_interrupt(self) -> None:
        """From now on, Ctrl-C asks for a clean stop (a second one stops at once)."""
        self._catch(signal.SIGINT)

    def release_interrupt(self) -> None:
        self._restore(signal.SIGINT)

    def requested(self, step: int, env: Env) -> int:
        """The stop signal every rank acts on now (0: go on). Under DDP the ranks agree every
        few steps (and at ``step`` 0), so that all of them stop at the same step."""
        if env.world_size == 1:
            return self.signum
        if step % _STOP_CHECK_EVERY:
            return 0
        flag = torch.tensor([float(self.signum)], device=env.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    def _catch(self, signum: int) -> None:
        if threading.current_thread() is threading.main_thread() and signum not in self._previous:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _restore(self, signum: int) -> None:
        if signum in self._previous:
            signal.signal(signum, self._previous.pop(signum))

    def _handle(self, signum, frame) -> None:
        self.signum = self.signum or signum
        if signum == signal.SIGINT:
            self._restore(signal.SIGINT)  # the user's second Ctrl-C is a KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        for signum in list(self._previous):
            self._restore(signum)


class Position(NamedTuple):
    """Where the loop starts: :data:`~quartznet_tutorial.training.resume.START` for a new run, else
    what ``last.pt`` saved.

    Args:
        epoch (int): the epoch to run (0-based).
        start_step (int): batches of ``epoch`` already done.
        global_step (int): optimizer steps so far.
        best_val (float): the best validation accuracy so far, -1 before the first.
        history (list of dict): the finished epochs' metrics.
        partial (dict or None): this rank's running totals of an interrupted epoch.
    """

    epoch: int
    start_step: int
    global_step: int
    best_val: float
    history: list[dict]
    partial: dict | None


#: The position of a new run.
START = Position(0, 0, 0, -1.0, [], None)


def open_run(config: TrainConfig, env: Env, last_path: Path) -> dict | None:
    """Check ``out_dir`` before anything is written: the state to resume from (settings
    checked), or None for a new run; refuse to overwrite another run."""
    out_dir = last_path.parent
    resume_state = None
    if config.resume and last_path.is_file():
        # On the CPU: load_state_dict moves each tensor where it belongs (RNG states stay).
        resume_state = load_checkpoint(last_path, map_location="cpu")
        differences = _config_differences(resume_state["train_config"], config)
        saved_world = resume_state.get("world_size", 1)
        if saved_world != env.world_size:
            differences.append(f"world_size={saved_world} (now {env.world_size})")
        if differences:
            raise CheckpointError(
                f"{last_path}: was written by a run with other settings: "
                f"{', '.join(differences)}; resume with the same settings or use another out_dir"
            )
    elif last_path.is_file():
        raise ValueError(
            f"{out_dir} already holds a run ({last_path.name}); pass resume=True (--resume) to "
            "continue it, or choose another out_dir"
        )
    elif config.resume:
        logger.info("%s: no checkpoint to resume from, starting afresh", last_path)
    barrier(env)  # every rank has looked at last.pt before rank 0 may rewrite it
    if env.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out_dir)
    return resume_state


def restore_run(
    saved: dict,
    config: TrainConfig,
    env: Env,
    labels: list[str],
    clips: dict[str, int],
    *stateful: Any,
) -> Position:
    """Load ``last.pt`` (checked against the data: ``labels`` and the ``clips`` per split) into
    the model, optimizer, scheduler and scaler (``stateful``, in that order) and this rank's
    RNGs; return its position."""
    last_path = Path(config.out_dir) / "last.pt"
    check_compatible(saved, model=config.model, labels=labels, path=last_path)
    if saved.get("clips", clips) != clips:
        raise CheckpointError(
            f"{last_path}: was trained on other data (clips per split {saved['clips']}, now "
            f"{clips} in {config.data_root}); resume on the same data or use another out_dir"
        )
    model, optimizer, scheduler, scaler = stateful
    model.load_state_dict(saved["classifier"]["state_dict"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    _set_rng_state(saved["rng"][env.rank], env.device)
    partial = None if saved["partial"] is None else saved["partial"][env.rank]
    return Position(
        saved["epoch"],
        saved["step_in_epoch"],
        saved["step"],
        saved["best_val_accuracy"],
        saved["history"],
        partial,
    )


def rng_state(device: torch.device) -> dict:
    """This process's random generators (torch, Python's, CUDA's), for ``last.pt``."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    # Generators take their state as a CPU ByteTensor, wherever the checkpoint was mapped.
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _config_differences(saved: dict, config: TrainConfig) -> list[str]:
    now = asdict(config)
    # A setting newer than the checkpoint had its default value then.
    defaults = {f.name: f.default for f in fields(config) if f.default is not MISSING}
    was = {k: saved.get(k, defaults.get(k)) for k in now}
    return [
        f"{k}={was[k]!r} (now {now[k]!r})"
        for k in now
        if k not in RESUME_MAY_DIFFER and was[k] != now[k]
    ]
