"""Keyword spotting in a stream: posteriors, RecognizeCommands, scoring, make-stream, CLI."""

from __future__ import annotations

import itertools
import json
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from quartznet_tutorial.audio.features import FeatureConfig
from quartznet_tutorial.cli.main import main
from quartznet_tutorial.kws.detector import (
    DetectConfig,
    Detection,
    Posteriors,
    RecognizeCommands,
    _frames_shareable,
    _shared_frame_logits,
    _stream_mfcc,
    detect,
    detect_file,
    receptive_field,
    stream_posteriors,
)
from quartznet_tutorial.kws.scoring import det_curve, score_detections, threshold_for
from quartznet_tutorial.kws.stream import make_stream
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.models.quartznet import build_model

SR = 16_000
TONES = {"yes": 500, "no": 1500}


class ToneClassifier(nn.Module):
    """A deterministic 4-class "keyword" model: a 500 Hz tone is yes, 1500 Hz no, a quiet
    window silence, any other loud sound unknown. Logits from the window's spectrum."""

    labels: ClassVar[list[str]] = ["_silence_", "_unknown_", "yes", "no"]

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        power = torch.fft.rfft(waveforms).abs().square()  # 1 Hz bins for 1 s windows
        total = power.sum(-1) + 1e-12
        yes = power[:, 480:521].sum(-1) / total
        no = power[:, 1480:1521].sum(-1) / total
        loud = (waveforms.square().mean(-1) > 1e-3).float()
        scores = [1 - loud, loud * (1 - yes - no), loud * yes, loud * no]
        return self.scale * torch.stack(scores, -1)


def _write_stream(path, events, seconds=30.0, seed=0):
    """Noise at RMS 0.01 with 0.4 s tone bursts centred at the events' times."""
    rng = np.random.default_rng(seed)
    x = 0.01 * rng.standard_normal(int(seconds * SR))
    for word, centre in events:
        if centre + 0.2 > seconds:
            continue
        t = np.arange(int(0.4 * SR)) / SR
        start = int((centre - 0.2) * SR)
        x[start : start + len(t)] += 0.3 * np.sin(2 * np.pi * TONES[word] * t)
    sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
    return path


EVENTS = [("yes", 3.0), ("no", 7.5), ("yes", 12.2), ("yes", 16.0), ("no", 21.3), ("no", 26.0)]


def _truth(events, seconds=30.0):
    return {
        "duration": seconds,
        "keywords": ["yes", "no"],
        "events": [{"word": w, "time": t} for w, t in events],
    }


