"""The synthetic-to-real ablation table: which lever brings a synthetic-trained model closer to
real speech.

``examples/ablate_real_gap.py`` trains one model per lever (a named recipe: a synthetic set and
training settings) and writes ``results/real-gap-ablation.json``: a record of
``kind: "real-gap-ablation"`` with one row per (lever, seed). :func:`markdown_table` renders it:
lever, accuracy on the synthetic test split (unseen synthetic speakers), accuracy on the real
Speech Commands clips that ship with the package, with its 95 % Wilson interval
(:func:`~quartznet_tutorial.evaluation.real.wilson_interval`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["KIND", "load_rows", "markdown_table"]

#: The ``kind`` of the results file (the training-results table skips other kinds).
KIND = "real-gap-ablation"

_ROW_KEYS = ("lever", "seed", "synthetic_test_accuracy", "real_correct", "real_n")


def load_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a ``real-gap-ablation`` results file, checked for the keys the table needs."""
    path = Path(path)
    record = json.loads(path.read_text())
    if record.get("kind") != KIND:
        raise ValueError(f"{path}: kind is {record.get('kind')!r}, not {KIND!r}")
    rows = record.get("rows")
    if not isinstance(rows, list):
        raise ValueError(f"{path}: 'rows' must be a list of runs")
    for i, row in enumerate(rows):
        missing = [k for k in _ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"{path}: row {i} lacks {', '.join(missing)}; rerun the ablation")
    return rows


def markdown_table(rows: list[dict]) -> str:
    """Lever -> synthetic test accuracy -> real accuracy (95 % interval), one line per run.

    Rows keep their order (the ablation writes the base recipe first); a lever run with several
    seeds gets one line per seed.
    """
    from quartznet_tutorial.evaluation.real import wilson_interval

    lines = [
        "| lever | seed | epochs | synthetic test | real clips (95 % interval) | train s |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        correct, n = row["real_correct"], row["real_n"]
        low, high = wilson_interval(correct, n)
        synthetic = row["synthetic_test_accuracy"]
        seconds = row.get("train_seconds")
        lines.append(
            f"| {row['lever']} | {row['seed']} | {row.get('epochs', '')} | "
            f"{'' if synthetic is None else f'{100 * synthetic:.1f} %'} | "
            f"{100 * correct / n:.1f} % ({100 * low:.0f}-{100 * high:.0f} %), "
            f"{correct}/{n} | {'' if seconds is None else f'{seconds:.0f}'} |"
        )
    return "\n".join(lines) + "\n"
