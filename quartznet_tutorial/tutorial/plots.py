"""The docs' plots: clips, features, training histories and evaluation results.

:func:`plot_waveforms`, :func:`plot_features` and :func:`audio_table` show data;
:func:`plot_learning_curves` a training history; :func:`plot_confusion` and
:func:`plot_per_class` an :class:`~quartznet_tutorial.evaluate.EvalResult`, legibly for 30-35
classes. Needs matplotlib (and IPython for :func:`audio_table`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from ..evaluate import EvalResult
    from ..noise import SnrCurve

__all__ = [
    "audio_table",
    "plot_confusion",
    "plot_features",
    "plot_learning_curves",
    "plot_per_class",
    "plot_snr_curves",
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


# ---------------------------------------------------------------------------------------------
# Evaluation results


def plot_confusion(
    result: EvalResult, ax=None, *, normalize: bool = True, annotate: bool | None = None
):
    """Draw the confusion matrix, rows = true word, columns = predicted word.

    Sized and lettered so that 30-35 classes stay readable; row-normalised by default (each
    row sums to 1, the diagonal is the per-class accuracy).

    Args:
        result (EvalResult): what :func:`~quartznet_tutorial.evaluate.evaluate` returned.
        ax (matplotlib.axes.Axes, optional): where to draw. (Default: a new figure)
        normalize (bool, optional): show fractions of each true class. (Default: ``True``)
        annotate (bool, optional): write the counts in the cells. (Default: up to 12 classes)

    Returns:
        matplotlib.axes.Axes: the axes drawn on.
    """
    n = len(result.labels)
    if ax is None:
        side = max(4.0, 0.32 * n + 2.0)
        _, ax = plt.subplots(figsize=(side + 1.0, side), layout="constrained")
    counts = result.confusion
    values = counts.astype(float)
    if normalize:
        with np.errstate(invalid="ignore", divide="ignore"):
            values = values / counts.sum(axis=1, keepdims=True)
        values = np.nan_to_num(values)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="fraction of true class")
    fontsize = 7 if n > 20 else 9
    ax.set_xticks(range(n), result.labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), result.labels, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {100 * result.accuracy:.2f}% on {result.num_clips:,} clips")
    if annotate if annotate is not None else n <= 12:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    dark = values[i, j] > 0.5 * np.nanmax(values)
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", fontsize=fontsize,
                        color="white" if dark else "black",
                    )  # fmt: skip
    return ax


def plot_per_class(result: EvalResult, ax=None, *, sort: bool = True):
    """Horizontal bars of each word's accuracy, worst at the top, overall accuracy as a line.

    Args:
        result (EvalResult): what :func:`~quartznet_tutorial.evaluate.evaluate` returned.
        ax (matplotlib.axes.Axes, optional): where to draw. (Default: a new figure)
        sort (bool, optional): order by accuracy instead of by label. (Default: ``True``)

    Returns:
        matplotlib.axes.Axes: the axes drawn on.
    """
    from matplotlib.ticker import PercentFormatter

    n = len(result.labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 0.24 * n + 1.2), layout="constrained")
    acc = result.per_class_accuracy
    support = result.confusion.sum(axis=1)
    order = np.argsort(np.nan_to_num(acc, nan=-1.0))[::-1] if sort else np.arange(n)[::-1]
    ax.barh(range(n), np.nan_to_num(acc[order]), color="tab:blue", height=0.7)
    ax.set_yticks(
        range(n), [f"{result.labels[i]} ({support[i]})" for i in order], fontsize=7 if n > 20 else 9
    )
    ax.axvline(
        result.accuracy, color="tab:red", lw=1, label=f"overall {100 * result.accuracy:.2f}%"
    )
    finite = acc[~np.isnan(acc)]
    low = float(finite.min()) if finite.size else 0.0
    ax.set_xlim(max(0.0, np.floor(low * 20) / 20 - 0.05), 1.0)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))  # in % like the overall line's label
    ax.set_xlabel("accuracy (clips per class in brackets)")
    ax.legend(loc="upper right", fontsize=8)  # beside the worst words' short bars
    return ax


def plot_snr_curves(curves: dict[str, SnrCurve], ax=None, *, chance: float | None = None):
    """Accuracy against SNR, one line per curve (its clean accuracy at the right, dotted).

    Args:
        curves (dict): legend label -> :class:`~quartznet_tutorial.noise.SnrCurve`.
        ax (matplotlib.axes.Axes, optional): where to draw. (Default: a new figure)
        chance (float, optional): draw the accuracy of guessing as a grey line.

    Returns:
        matplotlib.axes.Axes: the axes drawn on.
    """
    from matplotlib.ticker import PercentFormatter

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for i, (label, curve) in enumerate(curves.items()):
        color = f"C{i}"
        ax.plot(curve.snr_db, curve.accuracy, "o-", color=color, label=label, ms=4)
        right = curve.snr_db[-1] + 8
        ax.plot([curve.snr_db[-1], right], [curve.accuracy[-1], curve.clean], ":", color=color)
        ax.plot([right], [curve.clean], "s", color=color, ms=4)
    if curves:
        last = max(c.snr_db[-1] for c in curves.values())
        ticks = sorted({s for c in curves.values() for s in c.snr_db})
        ax.set_xticks([*ticks, last + 8], [f"{s:g}" for s in ticks] + ["clean"])
    if chance is not None:
        ax.axhline(chance, color="grey", lw=0.8, ls="--", label="chance")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return ax