def test_detects_each_keyword_at_its_time_and_nothing_else(tmp_path):
    path = _write_stream(tmp_path / "s.wav", EVENTS)
    found, post = detect_file(ToneClassifier(), path, block_seconds=4.0)
    assert [d.word for d in found] == [w for w, _ in EVENTS]
    for d, (_, t) in zip(found, EVENTS, strict=True):
        assert abs(d.time - t) <= 0.75, (d, t)
    score = score_detections(found, _truth(EVENTS))
    assert (score.hits, score.false_accepts, score.hit_rate) == (6, 0, 1.0)
    assert post.probs.shape == ((30 * SR - SR) // 1600 + 1, 4)


def test_blocks_do_not_change_posteriors(tmp_path):
    path = _write_stream(tmp_path / "s.wav", EVENTS, seconds=10.0)
    small = stream_posteriors(ToneClassifier(), path, block_seconds=1.3, batch_size=5)
    large = stream_posteriors(ToneClassifier(), path, block_seconds=100)
    np.testing.assert_allclose(small.probs, large.probs, atol=1e-6)


def test_no_false_accept_in_pure_noise(tmp_path):
    path = _write_stream(tmp_path / "noise.wav", [], seconds=60.0, seed=1)
    found, post = detect_file(ToneClassifier(), path, DetectConfig(threshold=0.5))
    assert found == []
    assert post.probs.argmax(1).tolist() == [0] * len(post.probs)  # silence wins every window


def test_silence_and_unknown_are_never_reported():
    labels = ["_silence_", "_unknown_", "yes"]
    probs = np.zeros((40, 3), np.float32)
    probs[:10, 1] = probs[10:20, 0] = probs[20:30, 1] = probs[30:, 2] = 1.0
    found = detect(Posteriors(probs, labels, 100, 5.0))
    assert [d.word for d in found] == ["yes"]


def test_recognize_commands_semantics():
    """TensorFlow's rules: minimum count, averaging, no repeat of the previous word until
    another word wins, suppression after a word, none after _silence_."""
    c = DetectConfig(average_window_ms=300, threshold=0.6, suppression_ms=500, minimum_count=3)
    r = RecognizeCommands(["_silence_", "a", "b"], c)
    a, b, s = np.eye(3)[1], np.eye(3)[2], np.eye(3)[0]
    assert r.process(a, 0) is None and r.process(a, 100) is None  # fewer than 3 results
    assert r.process(a, 200) == ("a", 1.0)
    assert r.process(a, 300) is None  # still "a": the previous word
    assert [r.process(b, t) for t in (400, 500, 600, 700)] == [None] * 4  # suppressed
    assert r.process(b, 800) == ("b", 1.0)  # more than 500 ms after "a"
    assert [r.process(s, t) for t in range(900, 1400, 100)] == [None] * 5  # suppressed too
    assert r.process(s, 1400) == ("_silence_", 1.0)
    assert [r.process(b, t) for t in (1500, 1600)] == [None] * 2  # averages 0.5 < 0.6
    assert r.process(b, 1700) == ("b", 0.75)  # 300 ms after silence: no suppression


def test_score_detections_by_hand():
    truth = _truth([("yes", 10.0), ("no", 20.0), ("yes", 30.0)], seconds=1800.0)
    dets = [
        Detection("yes", 10.5, 0.9),  # hit
        Detection("yes", 10.6, 0.9),  # the event is taken: a repeat, false accept
        Detection("yes", 20.2, 0.8),  # wrong word near "no": false accept (wrong)
        Detection("no", 40.0, 0.8),  # nothing near: false accept
        Detection("yes", 29.0, 0.8),  # 1 s early: outside 0.75 s, false accept
    ]
    s = score_detections(dets, truth)
    assert (s.events, s.hits, s.false_accepts, s.wrong) == (3, 1, 4, 1)
    assert (s.repeats, s.near_other, s.in_noise) == (1, 0, 2)
    truth["events"].append({"word": "bed", "time": 40.3})  # a non-keyword near the "no"
    assert score_detections(dets, truth).near_other == 1
    assert s.hit_rate == pytest.approx(1 / 3) and s.miss_rate == pytest.approx(2 / 3)
    assert s.false_accepts_per_hour == pytest.approx(8.0)  # 4 in half an hour
    assert score_detections(dets, truth, tolerance=1.0).hits == 2


def test_det_curve_and_threshold(tmp_path):
    path = _write_stream(tmp_path / "s.wav", EVENTS)
    post = stream_posteriors(ToneClassifier(), path)
    truth = _truth(EVENTS)
    truth["events"].append({"word": "yes", "time": 28.5})  # never spoken: a miss at any threshold
    curve = det_curve(post, truth, thresholds=[0.2, 0.5, 0.9, 1.0])
    assert [r["threshold"] for r in curve] == [0.2, 0.5, 0.9, 1.0]
    assert curve[0]["hit_rate"] == pytest.approx(6 / 7) and curve[-1]["hit_rate"] == 0
    misses = [r["miss_rate"] for r in curve]
    assert misses == sorted(misses)
    assert threshold_for(curve)["threshold"] == 0.2
    assert threshold_for([{"threshold": 0.5, "false_accepts_per_hour": 2.0}]) is None


def _quartznet_classifier(labels=("_silence_", "_unknown_", "yes", "no")):
    torch.manual_seed(0)
    model = build_model("quartznet-3x1", num_classes=len(labels)).eval()
    for m in model.modules():  # BatchNorm statistics that are not the identity
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return Classifier(model, list(labels)).eval()


def test_stream_mfcc_equals_the_centred_mfcc_of_the_whole_stream():
    c = _quartznet_classifier()
    x = torch.randn(SR * 3 + 777) * 0.1
    whole = c.preprocessor.featurizer(x[None])[0]  # torchaudio's MFCC, centred, reflect
    blocks = (b.numpy() for b in x.split(5000))
    parts = list(_stream_mfcc(c, blocks, len(x), 256, 50))
    got = torch.cat([f[:, min(50, a) : min(50, a) + b - a] for a, b, f in parts], dim=1)
    assert got.shape == whole.shape and len(parts) > 2
    torch.testing.assert_close(got, whole, atol=2e-3, rtol=1e-4)


def test_one_pass_equals_one_encoder_run_over_the_stream(tmp_path):
    """Blocks with receptive-field context give what one run over everything gives."""
    c = _quartznet_classifier()
    assert receptive_field(c.model) == 5 + 6 + 7 + 8 + 28
    path = _write_stream(tmp_path / "s.wav", EVENTS, seconds=12.0)
    small = stream_posteriors(c, path, mode="one-pass", block_seconds=2.0)
    large = stream_posteriors(c, path, mode="one-pass", block_seconds=100.0)
    np.testing.assert_allclose(small.probs, large.probs, atol=1e-5)
    exact = stream_posteriors(c, path, mode="exact")
    assert small.probs.shape == exact.probs.shape


def test_one_pass_pools_the_exact_windows_encoder_frames(tmp_path):
    """With 'valid' context (all frames real), one-pass logits are the decoder on the mean
    over 128 frames around the window, which a direct computation reproduces."""
    c = _quartznet_classifier()
    path = _write_stream(tmp_path / "s.wav", EVENTS, seconds=6.0)
    post = stream_posteriors(c, path, mode="one-pass", hop_ms=500)
    x = torch.from_numpy(sf.read(path, dtype="float32")[0])
    feats = c.preprocessor.featurizer(x[None])  # (1, 64, T)
    enc = feats
    with torch.no_grad():
        for block in c.model.encoder:
            enc = block(enc)
        w = 4  # window starting at 2.0 s: frames 200 - 13 .. 200 + 115
        logits = c.model.decoder(enc[0, :, 200 - 13 : 200 + 115].mean(-1))
    np.testing.assert_allclose(post.probs[w], logits.softmax(-1).numpy(), atol=1e-4)


@pytest.mark.parametrize(("frames", "hop_ms"), [(128, 100), (128, 30), (None, 100)])
def test_exact_equals_classifying_each_window_on_its_own(tmp_path, frames, hop_ms):
    """The exact mode shares the MFCC frames of overlapping windows and recomputes the four
    that see a window's reflect padding: its posteriors are each window's as a lone clip."""
    c = _quartznet_classifier()
    c = Classifier(c.model, c.labels, FeatureConfig(frames=frames)).eval()
    assert _frames_shareable(c, hop_ms * 16)
    path = _write_stream(tmp_path / "s.wav", EVENTS[:1], seconds=4.37)
    post = stream_posteriors(c, path, hop_ms=hop_ms, batch_size=7, block_seconds=2.0)
    x = torch.from_numpy(sf.read(path, dtype="float32")[0])
    windows = x.unfold(0, SR, hop_ms * 16)
    with torch.no_grad():
        alone = torch.cat([c(w[None]) for w in windows])  # logits, one window at a time
        shared = _shared_frame_logits(c, x, len(windows), hop_ms * 16)
    assert post.probs.shape == tuple(alone.shape)
    assert np.abs(post.probs - alone.softmax(-1).numpy()).max() <= 1e-4
    diff = (shared - alone).abs().max()
    assert diff <= 1e-4
    assert (alone.amax(0) - alone.amin(0)).max() > 100 * max(diff, 1e-6)  # windows differ


def test_nemo_style_classifier_runs_exact(tmp_path):
    c = _quartznet_classifier()
    c = Classifier(c.model, c.labels, FeatureConfig(frames=None)).eval()
    path = _write_stream(tmp_path / "s.wav", [], seconds=0.5)  # shorter than a window
    post = stream_posteriors(c, path)
    assert post.probs.shape == (1, 4)


def _source(make_speech_commands):
    return make_speech_commands(words=("yes", "no", "up", "down"), per_word=4, background=2)


def test_make_stream_is_deterministic_and_places_clips_apart(tmp_path, make_speech_commands):
    root = _source(make_speech_commands)
    kw = dict(minutes=1.0, snr_db=(20.0, 5.0), data_root=root, keywords=("yes", "no"), seed=3)
    a = make_stream(tmp_path / "a", **kw)
    b = make_stream(tmp_path / "b", **kw)
    make_stream(tmp_path / "c", **{**kw, "seed": 4})
    wav = (tmp_path / "a" / "stream.wav").read_bytes()
    assert wav == (tmp_path / "b" / "stream.wav").read_bytes()
    assert wav != (tmp_path / "c" / "stream.wav").read_bytes()
    truth = json.loads(a.read_text())
    assert truth == json.loads(b.read_text())
    info = sf.info(tmp_path / "a" / "stream.wav")
    assert (info.samplerate, info.frames, info.subtype) == (SR, 60 * SR, "PCM_16")
    events = truth["events"]
    assert {e["kind"] for e in events} == {"keyword", "other"} and len(events) > 10
    starts = [e["start"] for e in events]
    assert all(b - a >= 1.0 + 1.5 - 1e-3 for a, b in itertools.pairwise(starts))
    assert all(e["source"] in (root / "testing_list.txt").read_text() for e in events)
    # the requested SNR, measured: clip power over the bed's power in the same second
    x, _ = sf.read(tmp_path / "a" / "stream.wav", dtype="float64")
    quiet = np.ones(len(x), bool)
    for e in events:
        quiet[int(e["start"] * SR) : int(e["end"] * SR)] = False
    bed = np.mean(x[quiet] ** 2)
    for e in events:
        seg = x[int(e["start"] * SR) : int(e["end"] * SR)]
        snr = 10 * np.log10(max(np.mean(seg**2) - bed, 1e-12) / bed)
        assert snr == pytest.approx(e["snr_db"], abs=0.5)
        assert e["snr_db"] <= 20.0 + 1e-6


def test_make_stream_errors(tmp_path, make_speech_commands):
    root = _source(make_speech_commands)
    with pytest.raises(ValueError, match="no test clips of the keywords"):
        make_stream(tmp_path / "x", minutes=0.5, data_root=root, keywords=("yes", "stop"))
    with pytest.raises(ValueError, match="minutes"):
        make_stream(tmp_path / "x", minutes=0, data_root=root)
    with pytest.raises(ValueError, match="snr_db"):
        make_stream(tmp_path / "x", snr_db=(), data_root=root)


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_cli_make_stream_then_detect_with_truth(tmp_path, capsys, make_speech_commands):
    root = _source(make_speech_commands)
    code, out, _ = _run(
        capsys,
        "make-stream",
        "--out",
        tmp_path / "s",
        "--minutes",
        "0.5",
        "--data-root",
        root,
        "--keywords",
        "yes",
        "no",
    )
    assert code == 0 and "stream.wav" in out
    ckpt = "synthetic-v1-quartznet-3x1"
    code, out, err = _run(
        capsys,
        "detect",
        tmp_path / "s" / "stream.wav",
        "--checkpoint",
        ckpt,
        "--mode",
        "one-pass",
        "--truth",
        tmp_path / "s" / "stream.json",
        "--json",
        tmp_path / "d.json",
    )
    assert code == 0 and "false accepts" in err and "per hour" in err
    doc = json.loads((tmp_path / "d.json").read_text())
    assert len(doc["detections"]) == len(out.splitlines())
    assert {"score", "det_curve", "threshold_1_per_hour"} <= doc.keys()
    assert doc["score"]["hours"] == pytest.approx(30 / 3600)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["detect", "missing.wav"], "no such file"),
        (["detect", "{tmp}/s.wav", "--hop-ms", "15"], "multiple of 10 ms"),
        (["detect", "{tmp}/s.wav", "--keywords", "banana"], "not labels of this model"),
        (["detect", "{tmp}/s.wav", "--truth", "{tmp}/none.json"], "make-stream"),
        (["detect", "{tmp}/s.wav", "--threshold", "2"], "between 0 and 1"),
        (["detect", "{tmp}/s.wav", "--json", "{tmp}/no/d.json"], "does not exist"),
        (["make-stream", "--out", "{tmp}/o", "--data-root", "{tmp}/none"], "no such folder"),
        (["make-stream", "--out", "{tmp}/o", "--minutes", "0"], "must be positive"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    _write_stream(tmp_path / "s.wav", [], seconds=2.0)
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0] == "detect":
        argv += ["--checkpoint", "synthetic-v1-quartznet-3x1"]
    code, _, err = _run(capsys, *argv)
    assert code == 2 and message in err
