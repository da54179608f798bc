"""Augmentation: each batched op against a loop written from NeMo's code, shapes, determinism."""

from __future__ import annotations

import math
import random

import pytest
import torch

from quartznet_tutorial.audio.augment import (
    RULES,
    AugmentConfig,
    Augmenter,
    NoiseBank,
    mix_background,
    spec_augment,
    spec_cutout,
    time_shift,
    white_noise,
)

F, T = 64, 128  # the recipe's features after crop/pad


def gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def assert_same_distribution(ours: torch.Tensor, ref: torch.Tensor, z: float = 5.0) -> None:
    """Same support, and every value's frequency equal within ``z`` standard errors."""
    values_o, counts_o = ours.unique(return_counts=True)
    values_r, counts_r = ref.unique(return_counts=True)
    assert values_o.tolist() == values_r.tolist()
    n_o, n_r = len(ours), len(ref)
    p = (counts_o + counts_r) / (n_o + n_r)
    se = torch.sqrt(p * (1 - p) * (1 / n_o + 1 / n_r))
    assert torch.all((counts_o / n_o - counts_r / n_r).abs() <= z * se + 1e-12)


def ks_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().sort().values, b.double().sort().values
    grid = torch.cat([a, b]).unique()
    cdf_a = torch.searchsorted(a, grid, right=True) / len(a)
    cdf_b = torch.searchsorted(b, grid, right=True) / len(b)
    return float((cdf_a - cdf_b).abs().max())


def ks_critical(n: int, m: int, alpha: float = 1e-4) -> float:
    """Two-sample Kolmogorov-Smirnov threshold at level ``alpha`` (conservative if discrete)."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


# ---- NeMo's rules, one clip and one mask at a time (perturb.py, spectr_augment.py) -------------


def nemo_shift_by(samples: torch.Tensor, shift_samples: int) -> torch.Tensor:
    """``ShiftPerturbation.perturb`` after its draw, on one unpadded clip."""
    samples = samples.clone()
    if shift_samples < 0:
        samples[-shift_samples:] = samples[:shift_samples].clone()
        samples[:-shift_samples] = 0
    elif shift_samples > 0:
        samples[:-shift_samples] = samples[shift_samples:].clone()
        samples[-shift_samples:] = 0
    return samples


def nemo_draw(rng: random.Random, n: int, rules: str) -> int:
    """NeMo 0.x drew ``int(rng.uniform(0, n))``; NeMo 1.x ``rng.randint(0, n)``."""
    return int(rng.uniform(0, n)) if rules == "nemo-2020" else rng.randint(0, n)


def nemo_cutout(x, rng, *, rect_masks, rect_time, rect_freq, rules):
    sh = x.shape
    for idx in range(sh[0]):
        for _ in range(rect_masks):
            rect_x = nemo_draw(rng, sh[1] - rect_freq, rules)
            rect_y = nemo_draw(rng, sh[2] - rect_time, rules)
            if rules == "nemo-2020":  # the swapped limits of NeMo 0.x
                w_x, w_y = nemo_draw(rng, rect_time, rules), nemo_draw(rng, rect_freq, rules)
            else:
                w_x, w_y = nemo_draw(rng, rect_freq, rules), nemo_draw(rng, rect_time, rules)
            x[idx, rect_x : rect_x + w_x, rect_y : rect_y + w_y] = 0.0
    return x


def nemo_specaugment(x, rng, *, freq_masks, freq_width, time_masks, time_width, rules):
    sh = x.shape
    for idx in range(sh[0]):
        for _ in range(freq_masks):
            x_left = nemo_draw(rng, sh[1] - freq_width, rules)
            w = nemo_draw(rng, freq_width, rules)
            x[idx, x_left : x_left + w, :] = 0.0
        for _ in range(time_masks):
            limit = sh[2] - time_width if rules == "nemo-2020" else max(1, sh[2] - time_width)
            y_left = nemo_draw(rng, limit, rules)
            w = nemo_draw(rng, time_width, rules)
            x[idx, :, y_left : y_left + w] = 0.0
    return x


def mask_stats(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Masked rows/columns, first masked row/column (of items with any) and masked fraction."""
    zero = x == 0
    rows, cols = zero.any(2), zero.any(1)
    some = rows.any(1)
    return {
        "rows": rows.sum(1),
        "cols": cols.sum(1),
        "first_row": rows.float().argmax(1)[some],
        "first_col": cols.float().argmax(1)[some],
        "fraction": zero.float().mean((1, 2)),
    }


