"""Batches of ``(features (B, 64, 128), labels (B,))`` for training and evaluation, two ways.

``kind="device"`` (the fast path) keeps every clip as ``int16`` on the training device (V1's
training set is 1.6 GB) and builds each batch there with batched tensor ops: gather, waveform
augmentation, MFCC, crop/pad, spectrogram augmentation. No per-clip Python, no host sync.

``kind="dataloader"`` is the conventional path of NeMo and the torchaudio tutorials: a
:class:`~torch.utils.data.DataLoader` whose workers read one clip at a time and run the same
functions on a batch of one, then collate, pin and copy to the device.

Both give the same distribution of batches (``tests/test_pipeline.py`` checks it), and both
are deterministic: the batches of an epoch are a pure function of ``(seed, epoch, rank,
world_size)``, and ``batches(epoch, start=k)`` yields batch ``k`` onwards without computing
the ones before it, so a killed run resumes bit for bit mid-epoch. (The two kinds draw their
random numbers differently, so they give different, equally distributed, batches.)

Sharding. Training shuffles with one permutation per ``(seed, epoch)``, shared by all ranks;
each step takes the next ``batch_size * world_size`` clips and rank ``r`` takes the ``r``-th
slice, so together the ranks see what one process would with the combined batch. Evaluation
goes in order without augmentation and, by default, keeps the last partial step: its clips are
split as evenly as possible, so every clip is evaluated exactly once across ranks, but a rank
may get one batch fewer than another. Reduce evaluation totals once, after the loop.
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Iterator
from typing import Protocol

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from quartznet_tutorial.audio.augment import AugmentConfig, Augmenter
from quartznet_tutorial.audio.features import MFCC, FeatureConfig, crop_or_pad, num_frames

__all__ = ["KINDS", "ClipDataset", "Pipeline", "make_pipeline"]

KINDS = ("auto", "device", "dataloader")

# kind="auto" keeps the clips on a GPU when they take at most this share of its free memory
# (V1's 51,094 training clips: 1.6 GB).
_DEVICE_MEMORY_SHARE = 0.25
# kind="auto" on a CPU: `quartznet train` with its defaults (every core, 4 workers) trains
# quartznet-3x1 about twice as fast with "device" as with "dataloader", fp32 and bf16, on the
# 2-core VM (benchmarks/cpu_pipeline.py; benchmarks/results/cpu-pipeline-2026-11-26.json).
_CPU_KIND = "device"
# Without augmentation a CPU pipeline keeps every clip's MFCC when they take at most this
# (V1's 51,094 training clips: 1.3 GB).
_MFCC_CACHE_BYTES = 4 << 30


class ClipDataset(Protocol):
    """What the pipelines need of a dataset
    (``quartznet_tutorial.datasets.speech_commands.SpeechCommands``).

    ``ds[i]`` is ``(float32 (samples,), int label)``; ``waveforms()`` all clips as ``int16
    (N, samples)``; ``targets_tensor()`` the labels as ``long (N,)``; ``background_noise()`` the
    ``_background_noise_`` recordings. Optionally ``lengths_tensor()``: each clip's samples
    before padding to one second, so that shift and noise stop at the clip's end as in NeMo.
    """

    labels: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]: ...

    def waveforms(self, progress: bool = True) -> torch.Tensor: ...

    def targets_tensor(self) -> torch.Tensor: ...

    def background_noise(self) -> list[torch.Tensor]: ...


def _seed(*parts: object) -> int:
    """A 63-bit seed from ``parts``, the same in every process (unlike ``hash``)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _lengths(dataset: ClipDataset) -> torch.Tensor | None:
    method = getattr(dataset, "lengths_tensor", None)
    return None if method is None else method().long()


