"""Figures and tables the docs draw from the code, never pasted: architecture, SE, parameters.

:func:`draw_architecture` draws a variant of :data:`~quartznet_tutorial.config.VARIANTS`
vertically, like the QuartzNet figure of NeMo's documentation :cite:`kriman2020quartznet`:
prolog, the B blocks of R sub-blocks with their residual, the epilog and the decoder, with
channels and kernels read from the config. :func:`draw_squeeze_excite` draws the temporal
squeeze-and-excitation module :cite:`hu2018squeeze,karim2019multivariate`.
:func:`parameter_table` counts parameters layer by layer *from the config*, with the
arithmetic, so that the docs can show where every parameter comes from (the tests check the
total against the model). :func:`plot_learning_curves` plots a training history.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from .config import BlockConfig, QuartzNetConfig, Reported

__all__ = [
    "COLORS",
    "ParamRow",
    "audio_table",
    "block_names",
    "draw_architecture",
    "draw_squeeze_excite",
    "markdown_table",
    "parameter_markdown",
    "parameter_table",
    "plot_features",
    "plot_learning_curves",
    "plot_waveforms",
    "reported_params",
    "reported_rounding",
    "summary",
]

#: One colour per layer type, shared by both diagrams (colour-blind-safe Okabe-Ito hues, light).
COLORS: dict[str, str] = {
    "depthwise": "#9ecae1",  # blue
    "pointwise": "#c6dbef",  # pale blue
    "conv": "#bcbddc",  # purple: plain (non-separable) convolution
    "bn": "#fee391",  # yellow
    "relu": "#a1d99b",  # green
    "se": "#fdae6b",  # orange
    "residual": "#d9d9d9",  # grey
    "linear": "#dadaeb",  # lavender
    "sigmoid": "#fa9fb5",  # rose
    "decoder": "#fcc5c0",  # pink
    "io": "#ffffff",
    "block": "#f7f7f7",
}


# ---------------------------------------------------------------------------------------------
# Parameter arithmetic


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

    Follows :class:`~quartznet_tutorial.model.JasperBlock`'s layout: per sub-block a
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


# ---------------------------------------------------------------------------------------------
# Drawing helpers


def _box(
    ax: Axes,
    x: float,
    y: float,
    w: float,
    h: float,
    text: str,
    color: str,
    fontsize: float = 10,
    **kwargs,
) -> None:
    """A rounded box with ``(x, y)`` its top-left corner (y grows downwards)."""
    ax.add_patch(
        FancyBboxPatch(
            (x, y - h),
            w,
            h,
            boxstyle="round,pad=0,rounding_size=0.08",
            facecolor=color,
            edgecolor="#404040",
            linewidth=0.9,
            **kwargs,
        )
    )
    ax.text(x + w / 2, y - h / 2, text, ha="center", va="center", fontsize=fontsize)


def _arrow(
    ax: Axes, start: tuple[float, float], end: tuple[float, float], color: str = "#303030"
) -> None:
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=11,
            linewidth=1.1,
            color=color,
            shrinkA=0,
            shrinkB=0,
        )
    )


def _new_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=size, layout="constrained")
    fig = ax.get_figure()
    ax.set_axis_off()
    return fig, ax


def _sub_block_cells(
    c_in: int, cfg: BlockConfig, *, se: bool, relu: bool
) -> list[tuple[str, str, float]]:
    """``(label, colour key, width)`` of one sub-block's layers, left to right."""
    d = f", d={cfg.dilation}" if cfg.dilation > 1 else ""
    if cfg.separable:
        cells = [
            (f"depthwise conv\nk={cfg.kernel}{d}, {c_in} ch", "depthwise", 2.35),
            (f"pointwise conv\n{c_in}→{cfg.filters}", "pointwise", 2.05),
        ]
    else:
        cells = [(f"conv k={cfg.kernel}{d}\n{c_in}→{cfg.filters}", "conv", 4.4)]
    cells.append(("BN", "bn", 0.85))
    if se:
        cells.append(("SE", "se", 0.85))
    if relu:
        cells.append(("ReLU", "relu", 1.05))
    return cells


