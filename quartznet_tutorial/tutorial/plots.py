"""The docs' plots of data and training: clips, features and training histories.

:func:`plot_waveforms`, :func:`plot_features` and :func:`audio_table` show data;
:func:`plot_learning_curves` a training history. Evaluation results are drawn by
:mod:`quartznet_tutorial.evaluation.plots`. Needs matplotlib (and IPython for
:func:`audio_table`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

__all__ = [
    "audio_table",
    "plot_features",
    "plot_learning_curves",
    "plot_waveforms",
]


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
