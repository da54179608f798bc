"""Accuracy, per-class accuracy and the confusion matrix of a model on a Speech Commands split.

:func:`evaluate` takes what you have: a bare :class:`~quartznet_tutorial.models.quartznet.QuartzNet`
(fed MFCC batches from an evaluation pipeline) or a
:class:`~quartznet_tutorial.models.classifier.Classifier`
(fed waveforms, exactly as ``predict`` runs it), and a dataset or a ready pipeline.
:func:`evaluate_checkpoint` is ``quartznet evaluate``: a checkpoint (ours or a NeMo ``.nemo``)
and a data folder in, an :class:`EvalResult` out. The docs draw it with
:func:`~quartznet_tutorial.evaluation.plots.plot_confusion` and
:func:`~quartznet_tutorial.evaluation.plots.plot_per_class`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from quartznet_tutorial.checkpoints.checkpoint import label_mismatch
from quartznet_tutorial.utils.precision import autocast, autocast_dtype, resolve_device

__all__ = [
    "EvalResult",
    "confusion_totals",
    "eval_batch_size",
    "evaluate",
    "evaluate_checkpoint",
]

logger = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """The outcome of one evaluation.

    Attributes:
        labels (list of str): class names, the rows and columns of ``confusion``.
        confusion (numpy.ndarray): ``(C, C)`` int64 counts, ``confusion[true, predicted]``.
        loss (float): mean cross-entropy over the clips.
    """

    labels: list[str]
    confusion: np.ndarray
    loss: float

    @classmethod
    def from_totals(
        cls, confusion: torch.Tensor, loss_sum: torch.Tensor, labels: Sequence[str]
    ) -> EvalResult:
        """From :func:`confusion_totals`' tensors (possibly all-reduced over ranks)."""
        counts = confusion.cpu().numpy().astype(np.int64)
        n = int(counts.sum())
        return cls(list(labels), counts, float(loss_sum) / n if n else float("nan"))

    @property
    def num_clips(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        """Fraction of clips classified correctly."""
        n = self.num_clips
        return float(np.trace(self.confusion)) / n if n else float("nan")

    @property
    def per_class_accuracy(self) -> np.ndarray:
        """``(C,)`` recall of each class; NaN for a class with no clips."""
        support = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(support > 0, np.diag(self.confusion) / support, np.nan)

    def to_dict(self) -> dict:
        """JSON-ready: accuracy, loss, clips, per-class accuracy by label, confusion as lists."""
        per_class = self.per_class_accuracy
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "num_clips": self.num_clips,
            "labels": list(self.labels),
            "per_class_accuracy": {
                label: None if np.isnan(a) else float(a)
                for label, a in zip(self.labels, per_class, strict=True)
            },
            "confusion": self.confusion.tolist(),
        }

    def __repr__(self) -> str:
        return (
            f"EvalResult(accuracy={self.accuracy:.4f}, loss={self.loss:.4f}, "
            f"clips={self.num_clips}, classes={len(self.labels)})"
        )


