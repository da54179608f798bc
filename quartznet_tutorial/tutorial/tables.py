"""The docs' tables, computed from the code, never pasted: parameter arithmetic and pipe tables.

:func:`parameter_table` counts parameters layer by layer *from the config*, with the
arithmetic, so that the docs can show where every parameter comes from (the tests check the
total against the model). :func:`markdown_table` renders any rows as a GitHub/MyST pipe table;
:func:`summary` describes a variant block by block. No plotting library is needed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from quartznet_tutorial.models.variants import BlockConfig, QuartzNetConfig, Reported

__all__ = [
    "ParamRow",
    "block_names",
    "markdown_table",
    "parameter_markdown",
    "parameter_table",
    "reported_params",
    "reported_rounding",
    "summary",
]


@dataclass(frozen=True)
class ParamRow:
    """One layer with parameters.

    Args:
        block (str): the block, as the diagrams name it (``"C1"``, ``"B2"``, ``"decoder"``).
        layer (str): what the layer is (``"depthwise conv"``, ``"BatchNorm"``, ``"SE fc 1"``).
        name (str): the module's name in our (and, prefixes aside, NeMo's) state dict.
        shape (tuple of int): the weight's shape.
        params (int): trainable parameters of the layer (weight, plus BN/linear bias).
        arithmetic (str): how ``params`` is computed, e.g. ``"128×13"``.
    """

    block: str
    layer: str
    name: str
    shape: tuple[int, ...]
    params: int
    arithmetic: str


def block_names(config: QuartzNetConfig) -> list[str]:
    """Short names of the encoder's blocks as the QuartzNet paper draws them.

    ``C1`` is the prolog, ``B1..BB`` the residual blocks, ``C2, C3, ...`` the epilog.
    """
    names, b, c = [], 0, 0
    for block in config.blocks:
        if block.residual:
            b += 1
            names.append(f"B{b}")
        else:
            c += 1
            names.append(f"C{c}")
    return names


def _conv_bn_rows(
    block: str, prefix: str, start: int, c_in: int, c_out: int, cfg: BlockConfig
) -> list[ParamRow]:
    """One (separable) conv + BN, numbered from ``start`` like ``model._conv_bn``'s layers."""
    if cfg.separable:
        k = cfg.kernel
        rows = [
            ParamRow(
                block,
                "depthwise conv",
                f"{prefix}.{start}.conv",
                (c_in, 1, k),
                c_in * k,
                f"{c_in}×{k}",
            ),
            ParamRow(
                block,
                "pointwise conv",
                f"{prefix}.{start + 1}.conv",
                (c_out, c_in, 1),
                c_out * c_in,
                f"{c_out}×{c_in}",
            ),
        ]
    else:
        k = f"×{cfg.kernel}" if cfg.kernel > 1 else ""
        rows = [
            ParamRow(
                block,
                "conv",
                f"{prefix}.{start}.conv",
                (c_out, c_in, cfg.kernel),
                c_out * c_in * cfg.kernel,
                f"{c_out}×{c_in}{k}",
            ),
        ]
    bn = f"{prefix}.{start + len(rows)}"
    rows.append(ParamRow(block, "BatchNorm", bn, (c_out,), 2 * c_out, f"2×{c_out}"))
    return rows


def parameter_table(config: QuartzNetConfig, num_classes: int = 30) -> list[ParamRow]:
    """Every layer with parameters, counted from the config alone, in the model's order.

    Follows :class:`~quartznet_tutorial.models.quartznet.JasperBlock`'s layout: per sub-block a
    depthwise ``C_in×k`` and pointwise ``C_out×C_in`` conv (or one plain ``C_out×C_in×k``
    conv) and a BatchNorm (weight and bias, ``2×C``; its running statistics are buffers),
    then SE's two bias-free linears ``(C/r)×C`` and ``C×(C/r)``, the residual 1x1 conv + BN,
    and the decoder ``Linear(C, num_classes)`` with bias.

    Args:
        config (QuartzNetConfig): the variant.
        num_classes (int, optional): decoder outputs. (Default: ``30``, Speech Commands V1)

    Returns:
        list of ParamRow: the rows; ``sum(r.params for r in rows)`` is the model's count.
    """
    rows: list[ParamRow] = []
    c_in = config.feat_in
    for b, (name, cfg) in enumerate(zip(block_names(config), config.blocks, strict=True)):
        prefix, index, channels = f"encoder.{b}.mconv", 0, c_in
        for i in range(cfg.repeat):
            sub = _conv_bn_rows(name, prefix, index, channels, cfg.filters, cfg)
            rows += sub
            # ReLU and Dropout (no parameters) sit between sub-blocks in mconv.
            index += len(sub) + (2 if i < cfg.repeat - 1 else 0)
            channels = cfg.filters
        if cfg.se:
            c, h = cfg.filters, cfg.filters // config.se_reduction_ratio
            se = f"{prefix}.{index}.fc"
            rows.append(ParamRow(name, "SE fc 1", f"{se}.0", (h, c), h * c, f"{h}×{c}"))
            rows.append(ParamRow(name, "SE fc 2", f"{se}.2", (c, h), c * h, f"{c}×{h}"))
        if cfg.residual:
            plain = BlockConfig(cfg.filters, separable=False)
            for row in _conv_bn_rows(name, f"encoder.{b}.res.0", 0, c_in, cfg.filters, plain):
                rows.append(replace(row, layer="residual " + row.layer))
        c_in = cfg.filters
    rows.append(
        ParamRow(
            "decoder",
            "linear",
            "decoder",
            (num_classes, c_in),
            num_classes * c_in + num_classes,
            f"{num_classes}×{c_in} + {num_classes}",
        )
    )
    return rows


