"""Where and in what precision a model runs: devices this machine has, and the training and
evaluation precisions as Lightning (and so NeMo) names them.

``"32"`` is float32; ``"16-mixed"`` and ``"bf16-mixed"`` run the forward pass under
``torch.autocast`` in float16 or bfloat16, the weights staying float32. float16 needs loss
scaling (a ``GradScaler``, which :func:`~quartznet_tutorial.training.loop.train` enables for it
alone).

Both run on the CPU too, where they are for checking a GPU recipe's code path, not for speed:
float16 autocast is emulated there on most CPUs, and bfloat16 is fast only where the CPU has
it in hardware (AVX512-BF16 or AMX, see :func:`cpu_has_native_bf16`); elsewhere it is several
times slower than float32. :func:`precision_warning` says so, and training logs it.

The functions import torch, the module does not: the command line reads ``PRECISIONS`` to
build its options without loading torch.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "PRECISIONS",
    "autocast",
    "autocast_dtype",
    "cpu_has_native_bf16",
    "precision_warning",
    "resolve_device",
]

PRECISIONS = ("32", "16-mixed", "bf16-mixed")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None for ``"32"``).

    Raises:
        ValueError: an unknown precision, or ``"bf16-mixed"`` on a GPU without bfloat16.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "32":
        return None
    if precision == "16-mixed":
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision='bf16-mixed': {torch.cuda.get_device_name(device)} has no bfloat16; "
            "use '16-mixed'"
        )
    return torch.bfloat16


def cpu_has_native_bf16() -> bool:
    """Whether PyTorch's CPU kernels here compute bfloat16 in hardware.

    True where ATen dispatches to its AVX-512 kernels and the CPU has AVX512-BF16 or AMX
    (``ATEN_CPU_CAPABILITY=avx2`` turns it off, as on an AVX2-only CPU). Without it, bf16
    autocast converts every tensor in software: quartznet-3x1's training step measured 4-17x
    slower than float32 on a 2-core AVX2-only AMD EPYC (torch 2.11.0).
    """
    import torch

    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return False
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def precision_warning(precision: str, device: torch.device) -> str | None:
    """A warning for a precision that runs, but slowly, on ``device``; None if it runs well."""
    if device.type != "cpu" or precision == "32":
        return None
    if precision == "16-mixed":
        return (
            "precision='16-mixed' on the CPU runs the GPU recipe's float16 code path (autocast "
            "and loss scaling) for checking, slowly; use '32' to train on a CPU"
        )
    if not cpu_has_native_bf16():
        return (
            "precision='bf16-mixed': this CPU has no bfloat16 in hardware (AVX512-BF16 or AMX), "
            "so bf16 autocast is several times slower than '32' here"
        )
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast(device.type, dtype)``, or nothing for ``dtype=None``."""
    import torch

    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def resolve_device(
    device: torch.device | str, use_cpu: str = "device='cpu' (--device cpu)"
) -> torch.device:
    """``device`` as a :class:`torch.device`, if this machine has it ("auto": CUDA if present).

    Raises ValueError naming the fix (``use_cpu``: how the caller's user picks the CPU),
    before anything is loaded onto a missing device (which fails deep inside ``torch.load`` as
    if the file were damaged).
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"no CUDA device here; use {use_cpu}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"no CUDA device {device.index} here ({count} found); use cuda:0 to "
                f"cuda:{count - 1} or cpu"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"no MPS device here; use {use_cpu}")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {str(device)!r}; use cpu, cuda or cuda:N")
    return device
