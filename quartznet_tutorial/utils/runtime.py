"""Where a training run executes: the processes ``torchrun`` starts, the device, the hardware.

:func:`setup` reads DDP's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (one process per GPU, NCCL
on CUDA, gloo on the CPU), resolves the device and joins the process group; the other helpers
are the few collectives the training loop needs, each a no-op in a single process.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

from quartznet_tutorial.utils.precision import resolve_device
from quartznet_tutorial.utils.version import package_version

__all__ = [
    "Env",
    "barrier",
    "cpu_description",
    "cpu_name",
    "gather",
    "hardware",
    "setup",
    "teardown",
    "versions",
]


class Env(NamedTuple):
    """This process's place in the run.

    Args:
        rank (int): 0 to ``world_size - 1``; rank 0 writes files and shows progress.
        world_size (int): processes training together (1 without ``torchrun``).
        device (torch.device): this process's device, with its index on CUDA.
        owns_group (bool): whether :func:`setup` created the process group (and so
            :func:`teardown` destroys it).
    """

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> Env:
    """DDP from ``torchrun``'s environment variables, then ``device`` ("auto": CUDA if present)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if world_size > 1:
            resolved = torch.device("cuda", local_rank)
        elif resolved.index is None:  # set_device and DDP need an index: "cuda" is the current
            resolved = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(resolved)
    owns_group = False
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        kwargs = {"device_id": resolved} if resolved.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
        owns_group = True
    if world_size > 1 and dist.get_world_size() != world_size:
        raise ValueError(
            f"WORLD_SIZE={world_size} but the process group has {dist.get_world_size()}"
        )
    return Env(rank, world_size, resolved, owns_group)


def teardown(env: Env) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if env.owns_group:
        dist.destroy_process_group()


def hardware(env: Env) -> str:
    """What the run trains on, for result records: GPUs, or the CPU model, cores, threads and
    the ISA level of PyTorch's kernels (a CPU figure is a fact about that level)."""
    if env.device.type == "cuda":
        return f"{env.world_size} × {torch.cuda.get_device_name(env.device)}"
    return cpu_description(env.world_size)


def cpu_description(processes: int = 1) -> str:
    """``CPU <model> (<cores> cores, <threads> threads, <ISA> kernels)`` for this process."""
    procs = f"{processes} processes, " if processes > 1 else ""
    threads = torch.get_num_threads()
    return (
        f"CPU {cpu_name()} ({os.cpu_count()} cores, {procs}{threads} "
        f"thread{'s' * (threads != 1)}, {torch.backends.cpu.get_cpu_capability()} kernels)"
    )


def gather(obj: Any, env: Env) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if env.world_size == 1:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: Env) -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if env.world_size > 1:
        dist.barrier()


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows: the
    machine a result was measured on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "(model unknown)"


def versions() -> dict[str, str]:
    """Versions of what produced a result: Python, torch, torchaudio, this package, CUDA."""
    import torchaudio

    return {
        "python": platform.python_version(),
        # str(): torch's TorchVersion is a str subclass that weights_only loading refuses.
        "torch": str(torch.__version__),
        "torchaudio": str(torchaudio.__version__),
        "quartznet_tutorial": package_version(),
        "cuda": torch.version.cuda or "none",
    }
