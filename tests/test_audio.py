"""load_audio: every kind of bad file gives one AudioError; good files round-trip."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quartznet_tutorial import AudioError, load_audio
from quartznet_tutorial.audio.file_io import read_pcm16, save_wav
from quartznet_tutorial.datasets.real_clips import real_clips_root


def _tone(samples=16_000, rate=16_000, freq=440.0, channels=1):
    t = np.arange(samples) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)


def _write(path, data, rate=16_000, subtype="PCM_16"):
    sf.write(path, data, rate, subtype=subtype)
    return path


@pytest.mark.parametrize(
    ("subtype", "atol"), [("PCM_16", 1 / 2**15), ("PCM_24", 1 / 2**23), ("FLOAT", 0.0)]
)
def test_bit_depths_read_as_float32_in_unit_range(tmp_path, subtype, atol):
    data = _tone()
    x = load_audio(_write(tmp_path / "a.wav", data, subtype=subtype))
    assert x.dtype == torch.float32 and x.shape == (16_000,)
    torch.testing.assert_close(x, torch.from_numpy(data[:, 0]), atol=atol, rtol=0)


def test_pcm16_scaling_is_int_over_32768(tmp_path):
    ints = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    sf.write(tmp_path / "a.wav", ints, 16_000, subtype="PCM_16")
    x = load_audio(tmp_path / "a.wav")
    torch.testing.assert_close(x, torch.from_numpy(ints / 32768).float(), atol=0, rtol=0)


def test_stereo_is_averaged(tmp_path):
    data = _tone(channels=2)
    x = load_audio(_write(tmp_path / "s.wav", data, subtype="FLOAT"))
    torch.testing.assert_close(x, torch.from_numpy(data.mean(axis=1)))


def test_stereo_without_downmix_is_an_error(tmp_path):
    path = _write(tmp_path / "s.wav", _tone(channels=2))
    with pytest.raises(AudioError, match=r"s\.wav: expected mono, got stereo; pass downmix=True"):
        load_audio(path, downmix=False)


@pytest.mark.parametrize("rate", [8_000, 44_100])
def test_other_rate_is_an_error_naming_file_and_fix(tmp_path, rate):
    path = _write(tmp_path / "x.wav", _tone(rate, rate, channels=2), rate=rate)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert f"expected 16000 Hz mono, got {rate} Hz stereo" in message
    assert "--resample" in message and "\n" not in message


@pytest.mark.parametrize("rate", [8_000, 44_100])
def test_resample_converts_rate_and_keeps_pitch(tmp_path, rate):
    path = _write(tmp_path / "x.wav", _tone(rate, rate, freq=440.0), rate=rate, subtype="FLOAT")
    x = load_audio(path, resample=True)
    assert x.shape == (16_000,)
    spectrum = torch.fft.rfft(x).abs()
    assert spectrum.argmax().item() == 440  # 1 s at 16 kHz: bin k is k Hz


def test_long_short_silent_and_dc_are_returned_whole(tmp_path):
    long = load_audio(_write(tmp_path / "long.wav", _tone(48_000)))
    short = load_audio(_write(tmp_path / "short.wav", _tone(800)))  # 0.05 s
    silent = load_audio(_write(tmp_path / "silent.wav", np.zeros((16_000, 1), np.float32)))
    dc = load_audio(_write(tmp_path / "dc.wav", np.full((100, 1), 0.25, np.float32)))
    assert long.shape == (48_000,) and short.shape == (800,)
    assert silent.abs().max() == 0
    torch.testing.assert_close(dc, torch.full((100,), 0.25))


def test_float_beyond_unit_range_is_kept(tmp_path):
    x = load_audio(_write(tmp_path / "f.wav", np.full((10, 1), 1.5, np.float32), subtype="FLOAT"))
    assert x.max() == 1.5


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_samples_are_an_error(tmp_path, bad):
    data = _tone(100)
    data[7, 0] = bad
    path = _write(tmp_path / "n.wav", data, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"n\.wav: has NaN or infinite samples"):
        load_audio(path)


def _valid_wav_bytes(tmp_path):
    _write(tmp_path / "ok.wav", _tone(16_000))
    return (tmp_path / "ok.wav").read_bytes()


@pytest.mark.parametrize(
    ("name", "make", "match"),
    [
        ("zero.wav", lambda ok: b"", "not a readable audio file"),
        ("header.wav", lambda ok: ok[:30], "not a readable audio file"),
        ("cut.wav", lambda ok: ok[:1000], "truncated: the header promises 32000 bytes"),
        ("random.wav", lambda ok: np.random.default_rng(0).bytes(4000), "not a readable"),
        ("text.wav", lambda ok: b"hello, world\n" * 50, "not a readable audio file"),
        ("empty.wav", None, "holds no audio samples"),
    ],
)
def test_unreadable_files_are_audio_errors(tmp_path, name, make, match):
    path = tmp_path / name
    if make is None:
        sf.write(path, np.zeros(0, np.float32), 16_000)
    else:
        path.write_bytes(make(_valid_wav_bytes(tmp_path)))
    with pytest.raises(AudioError, match=match) as info:
        load_audio(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_missing_file_and_directory_are_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)


def test_streaming_placeholder_size_is_not_truncation(tmp_path):
    """Writers that cannot seek leave data size 0xFFFFFFFF; the audio is all there."""
    ok = bytearray(_valid_wav_bytes(tmp_path))
    data_at = ok.index(b"data") + 4
    ok[data_at : data_at + 4] = b"\xff\xff\xff\xff"
    (tmp_path / "stream.wav").write_bytes(bytes(ok))
    assert load_audio(tmp_path / "stream.wav").shape == (16_000,)


def test_save_wav_round_trips_and_clips(tmp_path):
    x = torch.linspace(-1.2, 1.2, 1000)
    path = save_wav(tmp_path / "w.wav", x)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
    y = load_audio(path)
    torch.testing.assert_close(y, x.clamp(-1, 32767 / 32768), atol=1 / 2**15, rtol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["w.wav"]  # no temporary left behind


def test_save_wav_int16_is_exact_and_rejects_bad_input(tmp_path):
    ints = torch.tensor([-32768, 0, 12345, 32767], dtype=torch.int16)
    y = load_audio(save_wav(tmp_path / "i.wav", ints.numpy()[None]))
    torch.testing.assert_close(y, ints.float() / 32768, atol=0, rtol=0)
    with pytest.raises(ValueError, match="expected a mono waveform"):
        save_wav(tmp_path / "s.wav", torch.zeros(2, 100))
    with pytest.raises(ValueError, match="NaN"):
        save_wav(tmp_path / "n.wav", torch.tensor([0.0, float("nan")]))
    assert not (tmp_path / "n.wav").exists()


# Property-based: whatever the bytes, only AudioError escapes; valid 16 kHz mono round-trips.

_HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load_or_audio_error(data: bytes, suffix=".wav"):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"x{suffix}"
        path.write_bytes(data)
        try:
            return load_audio(path)
        except AudioError as e:
            assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
            return None


@_HYPOTHESIS
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_audio_errors(data):
    _load_or_audio_error(data)


_SUBTYPES = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]


@st.composite
def _wav_files(draw):
    rate = draw(st.sampled_from([8_000, 11_025, 16_000, 22_050, 44_100, 48_000]))
    channels = draw(st.integers(1, 3))
    samples = draw(st.integers(0, 3_000))
    subtype = draw(st.sampled_from(_SUBTYPES))
    seed = draw(st.integers(0, 2**16))
    data = np.random.default_rng(seed).uniform(-1, 1, (samples, channels)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        sf.write(Path(d) / "x.wav", data, rate, subtype=subtype)
        raw = (Path(d) / "x.wav").read_bytes()
    return raw, data, rate, subtype


@_HYPOTHESIS
@given(_wav_files(), st.data())
def test_valid_and_corrupted_wavs_raise_only_audio_errors(wav, extra):
    raw, _, _, _ = wav
    _load_or_audio_error(raw)
    cut = extra.draw(st.integers(0, len(raw)))
    flips = extra.draw(
        st.lists(st.tuples(st.integers(0, max(len(raw) - 1, 0)), st.integers(0, 255)), max_size=4)
    )
    corrupted = bytearray(raw[:cut])
    for i, value in flips:
        if i < len(corrupted):
            corrupted[i] = value
    _load_or_audio_error(bytes(corrupted))


@_HYPOTHESIS
@given(_wav_files())
def test_valid_wavs_load_as_their_mean_channel_or_say_why_not(wav):
    raw, data, rate, subtype = wav
    x = _load_or_audio_error(raw)
    if rate != 16_000 or data.shape[0] == 0:
        assert x is None
        return
    step = {"PCM_U8": 2**-7, "PCM_16": 2**-15, "PCM_24": 2**-23, "PCM_32": 2**-31}.get(subtype, 0)
    expected = torch.from_numpy(data.mean(axis=1))
    torch.testing.assert_close(x, expected, atol=step + 1e-7, rtol=0)


def test_open_permission_error_is_audio_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = _write(tmp_path / "locked.wav", _tone(100))
    path.chmod(0)
    with pytest.raises(AudioError, match="cannot open"):
        load_audio(path)


def _libsndfile_int16(path):
    data, rate = sf.read(path, dtype="int16", always_2d=True)
    return data, rate


@_HYPOTHESIS
@given(_wav_files(), st.data())
def test_fast_pcm16_reader_agrees_with_libsndfile_or_declines(wav, extra):
    raw, _, _, _ = wav
    cut = extra.draw(st.integers(0, len(raw)))
    flips = extra.draw(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=2))
    corrupted = bytearray(raw[:cut] if extra.draw(st.booleans()) else raw)
    for i, value in flips:
        if i < len(corrupted):
            corrupted[i] = value
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.wav"
        path.write_bytes(bytes(corrupted))
        pcm = read_pcm16(path)
        if pcm is None:
            return
        data, rate = _libsndfile_int16(path)
        assert (rate, data.shape[1]) == (16_000, 1)
        np.testing.assert_array_equal(pcm, data[:, 0])
        torch.testing.assert_close(load_audio(path), torch.from_numpy(pcm / 32768).float())


def test_fast_reader_takes_speech_commands_and_save_wav_files(tmp_path):
    words = [p for p in real_clips_root().rglob("*.wav") if "_background_noise_" not in str(p)]
    clips = sorted(words)[:20]
    ours = save_wav(tmp_path / "ours.wav", np.arange(-500, 500, dtype=np.int16))
    for path in [*clips, ours]:
        pcm = read_pcm16(path)
        assert pcm is not None, path
        np.testing.assert_array_equal(pcm, _libsndfile_int16(path)[0][:, 0])


def test_fast_reader_declines_other_layouts_and_load_audio_still_decides(tmp_path):
    tone = _tone(1_000)
    raw = _write(tmp_path / "plain.wav", tone).read_bytes()
    assert read_pcm16(tmp_path / "plain.wav") is not None
    # A LIST chunk before the data: valid, read by libsndfile instead.
    listed = raw[:36] + b"LIST" + (4).to_bytes(4, "little") + b"INFO" + raw[36:]
    listed = listed[:4] + (len(listed) - 8).to_bytes(4, "little") + listed[8:]
    (tmp_path / "listed.wav").write_bytes(listed)
    assert read_pcm16(tmp_path / "listed.wav") is None
    torch.testing.assert_close(
        load_audio(tmp_path / "listed.wav"), load_audio(tmp_path / "plain.wav")
    )
    # A data chunk cut short: the truncation error, not a short clip.
    (tmp_path / "cut.wav").write_bytes(raw[:-100])
    assert read_pcm16(tmp_path / "cut.wav") is None
    with pytest.raises(AudioError, match="truncated"):
        load_audio(tmp_path / "cut.wav")
    # Another rate, stereo, 24-bit: declined.
    for name, kwargs in [("8k", {"rate": 8_000}), ("24", {"subtype": "PCM_24"})]:
        assert read_pcm16(_write(tmp_path / f"{name}.wav", tone, **kwargs)) is None
    assert read_pcm16(_write(tmp_path / "stereo.wav", _tone(1_000, channels=2))) is None
    assert read_pcm16(tmp_path) is None and read_pcm16(tmp_path / "missing.wav") is None


def test_save_wav_writes_the_bytes_libsndfile_writes(tmp_path):
    rng = np.random.default_rng(0)
    k = np.arange(-60, 61)
    near_steps = (65536 * k[:, None] + np.array([-0.6, -0.5, -0.4, 0.4, 0.5])) / 2**31
    cases = [
        rng.uniform(-1.3, 1.3, 100_000).astype(np.float32),  # out of range: clipped
        rng.uniform(-1e-4, 1e-4, 10_000),  # float64, rounded near zero
        near_steps.ravel().astype(np.float32),  # halfway between two 16-bit steps and near
        rng.integers(-32768, 32768, 1_000) / 32768,  # exact steps
        rng.integers(-32768, 32768, 1_000).astype(np.int16),
    ]
    for rate in (16_000, 8_000):
        for data in cases:
            ours = save_wav(tmp_path / "ours.wav", data, rate).read_bytes()
            if data.dtype != np.int16:
                data = np.clip(data.astype(np.float32), -1.0, 32767 / 32768)
            sf.write(tmp_path / "ref.wav", data, rate, subtype="PCM_16", format="WAV")
            assert ours == (tmp_path / "ref.wav").read_bytes()
