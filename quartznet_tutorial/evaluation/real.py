"""Scoring a classifier on the bundled real Speech Commands clips, with a confidence interval.

The clips (:mod:`quartznet_tutorial.datasets.real_clips`) are for evaluation only: nothing in
the package trains on them. :func:`evaluate_real` scores a classifier on the real clips of its
words; :func:`wilson_interval` says how far that accuracy is known on about a hundred clips.

Example:
    >>> result = evaluate_real("runs/quartznet-3x1/best.pt")
    >>> low, high = wilson_interval(int(result.confusion.trace()), result.num_clips)
"""

from __future__ import annotations

import math
import os

from torch import nn

from quartznet_tutorial.checkpoints.loading import load_classifier
from quartznet_tutorial.datasets.real_clips import RealSpeechCommands
from quartznet_tutorial.datasets.speech_commands import task_of, version_of
from quartznet_tutorial.evaluation.accuracy import EvalResult, evaluate

__all__ = ["evaluate_real", "wilson_interval"]


def evaluate_real(
    model: nn.Module | str | os.PathLike,
    version: int | None = None,
    *,
    device: str | None = None,
    batch_size: int = 256,
    precision: str = "32",
) -> EvalResult:
    """Evaluate a classifier on the real clips of its words with
    :func:`~quartznet_tutorial.evaluation.accuracy.evaluate`.

    Args:
        model (Classifier, nn.Module, str or Path): a
            :class:`~quartznet_tutorial.models.classifier.Classifier` (run on the waveforms, as
            ``predict`` does), a checkpoint to load one from (``.pt`` or ``.nemo``), or a bare
            :class:`~quartznet_tutorial.models.quartznet.QuartzNet` (then ``version`` is needed).
        version (int, optional): Speech Commands version whose words to read. (Default: the
            version whose words the classifier knows; V2 for a 12-class classifier, whose
            clips are then mapped to the 12 classes)
        device (str, optional): where to run. (Default: the model's device)
        batch_size (int, optional): clips per batch. (Default: ``256``)
        precision (str, optional): ``"32"``, ``"16-mixed"`` or ``"bf16-mixed"`` autocast.
            (Default: ``"32"``)

    Returns:
        EvalResult: accuracy, per-word accuracy and confusion matrix over the real clips.

    Raises:
        ValueError: the model's labels are not a Speech Commands version's words.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_classifier(model)
    labels = getattr(model, "labels", None)
    task = "12" if labels is not None and task_of(labels) == "12" else "all"
    if version is None:
        version = 2 if task == "12" else _version_of(labels)  # V2: the most unknown words
    return evaluate(
        model,
        RealSpeechCommands(version, task=task),
        device=device,
        batch_size=batch_size,
        precision=precision,
    )


def _version_of(labels) -> int:
    if labels is None:
        raise ValueError(
            "a bare model has no labels to tell its Speech Commands version: pass version=1 or 2"
        )
    version = version_of(labels)
    if version is not None:
        return version
    raise ValueError(
        f"the model's {len(labels)} labels are not the words of Speech Commands V1 or V2, "
        "so the real clips cannot score it; evaluate it on data with its own words"
    )


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``correct / total`` (95% for ``z=1.96``).

    On a hundred clips an accuracy is known only to several points either way; this says how
    many.
    """
    if total <= 0:
        raise ValueError(f"total must be positive, got {total}")
    p = correct / total
    denominator = 1 + z**2 / total
    centre = (p + z**2 / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
