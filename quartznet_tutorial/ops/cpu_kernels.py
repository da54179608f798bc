"""Fused CPU kernels for the ``(C, B, T)`` training layout, compiled at first use.

:class:`~quartznet_tutorial.models.cpu_fast.CBTQuartzNet` spends much of a CPU training step on
passes over memory, not on arithmetic: the depthwise convolution gathers overlapping windows
before its product, and training BatchNorm, the ReLU after it and their backward passes each
read and write whole activations. ``csrc/cbt_kernels.c`` does each of these channel by
channel, a channel's rows staying in cache between the passes it needs, the same computation
in another order of sums:

* :func:`depthwise` - a depthwise 'same' convolution of ``(C, B, T)``, forward, input gradient
  (the same kernel reversed) and weight gradient;
* :func:`batch_norm` - training-mode :class:`torch.nn.BatchNorm1d` over ``(C, N)`` with batch
  statistics, the running ones updated as the module does, and the ReLU after it fused;
* :func:`randn` - normal noise drawn in parallel, for the white-noise augmentation.

The C file is compiled once per machine with the system's C compiler (``$CC``, else ``cc``)
into ``$QUARTZNET_CACHE/kernels`` (0.7 s with gcc 12 on a 2-core AMD EPYC) and loaded with
:mod:`ctypes`; its OpenMP loops run in PyTorch's own thread pool (the same ``libgomp``). Where
there is no compiler, or ``QUARTZNET_CPU_KERNELS=0`` when the process first asks, or the
tensors are not float32/float64, :mod:`~quartznet_tutorial.models.cpu_fast` computes the same with
ATen operations and :func:`~quartznet_tutorial.audio.augment.white_noise` draws with
``torch.randn``. On x86-64 the kernels are built for AVX2 with FMA (Intel since Haswell, AMD
since Excavator) where the CPU has them, whatever wider units it also has, and for the
baseline ISA otherwise or when ``ATEN_CPU_CAPABILITY=default``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from quartznet_tutorial.utils.files import default_cache_dir

__all__ = [
    "ENV",
    "MAX_TAPS",
    "batch_norm",
    "build_flags",
    "depthwise",
    "library",
    "off",
    "randn",
    "status",
    "usable",
]

#: Set to ``0`` to compute everything with ATen operations instead.
ENV = "QUARTZNET_CPU_KERNELS"

_SOURCE = Path(__file__).resolve().parent / "csrc" / "cbt_kernels.c"
#: The longest depthwise kernel :func:`depthwise` takes (``MAX_TAPS`` in the C file).
MAX_TAPS = 128
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_INT, _PTR = ctypes.c_int64, ctypes.c_void_p
_SIGNATURES = {
    "dw_conv": [_PTR, _PTR, _PTR, _INT, _INT, _INT, _INT, _INT, _INT],
    "dw_weight_grad": [_PTR, _PTR, _PTR, _INT, _INT, _INT, _INT, _INT, _INT],
    "bn_forward": [*[_PTR] * 7, _INT, _INT, ctypes.c_double, ctypes.c_int],
    "bn_backward": [*[_PTR] * 9, _INT, _INT],
}
_NORMAL = [_PTR, _INT, _PTR]
_status = "not loaded yet"
_off = False  # inside off()


def build_flags() -> list[str]:
    """The compiler flags: ``-O3``, OpenMP, and AVX2 + FMA on x86-64 CPUs that have them."""
    flags = ["-O3", "-fPIC", "-shared", "-fopenmp", "-std=c11"]
    if platform.machine() in ("x86_64", "AMD64") and _has_avx2_fma():
        flags += ["-mavx2", "-mfma"]
    return flags


def _has_avx2_fma() -> bool:
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "default":
        return False  # PyTorch told to use baseline kernels: so do we
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])  # fmt: skip
    return "avx2" in flags and "fma" in flags


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on first call and cached per machine; ``None`` (with the
    reason in :func:`status`) where they cannot be built or are switched off."""
    global _status
    if os.environ.get(ENV, "1") == "0":
        _status = f"off ({ENV}=0)"
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        _status = "off (no C compiler: set CC or install gcc/clang)"
        return None
    flags = build_flags()
    key = hashlib.sha256(_SOURCE.read_bytes() + " ".join([compiler, *flags]).encode())
    path = default_cache_dir() / "kernels" / f"cbt-{key.hexdigest()[:16]}.so"
    try:
        if not path.is_file():
            _compile(compiler, flags, path)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or error
        _status = f"off (build failed: {str(detail).strip()[:300]})"
        warnings.warn(f"CPU kernels unavailable, using ATen operations: {_status}", stacklevel=2)
        return None
    for name, argtypes in _SIGNATURES.items():
        for suffix in _SUFFIX.values():
            getattr(lib, f"{name}_{suffix}").argtypes = argtypes
    lib.normal_f32.argtypes = _NORMAL
    _status = f"on ({path.name}, {' '.join(f for f in flags if f.startswith('-m')) or 'baseline'})"
    return lib


