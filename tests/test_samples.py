"""The real Speech Commands clips shipped as package data: integrity, loading, evaluation."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from quartznet_tutorial import build_model, load_audio
from quartznet_tutorial.checkpoints.checkpoint import save_checkpoint
from quartznet_tutorial.datasets.real_clips import (
    hash_split,
    real_clips,
    real_clips_root,
    verify_real_clips,
)
from quartznet_tutorial.datasets.speech_commands import V1_WORDS, V2_WORDS, labels_for
from quartznet_tutorial.evaluation.accuracy import EvalResult
from quartznet_tutorial.evaluation.real import evaluate_real, wilson_interval
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.tutorial.training_pages import gap_sentence, per_word_markdown


def _listed_clips() -> list[str]:
    """``word/name.wav`` of every word clip in SHA256SUMS (not the background noise)."""
    lines = (real_clips_root() / "SHA256SUMS").read_text().splitlines()
    rels = [line.split(maxsplit=1)[1] for line in lines if line.strip()]
    return sorted(r for r in rels if not r.startswith("_background_noise_/"))


def _classifier(version: int = 1, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    labels = labels_for(version)
    return Classifier(build_model("quartznet-3x1", num_classes=len(labels)), labels).eval()


def test_checksums_match_and_the_folder_ships_its_licence():
    root = real_clips_root()
    assert verify_real_clips() == 134  # 132 word clips and 2 background noises
    assert len(_listed_clips()) == 132
    assert "CC BY 4.0" in (root / "SOURCES.md").read_text()
    assert "Attribution 4.0 International" in (root / "LICENSE").read_text()


def test_verify_catches_an_altered_a_missing_and_an_unlisted_clip(tmp_path):
    copy = shutil.copytree(real_clips_root(), tmp_path / "clips")
    clip = copy / _listed_clips()[0]
    data = bytearray(clip.read_bytes())
    data[-1] ^= 1
    clip.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"SHA-256 .* altered"):
        verify_real_clips(copy)
    clip.unlink()
    with pytest.raises(ValueError, match="missing"):
        verify_real_clips(copy)
    shutil.copy(real_clips_root() / _listed_clips()[0], clip)
    shutil.copy(clip, copy / "yes" / "extra.wav")
    with pytest.raises(ValueError, match="not in"):
        verify_real_clips(copy)


@pytest.mark.parametrize(("version", "words"), [(1, V1_WORDS), (2, V2_WORDS)])
def test_real_clips_holds_the_versions_words_only(version, words):
    clips = real_clips(version)
    expected = [r for r in _listed_clips() if r.split("/")[0] in words]
    assert [f.relative_to(real_clips_root()).as_posix() for f in clips.files] == expected
    assert clips.labels == list(words)
    per_word = Counter(clips.labels[t] for t in clips.targets)
    assert set(per_word) == set(words)  # every word of the version has clips...
    assert min(per_word.values()) >= 3  # ...from at least three speakers
    for word, n in per_word.items():
        speakers = {
            s for s, t in zip(clips.speakers, clips.targets, strict=True) if clips.labels[t] == word
        }
        assert len(speakers) == n
    assert len(clips.background_noise()) == 2


def test_clips_are_padded_to_one_second_as_test_clips_are():
    clips = real_clips(1)
    waves = clips.waveforms(progress=False)
    lengths = clips.lengths_tensor(progress=False)
    assert waves.shape == (len(clips), 16_000) and waves.dtype == torch.int16
    assert lengths.max() == 16_000
    short = int(torch.argmin(lengths))
    n = int(lengths[short])
    assert n < 16_000  # some clips of the sample are shorter than a second
    audio = load_audio(clips.files[short])
    wave, target = clips[short]
    assert audio.shape == (n,) and wave.shape == (16_000,)
    torch.testing.assert_close(wave[:n], audio)
    assert not wave[n:].any()
    torch.testing.assert_close(waves[short].float() / 32768, wave)
    assert clips.labels[target] == clips.files[short].parent.name


def test_predict_runs_on_real_clips():
    clips = real_clips(1)
    classifier = _classifier()
    waves = torch.stack([clips[i][0] for i in range(0, len(clips), 40)])  # (3, 16000)
    guesses = classifier.predict(waves, top_k=3)
    assert len(guesses) == len(waves)
    for top in guesses:
        assert len(top) == 3
        assert all(word in clips.labels for word, _ in top)
        probs = [p for _, p in top]
        assert probs == sorted(probs, reverse=True)
        assert 0 < sum(probs) <= 1 + 1e-6


def test_evaluate_real_counts_every_clip_and_matches_a_direct_run(tmp_path):
    clips = real_clips(1)
    classifier = _classifier()
    result = evaluate_real(classifier)
    assert isinstance(result, EvalResult)
    assert result.labels == clips.labels
    assert result.num_clips == len(clips)
    per_word = np.bincount(clips.targets, minlength=30)
    assert result.confusion.sum(axis=1).tolist() == per_word.tolist()
    with torch.no_grad():
        predicted = classifier(clips.waveforms().float() / 32768).argmax(-1)
    assert result.accuracy == pytest.approx(
        (predicted == clips.targets_tensor()).float().mean().item()
    )
    # From a checkpoint, and with the version read from a V2 classifier's labels.
    path = save_checkpoint(tmp_path / "best.pt", {"classifier": classifier.to_dict()})
    np.testing.assert_array_equal(evaluate_real(path).confusion, result.confusion)
    assert evaluate_real(_classifier(version=2)).num_clips == len(real_clips(2))


def test_evaluate_real_refuses_what_it_cannot_score():
    with pytest.raises(ValueError, match="pass version=1 or 2"):
        evaluate_real(build_model("quartznet-3x1", num_classes=30))
    words = ["a", "b", "c"]
    other = Classifier(build_model("quartznet-3x1", num_classes=3), words)
    with pytest.raises(ValueError, match="not the words of Speech Commands"):
        evaluate_real(other)


def test_hash_split_agrees_with_the_provenance_table():
    rows = [
        [cell.strip().strip("`") for cell in line.split("|")[1:-1]]
        for line in (real_clips_root() / "SOURCES.md").read_text().splitlines()
        if line.startswith("| `") and not line.startswith("| `_background_noise_")
    ]
    assert len(rows) == 132
    splits = Counter()
    for row in rows:
        assert hash_split(row[0]) == row[-1], row[0]
        splits[row[-1]] += 1
    assert set(splits) == {"training", "validation", "testing"}  # the rule's three branches


def test_wilson_interval():
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_per_word_markdown():
    confusion = np.array([[2, 1, 0], [0, 0, 0], [3, 1, 0]])
    table = per_word_markdown(EvalResult(["yes", "no", "up"], confusion, 0.0))
    lines = table.splitlines()
    assert lines[0] == "| word said | clips | right | heard instead |"
    assert lines[2:] == ["| yes | 3 | 2 | no |", "| up | 4 | 0 | yes ×3, no |"]


def test_audio_table():
    pytest.importorskip("IPython")
    from quartznet_tutorial.tutorial.plots import audio_table

    clips = real_clips(1)
    html = audio_table([[clips[0][0], clips[1][0]]], ["bed"], ["first", "second"]).data
    assert html.count("<audio") == 2 and "<th>second</th>" in html
    with pytest.raises(ValueError, match="row 'bed' has 1 clips for 2 columns"):
        audio_table([[clips[0][0]]], ["bed"], ["first", "second"])


def test_gap_sentence_follows_the_numbers():
    def result(right: int, total: int) -> EvalResult:
        confusion = np.array([[right, total - right], [0, 0]])  # two words, all clips of one
        return EvalResult(["yes", "no"], confusion, 0.0)

    far = gap_sentence("m", result(95, 100), result(6, 12), "synthetic-v1")
    assert far.startswith("`m` classifies 95.0% of the 100 test clips of synthetic-v1 and 50.0%")
    assert "clearly below its test accuracy, and not clearly above chance (50.0%" in far
    near = gap_sentence("m", result(90, 100), result(92, 100), "speech-commands-v1")
    assert "not clearly different from its test accuracy" in near
    assert "and clearly above chance" in near
    assert "clearly above its test accuracy" in gap_sentence(
        "m", result(50, 100), result(99, 100), "x"
    )
