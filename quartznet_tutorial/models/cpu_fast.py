"""A faster CPU forward of :class:`~quartznet_tutorial.models.quartznet.QuartzNet`, same numbers.

:class:`CBTQuartzNet` computes exactly ``model(features)`` (all frames valid, as in training)
from the model's own parameters and buffers, with the activations laid out ``(C, B, T)``
instead of ``(B, C, T)``. In that layout

* every pointwise (1x1) convolution is one matrix product ``W (C_out, C_in) @ x (C_in, B*T)``
  instead of ``B`` small ones;
* every depthwise convolution, and training BatchNorm with the ReLU after it, run as compiled
  C kernels (:mod:`~quartznet_tutorial.ops.cpu_kernels`), channel by channel in cache, in
  float32 and float64 outside autocast, wherever a C compiler built them. Otherwise ATen
  operations compute the same, as follows;
* every depthwise convolution (any kernel and dilation, 'same' zero padding) is one batched
  product ``x (C, B, T) @ M (C, T, T)`` with a banded (Toeplitz) matrix per channel,
  ``M[c, s, t] = w[c, j]`` where ``s = t + j * dilation - padding``. It does ``T / k`` times
  the multiply-adds of the convolution, but at matrix-product speed, while oneDNN's depthwise
  kernels run these shapes at ~1 GMAC/s (``benchmarks/cpu_step.py``). ``M`` is built as
  ``w (C, k) @ E (k, T*T)`` with a fixed 0/1 matrix ``E`` cached per ``(k, dilation, T)``,
  so building it and its weight gradient are matrix products too (an indexed gather and its
  scatter-add backward measured 1.5-2x slower). Where the kernel is short against ``T``
  (1 s of frames and more), a block-Toeplitz product (``_BlockToeplitz``) takes its place:
  blocks of 16 output frames, each block's window of ``16 + k - 1`` input frames times one
  small Toeplitz matrix per channel, ``T * (16 + k - 1)`` multiply-adds per row instead of
  ``T * T``, and no ``T x T`` matrix to build, so it also serves small batches and long
  inputs. Where neither pays (short inputs in small batches), a grouped convolution;
* BatchNorm normalises ``(1, C, B*T)``: the same statistics over ``(B, T)`` per channel, so
  the running mean and variance update exactly as the model's own.

Only the order of floating-point sums differs from the reference model: logits and gradients
agree to within 1e-5 of each tensor's largest value in float32 (the largest gap, ~1.5e-5 of an
element, in a BatchNorm bias gradient), and to ~1e-14 in float64 (``tests/test_cpu_fast.py``).
Dropout draws its mask in the other layout, so with ``dropout > 0`` a training step is equal
in distribution, not elementwise (every registered variant has ``dropout = 0``).

:func:`training_module` is what :func:`~quartznet_tutorial.training.loop.train` (``cpu_layout``) and
``benchmarks/bench.py`` call, so the benchmark times what training runs. ``torch.compile`` on
top measured no faster on the CPU (``benchmarks/cpu_step.py``: ``cbt+compile``) and costs
tens of seconds of compilation, so it is not used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from quartznet_tutorial.models.quartznet import JasperBlock, MaskedConv1d, QuartzNet, SqueezeExcite
from quartznet_tutorial.ops import cpu_kernels

__all__ = [
    "CPU_LAYOUTS",
    "CBTQuartzNet",
    "cpu_eval_forward",
    "eval_logits",
    "eval_logits_prepadded",
    "resolve_layout",
    "training_module",
]

#: ``cpu_layout`` choices: ``"auto"`` = ``"cbt"`` on the CPU, ``"eager"`` on CUDA.
CPU_LAYOUTS = ("auto", "cbt", "eager")

# Band or grouped conv where blocks do not pay. On a 2-core Xeon (AMX, 1 thread), quartznet-3x1
# fp32 training step at T=128, before block-Toeplitz products: batch 8: eager 19.8 ms, banded
# 32.2, grouped conv 20.9; batch 32: 75.0 / 62.1 / 68.9; batch 64: 153.7 / 103.2 / 136.8.
# Building M costs C*T*T per layer whatever the batch, so small batches and long inputs (T*T
# grows) take the grouped conv1d over (1, C*B, T) instead, still without a transpose. The same
# step on a 2-core AMD EPYC (Zen 5), 1 thread, load ~1.8 (the other core busy), 2026-12-02,
# eager / banded / grouped ms: AVX2 batch 8: 35.5 / 53.4 / 30.0; 16: 67.9 / 55.6 / 53.9; 32:
# 110.9 / 93.4 / 98.2; 64: 238.6 / 143.3 / 180.6 (AVX-512 alike): the crossover sits near 16.
_MIN_BANDED_BATCH = 16
_MAX_BANDED_FRAMES = 512
_FAST_PADDING = 6  # oneDNN's depthwise convolution is slow beyond this padding
# Block-Toeplitz against the full band and the grouped conv, forward + backward of each
# depthwise conv of quartznet-3x1 in the (C, B, T) layout, AMD EPYC (Zen 5), load 1-2.8 (other
# work on the cores), 2026-12-02, ms band / blocks of 16 (/ of 32). Batch 128, T = 128, 2
# threads, AVX2: k=11 4.9 / 2.0 / 2.1, k=13 (128 channels) 15.1 / 8.2 / 9.1, k=15 7.7 / 4.7 /
# 5.0, k=17 8.5 / 5.2 / 5.5, k=29 dilation 2 (two phases of 64 frames) 8.2 / 7.7 / 7.8; blocks
# of 8, 12, 20, 24 or 64 slower than 16; AVX-512: k=11 5.4 / 2.4, k=13 16.1 / 9.8, k=15 8.9 /
# 5.3, k=17 7.8 / 4.8, k=29 d=2 9.0 / 9.1 (1 thread, windows gathered as now: AVX2 16.1 /
# 15.1, AVX-512 17.4 / 19.0; even either way). Sums over the five, 1 thread, AVX2, band /
# grouped / blocks: batch 128 at T = 64 ~even (43.5 / - / 45.9), at T = 40 12.8 / 64.6 / 25.0;
# batch 8, T = 40: 2.3 / 4.8 / 2.7; T = 64: 6.2 / 7.4 / 3.5; batch 2, T = 128: 28.8 / 8.3 /
# 4.0; batch 16, T = 600: grouped 93.1, blocks 37.4. So blocks where the band's products
# (building M included) are 3x theirs (_toeplitz_block): at T = 128 every batch and kernel.
# Whole training step, 1 thread, band-or-grouped before / with blocks, ms: AVX2 batch 128
# 244 / 209, 16: 48.5 / 26.4, 8: 23.7 / 16.8; AVX-512 batch 128 249 / 224, 16: 62.4 / 33.7,
# 8: 22.7 / 16.8 (medians of 11 interleaved, load ~2.8).
_TOEPLITZ_BLOCK = 16  # output frames per block of the block-Toeplitz product
_TOEPLITZ_MIN_RATIO = 3  # blocks where the band does 3x their multiply-adds


class CBTQuartzNet(nn.Module):
    """``model(features)`` computed in the ``(C, B, T)`` layout; shares ``model``'s tensors.

    The wrapper holds ``model`` as its only submodule and owns no tensors: an optimizer over
    ``model.parameters()``, ``model.state_dict()``, ``model.train()`` / ``model.eval()`` all
    act on the one model, and checkpoints keep the model's own names.

    Args:
        model (QuartzNet): the network to run. Every layer kind of the registered variants is
            supported (separable and 1x1 convolutions, BatchNorm, ReLU, Dropout, residual,
            squeeze-and-excitation, the decoder); anything else raises ``ValueError``.

    Example:
        >>> model = build_model("quartznet-3x1").train()
        >>> fast = CBTQuartzNet(model)
        >>> logits = fast(torch.randn(128, 64, 128))  # == model(features), up to rounding
    """

    def __init__(self, model: QuartzNet) -> None:
        super().__init__()
        if not isinstance(model, QuartzNet):
            raise ValueError(
                f"CBTQuartzNet wraps a QuartzNet, got {type(model).__name__}; "
                "use cpu_layout='eager' for other models"
            )
        for b, block in enumerate(model.encoder):
            layers = [*block.mconv, *(block.res[0] if block.res is not None else [])]
            for i, layer in enumerate(layers):
                _check_supported(layer, f"encoder.{b} layer {i}")
        self.model = model
        self._bands: dict[tuple, torch.Tensor] = {}  # 0/1 patterns E, cached per shape

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Classify ``features`` ``(B, feat_in, T)`` -> logits ``(B, num_classes)``.

        ``lengths`` other than ``None`` (masked frames: inference on unpadded clips) go to the
        wrapped model unchanged; the layout pays off in training, where every frame is valid.
        """
        if lengths is not None:
            return self.model(features, lengths)
        feat_in = self.model.config.feat_in
        if features.dim() != 3 or features.shape[1] != feat_in:
            raise ValueError(
                f"expected features of shape (batch, {feat_in}, time), got {tuple(features.shape)}"
            )
        x = features.transpose(0, 1).contiguous()  # (C, B, T): the only transpose
        for block in self.model.encoder:
            x = self._block(block, x)
        return self.model.decoder(x.mean(dim=-1).t())  # (C, B) -> (B, num_classes)

    def _block(self, block: JasperBlock, x: torch.Tensor) -> torch.Tensor:
        if block.res is None:
            return self._layers([*block.mconv, *block.mout], x)
        out = self._layers(block.mconv, x) + self._layers(block.res[0], x)
        return self._layers(block.mout, out, own=True)

    def _layers(
        self, layers: Iterable[nn.Module], x: torch.Tensor, own: bool = False
    ) -> torch.Tensor:
        """``layers`` on ``x`` (C, B, T). A ReLU overwrites its input where that is a sum or
        a BatchNorm output of this forward (``own``), which no backward reads: the same
        numbers, one (C, B, T) tensor fewer."""
        _, b, t = x.shape
        layers = list(layers)
        relu_done = False  # by the BatchNorm before it
        for i, layer in enumerate(layers):
            if isinstance(layer, MaskedConv1d):
                conv = layer.conv
                if conv.kernel_size[0] == 1:  # pointwise: one (C_out, C_in) @ (C_in, B*T)
                    x = (conv.weight[:, :, 0] @ x.reshape(x.shape[0], b * t)).view(-1, b, t)
                else:
                    x = self._depthwise(conv, x)
            elif isinstance(layer, nn.BatchNorm1d):
                relu_done = i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU)
                x = _batch_norm(layer, x.reshape(x.shape[0], b * t), relu_done).view(-1, b, t)
                continue
            elif isinstance(layer, nn.ReLU):
                if not relu_done:
                    x = x.relu_() if i == 0 and own else layer(x)
            elif isinstance(layer, SqueezeExcite):
                x = _squeeze_excite(layer, x)
            else:  # Dropout: elementwise, layout-free
                x = layer(x)
            relu_done = False
        return x

    def _depthwise(self, conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        """Depthwise 'same' conv of ``x`` (C, B, T) -> (C, B, T)."""
        c, b, t = x.shape
        (k,), (d,), (p,) = conv.kernel_size, conv.dilation, conv.padding
        weight = conv.weight[:, 0, :]  # (C, k)
        if k <= cpu_kernels.MAX_TAPS and cpu_kernels.usable(x, weight):  # one pass, no windows
            return cpu_kernels.depthwise(x, weight, p, d)
        block = _toeplitz_block(k, d, p, t, b)
        # Not under autocast: there the band or the grouped conv, cast like the model's convs.
        # Not under torch.compile either: tracing the autograd.Function aborts the process
        # (torch 2.11), and compiling this layout measured no faster (benchmarks/cpu_step.py).
        eager = not torch.compiler.is_compiling()
        if block and eager and not torch.is_autocast_enabled(x.device.type):
            pattern = self._block_pattern(k, block, weight)
            return _BlockToeplitz.apply(x, weight, pattern, p, d, block)
        if t > _MAX_BANDED_FRAMES or b < _MIN_BANDED_BATCH:
            # Each (channel, item) row is its own group: no transpose, the weights repeated.
            # A padding over 6 frames goes on the input first (oneDNN's slow path, see
            # eval_logits_prepadded). Forward + backward, 256 channels x 8 items x 128 frames,
            # one thread, AMD EPYC (Zen 5), load ~1.5, 2026-12-02: kernel 33, 16.6 -> 7.6 ms
            # (AVX2), 13.4 -> 6.7 ms (AVX-512); kernel 13 (padding 6) is no faster so.
            x = x.reshape(1, c * b, t)
            if p > _FAST_PADDING:
                x, p = nn.functional.pad(x, (p, p)), 0
            y = nn.functional.conv1d(
                x, conv.weight.repeat_interleave(b, dim=0), padding=p, dilation=d, groups=c * b
            )
            return y.view(c, b, t)
        band = (weight @ self._band_pattern(k, d, p, t, weight)).view(c, t, t)  # (C, T, T)
        return torch.matmul(x, band)  # (C, B, T) @ (C, T, T)

    def _block_pattern(self, k: int, block: int, like: torch.Tensor) -> torch.Tensor:
        """``E (k, W*L)`` of one block (``L`` output frames, a window of ``W = L + k - 1``
        input frames): ``E[j, s*L + o] = 1`` where ``s = o + j``. Cached per shape."""
        key = ("block", k, block, like.device, like.dtype)
        pattern = self._bands.get(key)
        if pattern is None:
            window = block + k - 1
            offset = torch.arange(window, device=like.device)[:, None] - torch.arange(
                block, device=like.device
            )
            taps = torch.arange(k, device=like.device)
            pattern = (offset[None] == taps[:, None, None]).reshape(k, -1).to(like.dtype)
            self._bands[key] = pattern
        return pattern

    def _band_pattern(self, k: int, d: int, p: int, t: int, like: torch.Tensor) -> torch.Tensor:
        """``E (k, T*T)``: ``E[j, s*T + t] = 1`` where input frame ``s`` meets tap ``j`` for
        output frame ``t``, i.e. ``s = t + j*d - p`` (rows outside ``0..T-1`` are the zero
        padding and simply absent). Depends on shapes only, so it is cached."""
        key = ("band", k, d, p, t, like.device, like.dtype)
        pattern = self._bands.get(key)
        if pattern is None:
            s = torch.arange(t, device=like.device)
            offset = s[:, None] - s[None, :] + p  # (T, T): s - t + p
            taps = torch.arange(k, device=like.device) * d  # (k,)
            pattern = (offset[None] == taps[:, None, None]).reshape(k, t * t).to(like.dtype)
            self._bands[key] = pattern
        return pattern


class _BlockToeplitz(torch.autograd.Function):
    """Depthwise 'same' conv of ``x`` (C, B, T) as one batched product per pass.

    A dilation ``d`` splits the frames into ``d`` phases (frames ``r, r + d, ...``), each an
    undilated conv with padding ``padding / d``. The output frames of a phase go in blocks of
    ``L``; block ``i`` reads the window of ``W = L + k - 1`` input frames of its phase from
    ``i*L - padding / d`` (zeros outside the input), and every window of a channel meets the
    same ``(W, L)`` Toeplitz matrix ``M = w (C, k) @ E (k, W*L)``. So
    ``windows (C, B*d*nb, W) @ M (C, W, L)`` does ``T * W`` multiply-adds per ``(c, b)`` row
    instead of the full band's ``T * T``. The windows are gathered straight from the padded
    input (one copy), phases included.

    The backward passes are products of the same size, with no scatter-add over the
    overlapping windows: the input gradient is the same conv of the output gradient with the
    kernel reversed (padding ``(k - 1) * d - padding``), and the weight gradient is
    ``(windows^T @ grad) @ E^T``.
    """

    @staticmethod
    def forward(ctx, x, weight, pattern, padding: int, dilation: int, block: int):
        c, k = weight.shape
        windows = _windows(x, padding, k, dilation, block)
        y = _blocks_product(windows, (weight @ pattern).view(c, -1, block), x.shape, dilation)
        ctx.save_for_backward(windows, weight, pattern)
        ctx.padding, ctx.dilation, ctx.block, ctx.shape = padding, dilation, block, x.shape
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        windows, weight, pattern = ctx.saved_tensors
        (c, b, t), d, block, k = ctx.shape, ctx.dilation, ctx.block, weight.shape[1]
        grad_x = None
        if ctx.needs_input_grad[0]:
            flipped = (weight.flip(-1) @ pattern).view(c, -1, block)
            reverse = (k - 1) * d - ctx.padding
            grad_x = _blocks_product(_windows(grad, reverse, k, d, block), flipped, ctx.shape, d)
        frames = windows.shape[1] // b * block  # d * nb * L
        grad = grad if frames == t else nn.functional.pad(grad, (0, frames - t))
        if d > 1:  # (C, B, nb*L, d) -> (C, B, d, nb*L): the phases' blocks, as the windows
            grad = grad.reshape(c, b, frames // d, d).transpose(2, 3)
        grad_m = torch.matmul(windows.transpose(1, 2), grad.reshape(c, -1, block))  # (C, W, L)
        grad_w = grad_m.reshape(c, -1) @ pattern.t()
        return grad_x, grad_w, None, None, None, None


def _windows(x: torch.Tensor, left: int, k: int, d: int, block: int) -> torch.Tensor:
    """``(C, B, T)`` -> ``(C, B*d*nb, L + k - 1)``: the input windows of the output blocks of
    each phase, with ``left`` zero frames before frame 0 and zeros after the end."""
    c, b, t = x.shape
    phase = -(-t // d)  # frames per phase
    blocks = -(-phase // block)  # nb blocks of L frames per phase
    width = block + k - 1
    length = d * (blocks * block + k - 1)  # the last window of the last phase ends here
    padded = nn.functional.pad(x, (left, length - left - t))
    # windows[c, b, r, i, s] = padded[c, b, r + d * (i * L + s)]
    windows = padded.as_strided(
        (c, b, d, blocks, width), (b * length, length, 1, d * block, d), padded.storage_offset()
    )
    return windows.reshape(c, b * d * blocks, width)


def _blocks_product(
    windows: torch.Tensor, m: torch.Tensor, shape: torch.Size, d: int
) -> torch.Tensor:
    c, b, t = shape
    y = torch.matmul(windows, m)  # (C, B*d*nb, L): frame r + d*u of phase r at (b, r, u)
    if d > 1:
        y = y.view(c, b, d, -1).transpose(2, 3)  # (C, B, nb*L, d)
    y = y.reshape(c, b, -1)
    return y if y.shape[-1] == t else y[..., :t].contiguous()


def _toeplitz_block(k: int, d: int, p: int, t: int, b: int) -> int:
    """Output frames per block for :class:`_BlockToeplitz` of ``b`` items of ``t`` frames,
    or 0 where it does not pay: blocks where the band's multiply-adds per channel, three
    ``(B, T) @ (T, T)`` products and two ``(k, T*T)`` ones (building ``M`` and its
    gradient), are ``_TOEPLITZ_MIN_RATIO`` times the blocks' three ``(B*T/L, W) @ (W, L)``.
    A dilation ``d`` needs a padding that is a multiple of ``d`` (as an odd kernel's 'same'
    padding is)."""
    if p % d:
        return 0
    block = _TOEPLITZ_BLOCK
    band = t * t * (3 * b + 2 * k)
    blocks = 3 * b * t * (block + k - 1)
    return block if band >= _TOEPLITZ_MIN_RATIO * blocks else 0


def _batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor, relu: bool) -> torch.Tensor:
    """``bn`` over ``x`` (C, N), statistics per channel over N, then a ReLU if ``relu``: the
    fused kernel in training, else ``bn`` with the ReLU in place on its output (before any
    view: in place on a view costs copies)."""
    if (
        bn.training
        and bn.track_running_stats
        and bn.momentum is not None
        and bn.affine
        and cpu_kernels.usable(x, bn.weight)
    ):
        return cpu_kernels.batch_norm(bn, x, relu)
    y = bn(x.unsqueeze(0))
    return (y.relu_() if relu else y)[0]


def _squeeze_excite(se: SqueezeExcite, x: torch.Tensor) -> torch.Tensor:
    """:class:`SqueezeExcite` on ``x`` (C, B, T); in the weights' precision under autocast, as
    the model."""
    dtype = x.dtype
    with torch.autocast(x.device.type, enabled=False):
        x = x.to(se.fc[0].weight.dtype)
        scale = torch.sigmoid(se.fc(x.mean(dim=-1).t()))  # (B, C)
        return (x * scale.t().unsqueeze(-1)).to(dtype)


def _check_supported(layer: nn.Module, where: str) -> None:
    if isinstance(layer, MaskedConv1d):
        conv = layer.conv
        depthwise = conv.groups == conv.in_channels == conv.out_channels
        pointwise = conv.kernel_size[0] == 1 and conv.groups == 1
        if conv.bias is not None or conv.stride != (1,) or not (depthwise or pointwise):
            raise ValueError(
                f"{where}: CBTQuartzNet runs depthwise and bias-free 1x1 convolutions only, "
                f"got {conv}; use cpu_layout='eager'"
            )
    elif type(layer) not in (nn.BatchNorm1d, nn.ReLU, nn.Dropout, SqueezeExcite):
        raise ValueError(
            f"{where}: CBTQuartzNet does not support {type(layer).__name__}; use cpu_layout='eager'"
        )


def resolve_layout(layout: str, device: torch.device | str) -> str:
    """``"auto"`` -> ``"cbt"`` on the CPU, ``"eager"`` elsewhere; others unchanged.

    ``"cbt"`` is right on every x86 ISA level measured, so ``"auto"`` does not need to ask
    the CPU: its convolutions are matrix products (MKL/oneDNN GEMM at any ISA), while the
    eager model's depthwise convolutions depend on oneDNN's kernel for the ISA, and on AVX2
    oneDNN runs them as im2col + GEMM (``x64:gemm:jit`` under ``ONEDNN_VERBOSE=1``; AVX-512
    gets ``jit_dw:avx512_core``). quartznet-3x1, fp32, batch 128, 2 threads, AMD EPYC
    (Zen 5), quiet (load ~1), 2026-12-02 (``benchmarks/results/cpu-isa-2026-12-02.json``):
    eager 161 vs cbt 129 ms per step at AVX-512, eager 231 vs cbt 149 ms at AVX2 (ATen, oneDNN
    and MKL limited); reported by a user on a 2-core AVX2-only EPYC: eager 520 ms, cbt 334 ms.
    """
    if layout not in CPU_LAYOUTS:
        raise ValueError(f"cpu_layout={layout!r}: choose one of {', '.join(CPU_LAYOUTS)}")
    if layout == "auto":
        return "cbt" if torch.device(device).type == "cpu" else "eager"
    return layout


def training_module(model: QuartzNet, *, layout: str, device: torch.device | str) -> nn.Module:
    """The module a training step calls: ``CBTQuartzNet(model)`` or ``model`` itself.

    Args:
        model (QuartzNet): the network being trained (its parameters are the ones optimised).
        layout (str): ``"auto"``, ``"cbt"`` or ``"eager"`` (see :data:`CPU_LAYOUTS`).
        device (torch.device or str): where training runs; decides ``"auto"``.
    """
    if not isinstance(model, QuartzNet):  # another model family: its own forward
        return model
    return CBTQuartzNet(model) if resolve_layout(layout, device) == "cbt" else model


# --- inference: the (B, T, C) layout -----------------------------------------------------------

# eval_logits' depthwise convolution materialises (B, T, C, k) products; past this many
# elements per layer, oneDNN's convolution is used instead (memory, not speed, sets it).
_MAX_UNFOLD_ELEMENTS = 1 << 22


def eval_logits(model: QuartzNet, features: torch.Tensor) -> torch.Tensor:
    """``model(features)`` of a model in eval mode, every frame valid, in the ``(B, T, C)`` layout.

    At batch 1 on the CPU oneDNN's depthwise convolutions dominate a forward pass (~100 us
    each for 64 channels x 128 frames, AVX2 and AVX-512 alike). With time major and channels
    last, a depthwise convolution is ``(x_unfolded (B, T, C, k) * w (C, k)).sum(-1)`` over a
    strided view (no copy of the input), a pointwise one is ``x @ W.T``, and BatchNorm's
    eval-mode affine runs along the contiguous channel axis. The results equal
    ``model(features)`` up to the order of float32 sums (``tests/test_cpu_fast.py``).

    Args:
        model (QuartzNet): in eval mode (BatchNorm uses its running statistics).
        features (torch.Tensor): ``(B, feat_in, T)`` MFCCs.

    Returns:
        torch.Tensor: logits ``(B, num_classes)``.
    """
    if model.training:
        raise ValueError("eval_logits needs model.eval(): BatchNorm must use running statistics")
    x = features.transpose(1, 2)  # (B, T, C): a view; the first product makes it contiguous
    for block in model.encoder:
        out = _btc_layers(block.mconv, x)
        if block.res is not None:
            out = out + _btc_layers(block.res[0], x)
        x = torch.relu(out)  # mout: ReLU, then Dropout (identity in eval)
    return model.decoder(x.mean(dim=1))  # (B, C) -> (B, num_classes)


def eval_logits_prepadded(model: QuartzNet, features: torch.Tensor) -> torch.Tensor:
    """``model(features)`` of a model in eval mode, every frame valid, for large CPU batches.

    The same layers in the same ``(B, C, T)`` layout, except that each convolution's 'same'
    zero padding is added to its input beforehand (``F.pad``) and the convolution itself runs
    unpadded. The numbers are the same; the speed is not: oneDNN's depthwise convolution with
    a padding over 6 frames (kernels from 15 on, or dilated) takes a slow path, about 20x the
    time of the unpadded one on the padded input (64 x 64 x 128, kernel 15, one thread: 6.3
    against 0.36 ms, AMD EPYC (Zen 5), AVX-512, load ~3.6, 2026-12-01; whole quartznet-3x1 at
    batch 64: 0.82 against 0.44 ms a clip). ``tests/test_cpu_fast.py`` checks it against the
    model.

    Args:
        model (QuartzNet): in eval mode (BatchNorm uses its running statistics).
        features (torch.Tensor): ``(B, feat_in, T)`` MFCCs.

    Returns:
        torch.Tensor: logits ``(B, num_classes)``.
    """
    if model.training:
        raise ValueError(
            "eval_logits_prepadded needs model.eval(): BatchNorm must use running statistics"
        )
    x = features
    for block in model.encoder:
        out = _prepadded_layers(block.mconv, x)
        if block.res is not None:
            out = out + _prepadded_layers(block.res[0], x)
        x = block.mout(out)
    return model.decoder(x.mean(dim=-1))


def cpu_eval_forward(model: nn.Module) -> Callable[..., torch.Tensor]:
    """``model``'s forward for evaluation on the CPU: :func:`eval_logits_prepadded` for a
    batch of features (every frame valid), ``model(features, lengths)`` for masked ones; a
    model of another family, its own forward."""
    if not isinstance(model, QuartzNet):  # another model family: its own forward
        return model

    def forward(*inputs: torch.Tensor) -> torch.Tensor:
        return eval_logits_prepadded(model, *inputs) if len(inputs) == 1 else model(*inputs)

    return forward


def _prepadded_layers(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        if isinstance(layer, MaskedConv1d):
            conv = layer.conv
            (p,) = conv.padding
            if p:
                x = nn.functional.pad(x, (p, p))
            x = nn.functional.conv1d(x, conv.weight, conv.bias, 1, 0, conv.dilation, conv.groups)
        else:  # BatchNorm, ReLU, Dropout, SqueezeExcite (no mask: every frame valid)
            x = layer(x)
    return x


def _btc_layers(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        if isinstance(layer, MaskedConv1d):
            conv = layer.conv
            if conv.kernel_size[0] == 1 and conv.groups == 1:
                x = x @ conv.weight[:, :, 0].t()  # (B, T, C_in) @ (C_in, C_out)
            else:
                x = _btc_depthwise(conv, x)
        elif isinstance(layer, nn.BatchNorm1d):
            # aten's eval batch_norm: x * alpha + beta, alpha = w / sqrt(var + eps)
            alpha = layer.weight * torch.rsqrt(layer.running_var + layer.eps)
            x = torch.addcmul(layer.bias - layer.running_mean * alpha, x, alpha)
        elif isinstance(layer, SqueezeExcite):
            x = x * torch.sigmoid(layer.fc(x.mean(dim=1))).unsqueeze(1)
        elif isinstance(layer, nn.ReLU):
            x = torch.relu(x)
        elif not isinstance(layer, nn.Dropout):  # Dropout: identity in eval
            raise ValueError(f"eval_logits does not support {type(layer).__name__}")
    return x


def _btc_depthwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """Depthwise 'same' convolution of ``x`` (B, T, C) -> (B, T, C)."""
    b, t, c = x.shape
    (k,), (d,), (p,) = conv.kernel_size, conv.dilation, conv.padding
    if b * t * c * k > _MAX_UNFOLD_ELEMENTS:
        y = conv(x.transpose(1, 2))
        return y.transpose(1, 2)
    padded = nn.functional.pad(x, (0, 0, p, p))  # (B, T + 2p, C)
    windows = padded.unfold(1, d * (k - 1) + 1, 1)  # (B, T, C, span): a strided view
    if d > 1:
        windows = windows[..., ::d]  # (B, T, C, k)
    return (windows * conv.weight[:, 0, :]).sum(dim=-1)