def _featurize(
    waveforms: torch.Tensor,
    lengths: torch.Tensor | None,
    *,
    mfcc: MFCC,
    augmenter: Augmenter | None,
    frames: int | None,
    train: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The recipe for one batch: ``(B, samples)`` float audio -> ``(B, n_mfcc, frames)``."""
    if augmenter is not None:
        waveforms = augmenter.waveform(waveforms, generator, lengths)
    features, _ = mfcc(waveforms)
    if frames is not None:
        features = crop_or_pad(features, frames, generator=generator, random_crop=train)
    if augmenter is not None:  # the features are this function's own: masked in place
        features = augmenter.spectrogram(features, generator, inplace=True)
    return features


class Pipeline:
    """Batches for one rank; build with :func:`make_pipeline`.

    Attributes:
        kind (str): ``"device"`` or ``"dataloader"``.
        num_clips (int): clips in the dataset (all ranks together).
        labels (list of str): the dataset's class names.
    """

    kind: str = ""

    def __init__(
        self,
        dataset: ClipDataset,
        *,
        batch_size: int,
        train: bool,
        device: torch.device,
        augment: AugmentConfig | None,
        features: FeatureConfig,
        seed: int,
        rank: int,
        world_size: int,
        drop_last: bool,
        progress: bool,
    ) -> None:
        self.dataset = dataset
        self.num_clips = len(dataset)
        self.labels = list(dataset.labels)
        self.batch_size = batch_size
        self.train = train
        self.device = device
        self.augment = augment if train and augment is not None else None
        self.features = features
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.progress = progress and rank == 0
        self._num_batches = len(self._plan(0)[1])
        if self._num_batches == 0:
            raise ValueError(
                f"{self.num_clips} clips make no batch of {batch_size} x {world_size} ranks with "
                "drop_last=True; lower batch_size (--batch-size), or pass drop_last=False"
            )

    def __len__(self) -> int:
        return self._num_batches

    def _augmenter(self) -> Augmenter | None:
        if self.augment is None or self.augment.is_identity:
            return None
        background = self.dataset.background_noise() if self.augment.background_prob > 0 else ()
        return Augmenter(self.augment, background=background)

    def _plan(self, epoch: int) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
        """The epoch's clip order (CPU) and this rank's batches as ``(step, lo, hi)`` in it."""
        n, world = self.num_clips, self.world_size
        if self.train:
            shuffle = torch.Generator().manual_seed(_seed(self.seed, epoch))
            order = torch.randperm(n, generator=shuffle)
        else:
            order = torch.arange(n)
        per_step = self.batch_size * world
        steps, rem = divmod(n, per_step)
        if rem and not self.drop_last:
            steps += 1
            if self.train and rem % world:
                # DDP all-reduces every step, so every rank needs a batch in the last one: top
                # it up with clips from the start of the epoch, as DistributedSampler does.
                extra = world - rem % world
                order = torch.cat([order, order.repeat(extra // n + 1)[:extra]])
        plan = []
        for step in range(steps):
            lo = step * per_step
            size, odd = divmod(min(per_step, len(order) - lo), world)
            start = lo + self.rank * size + min(self.rank, odd)
            count = size + (self.rank < odd)
            if count:
                plan.append((step, start, start + count))
        return order, plan

    def _check_start(self, start: int) -> None:
        if not 0 <= start <= len(self):
            raise ValueError(f"start={start}: expected 0 .. {len(self)} (batches per epoch)")

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield this rank's batches of ``epoch`` from batch ``start`` on.

        Args:
            epoch (int): the epoch; it seeds the shuffle and the augmentation.
            start (int, optional): first batch to yield (resume mid-epoch). (Default: ``0``)

        Yields:
            (torch.Tensor, torch.Tensor): float32 features ``(B, n_mfcc, frames)`` and long
            labels ``(B,)``, on the pipeline's device.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"Pipeline(kind={self.kind!r}, num_clips={self.num_clips}, batches={len(self)}, "
            f"batch_size={self.batch_size}, train={self.train}, rank={self.rank}/"
            f"{self.world_size}, device={self.device})"
        )


class _DevicePipeline(Pipeline):
    kind = "device"

    def __init__(self, dataset: ClipDataset, **kwargs) -> None:
        super().__init__(dataset, **kwargs)
        clips = dataset.waveforms(progress=self.progress)
        if clips.dtype != torch.int16 or clips.dim() != 2 or len(clips) != self.num_clips:
            raise ValueError(
                f"dataset.waveforms() gave {clips.dtype} {tuple(clips.shape)}; expected int16 "
                f"({self.num_clips}, samples)"
            )
        self.clips = clips.to(self.device)  # (N, samples) int16
        self.targets = dataset.targets_tensor().long().to(self.device)  # (N,)
        lengths = _lengths(dataset)
        self.lengths = None if lengths is None else lengths.to(self.device)
        self.mfcc = MFCC(self.features).to(self.device)
        augmenter = self._augmenter()
        self.augmenter = None if augmenter is None else augmenter.to(self.device)
        self.generator = torch.Generator(device=self.device)
        self._memo = self._make_memo()

    def _make_memo(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Room for every clip's MFCC ``(N, T, n_mfcc)`` and which are known, or ``None``.

        Without augmentation a clip's MFCC is the same in every epoch (only the crop that
        follows draws random numbers), so a CPU keeps each the first time it is computed,
        in the first epoch's batches, and later epochs gather them: 4.6 s of every 2-core
        epoch of the smoke profile's 41,940 clips, about a tenth of it (AMD EPYC, AVX2
        kernels). Not on a GPU, where the MFCC costs next to nothing, nor for a set whose
        features would pass ``_MFCC_CACHE_BYTES``.
        """
        if self.augmenter is not None or self.device.type != "cpu":
            return None
        frames = num_frames(self.clips.shape[1], self.features.hop_length)
        if 4 * self.num_clips * self.features.n_mfcc * frames > _MFCC_CACHE_BYTES:
            return None
        memo = torch.empty(self.num_clips, frames, self.features.n_mfcc)  # paged in as filled
        return memo, torch.zeros(self.num_clips, dtype=torch.bool)

    def _waveforms(self, index: torch.Tensor) -> torch.Tensor:
        """Clips ``index`` as float audio ``(B, samples)``, int16 full scale (``index_select``
        gathers the rows faster than ``clips[index]``, ``benchmarks/cpu_frontend.py``)."""
        return self.clips.index_select(0, index).float().div_(32768)

    def _mfcc_of(self, index: torch.Tensor) -> torch.Tensor:
        """The MFCCs ``(B, n_mfcc, T)`` of clips ``index``: remembered, or computed and kept."""
        memo, known = self._memo
        if bool(known[index].all()):
            return memo.index_select(0, index).transpose(1, 2)  # time-major, as computed
        features, _ = self.mfcc(self._waveforms(index))
        memo[index] = features.transpose(1, 2)
        known[index] = True
        return features

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Each batch is computed when asked for, in the caller's thread. A background thread
        # preparing batch n + 1 during step n made CPU training slower, not faster, on a
        # 2-core machine: its ops take a core from the step's OpenMP team, and every parallel
        # region of the step then waits for the thread that lost its core.
        self._check_start(start)
        order, plan = self._plan(epoch)
        order = order.to(self.device)  # one copy per epoch; slicing it needs no sync
        frames = self.features.frames
        for step, lo, hi in plan[start:]:
            index = order[lo:hi]
            self.generator.manual_seed(_seed(self.seed, epoch, step, self.rank))
            if self._memo is not None:  # as _featurize without an augmenter
                features = self._mfcc_of(index)
                if frames is not None:
                    features = crop_or_pad(
                        features, frames, generator=self.generator, random_crop=self.train
                    )
                yield features, self.targets[index]
                continue
            waveforms = self._waveforms(index)
            lengths = None if self.lengths is None else self.lengths[index]
            features = _featurize(
                waveforms,
                lengths,
                mfcc=self.mfcc,
                augmenter=self.augmenter,
                frames=frames,
                train=self.train,
                generator=self.generator,
            )
            yield features, self.targets[index]


class _ClipFeatures(TorchDataset):
    """One clip's features, as a DataLoader worker computes them.

    Items are ``(position in the epoch's order, clip index)``; the position seeds the clip's
    own generator, so the result does not depend on worker count or scheduling.
    """

    def __init__(self, pipeline: _LoaderPipeline, epoch: int) -> None:
        self.dataset = pipeline.dataset
        self.lengths = pipeline.lengths
        self.mfcc = pipeline.mfcc
        self.augmenter = pipeline.augmenter
        self.frames = pipeline.features.frames
        self.train = pipeline.train
        self.seed = pipeline.seed
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        position, clip = item
        waveform, label = self.dataset[clip]
        generator = torch.Generator().manual_seed(_seed(self.seed, self.epoch, "clip", position))
        lengths = None if self.lengths is None else self.lengths[clip : clip + 1]
        features = _featurize(
            torch.as_tensor(waveform, dtype=torch.float32)[None],
            lengths,
            mfcc=self.mfcc,
            augmenter=self.augmenter,
            frames=self.frames,
            train=self.train,
            generator=generator,
        )
        return features[0], int(label)


class _LoaderPipeline(Pipeline):
    kind = "dataloader"

    def __init__(self, dataset: ClipDataset, *, num_workers: int = 0, **kwargs) -> None:
        super().__init__(dataset, **kwargs)
        self.num_workers = num_workers
        self.lengths = _lengths(dataset)
        self.mfcc = MFCC(self.features)
        self.augmenter = self._augmenter()

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._check_start(start)
        order, plan = self._plan(epoch)
        order = order.tolist()
        batch_sampler = [[(p, order[p]) for p in range(lo, hi)] for _, lo, hi in plan[start:]]
        loader = DataLoader(
            _ClipFeatures(self, epoch),
            batch_sampler=batch_sampler,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_ignore_ctrl_c if self.num_workers else None,
        )
        for features, labels in loader:
            yield (
                features.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )


def _ignore_ctrl_c(worker_id: int) -> None:
    """Ctrl-C reaches the workers too; only the main process acts on it (training saves its
    position first, then the loader stops its workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _auto_kind(dataset: ClipDataset, device: torch.device) -> str:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        clip_bytes = 2 * dataset[0][0].numel() * len(dataset)
        return "device" if clip_bytes <= _DEVICE_MEMORY_SHARE * free else "dataloader"
    if device.type == "cpu":
        return _CPU_KIND
    return "dataloader"


def make_pipeline(
    dataset: ClipDataset,
    *,
    batch_size: int,
    train: bool,
    device: torch.device | str,
    kind: str = "auto",
    augment: AugmentConfig | None,
    features: FeatureConfig | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    drop_last: bool | None = None,
    progress: bool = True,
) -> Pipeline:
    """Build the training or evaluation batches of one rank.

    Args:
        dataset (ClipDataset): the clips, e.g. ``SpeechCommands(root, "training")``.
        batch_size (int): clips per batch on this rank.
        train (bool): shuffle, augment and crop randomly; else in order, centre crop/pad,
            no augmentation.
        device (torch.device or str): where batches (and, for ``"device"``, the clips) live.
        kind (str, optional): ``"device"``, ``"dataloader"`` or ``"auto"``: ``"device"`` on a
            GPU whose free memory holds the clips four times over, and on a CPU (measured
            faster); else ``"dataloader"``. (Default: ``"auto"``)
        augment (AugmentConfig, optional): training augmentation; ``None`` for none.
        features (FeatureConfig, optional): MFCC and crop/pad settings. (Default: NeMo's)
        seed (int, optional): seeds the shuffle and the augmentation. (Default: ``0``)
        rank (int, optional): this process's rank. (Default: ``0``)
        world_size (int, optional): number of ranks. (Default: ``1``)
        num_workers (int, optional): DataLoader workers (``"dataloader"`` only). (Default: ``0``)
        drop_last (bool, optional): drop the last partial step. (Default: ``train``)
        progress (bool, optional): a progress bar (rank 0 only) while ``"device"`` reads the
            clips. (Default: ``True``)

    Returns:
        Pipeline: ``len()`` batches per epoch; ``batches(epoch, start=0)`` iterates them.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank}, world_size={world_size}: need 0 <= rank < world_size")
    if num_workers < 0:
        raise ValueError(f"num_workers={num_workers}: must be >= 0")
    if len(dataset) == 0:
        raise ValueError("the dataset has no clips; check its root folder and subset")
    device = torch.device(device)
    if kind == "auto":
        kind = _auto_kind(dataset, device)
    common = dict(
        batch_size=batch_size,
        train=train,
        device=device,
        augment=augment,
        features=features if features is not None else FeatureConfig(),
        seed=seed,
        rank=rank,
        world_size=world_size,
        drop_last=train if drop_last is None else drop_last,
        progress=progress,
    )
    if kind == "device":
        return _DevicePipeline(dataset, **common)
    return _LoaderPipeline(dataset, num_workers=num_workers, **common)
