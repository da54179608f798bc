"""QuartzNet_[BxR] and SE-QuartzNet for keyword classification :cite:`kriman2020quartznet`.

Read top to bottom: :class:`MaskedConv1d` (a convolution that ignores frames past each
utterance's length), :class:`SqueezeExcite` (temporal SE :cite:`hu2018squeeze`), the
:class:`JasperBlock` :cite:`li2019jasper`, and :class:`QuartzNet` = encoder + average-pool +
linear decoder. Module names and ordering follow NeMo's ``jasper.py`` so that a NeMo state
dict maps onto ours by renaming two prefixes (see :mod:`quartznet_tutorial.checkpoints.nemo`).
"""

from __future__ import annotations

import torch
from torch import nn

from quartznet_tutorial.models.variants import BlockConfig, QuartzNetConfig, get_config

__all__ = [
    "JasperBlock",
    "MaskedConv1d",
    "QuartzNet",
    "SqueezeExcite",
    "build_model",
    "count_parameters",
    "length_mask",
]


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, 1, T)`` bool mask, True on frames ``t < length``."""
    steps = torch.arange(max_len, device=lengths.device)
    return (steps[None, :] < lengths[:, None]).unsqueeze(1)


class MaskedConv1d(nn.Module):
    """Conv1d with 'same' padding that zeroes input frames at or past each length.

    NeMo's ``MaskedConv1d``: the mask is applied to the *input* of every convolution, so
    padding never leaks into valid frames. Stride is always 1, so lengths pass through.

    Args:
        in_channels (int): input channels ``C_in``.
        out_channels (int): output channels ``C_out``.
        kernel_size (int): time kernel ``k``; padding is ``dilation * (k - 1) // 2``.
        dilation (int, optional): time dilation. (Default: ``1``)
        groups (int, optional): ``C_in`` for a depthwise convolution. (Default: ``1``)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=False,
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, C_in, T), ``mask`` (B, 1, T) bool or None -> (B, C_out, T)."""
        if mask is not None:
            x = x * mask
        return self.conv(x)


class SqueezeExcite(nn.Module):
    """Temporal squeeze-and-excitation :cite:`hu2018squeeze,karim2019multivariate`.

    ``s = sigmoid(W2 relu(W1 mean_t(x)))``, ``y = s * x``: the mean is taken over valid frames
    only (NeMo's masked pooling, ``context_window=-1``), which equals a plain global average
    when every length is full, as in the 2020 code that produced the reported numbers.

    Args:
        channels (int): ``C``.
        reduction_ratio (int): ``r``; the bottleneck has ``C // r`` units. (Default: ``16``)
    """

    def __init__(self, channels: int, reduction_ratio: int = 16) -> None:
        super().__init__()
        if channels // reduction_ratio < 1:
            raise ValueError(
                f"SE reduction ratio {reduction_ratio} too large for {channels} channels"
            )
        hidden = channels // reduction_ratio
        # Same names as NeMo: fc.0 and fc.2 are the two bias-free linear layers.
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, channels, bias=False),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, C, T), ``mask`` (B, 1, T) or None -> (B, C, T)."""
        dtype = x.dtype
        # NeMo computes SE in fp32 under autocast for stability; so do we: in the weights'
        # precision (float32, or float64 for a float64 model), not the autocast one.
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(self.fc[0].weight.dtype)
            if mask is None:
                pooled = x.mean(dim=-1)  # (B, C)
            else:
                x = x * mask
                pooled = x.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1).to(x.dtype)
            scale = torch.sigmoid(self.fc(pooled)).unsqueeze(-1)  # (B, C, 1)
            return (x * scale).to(dtype)


