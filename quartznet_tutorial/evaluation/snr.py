"""Accuracy against noise: one model's accuracy at each signal-to-noise ratio of one noise.

:func:`accuracy_vs_snr` evaluates a classifier on a test set clean and under
:class:`~quartznet_tutorial.datasets.noisy.NoisyClips` at each SNR; the docs plot the curves
with :func:`~quartznet_tutorial.evaluation.plots.plot_snr_curves`.

Example:
    >>> curve = accuracy_vs_snr("best.pt", SpeechCommands(root, "testing"), noise="pink")
    >>> curve.accuracy  # at curve.snr_db, and curve.clean without noise
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from quartznet_tutorial.checkpoints.loading import load_classifier
from quartznet_tutorial.datasets.noisy import SNR_LEVELS, NoisyClips
from quartznet_tutorial.evaluation.accuracy import evaluate

__all__ = ["SnrCurve", "accuracy_vs_snr"]


@dataclass
class SnrCurve:
    """One model's accuracy against the SNR of one noise.

    Attributes:
        noise (str): the noise's kind or recordings.
        snr_db (list of float): the SNRs, ascending.
        accuracy (list of float): the accuracy at each.
        clean (float): the accuracy without noise.
        num_clips (int): clips evaluated at each SNR.
    """

    noise: str
    snr_db: list[float]
    accuracy: list[float]
    clean: float
    num_clips: int

    def to_dict(self) -> dict:
        return {
            "noise": self.noise,
            "snr_db": self.snr_db,
            "accuracy": self.accuracy,
            "clean": self.clean,
            "num_clips": self.num_clips,
        }


def accuracy_vs_snr(
    model,
    dataset,
    *,
    noise: str | os.PathLike | Sequence[str | os.PathLike] = "white",
    snrs: Sequence[float] = SNR_LEVELS,
    seed: int = 0,
    device: str | None = None,
    batch_size: int | None = None,
) -> SnrCurve:
    """Evaluate ``model`` on ``dataset`` clean and with ``noise`` at each of ``snrs``.

    Args:
        model (Classifier, str or Path): a
            :class:`~quartznet_tutorial.models.classifier.Classifier`, or a checkpoint to load one
            from (``.pt`` or ``.nemo``).
        dataset: the clips (a :class:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands`
        split).
        noise (str, Path or sequence): see :class:`~quartznet_tutorial.datasets.noisy.NoisyClips`.
            (Default: ``"white"``)
        snrs (sequence of float, optional): SNRs in dB. (Default:
            :data:`~quartznet_tutorial.datasets.noisy.SNR_LEVELS`)
        seed (int, optional): seed of the noise; each SNR uses the same noise, scaled.
            (Default: ``0``)
        device (str, optional): where to run. (Default: the model's device)
        batch_size (int, optional): clips per batch. (Default:
            :func:`~quartznet_tutorial.evaluation.accuracy.eval_batch_size`)

    Returns:
        SnrCurve: accuracy at each SNR and clean.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_classifier(model)
    levels = sorted(float(s) for s in snrs)
    if not levels:
        raise ValueError("snrs is empty; give at least one SNR in dB")
    noisy = NoisyClips(dataset, noise, levels[0], seed=seed)  # bad noise fails here, first
    clean = evaluate(model, dataset, device=device, batch_size=batch_size)
    accuracy = []
    for snr in levels:
        result = evaluate(model, noisy.at(snr), device=device, batch_size=batch_size)
        accuracy.append(result.accuracy)
    return SnrCurve(noisy.noise_name, levels, accuracy, clean.accuracy, clean.num_clips)
