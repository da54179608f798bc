"""Subsets of a dataset: some of its clips, or its clips repeated, behind the same protocol.

:func:`limit_clips` keeps ``n`` clips spread over a dataset (the ``limit_clips`` option of
``train`` and ``evaluate``) and :func:`rebalance` repeats each word's clips up to the largest
word's count (NeMo's ``--rebalance``). Both return a view that reads its rows from the parent,
so the parent's waveform cache serves them.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["limit_clips", "rebalance"]


class _Subset:
    """The clips ``index`` of a dataset (repeats allowed); the pipelines' dataset protocol,
    each method the parent's, indexed."""

    def __init__(self, dataset, index: torch.Tensor) -> None:
        self.dataset = dataset
        self.labels = dataset.labels
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.dataset[int(self.index[i])]

    def __getattr__(self, name: str):
        # lengths_tensor only where the parent has it: the pipelines test for it.
        if name == "lengths_tensor" and hasattr(self.dataset, name):
            return lambda progress=True: self.dataset.lengths_tensor(progress=progress)[self.index]
        raise AttributeError(name)

    def waveforms(self, progress: bool = True) -> torch.Tensor:
        return self.dataset.waveforms(progress=progress)[self.index]

    def targets_tensor(self) -> torch.Tensor:
        return self.dataset.targets_tensor()[self.index]

    def background_noise(self) -> list[torch.Tensor]:
        return self.dataset.background_noise()


def limit_clips(dataset, n: int | None):
    """``dataset``, or ``n`` of its clips spread evenly over it, so that every word stays (the
    ``limit_clips`` option of ``train`` and ``evaluate``, for smoke runs)."""
    if n is None or n >= len(dataset):
        return dataset
    return _Subset(dataset, torch.linspace(0, len(dataset) - 1, n).round().long().unique())


def rebalance(dataset):
    """Each word's clips repeated up to the count of the most frequent word, as NeMo's
    ``process_speech_commands_data.py --rebalance`` prepares the training manifest.

    NeMo adds, for each word with ``n`` clips below the largest count ``m``, the clips
    ``numpy.random.RandomState(0).choice(n, m - n, replace=True)`` of that word (a generator
    seeded anew per word); we pick the same positions among the word's clips in our order.
    """
    targets = dataset.targets_tensor()
    counts = torch.bincount(targets, minlength=len(dataset.labels))
    most = int(counts.max())
    index = [torch.arange(len(targets))]
    for word, n in enumerate(counts.tolist()):
        if 0 < n < most:
            clips = (targets == word).nonzero().flatten()
            extra = np.random.RandomState(0).choice(n, most - n, replace=True)
            index.append(clips[torch.from_numpy(extra)])
    return _Subset(dataset, torch.cat(index))
