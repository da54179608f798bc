"""Plots of evaluation results: the confusion matrix, per-class accuracy and accuracy against
SNR, legible for 30-35 classes. ``quartznet evaluate --plot`` and the docs draw them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib import pyplot as plt

if TYPE_CHECKING:
    from quartznet_tutorial.evaluation.accuracy import EvalResult
    from quartznet_tutorial.evaluation.snr import SnrCurve

__all__ = ["plot_confusion", "plot_per_class", "plot_snr_curves"]


def plot_confusion(
    result: EvalResult, ax=None, *, normalize: bool = True, annotate: bool | None = None
):
    """Draw the confusion matrix, rows = true word, columns = predicted word.

    Sized and lettered so that 30-35 classes stay readable; row-normalised by default (each
    row sums to 1, the diagonal is the per-class accuracy).

    Args:
        result (EvalResult): what :func:`~quartznet_tutorial.evaluation.accuracy.evaluate` returned.
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
        result (EvalResult): what :func:`~quartznet_tutorial.evaluation.accuracy.evaluate` returned.
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
        curves (dict): legend label -> :class:`~quartznet_tutorial.evaluation.snr.SnrCurve`.
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