# Geometry of the architecture diagram, in data units (y grows downwards).
_MAIN_X, _MAIN_W = 0.3, 7.6  # the main path's column
_RES_X, _RES_W = 8.3, 1.95  # the residual branch's column
_ROW_H, _GAP = 0.72, 0.42


def _draw_row(ax: Axes, y: float, cells: list[tuple[str, str, float]], fontsize: float) -> float:
    """Cells centred in the main column with small gaps; returns the bottom ``y``."""
    gap = 0.12
    total = sum(w for _, _, w in cells) + gap * (len(cells) - 1)
    x = _MAIN_X + (_MAIN_W - total) / 2
    for i, (label, key, w) in enumerate(cells):
        _box(ax, x, y, w, _ROW_H, label, COLORS[key], fontsize=fontsize)
        if i < len(cells) - 1:
            ax.annotate(
                "",
                (x + w + gap, y - _ROW_H / 2),
                (x + w, y - _ROW_H / 2),
                arrowprops=dict(
                    arrowstyle="-|>",
                    lw=0.8,
                    color="#303030",
                    mutation_scale=7,
                    shrinkA=0,
                    shrinkB=0,
                ),
            )
        x += w + gap
    return y - _ROW_H


def draw_architecture(
    config: QuartzNetConfig,
    ax: Axes | None = None,
    *,
    num_classes: int = 30,
    frames: int = 128,
    fontsize: float = 10,
) -> Figure:
    """Draw a QuartzNet_[BxR] / SE-QuartzNet variant vertically, input at the top.

    Each row is one sub-block: its layers left to right (depthwise conv, pointwise conv, BN,
    SE when the block has one, ReLU). A residual block B\\ *i* frames its R sub-blocks; its
    1x1 conv + BN bypass runs down the right-hand side into the sum before the block's last
    ReLU :cite:`li2019jasper`. Channels, kernels and dilations come from ``config``.

    Args:
        config (QuartzNetConfig): the variant, e.g. ``VARIANTS["quartznet-3x1"]``.
        ax (matplotlib.axes.Axes, optional): where to draw. (Default: a new figure sized to
            the network)
        num_classes (int, optional): decoder outputs. (Default: ``30``)
        frames (int, optional): the T shown on the input. (Default: ``128``)
        fontsize (float, optional): label size in points. (Default: ``10``)

    Returns:
        matplotlib.figure.Figure: the figure drawn on.
    """
    names = block_names(config)
    # Height: rows per block + gaps; residual blocks add the sum and the final ReLU.
    rows = sum(b.repeat + (1 if b.residual else 0) for b in config.blocks) + 4
    height = rows * (_ROW_H + _GAP) + 0.6 * config.num_blocks + 0.8
    fig, ax = _new_axes(ax, (7.4, 0.58 * height))
    center = _MAIN_X + _MAIN_W / 2

    y = -0.1
    _box(
        ax,
        center - 2.0,
        y,
        4.0,
        _ROW_H,
        f"MFCC features\n{config.feat_in} × T (T = {frames})",
        COLORS["io"],
        fontsize=fontsize,
    )
    y -= _ROW_H
    c_in = config.feat_in
    for name, cfg in zip(names, config.blocks, strict=True):
        if not cfg.residual:
            _arrow(ax, (center, y), (center, y - _GAP))
            y -= _GAP
            top = y
            cells = _sub_block_cells(c_in, cfg, se=cfg.se, relu=True)
            y = _draw_row(ax, y, cells, fontsize)
            ax.text(
                _MAIN_X - 0.3,
                (top + y) / 2,
                name,
                ha="right",
                va="center",
                fontsize=fontsize + 1,
                fontweight="bold",
            )
            c_in = cfg.filters
            continue
        # A residual block: a frame around R sub-blocks, the sum, and the last ReLU.
        _arrow(ax, (center, y), (center, y - _GAP - 0.3))
        y -= _GAP + 0.3
        frame_top = y + 0.15
        fork = y + 0.15  # the block input, where the residual branch leaves the main path
        channels = c_in
        for i in range(cfg.repeat):
            last = i == cfg.repeat - 1
            if i > 0:
                _arrow(ax, (center, y), (center, y - _GAP))
                y -= _GAP
            cells = _sub_block_cells(channels, cfg, se=cfg.se and last, relu=not last)
            y = _draw_row(ax, y, cells, fontsize)
            channels = cfg.filters
        r = 0.2
        plus_y = y - _GAP - 0.25 - r  # longer arrow: room for the residual box beside it
        _arrow(ax, (center, y), (center, plus_y + r))
        ax.add_patch(Circle((center, plus_y), r, facecolor="white", edgecolor="#303030", lw=1.1))
        ax.text(center, plus_y, "+", ha="center", va="center", fontsize=fontsize + 4)
        # The residual: block input -> 1x1 conv + BN -> into the sum.
        rx = _RES_X + _RES_W / 2
        ax.plot([center, rx], [fork, fork], color="#303030", lw=1.1)
        ax.plot(center, fork, "o", color="#303030", ms=3.5)
        res_h = 1.0
        res_top = (fork + plus_y + res_h) / 2
        _arrow(ax, (rx, fork), (rx, res_top))
        _box(
            ax,
            _RES_X,
            res_top,
            _RES_W,
            res_h,
            f"residual\n1×1 conv + BN\n{c_in}→{cfg.filters}",
            COLORS["residual"],
            fontsize=fontsize - 0.5,
        )
        ax.plot([rx, rx], [res_top - res_h, plus_y], color="#303030", lw=1.1)
        _arrow(ax, (rx, plus_y), (center + r, plus_y))
        y = plus_y - r
        _arrow(ax, (center, y), (center, y - _GAP))
        y -= _GAP
        y = _draw_row(ax, y, [("ReLU", "relu", 1.05)], fontsize)
        frame_bottom = y - 0.15
        ax.add_patch(
            FancyBboxPatch(
                (_MAIN_X - 0.1, frame_bottom),
                _RES_X + _RES_W + 0.1 - (_MAIN_X - 0.1),
                frame_top - frame_bottom,
                boxstyle="round,pad=0,rounding_size=0.15",
                facecolor=COLORS["block"],
                edgecolor="#808080",
                linestyle="--",
                lw=0.9,
                zorder=0,
            )
        )
        ax.text(
            _MAIN_X - 0.3,
            (frame_top + frame_bottom) / 2,
            f"{name}\n{cfg.filters} ch\nk={cfg.kernel}\nR={cfg.repeat}",
            ha="right",
            va="center",
            fontsize=fontsize,
            fontweight="bold",
            linespacing=1.3,
        )
        y = frame_bottom
        c_in = cfg.filters

    _arrow(ax, (center, y), (center, y - _GAP))
    y -= _GAP
    top = y
    y = _draw_row(
        ax,
        y,
        [
            ("average over time\n(B, C, T) → (B, C)", "decoder", 3.0),
            (f"linear\n{c_in}→{num_classes}", "decoder", 2.0),
        ],
        fontsize,
    )
    ax.text(
        _MAIN_X - 0.3,
        (top + y) / 2,
        "decoder",
        ha="right",
        va="center",
        fontsize=fontsize + 1,
        fontweight="bold",
    )
    _arrow(ax, (center, y), (center, y - _GAP))
    y -= _GAP
    _box(
        ax,
        center - 1.5,
        y,
        3.0,
        _ROW_H * 0.75,
        f"{num_classes} logits",
        COLORS["io"],
        fontsize=fontsize,
    )
    y -= _ROW_H * 0.75

    se = f", SE r={config.se_reduction_ratio}" if config.has_se else ""
    ax.set_title(
        f"{config.name}: B={config.num_blocks}, R={config.repeat}{se}",
        fontsize=fontsize + 2,
        fontweight="bold",
    )
    ax.set_xlim(-1.5, _RES_X + _RES_W + 0.2)
    ax.set_ylim(y - 0.1, 0.1)
    return fig


