"""Training and evaluation precisions, as Lightning (and so NeMo) names them.

``"32"`` is float32; ``"16-mixed"`` and ``"bf16-mixed"`` run the forward pass under
``torch.autocast`` in float16 or bfloat16, the weights staying float32. float16 needs loss
scaling (a ``GradScaler``, which :func:`~quartznet_tutorial.train.train` enables for it alone).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

__all__ = ["PRECISIONS", "autocast", "autocast_dtype"]

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
