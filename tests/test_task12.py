"""The 12-class task: ten keywords, _silence_ and _unknown_ (TensorFlow's and NeMo's sizes)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from quartznet_tutorial.datasets.speech_commands import SpeechCommands, labels_for, task_of
from quartznet_tutorial.datasets.task12 import KEYWORDS, SILENCE, UNKNOWN

OTHERS = ("bed", "bird", "cat", "dog", "happy", "house")


@pytest.fixture
def tree(make_speech_commands):
    """Ten keywords and six other words, 10 clips each; two 20 s background recordings."""
    root = make_speech_commands(words=(*KEYWORDS, *OTHERS), per_word=10, background=0)
    rng = np.random.default_rng(1)
    for name in ("hum", "hiss"):
        noise = (0.5 * rng.uniform(-1, 1, 20 * 16_000)).astype(np.float32)
        sf.write(root / "_background_noise_" / f"{name}.wav", noise, 16_000, subtype="PCM_16")
    return root


def test_labels_are_silence_unknown_then_tensorflows_keywords():
    assert labels_for(1, "12") == labels_for(2, "12") == [SILENCE, UNKNOWN, *KEYWORDS]
    assert task_of(list(reversed(labels_for(2, "12")))) == "12"
    assert task_of(labels_for(1)) == "all"
    assert task_of(["yes", "no"]) is None
    with pytest.raises(ValueError, match="unknown task '10'"):
        labels_for(1, "10")


@pytest.mark.parametrize("subset", ["training", "validation", "testing"])
def test_split_sizes_and_proportions(tree, subset):
    all_words = SpeechCommands(tree, subset, task="all", version=1)
    ds = SpeechCommands(tree, subset, task="12", version=1)
    keywords = sum(f.parent.name in KEYWORDS for f in all_words.files)
    counts = torch.bincount(ds.targets_tensor(), minlength=12).tolist()
    assert counts[2:] == [keywords // 10] * 10  # every keyword clip, as the official list says
    expected = math.ceil(keywords * 10 / 100)
    assert counts[0] == len(ds.silence) == expected
    assert counts[1] == expected
    assert len(ds) == len(ds.waveforms(progress=False)) == keywords + 2 * expected
    # unknown clips are clips of the other words, from this split only
    unknown = [f for f, t in zip(ds.files, ds.targets, strict=False) if t == 1]
    assert {f.parent.name for f in unknown} <= set(OTHERS)
    assert set(unknown) <= set(all_words.files)


def test_percentages_change_the_counts(tree):
    ds = SpeechCommands(tree, "training", task="12", silence_percentage=25, unknown_percentage=5)
    counts = torch.bincount(ds.targets_tensor(), minlength=12).tolist()
    assert counts[0] == math.ceil(80 * 25 / 100) and counts[1] == math.ceil(80 * 5 / 100)


def test_choices_are_seeded_and_differ_between_seeds(tree):
    a = SpeechCommands(tree, "training", task="12", cache=False)
    b = SpeechCommands(tree, "training", task="12", cache=False)
    c = SpeechCommands(tree, "training", task="12", cache=False, seed=1)
    assert a.files == b.files and a.silence == b.silence
    assert torch.equal(a.waveforms(progress=False), b.waveforms(progress=False))
    assert (a.files, a.silence) != (c.files, c.silence)


def test_silence_is_background_noise_at_a_uniform_volume(tree):
    ds = SpeechCommands(tree, "testing", task="12")
    paths = {clip.noise for clip in ds.silence}
    noises = {p.name: torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in paths}
    rows = ds.waveforms(progress=False)[len(ds.files) :].float() / 32768
    assert len(rows) == len(ds.silence) > 0
    for row, clip in zip(rows, ds.silence, strict=True):
        assert 0.0 <= clip.volume < 1.0
        frames = len(noises[clip.noise.name])
        # the test split's silence comes from the last 10% of each recording
        assert 0.9 * frames <= clip.offset <= frames - 16_000
        cut = noises[clip.noise.name][clip.offset : clip.offset + 16_000] * clip.volume
        assert torch.allclose(row, cut, atol=1 / 32768)
        item, label = ds[len(ds.files) + ds.silence.index(clip)]
        assert label == 0 and torch.allclose(item, cut, atol=1e-7)


def test_silence_needs_long_enough_recordings(make_speech_commands):
    root = make_speech_commands(words=KEYWORDS, per_word=3)  # 1 s recordings
    with pytest.raises(ValueError, match=r"_background_noise_: no recording .* long enough"):
        SpeechCommands(root, "testing", task="12")
    ds = SpeechCommands(root, "testing", task="12", silence_percentage=0)
    assert ds.silence == [] and len(ds) == 10


def test_no_keywords_is_a_clear_error(make_speech_commands):
    root = make_speech_commands(words=("bed", "cat"), per_word=3)
    with pytest.raises(ValueError, match="no clips of the ten keywords"):
        SpeechCommands(root, "testing", task="12")


def test_the_v2_test_archive_is_read_as_it_is(tmp_path):
    root = tmp_path / "speech_commands_test_set_v0.02"
    rng = np.random.default_rng(0)
    for c, label in enumerate(labels_for(2, "12")):
        (root / label).mkdir(parents=True)
        for n in range(2):
            name = f"{'bed_' if label == UNKNOWN else ''}{c:04x}{n:04x}_nohash_0.wav"
            clip = (0.1 * rng.standard_normal(16_000)).astype(np.float32)
            sf.write(root / label / name, clip, 16_000, subtype="PCM_16")
    ds = SpeechCommands(root, "testing", version=2, task="12")
    assert len(ds) == 24 and ds.silence == []
    assert torch.bincount(ds.targets_tensor()).tolist() == [2] * 12
    for f, t in zip(ds.files, ds.targets, strict=True):
        assert ds.labels[t] == f.parent.name
    with pytest.raises(ValueError, match="only a test split: pass task='12'"):
        SpeechCommands(root, "testing", version=2)
    with pytest.raises(ValueError, match="subset='testing'"):
        SpeechCommands(root, "training", version=2, task="12")


def test_bad_percentages(tree):
    with pytest.raises(ValueError, match="silence_percentage=-1"):
        SpeechCommands(tree, task="12", silence_percentage=-1)


@pytest.mark.slow
def test_train_records_the_task_in_the_checkpoints_labels(tree, tmp_path, capsys):
    from quartznet_tutorial.checkpoints.loading import load_classifier
    from quartznet_tutorial.cli.main import main

    out = tmp_path / "run"
    argv = ["-q", "train", "--data-root", str(tree), "--task", "12", "--epochs", "1"]
    argv += ["--batch-size", "16", "--max-steps", "2", "--out-dir", str(out), "--device", "cpu"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "12"
    assert load_classifier(out / "last.pt").labels == labels_for(1, "12")


def test_evaluate_reads_the_task_from_the_checkpoint(tree, tmp_path, capsys):
    from quartznet_tutorial import Classifier, build_model
    from quartznet_tutorial.checkpoints.checkpoint import save_checkpoint
    from quartznet_tutorial.cli.main import main

    classifier = Classifier(build_model("quartznet-3x1", num_classes=12), labels_for(1, "12"))
    checkpoint = save_checkpoint(tmp_path / "m.pt", {"classifier": classifier.to_dict()})
    args = ["-q", "evaluate", "--checkpoint", str(checkpoint), "--data-root", str(tree)]
    for extra in ([], ["--task", "12"]):
        assert main([*args, "--json", *extra]) == 0
        record = json.loads(capsys.readouterr().out)
        assert record["labels"] == labels_for(1, "12") and record["num_clips"] == 10 + 2 * 1
    assert main([*args, "--task", "all"]) == 2
    assert "labels are not the data's" in capsys.readouterr().err