# ---- config -------------------------------------------------------------------------------------


def test_defaults_are_nemos_recipe():
    c = AugmentConfig()
    assert (c.shift_ms, c.white_noise_db, c.background_prob) == (5.0, (-90, -46), 0.0)
    assert (c.rect_masks, c.rect_time, c.rect_freq) == (5, 25, 15)
    assert (c.freq_masks, c.freq_width, c.time_masks, c.time_width) == (2, 15, 2, 25)
    assert c.rules == "nemo-2020" and not c.is_identity
    assert AugmentConfig.none().is_identity


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rules": "nemo-3"}, "rules"),
        ({"rect_masks": -1}, "rect_masks"),
        ({"time_width": 2.5}, "time_width"),
        ({"white_noise_db": (-46, -90)}, "white_noise_db"),
        ({"background_prob": 1.5}, "background_prob"),
        ({"shift_ms": -1.0}, "shift_ms"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**kwargs)


def test_background_needs_recordings():
    with pytest.raises(ValueError, match="background_prob"):
        Augmenter(AugmentConfig(background_prob=0.5))


def test_features_smaller_than_the_masks_are_a_clear_error():
    with pytest.raises(ValueError, match="time_width=25 exceeds the 20 frames"):
        spec_augment(torch.ones(1, F, 20))


# ---- waveform ops -------------------------------------------------------------------------------


