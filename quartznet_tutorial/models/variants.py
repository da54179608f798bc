"""The one table of QuartzNet variants.

Every name the docs, tests, CLI and notebooks use comes from :data:`VARIANTS`. A variant is a
plain dataclass: the encoder's blocks in order (prolog, B blocks of R sub-blocks, two epilog
convolutions), the input features and the squeeze-and-excitation setting. NeMo published the
configs of ``quartznet-3x1`` and ``quartznet-3x2`` (``quartznet_speech_commands_3x{1,2}_v1.yaml``);
the other five are *reconstructions* chosen to hit the parameter counts NeMo reported, see
``docs/architecture.md`` for the arithmetic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

__all__ = [
    "SE_TWINS",
    "VARIANTS",
    "BlockConfig",
    "QuartzNetConfig",
    "Reported",
    "config_from_dict",
    "config_to_dict",
    "get_config",
]


@dataclass(frozen=True)
class BlockConfig:
    """One Jasper block: ``repeat`` sub-blocks of (conv, BatchNorm, ReLU, dropout).

    Args:
        filters (int): output channels of every sub-block.
        repeat (int): number of sub-blocks, the R of QuartzNet_[BxR]. (Default: ``1``)
        kernel (int): time kernel size of the (depthwise) convolution. (Default: ``1``)
        dilation (int): time dilation of the convolution. (Default: ``1``)
        residual (bool): add a 1x1 conv + BN of the block input before the last ReLU.
        separable (bool): depthwise conv then pointwise 1x1 conv (QuartzNet's time-channel
            separable convolution); ``False`` gives one plain convolution.
        se (bool): temporal squeeze-and-excitation after the last conv + BN (NeMo's ``se``).
    """

    filters: int
    repeat: int = 1
    kernel: int = 1
    dilation: int = 1
    residual: bool = False
    separable: bool = True
    se: bool = False


@dataclass(frozen=True)
class Reported:
    """What NVIDIA reported for a variant, quoted, never measured by us.

    Args:
        params (str): the parameter count as printed on the NeMo page (``"0.077M"``).
        accuracy (tuple): ``(dataset, test accuracy %, source)`` triples.
    """

    params: str
    accuracy: tuple[tuple[str, float, str], ...]


_FEB_2020 = "NeMo docs, Feb 2020 (later withdrawn)"
_FEB_2020_KEPT = "NeMo docs, Feb 2020"
_LATER = "NeMo docs, later correction"


@dataclass(frozen=True)
class QuartzNetConfig:
    """A QuartzNet_[BxR] or SE-QuartzNet encoder plus its classification decoder.

    Args:
        name (str): registry name, e.g. ``"quartznet-3x1"``.
        blocks (tuple of BlockConfig): prolog, the B blocks, the epilog convolutions.
        feat_in (int): input feature channels (64 MFCCs in the recipe).
        se_reduction_ratio (int): SE bottleneck ratio r, ``C -> C // r -> C``.
        dropout (float): dropout after every ReLU (``0.0`` in NeMo's speech-commands configs).
        source (str): ``"nemo"`` for NeMo's published config, ``"reconstruction"`` otherwise.
        reported (Reported, optional): the numbers NVIDIA reported for this variant.
    """

    name: str
    blocks: tuple[BlockConfig, ...]
    feat_in: int = 64
    se_reduction_ratio: int = 16
    dropout: float = 0.0
    source: str = "nemo"
    reported: Reported | None = field(default=None, compare=False)

    @property
    def num_blocks(self) -> int:
        """The number of residual blocks between prolog and epilog, the B of QuartzNet_[BxR]."""
        return sum(b.residual for b in self.blocks)

    @property
    def repeat(self) -> int:
        """Sub-blocks per residual block, the R of QuartzNet_[BxR]."""
        return max(b.repeat for b in self.blocks if b.residual)

    @property
    def has_se(self) -> bool:
        return any(b.se for b in self.blocks)


def _quartznet(
    name: str,
    *,
    repeat: int,
    widths: tuple[int, ...],
    kernels: tuple[int, ...],
    se: bool,
    source: str,
    reported: Reported,
) -> QuartzNetConfig:
    """Prolog, len(widths) residual blocks, then the two epilog convs of NeMo's 3x1 config.

    SE goes on every block but the final 1x1 conv: that is what fits SE-QuartzNet3x1 at
    0.08M (82,846 = 77,214 + 5,632) with r = 16.
    """
    prolog = BlockConfig(filters=128, kernel=11, se=se)
    body = tuple(
        BlockConfig(filters=w, repeat=repeat, kernel=k, residual=True, se=se)
        for w, k in zip(widths, kernels, strict=True)
    )
    epilog = (
        BlockConfig(filters=128, kernel=29, dilation=2, se=se),
        BlockConfig(filters=128, kernel=1, separable=False),
    )
    return QuartzNetConfig(
        name=name, blocks=(prolog, *body, *epilog), source=source, reported=reported
    )


_K3 = (13, 15, 17)  # NeMo's kernels for the 3 blocks
_K5 = (13, 15, 17, 19, 21)  # reconstruction: NeMo's +2 progression continued

VARIANTS: dict[str, QuartzNetConfig] = {
    c.name: c
    for c in (
        _quartznet(
            "quartznet-3x1",
            repeat=1,
            widths=(64,) * 3,
            kernels=_K3,
            se=False,
            source="nemo",
            reported=Reported(
                "0.077M",
                (("V1", 97.46, _FEB_2020_KEPT), ("V1", 97.32, _LATER), ("V2", 97.12, _LATER)),
            ),
        ),
        _quartznet(
            "quartznet-3x2",
            repeat=2,
            widths=(64,) * 3,
            kernels=_K3,
            se=False,
            source="nemo",
            reported=Reported("0.093M", (("V1", 97.69, _LATER), ("V2", 97.29, _LATER))),
        ),
        _quartznet(
            "quartznet-5x1-480k",
            repeat=1,
            widths=(208,) * 5,
            kernels=_K5,
            se=False,
            source="reconstruction",
            reported=Reported("0.48M", (("V1", 97.50, _FEB_2020),)),
        ),
        _quartznet(
            "quartznet-5x1-1m",
            repeat=1,
            widths=(312,) * 5,
            kernels=_K5,
            se=False,
            source="reconstruction",
            reported=Reported("1M", (("V1", 97.50, _FEB_2020),)),
        ),
        _quartznet(
            "se-quartznet-3x1",
            repeat=1,
            widths=(64,) * 3,
            kernels=_K3,
            se=True,
            source="reconstruction",
            reported=Reported("0.08M", (("V1", 97.22, _FEB_2020),)),
        ),
        _quartznet(
            "se-quartznet-5x1-510k",
            repeat=1,
            widths=(208,) * 5,
            kernels=_K5,
            se=True,
            source="reconstruction",
            reported=Reported("0.51M", (("V1", 97.53, _FEB_2020),)),
        ),
        _quartznet(
            "se-quartznet-5x1-1m",
            repeat=1,
            widths=(312,) * 5,
            kernels=_K5,
            se=True,
            source="reconstruction",
            reported=Reported("1M", (("V1", 97.50, _FEB_2020),)),
        ),
    )
}

#: The plain twin of each SE variant (same widths and kernels, no SE).
SE_TWINS: dict[str, str] = {
    "se-quartznet-3x1": "quartznet-3x1",
    "se-quartznet-5x1-510k": "quartznet-5x1-480k",
    "se-quartznet-5x1-1m": "quartznet-5x1-1m",
}


def get_config(name: str, **overrides) -> QuartzNetConfig:
    """Look up a variant by name; keyword overrides (e.g. ``dropout=0.1``) give a copy."""
    try:
        config = VARIANTS[name]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise ValueError(f"unknown model {name!r}; choose one of: {known}") from None
    return replace(config, **overrides) if overrides else config


def config_to_dict(config: QuartzNetConfig) -> dict:
    """Plain dict of builtins (safe for ``torch.load(weights_only=True)`` and JSON)."""
    d = asdict(config)
    d["blocks"] = [asdict(b) for b in config.blocks]
    d.pop("reported")
    return d


def config_from_dict(d: dict) -> QuartzNetConfig:
    """Inverse of :func:`config_to_dict`; registry variants get their reported numbers back."""
    d = dict(d)
    blocks = tuple(BlockConfig(**b) for b in d.pop("blocks"))
    known = VARIANTS.get(d.get("name", ""))
    config = QuartzNetConfig(blocks=blocks, **d)
    if known is not None and replace(known, reported=None) == replace(config, reported=None):
        return known
    return config