class JasperBlock(nn.Module):
    """R sub-blocks of (separable conv, BN, ReLU, dropout) with an optional 1x1 residual.

    ``mconv`` holds the layers in NeMo's order (dw conv, pw conv, BN, ReLU, Dropout, ...,
    dw conv, pw conv, BN[, SE]); ``res`` is the 1x1 conv + BN of the block input, added before
    ``mout`` (the last ReLU + dropout) as in :cite:`li2019jasper`.

    Args:
        in_channels (int): channels of the block input.
        config (BlockConfig): filters, repeat, kernel, dilation, residual, separable, se.
        dropout (float, optional): dropout probability after each ReLU. (Default: ``0.0``)
        se_reduction_ratio (int, optional): SE ratio r if ``config.se``. (Default: ``16``)
    """

    def __init__(
        self,
        in_channels: int,
        config: BlockConfig,
        dropout: float = 0.0,
        se_reduction_ratio: int = 16,
    ) -> None:
        super().__init__()
        if config.repeat < 1:
            raise ValueError(f"a block needs repeat >= 1, got {config.repeat}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(config.repeat):
            layers += _conv_bn(channels, config.filters, config)
            if i < config.repeat - 1:
                layers += [nn.ReLU(), nn.Dropout(dropout)]
            channels = config.filters
        if config.se:
            layers.append(SqueezeExcite(config.filters, se_reduction_ratio))
        self.mconv = nn.ModuleList(layers)
        self.res = None
        if config.residual:
            res = _conv_bn(
                in_channels, config.filters, BlockConfig(config.filters, separable=False)
            )
            self.res = nn.ModuleList([nn.ModuleList(res)])
        self.mout = nn.Sequential(nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, C_in, T), ``mask`` (B, 1, T) or None -> (B, filters, T)."""
        out = x
        for layer in self.mconv:
            out = (
                layer(out, mask) if isinstance(layer, (MaskedConv1d, SqueezeExcite)) else layer(out)
            )
        if self.res is not None:
            res = x
            for layer in self.res[0]:
                res = layer(res, mask) if isinstance(layer, MaskedConv1d) else layer(res)
            out = out + res
        return self.mout(out)


def _conv_bn(in_channels: int, out_channels: int, config: BlockConfig) -> list[nn.Module]:
    """Separable (depthwise + pointwise) or plain conv, then BatchNorm(eps=1e-3) as NeMo."""
    if config.separable:
        convs = [
            MaskedConv1d(
                in_channels, in_channels, config.kernel, config.dilation, groups=in_channels
            ),
            MaskedConv1d(in_channels, out_channels, 1),
        ]
    else:
        convs = [MaskedConv1d(in_channels, out_channels, config.kernel, config.dilation)]
    return [*convs, nn.BatchNorm1d(out_channels, eps=1e-3, momentum=0.1)]


class QuartzNet(nn.Module):
    """QuartzNet_[BxR] / SE-QuartzNet encoder with NeMo's classification decoder.

    The decoder is ``ConvASRDecoderClassification``: average over *all* time frames (as NeMo,
    padded ones included), then ``Linear(C, num_classes)`` with bias.

    Args:
        config (QuartzNetConfig): the variant, e.g. ``VARIANTS["quartznet-3x1"]``.
        num_classes (int, optional): output classes. (Default: ``30``, Speech Commands V1)

    Example:
        >>> model = QuartzNet(VARIANTS["quartznet-3x1"])
        >>> logits = model(torch.randn(2, 64, 128), torch.tensor([128, 100]))  # (2, 30)
    """

    def __init__(self, config: QuartzNetConfig, num_classes: int = 30) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        blocks, channels = [], config.feat_in
        for block in config.blocks:
            blocks.append(JasperBlock(channels, block, config.dropout, config.se_reduction_ratio))
            channels = block.filters
        self.encoder = nn.ModuleList(blocks)
        self.decoder = nn.Linear(channels, num_classes)
        self.apply(_init_weights)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Classify a batch of feature sequences.

        Args:
            features (torch.Tensor): MFCCs with shape ``(B, feat_in, T)``.
            lengths (torch.Tensor, optional): ``(B,)`` valid frames per item; ``None`` means
                every frame is valid (the fixed-128-frame training recipe), and skips masking.

        Returns:
            torch.Tensor: logits with shape ``(B, num_classes)``.
        """
        if features.dim() != 3 or features.shape[1] != self.config.feat_in:
            raise ValueError(
                f"expected features of shape (batch, {self.config.feat_in}, time), "
                f"got {tuple(features.shape)}"
            )
        mask = None
        if lengths is not None:
            if lengths.shape != features.shape[:1]:
                raise ValueError(
                    f"lengths must have shape ({features.shape[0]},), got {tuple(lengths.shape)}"
                )
            mask = length_mask(lengths.to(features.device), features.shape[-1])
        x = features
        for block in self.encoder:
            x = block(x, mask)  # (B, C_b, T)
        return self.decoder(x.mean(dim=-1))  # (B, C) -> (B, num_classes)

    def replace_decoder(self, num_classes: int) -> None:
        """A fresh ``Linear(C, num_classes)`` decoder, initialised as at construction (NeMo's
        ``change_labels``); the encoder is kept."""
        old = self.decoder
        self.decoder = nn.Linear(old.in_features, num_classes).to(old.weight.device)
        _init_weights(self.decoder)
        self.num_classes = num_classes


def _init_weights(module: nn.Module) -> None:
    """NeMo's ``init_weights(mode='xavier_uniform')``: conv/linear weights xavier, BN 1/0."""
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight, gain=1.0)
    elif isinstance(module, nn.BatchNorm1d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build_model(name: str | QuartzNetConfig, num_classes: int = 30, **overrides) -> QuartzNet:
    """Build a registered variant by name (``"quartznet-3x1"``) or from a config."""
    config = name if isinstance(name, QuartzNetConfig) else get_config(name, **overrides)
    return QuartzNet(config, num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters; BatchNorm running statistics are buffers and do not count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
