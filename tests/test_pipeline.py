"""Pipelines: shapes, determinism and resume, sharding, and the same augmentation both ways."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import math
from collections import defaultdict

import pytest
import torch
from test_augment import ks_distance

import quartznet_tutorial.datasets.pipeline as pipeline_module
from quartznet_tutorial.audio.augment import AugmentConfig, spec_cutout, time_shift, white_noise
from quartznet_tutorial.audio.features import MFCC, FeatureConfig, crop_or_pad
from quartznet_tutorial.datasets.pipeline import make_pipeline

KINDS = ("device", "dataloader")


class FakeClips:
    """The dataset contract, in memory. Clip ``i`` has label ``i``: a batch names its clips."""

    def __init__(self, clips: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        self.clips = clips  # (N, 16000) int16
        self.labels = [f"clip{i}" for i in range(len(clips))]
        self.targets = list(range(len(clips)))
        if lengths is not None:
            self.lengths_tensor = lambda: lengths

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.clips[i].float() / 32768, self.targets[i]

    def waveforms(self, progress: bool = True) -> torch.Tensor:
        return self.clips.clone()

    def targets_tensor(self) -> torch.Tensor:
        return torch.tensor(self.targets)

    def background_noise(self) -> list[torch.Tensor]:
        return [0.1 * torch.randn(40_000, generator=torch.Generator().manual_seed(0))]


def noise_clips(n: int, seed: int = 0) -> FakeClips:
    g = torch.Generator().manual_seed(seed)
    return FakeClips((torch.randn(n, 16_000, generator=g) * 3000).round().short())


def build(dataset, kind, **kwargs):
    kwargs = {"batch_size": 8, "train": True, "device": "cpu", "augment": AugmentConfig()} | kwargs
    return make_pipeline(dataset, kind=kind, **kwargs)


def labels_of(pipe, epoch=0, start=0) -> list[list[int]]:
    return [y.tolist() for _, y in pipe.batches(epoch, start)]


def flat(lists) -> list[int]:
    return list(itertools.chain.from_iterable(lists))


@pytest.fixture(scope="module")
def clips20() -> FakeClips:
    return noise_clips(20)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("train", [True, False])
def test_shapes_and_dtypes(clips20, kind, train):
    pipe = build(clips20, kind, train=train)
    batches = list(pipe.batches(0))
    assert pipe.kind == kind and pipe.num_clips == 20 and pipe.labels == clips20.labels
    assert len(batches) == len(pipe) == (2 if train else 3)  # 20 clips, batch 8
    x, y = batches[0]
    assert x.shape == (8, 64, 128) and x.dtype == torch.float32
    assert y.shape == (8,) and y.dtype == torch.long
    assert batches[-1][0].shape[0] == (8 if train else 4)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_batches_and_epochs_differ(clips20, kind):
    a, b = build(clips20, kind, seed=3), build(clips20, kind, seed=3)
    for (xa, ya), (xb, yb) in zip(a.batches(1), b.batches(1), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert labels_of(a, 1) != labels_of(a, 2)
    assert labels_of(a, 1) != labels_of(build(clips20, kind, seed=4), 1)


def test_dataloader_workers_do_not_change_the_batches(clips20, assert_same_features):
    alone = list(build(clips20, "dataloader", seed=5).batches(2))
    workers = list(build(clips20, "dataloader", seed=5, num_workers=2).batches(2))
    for (xa, ya), (xb, yb) in zip(alone, workers, strict=True):
        assert_same_features(xa, xb)
        assert torch.equal(ya, yb)


@pytest.mark.parametrize("kind", KINDS)
def test_resume_mid_epoch_yields_the_tail_without_computing_the_head(clips20, kind, monkeypatch):
    pipe = build(clips20, kind, batch_size=4, drop_last=False)
    full = list(pipe.batches(5))
    calls = []
    featurize = pipeline_module._featurize

    def counting(waveforms, *args, **kwargs):
        calls.append(len(waveforms))
        return featurize(waveforms, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, "_featurize", counting)
    tail = list(pipe.batches(5, start=3))
    assert len(tail) == len(full) - 3 == 2
    for (xa, ya), (xb, yb) in zip(tail, full[3:], strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert sum(calls) == 8  # the clips of batches 3 and 4 only
    assert list(pipe.batches(5, start=len(pipe))) == []


def test_every_clip_once_per_epoch(clips20):
    pipe = build(clips20, "device", batch_size=6, drop_last=False)
    seen = flat(labels_of(pipe, 7))
    assert sorted(seen) == list(range(20)) and seen != list(range(20))  # shuffled
    pipe = build(clips20, "device", batch_size=6)  # training default: drop the partial batch
    seen = flat(labels_of(pipe, 7))
    assert len(seen) == len(set(seen)) == 18


@pytest.mark.parametrize("kind", KINDS)
def test_ddp_slices_make_up_the_combined_batch(kind):
    data = noise_clips(50)
    world = 3
    single = labels_of(build(data, "device", batch_size=4 * world, seed=9), 2)
    ranks = [
        labels_of(build(data, kind, batch_size=4, seed=9, rank=r, world_size=world), 2)
        for r in range(world)
    ]
    assert all(len(r) == len(single) == 50 // 12 for r in ranks)
    for step, combined in enumerate(single):
        assert flat(ranks[r][step] for r in range(world)) == combined


def test_ddp_training_without_drop_last_keeps_ranks_in_step():
    data = noise_clips(50)
    pipes = [
        build(data, "device", batch_size=4, rank=r, world_size=3, drop_last=False) for r in range(3)
    ]
    assert [len(p) for p in pipes] == [5, 5, 5]  # 50 = 4 steps of 12 + 2, topped up to 3
    seen = [flat(labels_of(p, 0)) for p in pipes]
    assert set(flat(seen)) == set(range(50)) and sum(map(len, seen)) == 51


@pytest.mark.parametrize("kind", KINDS)
def test_evaluation_covers_every_clip_once_across_ranks(kind):
    data = noise_clips(50)
    pipes = [build(data, kind, train=False, batch_size=4, rank=r, world_size=3) for r in range(3)]
    seen = [flat(labels_of(p, 0)) for p in pipes]
    assert sorted(flat(seen)) == list(range(50))
    assert [len(p) for p in pipes] == [len(labels_of(p, 0)) for p in pipes]
    # the last step has 2 clips: ranks 0 and 1 get one each, rank 2 gets a batch fewer
    assert [len(p) for p in pipes] == [5, 5, 4]
    assert flat(labels_of(build(data, kind, train=False, batch_size=4), 0)) == list(range(50))


@pytest.mark.parametrize("kind", KINDS)
def test_evaluation_is_unaugmented_and_centred(clips20, kind):
    pipe = build(clips20, kind, train=False, batch_size=20)
    ((x, y),) = pipe.batches(0)
    waveforms = clips20.clips.float() / 32768
    expected = crop_or_pad(MFCC()(waveforms)[0], 128)
    assert torch.equal(y, torch.arange(20))
    torch.testing.assert_close(x, expected)


@pytest.mark.parametrize("samples", [16_000, 32_000])  # padded to 128 frames; cropped at random
def test_unaugmented_cpu_batches_compute_each_mfcc_once(monkeypatch, samples):
    g = torch.Generator().manual_seed(1)
    data = FakeClips((torch.randn(20, samples, generator=g) * 3000).round().short())
    clips = []
    forward = MFCC.forward
    monkeypatch.setattr(MFCC, "forward", lambda m, x, *a: clips.append(len(x)) or forward(m, x, *a))
    cached = build(data, "device", augment=None, batch_size=4, seed=2, drop_last=False)
    first = [list(cached.batches(e)) for e in range(3)]
    assert sum(clips) == 20  # once, not once per epoch
    # Dropping the last partial batch: its 2 clips are computed when they first come up.
    dropping = build(data, "device", augment=None, batch_size=6, seed=2)
    assert [len(list(dropping.batches(e))) for e in range(4)] == [3] * 4
    assert 20 + 18 < sum(clips) <= 20 + 18 + 2 * 6
    clips.clear()
    monkeypatch.setattr(pipeline_module, "_MFCC_CACHE_BYTES", 0)  # per batch, as with augmentation
    fresh = build(data, "device", augment=None, batch_size=4, seed=2, drop_last=False)
    for epoch, batches in enumerate(first):
        for (xa, ya), (xb, yb) in zip(batches, fresh.batches(epoch), strict=True):
            assert torch.equal(ya, yb) and xa.shape == (4, 64, 128)
            torch.testing.assert_close(xa, xb, rtol=1e-5, atol=1e-4)  # same crops, same values
            assert epoch or torch.equal(xa, xb)  # the first epoch computes them as before
    assert sum(clips) == 3 * 20


def test_clip_lengths_reach_the_augmentation(monkeypatch):
    lengths = torch.arange(12_000, 16_000, 200)
    data = FakeClips(noise_clips(20).clips, lengths)
    seen = []
    featurize = pipeline_module._featurize

    def spy(waveforms, lengths, **kwargs):
        seen.append(lengths)
        return featurize(waveforms, lengths, **kwargs)

    monkeypatch.setattr(pipeline_module, "_featurize", spy)
    for kind in KINDS:
        seen.clear()
        pipe = build(data, kind, batch_size=5)  # training, augmented
        got = torch.cat([y for _, y in pipe.batches(0)])
        assert torch.equal(torch.cat(seen), lengths[got])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "gpu"}, "kind='gpu'"),
        ({"rank": 2, "world_size": 2}, "rank=2"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": 16, "world_size": 2}, "no batch of 16 x 2"),
    ],
)
def test_bad_arguments_are_clear_errors(clips20, kwargs, match):
    kind = kwargs.pop("kind", "device")
    with pytest.raises(ValueError, match=match):
        build(clips20, kind, **kwargs)


def test_bad_start_is_a_clear_error(clips20):
    with pytest.raises(ValueError, match="start=9"):
        next(build(clips20, "device").batches(0, start=9))


def test_auto_picks_the_faster_kind_on_cpu(clips20):
    assert build(clips20, "auto").kind == "device"


# ---- the two pipelines draw the same augmentation ---------------------------------------------

# 1 s clips give 101 MFCC frames, centred in 128 by 13 zero frames on the left.
INNER, ONSET = slice(13, 114), 50


def burst_clips(n: int = 256) -> FakeClips:
    """Every 4th clip silent (only the white noise shows), the rest a loud noise burst from 0.5 s.

    The burst's onset frame (frame 50 is centred on sample 8000) reads the time shift; the
    silent clips' energy reads the white-noise level; zeros read the masks.
    """
    burst = torch.randn(8000, generator=torch.Generator().manual_seed(1)) * 8000
    clips = torch.zeros(n, 16_000, dtype=torch.int16)
    clips[:, 8000:] = burst.round().short()
    clips[::4] = 0
    return FakeClips(clips)


def augmentation_stats(pipe, epochs: int) -> dict[str, torch.Tensor]:
    stats = defaultdict(list)
    for epoch in range(epochs):
        for x, y in pipe.batches(epoch):
            region = x[:, :, INNER]
            silent = y % 4 == 0
            stats["masked fraction"].append((region == 0).float().mean((1, 2)))
            c0 = region[silent, 0, :]  # energy over time (coefficient 0 of the DCT)
            kept = c0 != 0
            stats["noise energy"].append((c0 * kept).sum(1) / kept.sum(1))
            onset = region[~silent, 0, ONSET]
            stats["onset energy"].append(onset[onset != 0])
    return {key: torch.cat(values) for key, values in stats.items()}


def differences(a: dict, b: dict, alpha: float = 1e-4) -> dict[str, tuple[float, float]]:
    """Per statistic: two-sample KS distance and its threshold at level ``alpha``."""
    c = math.sqrt(-math.log(alpha / 2) / 2)
    return {
        key: (ks_distance(a[key], b[key]), c * math.sqrt(1 / len(a[key]) + 1 / len(b[key])))
        for key in a
    }


EPOCHS = 12  # 3,072 draws a pipeline: 768 silent, 2,304 bursts


@pytest.fixture(scope="module")
def device_stats() -> dict[str, torch.Tensor]:
    return augmentation_stats(build(burst_clips(), "device", batch_size=128, seed=1), EPOCHS)


def loader_stats(break_it=None) -> dict[str, torch.Tensor]:
    pipe = build(burst_clips(), "dataloader", batch_size=128, seed=2)
    if break_it is not None:
        break_it(pipe.augmenter)
    return augmentation_stats(pipe, EPOCHS)


def test_the_two_pipelines_draw_the_same_augmentation(device_stats):
    found = differences(device_stats, loader_stats())
    assert all(d < limit for d, limit in found.values()), found


def _replace(**changes):
    def apply(augmenter):
        augmenter.config = dataclasses.replace(augmenter.config, **changes)

    return apply


def _then(op):
    def apply(augmenter):
        stage = "waveform" if op in (time_shift, white_noise) else "spectrogram"
        original = getattr(augmenter, stage)
        setattr(augmenter, stage, lambda x, g, *a, **k: op(original(x, g, *a, **k), generator=g))

    return apply


@pytest.mark.slow
@pytest.mark.parametrize(
    "break_it",
    [
        _replace(shift_ms=0.0),
        _then(time_shift),
        _then(white_noise),
        _then(spec_cutout),
        _replace(rect_masks=0),
        _replace(freq_masks=0, time_masks=0),
    ],
    ids=["no shift", "double shift", "double noise", "double cutout", "no cutout", "no specaug"],
)
def test_a_dropped_or_doubled_augmentation_is_caught(device_stats, break_it):
    found = differences(device_stats, loader_stats(break_it))
    assert any(d > limit for d, limit in found.values()), found


# ---- GPU ----------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_device_pipeline_has_no_host_sync_per_batch():
    data = burst_clips(64)
    pipe = build(data, "auto", batch_size=16, device="cuda")
    assert pipe.kind == "device" and pipe.clips.device.type == "cuda"
    batches = pipe.batches(0)
    next(batches)  # the epoch's one host-to-device copy of the order
    torch.cuda.set_sync_debug_mode("error")
    try:
        rest = list(batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(rest) == 3 and all(x.device.type == "cuda" for x, _ in rest)
    cpu = [y.tolist() for _, y in build(data, "device", batch_size=16).batches(0)]
    assert [y.tolist() for _, y in [next(pipe.batches(0)), *rest]] == cpu


@pytest.mark.parametrize("batch", [1, 5, 150])  # 150: computed 64 clips at a time on a CPU
def test_mfcc_equals_torchaudio(batch):
    """The front end's own power spectrum (re² + im²) matches torchaudio's |X|.pow(2) path."""
    mfcc = MFCC()
    audio = 0.1 * torch.randn(batch, 16_000, generator=torch.Generator().manual_seed(4))
    audio[0, :4_000] = 0  # silence: the log floor
    expected = mfcc.featurizer(audio)
    actual, _ = mfcc(audio)
    assert actual.shape == expected.shape == (batch, 64, 101)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * expected.abs().max())


@pytest.mark.parametrize("n_mels", [64, 40, 80])  # 80 bands over 257 bins: some empty
def test_mfcc_filterbank_in_bands_equals_the_dense_product(n_mels):
    """The mel filterbank applied band by band (skipping zero weights) matches torchaudio for
    other bank sizes too, and follows a filterbank changed in place (a loaded state dict)."""
    mfcc = MFCC(FeatureConfig(n_mels=n_mels, n_mfcc=min(n_mels, 64)))
    if n_mels == 64:  # the bank's docstring: 500 of NeMo's 257 x 64 weights are non-zero
        assert int(mfcc.featurizer.MelSpectrogram.mel_scale.fb.ne(0).sum()) == 500
    audio = 0.1 * torch.randn(3, 16_000, generator=torch.Generator().manual_seed(6))
    for _ in range(2):
        expected = mfcc.featurizer(audio)
        actual, _ = mfcc(audio)
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * expected.abs().max())
        state = mfcc.state_dict()
        key = "featurizer.MelSpectrogram.mel_scale.fb"
        mfcc.load_state_dict({**state, key: state[key].flip(0)})  # another bank, same shape


def test_mfcc_of_a_clip_too_short_to_reflect_is_torchaudios_error():
    with pytest.raises(RuntimeError):
        MFCC()(torch.zeros(1, 200))  # 256 samples of reflection padding need 257


def test_mfcc_in_chunks_gives_the_numbers_and_layout_of_one_batch(
    monkeypatch, assert_same_features
):
    features_module = importlib.import_module("quartznet_tutorial.audio.features")
    audio = 0.1 * torch.randn(150, 16_000, generator=torch.Generator().manual_seed(5))
    chunked, _ = MFCC()(audio)
    monkeypatch.setattr(features_module, "_CPU_CHUNK", 10**6)
    whole, _ = MFCC()(audio)
    assert_same_features(chunked, whole)
    assert chunked.stride() == whole.stride() == (6464, 1, 64)
