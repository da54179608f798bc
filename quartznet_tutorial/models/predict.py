"""Classify audio files: top-k words per file, and a per-file error for the bad ones."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from quartznet_tutorial.audio.features import SAMPLE_RATE
from quartznet_tutorial.audio.file_io import AudioError, load_audio
from quartznet_tutorial.models.classifier import Classifier

__all__ = ["PredictResult", "expand_paths", "predict_files"]


@dataclass
class PredictResult:
    """What :func:`predict_files` says about one file.

    Args:
        path (Path): the file.
        predictions (list of (str, float)): the top-k ``(label, probability)``, most likely
            first; empty when ``error`` is set.
        error (str, optional): why the file could not be classified. (Default: ``None``)
    """

    path: Path
    predictions: list[tuple[str, float]]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        """JSON-ready: ``{"path", "predictions": [{"label", "probability"}], "error"}``."""
        return {
            "path": str(self.path),
            "predictions": [{"label": w, "probability": p} for w, p in self.predictions],
            "error": self.error,
        }


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files stay as they are; a folder becomes its ``*.wav`` files, sorted (not recursive)."""
    out = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix.lower() == ".wav"))
        else:
            out.append(path)
    return out


@torch.no_grad()
def predict_files(
    classifier: Classifier,
    paths: Iterable[str | os.PathLike],
    *,
    top_k: int = 3,
    resample: bool = False,
    batch_size: int = 32,
) -> list[PredictResult]:
    """Top-``k`` words for each audio file; one bad file never stops the others.

    Clips are prepared as in evaluation, so a file gets the same answer here as in
    :class:`~quartznet_tutorial.SpeechCommands`: with the training recipe's fixed 128 frames,
    clips shorter than a second are zero-padded at the end to 16,000 samples, as the dataset
    does (longer ones stay whole: the classifier centre-crops their features). A classifier
    loaded from a ``.nemo`` archive (``features.frames is None``) sees each clip as it is, as
    NeMo's own inference does. Only clips of equal length share a batch, so no file's answer
    depends on the others.

    Args:
        classifier (Classifier): the model, on any device.
        paths (iterable of str or Path): audio files or folders (a folder gives its ``*.wav``).
        top_k (int, optional): how many labels per file. (Default: ``3``)
        resample (bool, optional): convert other sample rates to 16 kHz instead of reporting
            an error. (Default: ``False``)
        batch_size (int, optional): clips per forward pass. (Default: ``32``)

    Returns:
        list of PredictResult: one per file, in input order. A folder with no ``.wav`` files
        gives one result with an error.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    results: list[PredictResult] = []
    by_length: dict[int, list[tuple[int, torch.Tensor]]] = defaultdict(list)
    pad_to = SAMPLE_RATE if classifier.features.frames is not None else 0
    for path in map(Path, paths):
        files = expand_paths([path])
        if path.is_dir() and not files:
            results.append(PredictResult(path, [], f"{path}: no .wav files in this folder"))
        for file in files:
            results.append(PredictResult(file, []))
            try:
                waveform = load_audio(file, sample_rate=SAMPLE_RATE, resample=resample)
            except AudioError as e:
                results[-1].error = str(e)
                continue
            if waveform.shape[0] < pad_to:
                waveform = torch.nn.functional.pad(waveform, (0, pad_to - waveform.shape[0]))
            by_length[waveform.shape[0]].append((len(results) - 1, waveform))

    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    try:
        for items in by_length.values():
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                batch = torch.stack([w for _, w in chunk]).to(device)  # (B, samples)
                for (i, _), top in zip(chunk, classifier.predict(batch, top_k=top_k), strict=True):
                    results[i].predictions = top
    finally:
        classifier.train(was_training)
    return results
