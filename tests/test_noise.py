"""Noise at an exact SNR, and accuracy against it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from quartznet_tutorial.cli.main import main
from quartznet_tutorial.datasets.noisy import (
    NoisyClips,
    background_recordings,
    check_noise,
    colored_noise,
    measure_snr,
    mix_at_snr,
)
from quartznet_tutorial.datasets.speech_commands import SpeechCommands
from quartznet_tutorial.evaluation.snr import accuracy_vs_snr


def _clips(n=6, samples=16_000, seed=0):
    rng = np.random.default_rng(seed)
    t = torch.arange(samples) / 16_000
    return torch.stack(
        [float(rng.uniform(0.01, 0.5)) * torch.sin(2 * torch.pi * (150 + 40 * i) * t)
         for i in range(n)]
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 40.0])
def test_mixing_hits_the_snr(kind, snr):
    clips = _clips()
    rng = np.random.default_rng(1)
    noise = torch.stack([colored_noise(kind, clips.shape[-1], rng) for _ in clips])
    mixed = mix_at_snr(clips, noise, snr)
    assert mixed.dtype == torch.float32
    assert float((measure_snr(clips, mixed) - snr).abs().max()) < 0.01


def test_snr_counts_only_the_recorded_samples():
    clips = _clips(2)
    clips[:, 8_000:] = 0  # half a second of speech, then padding
    lengths = torch.tensor([8_000, 8_000])
    noise = torch.randn(clips.shape)
    mixed = mix_at_snr(clips, noise, 10.0, lengths)
    assert float((measure_snr(clips, mixed, lengths) - 10).abs().max()) < 0.01


def test_noise_spectra_fall_as_they_should():
    rng = np.random.default_rng(0)
    slopes = {}
    for kind in ("white", "pink", "brown"):
        noise = colored_noise(kind, 1 << 16, rng).double()
        assert abs(float(noise.pow(2).mean()) - 1) < 1e-6
        power = torch.fft.rfft(noise).abs().pow(2)[1:]
        f = torch.arange(1, len(power) + 1, dtype=torch.float64)
        bands = [(f >= lo) & (f < 2 * lo) for lo in (64, 4096)]  # two octaves, 6 apart
        ratio = power[bands[0]].mean() / power[bands[1]].mean()
        slopes[kind] = float(torch.log2(ratio)) / 6  # octaves of frequency
    assert slopes["white"] == pytest.approx(0, abs=0.1)
    assert slopes["pink"] == pytest.approx(1, abs=0.1)
    assert slopes["brown"] == pytest.approx(2, abs=0.1)


def test_silent_clips_stay_silent_and_bad_inputs_say_why(tmp_path):
    clips = torch.zeros(2, 100)
    assert torch.equal(mix_at_snr(clips, torch.randn(2, 100), 0.0), clips)
    with pytest.raises(ValueError, match="zero power"):
        mix_at_snr(_clips(1, 100), torch.zeros(1, 100), 0.0)
    with pytest.raises(ValueError, match="must be a finite number"):
        mix_at_snr(clips, clips, float("nan"))
    with pytest.raises(ValueError, match="differ"):
        mix_at_snr(clips, torch.zeros(3, 100), 0.0)
    with pytest.raises(ValueError, match="no such file or folder; name a kind"):
        check_noise("purple")
    with pytest.raises(ValueError, match="give one noise kind or files, not both"):
        check_noise([background_recordings()[0], "white"])
    short = tmp_path / "short.wav"
    sf.write(short, np.full(800, 0.1, np.float32), 16_000)
    with pytest.raises(ValueError, match="shorter than a clip"):
        NoisyClips(_Data(_clips(1)), short, 0.0).waveforms()


class _Data:
    def __init__(self, clips):
        self.labels = ["a"]
        self.clips = clips

    def __len__(self):
        return len(self.clips)

    def waveforms(self, progress=False):
        return (self.clips * 32768).round().short()

    def targets_tensor(self):
        return torch.zeros(len(self.clips), dtype=torch.long)


@pytest.mark.parametrize("noise", ["pink", "recordings"])
def test_noisy_clips_are_seeded_exact_and_independent_of_the_subset(noise):
    noise = background_recordings() if noise == "recordings" else noise
    data = _Data(_clips())
    clean = data.waveforms().float() / 32768
    a = NoisyClips(data, noise, 5.0, seed=3).waveforms() / 32768
    b = NoisyClips(data, noise, 5.0, seed=3).waveforms() / 32768
    c = NoisyClips(data, noise, 5.0, seed=4).waveforms() / 32768
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float((measure_snr(clean, a) - 5).abs().max()) < 0.01
    # clip i's noise depends on (seed, i) only
    first = NoisyClips(_Data(_clips()[:2]), noise, 5.0, seed=3).waveforms() / 32768
    assert torch.equal(first, a[:2])


def test_at_another_snr_equals_a_fresh_mix_and_reads_the_clips_once():
    data = _Data(_clips())
    reads = []
    waveforms = data.waveforms
    data.waveforms = lambda progress=False: reads.append(1) or waveforms()
    noisy = NoisyClips(data, "pink", 5.0, seed=3)
    for snr in (-5.0, 5.0, 20.0):
        fresh = NoisyClips(_Data(_clips()), "pink", snr, seed=3).waveforms()
        assert torch.equal(noisy.at(snr).waveforms(), fresh)
    assert len(reads) == 1  # the clean clips and the noise are shared, not recomputed
    assert noisy.snr_db == 5.0  # at() leaves the original as it was
    with pytest.raises(ValueError, match="finite"):
        noisy.at(float("nan"))


def test_accuracy_vs_snr_and_the_cli(speech_commands, tmp_path, capsys):
    from quartznet_tutorial import Classifier, build_model
    from quartznet_tutorial.checkpoints.checkpoint import save_checkpoint

    torch.manual_seed(0)
    data = SpeechCommands(speech_commands, "testing")
    classifier = Classifier(build_model("quartznet-3x1", num_classes=30), data.labels)
    curve = accuracy_vs_snr(classifier, data, noise="brown", snrs=[10, -5])
    assert curve.snr_db == [-5.0, 10.0] and len(curve.accuracy) == 2
    assert curve.num_clips == len(data) and 0 <= curve.clean <= 1
    assert curve.noise == "brown"
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, {"classifier": classifier.to_dict()})
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data-root", str(speech_commands)]
    assert main([*args, "--snr", "-5", "--noise", "brown", "--json", "-q"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["accuracy"] == curve.accuracy[0] and record["snr_db"] == -5.0
    assert main([*args, "--noise", "pink"]) == 2
    assert "--noise needs --snr" in capsys.readouterr().err
    assert main([*args, "--snr", "0", "--noise", str(tmp_path / "nope.wav")]) == 2
    assert "nope.wav': no such file or folder" in capsys.readouterr().err