def test_shift_histogram_is_uniform_over_nemos_integer_range():
    n = 160 * 150
    ramp = torch.arange(1, 201, dtype=torch.float32).expand(n, -1)  # 1, 2, ...: reads the shift
    out = time_shift(ramp, shift_ms=5.0, generator=gen(0))
    first = out[:, 0]
    ours = torch.where(first > 0, first - 1, -(out > 0).float().argmax(1)).long()
    rng = random.Random(0)
    ref = torch.tensor([int(rng.uniform(-5.0, 5.0) * 16_000 // 1000) for _ in range(n)])
    assert ours.min() == -80 and ours.max() == 79  # floor(U(-80, 80)): -80 .. 79
    assert_same_distribution(ours, ref)


def test_shift_moves_audio_like_nemo_including_short_clips():
    batch, n = 64, 400
    audio = torch.randn(batch, n, generator=gen(1))
    lengths = torch.randint(40, n + 1, (batch,), generator=gen(2))
    lengths[:4] = torch.tensor([n, n, 3, 1])  # full clips; clips shorter than 5 ms stay put
    # (no zero padding past each length: the output must have it all the same)
    out = time_shift(audio, shift_ms=5.0, lengths=lengths, generator=gen(3))
    # the same uniform draws, through NeMo's formula: int(shift_ms * sr // 1000)
    u = torch.rand(batch, generator=gen(3), dtype=torch.float64).tolist()
    for b in range(batch):
        shift_ms = -5.0 + 10.0 * u[b]
        length = int(lengths[b])
        clip = audio[b, :length]
        if abs(shift_ms) / 1000 <= length / 16_000:
            clip = nemo_shift_by(clip, int(shift_ms * 16_000 // 1000))
        expected = torch.nn.functional.pad(clip, (0, n - length))
        assert torch.equal(out[b], expected), b


def test_white_noise_levels_are_nemos_integers_and_stay_inside_the_clip():
    per_level, n = 50, 8000
    levels = range(-90, -46)  # np.random.randint(-90, -46) excludes -46
    silence = torch.zeros(per_level * len(levels), n)
    out = white_noise(silence, level_db=(-90, -46), generator=gen(4))
    measured = torch.round(20 * torch.log10(out.std(1))).long()
    assert_same_distribution(measured, torch.tensor(list(levels)).repeat(per_level))
    lengths = torch.tensor([n, 100, 0])
    out = white_noise(torch.zeros(3, n), lengths=lengths, generator=gen(5))
    assert (out[1, 100:] == 0).all() and (out[1, :100] != 0).all()
    assert (out[2] == 0).all() and (out[0] != 0).all()


def ramp_bank() -> tuple[NoiseBank, list[torch.Tensor]]:
    """Three recordings of RMS 1 (0 dB), each a ramp of its own slope: a slice says its source."""
    clips = []
    for k, length in enumerate([500, 800, 650]):
        ramp = (k + 1) * torch.arange(length, dtype=torch.float64) + 1000
        clips.append((ramp / ramp.pow(2).mean().sqrt()).float())
    return NoiseBank.from_clips(clips), clips


def test_background_noise_segment_and_snr():
    bank, clips = ramp_bank()
    batch, n = 600, 300
    clean = torch.randn(batch, n, generator=gen(6)) * torch.rand(batch, 1, generator=gen(7))
    out = mix_background(clean, bank, prob=1.0, snr_db=(20.0, 20.0), generator=gen(8))
    # NeMo's gain: rms_db(clip) - rms_db(recording) - snr = rms_db(clip) - 0 - 20 dB
    gain = clean.double().pow(2).mean(1).sqrt() / 10
    steps = torch.tensor([float(c[1] - c[0]) for c in clips])
    for b in range(batch):
        segment = (out[b] - clean[b]).double() / gain[b]
        k = int(torch.argmin((steps - (segment[1] - segment[0])).abs()))
        offset = round(float((segment[0] - clips[k][0]) / steps[k]))
        assert 0 <= offset <= len(clips[k]) - n
        expected = clips[k][offset : offset + n].double()
        torch.testing.assert_close(segment, expected, rtol=1e-4, atol=1e-5)


def test_background_noise_probability_and_lengths():
    bank, _ = ramp_bank()
    batch, n = 4000, 200
    clean = torch.ones(batch, n)
    lengths = torch.full((batch,), 150)
    out = mix_background(clean, bank, prob=0.3, lengths=lengths, generator=gen(9))
    noisy = (out != clean).any(1).float()
    assert abs(noisy.mean().item() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / batch)
    assert (out[:, 150:] == 1).all()


def test_background_bank_must_cover_the_clip():
    bank, _ = ramp_bank()
    with pytest.raises(ValueError, match="min_length=1000"):
        mix_background(torch.zeros(2, 1000), bank)
    padded = NoiseBank.from_clips([torch.ones(10)], min_length=1000)
    assert len(padded.flat) == 1000 and padded.rms_db.item() == 0.0


# ---- spectrogram ops ----------------------------------------------------------------------------


@pytest.mark.parametrize("rules", RULES)
def test_cutout_matches_nemo_loop(rules):
    n = 2000
    one = {"rect_masks": 1, "rect_time": 25, "rect_freq": 15, "rules": rules}
    ours = mask_stats(spec_cutout(torch.ones(n, F, T), **one, generator=gen(10)))
    ref = mask_stats(nemo_cutout(torch.ones(n, F, T), random.Random(10), **one))
    for key in ("rows", "cols", "first_row", "first_col"):
        assert_same_distribution(ours[key], ref[key])
    widest_rows = 24 if rules == "nemo-2020" else 15  # NeMo 0.x: up to rect_time - 1 bins
    assert ours["rows"].max() == widest_rows

    five = dict(one, rect_masks=5)
    ours = spec_cutout(torch.ones(n, F, T), **five, generator=gen(11))
    ref = nemo_cutout(torch.ones(n, F, T), random.Random(11), **five)
    a, b = mask_stats(ours)["fraction"], mask_stats(ref)["fraction"]
    assert ks_distance(a, b) < ks_critical(n, n)


@pytest.mark.parametrize("rules", RULES)
def test_specaugment_matches_nemo_loop(rules):
    n = 2000
    freq = {"freq_masks": 1, "freq_width": 15, "time_masks": 0, "time_width": 25, "rules": rules}
    time = dict(freq, freq_masks=0, time_masks=1)
    for i, kwargs in enumerate([freq, time]):
        ours = mask_stats(spec_augment(torch.ones(n, F, T), **kwargs, generator=gen(20 + i)))
        ref = mask_stats(nemo_specaugment(torch.ones(n, F, T), random.Random(i), **kwargs))
        for key in ("rows", "cols", "first_row", "first_col"):
            assert_same_distribution(ours[key], ref[key])
    both = dict(freq, freq_masks=2, time_masks=2)
    a = mask_stats(spec_augment(torch.ones(n, F, T), **both, generator=gen(22)))["fraction"]
    b = mask_stats(nemo_specaugment(torch.ones(n, F, T), random.Random(22), **both))["fraction"]
    assert ks_distance(a, b) < ks_critical(n, n)


def test_masks_only_zero_and_keep_the_rest():
    x = torch.randn(32, F, T, generator=gen(30)) + 10  # no zeros of its own
    for out in (spec_cutout(x, generator=gen(31)), spec_augment(x, generator=gen(32))):
        kept = out != 0
        assert torch.equal(out[kept], x[kept]) and (~kept).any()


# ---- the Augmenter ------------------------------------------------------------------------------


def test_no_op_config_is_identity():
    augmenter = Augmenter(AugmentConfig.none())
    w, x = torch.randn(4, 16_000), torch.randn(4, F, T)
    assert torch.equal(augmenter.waveform(w, gen(0)), w)
    assert torch.equal(augmenter.spectrogram(x, gen(0)), x)


def test_augmenter_applies_nemos_order():
    config = AugmentConfig(background_prob=0.5)
    background = [torch.randn(20_000, generator=gen(40))]
    augmenter = Augmenter(config, background=background)
    w = torch.randn(8, 16_000, generator=gen(41))
    g = gen(42)
    expected = time_shift(w, shift_ms=5.0, generator=g)
    expected = white_noise(expected, level_db=(-90, -46), generator=g)
    bank = NoiseBank.from_clips(background, min_length=16_000)
    expected = mix_background(expected, bank, prob=0.5, snr_db=(10.0, 50.0), generator=g)
    assert torch.equal(augmenter.waveform(w, gen(42)), expected)

    x = torch.randn(8, F, T, generator=gen(43))
    g = gen(44)
    expected = spec_augment(spec_cutout(x, generator=g), generator=g)
    before = x.clone()
    assert torch.equal(augmenter.spectrogram(x, gen(44)), expected)
    assert torch.equal(x, before)  # left alone unless asked
    assert augmenter.spectrogram(x, gen(44), inplace=True) is x and torch.equal(x, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtypes_and_determinism(dtype):
    augmenter = Augmenter()
    w = torch.randn(5, 16_000, dtype=dtype)
    x = torch.randn(5, F, T, dtype=dtype)
    for op, data in ((augmenter.waveform, w), (augmenter.spectrogram, x)):
        a, b, c = op(data, gen(1)), op(data, gen(1)), op(data, gen(2))
        assert a.shape == data.shape and a.dtype == dtype
        assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_ops_draw_on_the_gpu_without_host_sync():
    augmenter = Augmenter(AugmentConfig(background_prob=0.5), background=[torch.randn(20_000)])
    augmenter = augmenter.cuda()
    w = torch.randn(16, 16_000, device="cuda")
    x = torch.randn(16, F, T, device="cuda")
    augmenter.waveform(w, gen(0, "cuda")), augmenter.spectrogram(x, gen(0, "cuda"))  # warm up
    torch.cuda.set_sync_debug_mode("error")
    try:
        out_w = augmenter.waveform(w, gen(1, "cuda"))
        out_x = augmenter.spectrogram(x, gen(1, "cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out_w.device.type == out_x.device.type == "cuda"
    assert out_w.shape == w.shape and out_x.shape == x.shape


def test_waveform_ops_leave_their_input_alone():
    """``time_shift`` and ``white_noise`` work in place on buffers of their own only."""
    waveforms = torch.randn(4, 1_000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([1_000, 900, 500, 10])
    before = waveforms.clone()
    for lens in (None, lengths):
        shifted = time_shift(waveforms, shift_ms=2.0, lengths=lens, generator=gen(1))
        noisy = white_noise(waveforms, lengths=lens, generator=gen(2))
        assert torch.equal(waveforms, before)
        assert not torch.equal(shifted, before) and not torch.equal(noisy, before)
    assert torch.equal(noisy[1, 900:], before[1, 900:])  # no noise past a clip's end
