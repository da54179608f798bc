"""The docs' diagrams, drawn from the config that builds the model, never pasted.

:func:`draw_architecture` draws a variant of :data:`~quartznet_tutorial.models.variants.VARIANTS`
vertically, like the QuartzNet figure of NeMo's documentation :cite:`kriman2020quartznet`:
prolog, the B blocks of R sub-blocks with their residual, the epilog and the decoder, with
channels and kernels read from the config. :func:`draw_squeeze_excite` draws the temporal
squeeze-and-excitation module :cite:`hu2018squeeze,karim2019multivariate`.
"""

from __future__ import annotations

from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from quartznet_tutorial.models.variants import BlockConfig, QuartzNetConfig
from quartznet_tutorial.tutorial.tables import block_names

__all__ = ["COLORS", "draw_architecture", "draw_squeeze_excite"]

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