@torch.no_grad()
def confusion_totals(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` over ``(inputs, targets)`` batches; no host sync inside the loop.

    ``inputs`` is a tensor, or a tuple of the model's arguments (``(waveforms, lengths)``).

    Returns:
        (torch.Tensor, torch.Tensor): ``(C, C)`` int64 confusion counts ``[true, predicted]``
        and the float64 sum of per-clip cross-entropies, both on ``device`` (ready to
        all-reduce).
    """
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for inputs, targets in batches:
        if isinstance(inputs, tuple):  # (waveforms, lengths or None) for a Classifier
            logits = model(*(x if x is None else x.to(device) for x in inputs))
        else:
            logits = model(inputs.to(device))
        logits = logits.float()  # (B, C)
        targets = targets.to(device)
        loss_sum += F.cross_entropy(logits, targets, reduction="sum").double()
        confusion += torch.bincount(
            targets * num_classes + logits.argmax(-1), minlength=num_classes * num_classes
        )
    return confusion.view(num_classes, num_classes), loss_sum


def eval_batch_size(device: torch.device | str) -> int:
    """Clips per evaluation batch: 64 on a CPU, 256 on a GPU.

    On a CPU the activations of 256 clips no longer fit the caches: evaluating the 5,280 test
    clips of the docs' synthetic set took 1.8-2.3x as long per clip as in batches of 64
    (quartznet-3x1, 2 threads, AMD EPYC, AVX2 and AVX-512 kernels, 2026-12-02).
    """
    return 64 if torch.device(device).type == "cpu" else 256


def _autocast(precision: str, device: torch.device):
    return autocast(device, autocast_dtype(precision, device))


def _waveform_batches(dataset, batch_size: int, progress: bool):
    """``((B, samples) float waveforms, (B,) lengths or None)`` and targets, from the int16
    cache where there is one. Lengths (samples before padding) come from the dataset's
    ``lengths_tensor()`` if it has one: a NeMo-style classifier (``frames=None``) masks there."""
    if hasattr(dataset, "waveforms") and hasattr(dataset, "targets_tensor"):
        clips, targets = dataset.waveforms(progress=progress), dataset.targets_tensor()
        lengths_tensor = getattr(dataset, "lengths_tensor", None)
        lengths = None if lengths_tensor is None else lengths_tensor(progress=progress)
        for i in range(0, len(clips), batch_size):
            batch = slice(i, i + batch_size)
            waves = clips[batch].float() / 32768
            yield (waves, None if lengths is None else lengths[batch]), targets[batch]
    else:
        for waves, targets in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
            yield (waves, None), targets


def _target_map(model_labels: Sequence[str], data_labels: Sequence[str]) -> torch.Tensor | None:
    """Index map data class -> model class, or None when they agree; ValueError if not the
    same words."""
    if list(model_labels) == list(data_labels):
        return None
    if sorted(model_labels) != sorted(data_labels):
        raise ValueError(label_mismatch(model_labels, data_labels))
    index = {label: i for i, label in enumerate(model_labels)}
    return torch.tensor([index[label] for label in data_labels])


def evaluate(
    model: nn.Module,
    data,
    *,
    labels: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    precision: str = "32",
    pipeline: str = "auto",
    progress: bool = False,
) -> EvalResult:
    """Evaluate ``model`` on ``data``.

    Args:
        model (nn.Module): a :class:`~quartznet_tutorial.models.classifier.Classifier` (waveforms
        in)
            or a :class:`~quartznet_tutorial.models.quartznet.QuartzNet` (MFCC features in).
        data: a dataset (``SpeechCommands``: ``(waveform, label)`` items and ``.labels``) or a
            :class:`~quartznet_tutorial.datasets.pipeline.Pipeline` (``(features, labels)``
            batches).
            A Classifier with a dataset runs on the waveforms, as ``predict`` does; every other
            pairing runs the bare model on the pipeline's MFCC batches (centre crop/pad to 128
            frames, the training recipe).
        labels (sequence of str, optional): the model's class names. (Default: the
            Classifier's, else the data's)
        device (torch.device or str, optional): where to run. (Default: the model's device)
        batch_size (int, optional): clips per batch. (Default: :func:`eval_batch_size`)
        precision (str, optional): ``"32"``, ``"16-mixed"`` or ``"bf16-mixed"`` autocast.
            (Default: ``"32"``)
        pipeline (str, optional): pipeline kind built for a bare model and a dataset.
            (Default: ``"auto"``)
        progress (bool, optional): progress bar while reading the clips. (Default: ``False``)

    Returns:
        EvalResult: accuracy, per-class accuracy, confusion matrix, mean loss.

    Raises:
        ValueError: the model's and the data's labels are not the same words.
    """
    from quartznet_tutorial.models.classifier import Classifier

    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    batch_size = eval_batch_size(device) if batch_size is None else batch_size
    model_labels = list(labels) if labels is not None else getattr(model, "labels", None)
    data_labels = list(data.labels)
    if model_labels is None:
        model_labels = data_labels
    target_map = _target_map(model_labels, data_labels)

    is_pipeline = hasattr(data, "batches")
    if isinstance(model, Classifier) and not is_pipeline:
        batches = _waveform_batches(data, batch_size, progress)
    else:
        if isinstance(model, Classifier):
            if getattr(data, "features", model.features) != model.features:
                logger.warning(
                    "the pipeline's features (%s) differ from the classifier's (%s); "
                    "evaluating its model on the pipeline's",
                    data.features,
                    model.features,
                )
            model = model.model
        if not is_pipeline:
            from quartznet_tutorial.datasets.pipeline import make_pipeline

            data = make_pipeline(
                data, batch_size=batch_size, train=False, device=device, kind=pipeline, augment=None
            )
        batches = data.batches(0)
    if target_map is not None:
        target_map = target_map.to(device)
        batches = ((x, target_map[y.to(device)]) for x, y in batches)

    was_training = model.training
    model.eval()
    try:
        with _autocast(precision, device):
            confusion, loss_sum = confusion_totals(model, batches, len(model_labels), device)
    finally:
        model.train(was_training)
    return EvalResult.from_totals(confusion, loss_sum, model_labels)


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_root: str | Path,
    subset: str = "testing",
    version: int = 1,
    *,
    device: str = "auto",
    batch_size: int | None = None,
    precision: str = "32",
    limit_clips: int | None = None,
    skip_bad_files: bool = False,
    progress: bool = True,
    task: str | None = None,
    snr_db: float | None = None,
    noise: str | Path | Sequence[str | Path] = "white",
    noise_seed: int = 0,
) -> EvalResult:
    """``quartznet evaluate``: load a checkpoint (``.pt`` or ``.nemo``) and evaluate it.

    The classifier runs on the split's waveforms end to end (MFCC front end included), as
    ``predict`` would. A model fine-tuned to words of no Speech Commands version reads the
    folders of its own words (``version`` is then unused). A model whose labels are the data's
    words in another order is evaluated with the targets mapped; other words raise
    ``ValueError``.

    Args:
        checkpoint (str or Path): ``best.pt`` / ``last.pt`` of a run, or a NeMo ``.nemo``.
        data_root (str or Path): the extracted Speech Commands folder.
        subset (str, optional): ``"training"``, ``"validation"`` or ``"testing"``.
            (Default: ``"testing"``)
        version (int, optional): Speech Commands version 1 or 2. (Default: ``1``)
        device (str, optional): ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``; one this machine lacks raises ``ValueError`` before anything is
            loaded. (Default: ``"auto"``)
        batch_size (int, optional): clips per batch. (Default: :func:`eval_batch_size`)
        precision (str, optional): autocast precision (``"32"``, ``"16-mixed"``, ``"bf16-mixed"``).
            (Default: ``"32"``)
        limit_clips (int, optional): evaluate only this many clips, spread over the words.
            (Default: all)
        skip_bad_files (bool, optional): leave out unreadable clips. (Default: ``False``)
        progress (bool, optional): progress bar while reading clips. (Default: ``True``)
        task (str, optional): ``"all"`` or ``"12"`` (see
            :class:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands`). (Default: the one
            whose classes the checkpoint's labels are)
        snr_db (float, optional): mix ``noise`` into every clip at this SNR
            (:class:`~quartznet_tutorial.datasets.noisy.NoisyClips`). (Default: clean clips)
        noise (str, Path or sequence, optional): ``"white"``, ``"pink"``, ``"brown"``
            or noise recordings, used with ``snr_db``. (Default: ``"white"``)
        noise_seed (int, optional): seed of the noise. (Default: ``0``)
    """
    from quartznet_tutorial.checkpoints.loading import load_classifier
    from quartznet_tutorial.datasets.speech_commands import SpeechCommands, task_of
    from quartznet_tutorial.datasets.subsets import (
        limit_clips as spread,
    )  # the argument has the function's name

    device = resolve_device(device)
    autocast_dtype(precision, device)  # refused before any loading
    if snr_db is not None:
        from quartznet_tutorial.datasets.noisy import NoisyClips, check_noise

        check_noise(noise, snr_db)  # a bad noise or SNR fails before any loading
    classifier = load_classifier(checkpoint, map_location=device).to(device)
    if task is None:
        task = task_of(classifier.labels) or "all"
    own = task_of(classifier.labels) is None  # fine-tuned to other words: read those
    dataset = SpeechCommands(
        data_root,
        subset=subset,
        version=version,
        words=classifier.labels if own else None,
        skip_bad_files=skip_bad_files,
        progress=progress,
        task=task,
    )
    try:
        _target_map(classifier.labels, dataset.labels)
    except ValueError as e:
        raise ValueError(f"{checkpoint}: {e}") from None
    data = spread(dataset, limit_clips)
    if snr_db is not None:
        data = NoisyClips(data, noise, snr_db, seed=noise_seed)
    return evaluate(
        classifier,
        data,
        device=device,
        batch_size=batch_size,
        precision=precision,
        progress=progress,
    )


# --- the command line ------------------------------------------------------------------------