def reported_params(reported: Reported) -> int:
    """``"0.077M"`` -> 77000, ``"1M"`` -> 1000000: NVIDIA's rounded count as a number."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kKmM]?)\s*", reported.params)
    if match is None:
        raise ValueError(f"cannot read reported parameter count {reported.params!r}")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return round(float(match.group(1)) * scale)


def reported_rounding(reported: Reported) -> int:
    """Half a unit of the last digit NVIDIA printed: ``"0.077M"`` -> 500, ``"1M"`` -> 500000.

    Any count within this of :func:`reported_params` prints as the reported number.
    """
    number = re.fullmatch(r"\s*([0-9.]+)\s*([kKmM]?)\s*", reported.params)
    if number is None:
        raise ValueError(f"cannot read reported parameter count {reported.params!r}")
    decimals = len(number.group(1).partition(".")[2])
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[number.group(2).lower()]
    return round(0.5 * 10**-decimals * scale)


def markdown_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], right: Sequence[int] = ()
) -> str:
    """A GitHub/MyST pipe table; ``int`` gets thousands commas.

    Columns of numbers, and the columns listed in ``right``, are right-aligned.
    """
    rows = [list(r) for r in rows]

    def cell(v: object) -> str:
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v).replace("|", "\\|")

    numeric = [
        i in right or (bool(rows) and all(isinstance(r[i], (int, float)) for r in rows))
        for i in range(len(headers))
    ]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def parameter_markdown(config: QuartzNetConfig, num_classes: int = 30) -> str:
    """:func:`parameter_table` as a pipe table, with a subtotal after each block and the total."""
    out, rows = [], parameter_table(config, num_classes)
    for i, r in enumerate(rows):
        out.append((r.block, r.layer, f"`{r.name}`", r.arithmetic, r.params))
        if i + 1 == len(rows) or rows[i + 1].block != r.block:
            subtotal = sum(x.params for x in rows if x.block == r.block)
            out.append((f"**{r.block}**", "", "", "", f"**{subtotal:,}**"))
    total = sum(r.params for r in rows)
    out.append(("**total**", "", "", "", f"**{total:,}**"))
    headers = ("block", "layer", "name", "arithmetic", "params")
    return markdown_table(headers, out, right=(4,))


def summary(config: QuartzNetConfig, num_classes: int = 30) -> str:
    """A few lines describing a variant block by block, with parameters per block."""
    rows = parameter_table(config, num_classes)
    source = "NeMo's config" if config.source == "nemo" else "reconstruction"
    se = f", SE r={config.se_reduction_ratio}" if config.has_se else ""
    lines = [f"{config.name} ({source}): B={config.num_blocks}, R={config.repeat}{se}"]
    c_in, body = config.feat_in, []
    for name, block in zip(block_names(config), config.blocks, strict=True):
        kind = "separable" if block.separable else "plain"
        d = f" d={block.dilation}" if block.dilation > 1 else ""
        extras = " + residual" if block.residual else ""
        extras += " + SE" if block.se else ""
        text = f"{name:<3} {kind:<9} k={block.kernel:<2}{d:<4} ×{block.repeat}  "
        body.append((text + f"{c_in:>3} -> {block.filters:<3}{extras}", name))
        c_in = block.filters
    body.append((f"decoder: average over time + linear {c_in} -> {num_classes}", "decoder"))
    width = max(len(text) for text, _ in body) + 2
    for text, name in body:
        params = sum(r.params for r in rows if r.block == name)
        lines.append(f"  {text:<{width}}{params:>9,} params")
    lines.append(f"  {'total':<{width}}{sum(r.params for r in rows):>9,} params")
    return "\n".join(lines)