def _compile(compiler: str, flags: list[str], path: Path) -> None:
    """Compile into a temporary file and rename it into place (processes may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        subprocess.run(
            [compiler, *flags, str(_SOURCE), "-o", tmp, "-lm"],
            check=True,
            capture_output=True,
            text=True,
        )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def status() -> str:
    """Whether the kernels are in use, and why not: recorded by the benchmarks."""
    library()
    return _status


@contextlib.contextmanager
def off() -> Iterator[None]:
    """Within the block, ATen operations only, as where no C compiler is at hand (the
    benchmarks' "ATen only" step, the tests of the ATen paths)."""
    global _off
    before, _off = _off, True
    try:
        yield
    finally:
        _off = before


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can take ``tensors``: on the CPU, float32 or float64, not under
    autocast, ``torch.compile`` or :func:`off`, and built."""
    x = tensors[0]
    return (
        not _off
        and x.device.type == "cpu"
        and all(t.dtype == x.dtype for t in tensors)
        and x.dtype in _SUFFIX
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and library() is not None
    )


def _call(name: str, dtype: torch.dtype, *args) -> None:
    fn = getattr(library(), f"{name}_{_SUFFIX[dtype]}")
    fn(*(a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args))


def randn(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal float32 samples, as ``torch.randn(shape, generator=generator)`` is
    distributed but drawn in parallel: a ziggurat on splitmix64 streams, seeded by one 64-bit
    draw from ``generator`` (the global one by default), so a seeded generator gives the same
    samples whatever the thread count. ``torch.randn`` draws from one serial Mersenne Twister:
    the slowest step of a CPU training batch's augmentation."""
    with torch.profiler.record_function("cpu_kernels::randn"):  # named in profiles
        seed = torch.randint(-(2**63), 2**63 - 1, (1,), generator=generator)  # no .item()
        out = torch.empty(shape, dtype=torch.float32)
        library().normal_f32(out.data_ptr(), out.numel(), seed.data_ptr())
    return out


def depthwise(x: torch.Tensor, weight: torch.Tensor, padding: int, dilation: int) -> torch.Tensor:
    """Depthwise 'same' convolution of ``x`` (C, B, T) with ``weight`` (C, k): the output has
    ``T`` frames, ``y[c, b, t] = sum_j weight[c, j] * x[c, b, t + j * dilation - padding]``."""
    if weight.shape[1] > MAX_TAPS:
        raise ValueError(f"depthwise kernels take up to {MAX_TAPS} taps, got {weight.shape[1]}")
    return _Depthwise.apply(x.contiguous(), weight.contiguous(), padding, dilation)


class _Depthwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, padding: int, dilation: int):
        (c, b, t), k = x.shape, weight.shape[1]
        y = torch.empty_like(x)
        _call("dw_conv", x.dtype, x, weight, y, c, b, t, k, dilation, padding)
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation = padding, dilation
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        (c, b, t), k, d, p = x.shape, weight.shape[1], ctx.dilation, ctx.padding
        grad = grad.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # the same convolution, kernel reversed
            grad_x = torch.empty_like(grad)
            flipped = weight.flip(-1).contiguous()
            _call("dw_conv", x.dtype, grad, flipped, grad_x, c, b, t, k, d, (k - 1) * d - p)
        if ctx.needs_input_grad[1]:
            grad_w = torch.empty_like(weight)
            _call("dw_weight_grad", x.dtype, grad, x, grad_w, c, b, t, k, d, p)
        return grad_x, grad_w, None, None


def batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor, relu: bool) -> torch.Tensor:
    """``bn(x)`` of ``x`` (C, N) in training mode (batch statistics over N, running statistics
    and ``num_batches_tracked`` updated as :class:`~torch.nn.BatchNorm1d` does), then a ReLU
    if ``relu``. ``bn`` must be affine, tracking running statistics, with a momentum."""
    bn.num_batches_tracked.add_(1)
    return _BatchNorm.apply(
        x.contiguous(), bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum,
        bn.eps, relu,
    )  # fmt: skip


class _BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, relu: bool):
        c, n = x.shape
        y = torch.empty_like(x)
        mean, invstd, var = (torch.empty(c, dtype=x.dtype) for _ in range(3))
        _call("bn_forward", x.dtype, x, weight, bias, y, mean, invstd, var, c, n, eps, int(relu))
        running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        running_var.mul_(1 - momentum).add_(var, alpha=momentum)
        ctx.save_for_backward(x, weight, mean, invstd, y if relu else None)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight, mean, invstd, y = ctx.saved_tensors
        c, n = x.shape
        grad = grad.contiguous()
        grad_x, grad_w, grad_b = torch.empty_like(x), torch.empty_like(mean), torch.empty_like(mean)
        _call("bn_backward", x.dtype, grad, y, x, weight, mean, invstd, grad_x, grad_w, grad_b,
              c, n)  # fmt: skip
        return grad_x, grad_w, grad_b, None, None, None, None, None