def draw_squeeze_excite(
    ax: Axes | None = None, *, channels: int = 128, reduction_ratio: int = 16, fontsize: float = 9.5
) -> Figure:
    """Draw the temporal squeeze-and-excitation module, left to right.

    ``s = sigmoid(W2 ReLU(W1 mean_t(x)))`` and ``y = s ⊙ x``: a global average over time
    squeezes ``(C, T)`` to ``C`` numbers, two bias-free linear layers through a ``C/r``
    bottleneck give one gate per channel, and every channel of ``x`` is scaled by its gate
    :cite:`hu2018squeeze,karim2019multivariate`.

    Args:
        ax (matplotlib.axes.Axes, optional): where to draw. (Default: a new figure)
        channels (int, optional): ``C`` shown on the labels. (Default: ``128``)
        reduction_ratio (int, optional): ``r``. (Default: ``16``)
        fontsize (float, optional): label size in points. (Default: ``9.5``)

    Returns:
        matplotlib.figure.Figure: the figure drawn on.
    """
    own = ax is None
    fig, ax = _new_axes(ax, (7.4, 2.3))
    c, h = channels, channels // reduction_ratio
    # (label, colour key, width, shape of the output).
    steps = [
        (f"x\n({c}, T)", "io", 1.2, ""),
        ("average\nover time", "pointwise", 1.6, f"({c})"),
        (f"linear\n{c}→{h}", "linear", 1.3, f"({h})"),
        ("ReLU", "relu", 1.0, f"({h})"),
        (f"linear\n{h}→{c}", "linear", 1.3, f"({c})"),
        ("sigmoid", "sigmoid", 1.4, f"({c})"),
    ]
    gap, top, hgt, r = 0.85, 1.0, 0.95, 0.3
    mid = top - hgt / 2
    x, spans = 0.0, []
    for label, key, w, shape in steps:
        _box(ax, x, top, w, hgt, label, COLORS[key], fontsize=fontsize)
        spans.append((x, x + w))
        x += w
        _arrow(ax, (x, mid), (x + gap, mid))
        ax.text(
            x + gap / 2,
            mid + 0.07,
            shape,
            ha="center",
            va="bottom",
            fontsize=fontsize - 1.5,
            color="#505050",
        )
        x += gap
    # Scale: every channel of x times its gate, broadcast over time.
    mx = x + r
    ax.add_patch(Circle((mx, mid), r, facecolor="white", edgecolor="#303030", lw=1.1))
    ax.text(mx, mid, "×", ha="center", va="center", fontsize=fontsize + 4)
    skip = top - hgt - 0.5
    x0 = sum(spans[0]) / 2
    ax.plot([x0, x0, mx], [top - hgt, skip, skip], color="#303030", lw=1.1)
    _arrow(ax, (mx, skip), (mx, mid - r))
    ax.text(
        (x0 + mx) / 2,
        skip - 0.08,
        "x itself",
        ha="center",
        va="top",
        fontsize=fontsize - 1,
        color="#505050",
    )
    _arrow(ax, (mx + r, mid), (mx + r + gap, mid))
    _box(ax, mx + r + gap, top, 1.2, hgt, f"y\n({c}, T)", COLORS["io"], fontsize=fontsize)
    # Brackets naming the three stages of Hu et al.
    for label, x_from, x_to in [
        ("squeeze", *spans[1]),
        ("excite", spans[2][0], spans[5][1]),
        ("scale", mx - r, mx + r),
    ]:
        ax.plot(
            [x_from, x_from, x_to, x_to],
            [top + 0.12, top + 0.22, top + 0.22, top + 0.12],
            color="#808080",
            lw=0.9,
        )
        ax.text(
            (x_from + x_to) / 2,
            top + 0.27,
            label,
            ha="center",
            va="bottom",
            fontsize=fontsize,
            style="italic",
        )
    ax.set_title(
        f"Temporal squeeze-and-excitation (C={c}, r={reduction_ratio})",
        fontsize=fontsize + 2,
        fontweight="bold",
    )
    width, height = mx + r + gap + 1.4, top + 0.75 - (skip - 0.35)
    ax.set_xlim(-0.1, width - 0.1)
    ax.set_ylim(skip - 0.35, top + 0.75)
    ax.set_aspect("equal")
    if own:  # fit the figure to the drawing: no empty band above or below
        fig.set_size_inches(7.4, 7.4 * height / width + 0.45)
    return fig


