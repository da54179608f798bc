"""Where and in what precision a model runs: devices this machine has, and the training and
evaluation precisions as Lightning (and so NeMo) names them.

``"32"`` is float32; ``"16-mixed"`` and ``"bf16-mixed"`` run the forward pass under
``torch.autocast`` in float16 or bfloat16, the weights staying float32. float16 needs loss
scaling (a ``GradScaler``, which :func:`~quartznet_tutorial.train.train` enables for it alone).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

__all__ = ["PRECISIONS", "autocast", "autocast_dtype", "resolve_device"]

PRECISIONS = ("32", "16-mixed", "bf16-mixed")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None for ``"32"``).

    Raises:
        ValueError: an unknown precision, ``"16-mixed"`` off CUDA, or ``"bf16-mixed"`` on a
            GPU without bfloat16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "32":
        return None
    if precision == "16-mixed":
        if device.type != "cuda":
            # CPU fp16 autocast is slow and GradScaler on CPU is of little use: refuse clearly.
            raise ValueError(
                "precision='16-mixed' needs a CUDA GPU; on the CPU use 'bf16-mixed' or '32'"
            )
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision='bf16-mixed': {torch.cuda.get_device_name(device)} has no bfloat16; "
            "use '16-mixed'"
        )
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast(device.type, dtype)``, or nothing for ``dtype=None``."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def resolve_device(
    device: torch.device | str, use_cpu: str = "device='cpu' (--device cpu)"
) -> torch.device:
    """``device`` as a :class:`torch.device`, if this machine has it ("auto": CUDA if present).

    Raises ValueError naming the fix (``use_cpu``: how the caller's user picks the CPU),
    before anything is loaded onto a missing device (which fails deep inside ``torch.load`` as
    if the file were damaged).
    """
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