# ---------------------------------------------------------------------------------------------
# Data


def plot_waveforms(
    waveforms: Sequence, titles: Sequence[str], *, sample_rate: int = 16_000, ncols: int = 4
) -> Figure:
    """One small panel per clip: amplitude (1 = full scale) over time in seconds.

    Args:
        waveforms (sequence of torch.Tensor): 1-D float clips, e.g. ``dataset[i][0]``.
        titles (sequence of str): one per clip.
        sample_rate (int, optional): samples per second. (Default: ``16000``)
        ncols (int, optional): panels per row. (Default: ``4``)
    """
    nrows = -(-len(waveforms) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(7.4, 1.75 * nrows), sharex=True, sharey=True, squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for ax, wave, title in zip(axes.flat, waveforms, titles, strict=False):
        wave = wave.detach().cpu().float().numpy() if hasattr(wave, "detach") else wave
        ax.plot([i / sample_rate for i in range(len(wave))], wave, lw=0.4, color="tab:blue")
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("amplitude (full scale)", fontsize=9)
    for ax in list(axes.flat)[len(waveforms) :]:
        ax.set_axis_off()
    return fig


def plot_features(
    features: Sequence,
    titles: Sequence[str],
    *,
    ncols: int = 2,
    limit: float | None = None,
    frame_ms: float = 10.0,
    mark_zeros: bool = True,
) -> Figure:
    """One image per feature matrix ``(coefficients, frames)``, coefficient 0 at the bottom.

    MFCCs are drawn on a diverging scale centred on 0. Coefficient 0 (the log energy) is large
    and negative, mostly far outside the others' range, so the scale is set by coefficients 1
    and up and coefficient 0 saturates. Values that are exactly 0 (crop/pad padding, SpecCutout
    and SpecAugment masks) are drawn in green when ``mark_zeros``, since 0 is otherwise an
    unremarkable MFCC value.

    Args:
        features (sequence of torch.Tensor): ``(F, T)`` matrices, e.g. MFCCs.
        titles (sequence of str): one per matrix.
        ncols (int, optional): panels per row. (Default: ``2``)
        limit (float, optional): the colour scale is ``±limit``. (Default: the 99th
            percentile of ``|value|`` over coefficients 1 and up)
        frame_ms (float, optional): the hop between frames, for the time axis. (Default: 10)
        mark_zeros (bool, optional): draw exact zeros in green. (Default: ``True``)
    """
    import numpy as np
    from matplotlib.colors import ListedColormap

    mats = [f.detach().cpu().float().numpy() if hasattr(f, "detach") else f for f in features]
    if limit is None:
        limit = float(np.percentile(np.abs(np.concatenate([m[1:].ravel() for m in mats])), 99))
    ncols = min(ncols, len(mats))
    nrows = -(-len(mats) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(7.4, 2.5 * nrows), squeeze=False, sharey=True,
        layout="constrained",
    )  # fmt: skip
    green = ListedColormap(["#1a9850"])
    for ax, mat, title in zip(axes.flat, mats, titles, strict=False):
        extent = (0, mat.shape[1] * frame_ms / 1000, 0, mat.shape[0])
        style = dict(origin="lower", aspect="auto", extent=extent, interpolation="nearest")
        image = ax.imshow(mat, cmap="RdBu_r", vmin=-limit, vmax=limit, **style)
        if mark_zeros and (mat == 0).any():
            ax.imshow(np.ma.masked_where(mat != 0, mat), cmap=green, **style)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("time (s)", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("coefficient", fontsize=9)
    for ax in list(axes.flat)[len(mats) :]:
        ax.set_axis_off()
    label = "value (exact 0 in green)" if mark_zeros else "value"
    fig.colorbar(image, ax=axes, shrink=0.8, label=label)
    return fig


def audio_table(
    clips: Sequence[Sequence],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    *,
    sample_rate: int = 16_000,
    normalize: bool = False,
):
    """An HTML table of audio players (IPython's ``Audio``), one clip per cell.

    Args:
        clips (list of list of torch.Tensor): ``clips[row][column]``, 1-D float waveforms in
            [-1, 1].
        row_labels (sequence of str): one per row, e.g. the word.
        column_labels (sequence of str): one per column, e.g. ``"real"``, ``"synthetic"``.
        sample_rate (int, optional): samples per second. (Default: ``16000``)
        normalize (bool, optional): scale each clip to full loudness; off, clips play at their
            recorded level, so differences in level are heard too. (Default: ``False``)

    Returns:
        IPython.display.HTML: shown by a notebook as the table.
    """
    from html import escape

    from IPython.display import HTML, Audio

    if len(clips) != len(row_labels):
        raise ValueError(f"{len(clips)} rows of clips for {len(row_labels)} row labels")
    head = "".join(f"<th>{escape(c)}</th>" for c in ("", *column_labels))
    body = []
    for label, row in zip(row_labels, clips, strict=True):
        if len(row) != len(column_labels):
            raise ValueError(f"row {label!r} has {len(row)} clips for {len(column_labels)} columns")
        cells = []
        for wave in row:
            wave = wave.detach().cpu().float().numpy() if hasattr(wave, "detach") else wave
            player = Audio(wave, rate=sample_rate, normalize=normalize)._repr_html_()
            cells.append(f"<td>{player}</td>")
        body.append(f"<tr><th>{escape(label)}</th>{''.join(cells)}</tr>")
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


# ---------------------------------------------------------------------------------------------
# Training curves


def plot_learning_curves(
    history: Sequence[Mapping[str, float]], *, x: str = "epoch", title: str | None = None
) -> Figure:
    """Losses (left) and accuracies (right) of a training history, one point per entry.

    Args:
        history (sequence of dict): per-epoch metrics, e.g. ``TrainResult.history``;
            keys ending in ``loss`` go on the left, keys containing ``acc`` on the right.
        x (str, optional): the key for the horizontal axis. (Default: ``"epoch"``)
        title (str, optional): the figure's title. (Default: none)

    Returns:
        matplotlib.figure.Figure: two panels side by side.
    """
    if not history:
        raise ValueError("empty training history: train for at least one epoch")
    xs = [h.get(x, i + 1) for i, h in enumerate(history)]
    keys = [k for k in history[0] if k != x]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    for key in keys:
        ys = [h.get(key) for h in history]
        if any(v is None for v in ys):
            continue
        if key.endswith("loss"):
            left.plot(xs, ys, marker="o", ms=3, label=_label(key))
        elif "acc" in key:
            values = [100 * v if v <= 1 else v for v in ys]
            right.plot(xs, values, marker="o", ms=3, label=_label(key))
    # Log scale: the first epochs' losses would otherwise flatten the rest of the curve.
    left.set(xlabel=x, ylabel="loss (log scale)", title="loss", yscale="log")
    right.set(xlabel=x, ylabel="accuracy (%)", title="accuracy")
    for a in (left, right):
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def _label(key: str) -> str:
    """A history key as a legend reads it: ``"val_accuracy"`` -> ``"validation accuracy"``."""
    names = {"val": "validation", "acc": "accuracy"}
    return " ".join(names.get(word, word) for word in key.split("_"))
