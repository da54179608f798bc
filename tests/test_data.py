"""SpeechCommands: official splits, fixed labels, the waveform cache, clear errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from quartznet_tutorial import AudioError, SpeechCommands, load_audio
from quartznet_tutorial.datasets import speech_commands as data_module
from quartznet_tutorial.datasets import subsets
from quartznet_tutorial.datasets.speech_commands import (
    V1_WORDS,
    V2_WORDS,
    _write_cache,
    labels_for,
    version_of,
)
from quartznet_tutorial.datasets.subsets import rebalance


def test_labels_are_fixed_by_version():
    assert labels_for(1) == sorted(V1_WORDS) and len(V1_WORDS) == 30
    assert labels_for(2) == sorted(V2_WORDS) and len(V2_WORDS) == 35
    assert set(V2_WORDS) - set(V1_WORDS) == {"backward", "follow", "forward", "learn", "visual"}
    with pytest.raises(ValueError, match="choose 1 or 2"):
        labels_for(3)


def test_official_splits_partition_the_clips(speech_commands):
    parts = {s: SpeechCommands(speech_commands, s) for s in ("training", "validation", "testing")}
    files = {s: set(d.files) for s, d in parts.items()}
    every_clip = {p for w in ("yes", "no", "up", "down") for p in (speech_commands / w).glob("*")}
    assert files["training"] | files["validation"] | files["testing"] == every_clip
    assert sum(len(d) for d in parts.values()) == len(every_clip) == 20
    assert (len(parts["validation"]), len(parts["testing"])) == (4, 4)
    listed = (speech_commands / "validation_list.txt").read_text().split()
    assert sorted(files["validation"]) == sorted(speech_commands / rel for rel in listed)
    for d in parts.values():
        assert d.labels == labels_for(1)  # 30 classes though only 4 folders exist
        assert [d.labels[t] for t in d.targets] == [p.parent.name for p in d.files]
        assert d.files == sorted(d.files)


@pytest.mark.parametrize("subset", ["training", "validation", "testing"])
def test_splits_match_torchaudio(make_speech_commands, subset):
    """torchaudio's SPEECHCOMMANDS is an independent reading of the same split rules."""
    root = make_speech_commands(per_word=7)
    nested = root.parent / "ta" / "SpeechCommands" / "speech_commands_v0.01"
    nested.parent.mkdir(parents=True)
    root.rename(nested)
    theirs = torchaudio.datasets.SPEECHCOMMANDS(
        root.parent / "ta", url="speech_commands_v0.01", subset=subset
    )
    ours = SpeechCommands(root.parent / "ta", subset)  # finds torchaudio's nested layout
    assert ours.root == nested
    # their paths are relative to root/SpeechCommands: drop "speech_commands_v0.01/"
    expected = sorted(theirs.get_metadata(i)[0].split("/", 1)[1] for i in range(len(theirs)))
    assert [p.relative_to(nested).as_posix() for p in ours.files] == expected


def test_items_are_padded_at_the_end_or_truncated(speech_commands):
    ds = SpeechCommands(speech_commands, "validation")  # clip 0 of each word: 9,000 samples
    x, target = ds[0]
    raw = load_audio(ds.files[0])
    assert x.shape == (16_000,) and x.dtype == torch.float32 and raw.shape == (9_000,)
    torch.testing.assert_close(x[:9_000], raw)
    assert x[9_000:].abs().max() == 0
    assert ds.labels[target] == ds.files[0].parent.name
    short = SpeechCommands(speech_commands, "validation", clip_samples=4_000)
    torch.testing.assert_close(short[0][0], raw[:4_000])


def test_waveforms_are_int16_rows_of_the_items_and_cached(speech_commands, monkeypatch):
    ds = SpeechCommands(speech_commands, "training")
    w = ds.waveforms(progress=False)
    assert w.dtype == torch.int16 and w.shape == (len(ds), 16_000)
    for i in range(len(ds)):
        torch.testing.assert_close(w[i].float() / 32768, ds[i][0], atol=0, rtol=0)
    assert torch.equal(ds.targets_tensor(), torch.tensor(ds.targets))

    def no_reading(*args, **kwargs):
        raise AssertionError("the second call must come from the cache")

    monkeypatch.setattr("quartznet_tutorial.datasets.speech_commands.load_audio", no_reading)
    again = SpeechCommands(speech_commands, "training").waveforms(progress=False)
    assert torch.equal(again, w)


def test_lengths_are_the_recorded_samples_and_cached(speech_commands, monkeypatch):
    ds = SpeechCommands(speech_commands, "training")
    expected = [load_audio(f).shape[0] for f in ds.files]
    assert 9_000 in expected and 16_000 in expected  # the fixture has short clips
    assert ds.lengths_tensor(progress=False).tolist() == expected
    monkeypatch.setattr(
        "quartznet_tutorial.datasets.speech_commands.load_audio", None
    )  # cache only from here
    again = SpeechCommands(speech_commands, "training")
    assert again.lengths_tensor(progress=False).tolist() == expected


def test_cache_notices_a_changed_file(speech_commands):
    ds = SpeechCommands(speech_commands, "training")
    before = ds.waveforms(progress=False)
    sf.write(ds.files[0], np.zeros(16_000, np.float32), 16_000, subtype="PCM_16")
    after = SpeechCommands(speech_commands, "training").waveforms(progress=False)
    assert before[0].abs().max() > 0 and after[0].abs().max() == 0
    assert torch.equal(before[1:], after[1:])


def test_cache_key_follows_the_clip_list_and_files_without_pathlib_per_call(
    speech_commands, monkeypatch
):
    ds = SpeechCommands(speech_commands, "training")
    key = ds._cache_key()
    extra = speech_commands / "yes" / "ffffffff_nohash_0.wav"
    extra.write_bytes(ds.files[0].read_bytes())
    more = SpeechCommands(speech_commands, "training")
    assert len(more) == len(ds) + 1 and more._cache_key() != key  # another list, another cache
    extra.unlink()
    ds.waveforms(progress=False)

    def no_parsing(*args, **kwargs):
        raise AssertionError("the key and the cached read must not parse paths per call")

    monkeypatch.setattr(ds, "_rel", no_parsing)
    monkeypatch.setattr(data_module, "_folder", no_parsing)
    assert ds._cache_key() == key
    ds.waveforms(progress=False)  # from the cache, with the same files and targets
    sf.write(ds.files[0], np.zeros(16_000, np.float32), 16_000, subtype="PCM_16")
    assert ds._cache_key() != key  # a changed file is still noticed by the same instance


def test_background_noise_is_not_a_class(speech_commands):
    ds = SpeechCommands(speech_commands)
    noises = ds.background_noise()
    assert len(noises) == 2 and all(n.dtype == torch.float32 and n.dim() == 1 for n in noises)
    assert "_background_noise_" not in {p.parent.name for p in ds.files}
    for p in (speech_commands / "_background_noise_").iterdir():
        p.unlink()
    assert ds.background_noise() == []


def test_bad_clip_raises_naming_the_file(speech_commands):
    ds = SpeechCommands(speech_commands)
    ds.files[2].write_bytes(b"not audio")
    with pytest.raises(AudioError, match=f"^{ds.files[2]}: not a readable audio file"):
        ds[2]
    with pytest.raises(AudioError, match=str(ds.files[2])):
        ds.waveforms(progress=False)


def test_skip_bad_files_records_and_drops_them(speech_commands, caplog):
    bad = sorted((speech_commands / "up").glob("*.wav"))[3]  # a training clip
    bad.write_bytes(b"")
    full = len(SpeechCommands(speech_commands))
    with caplog.at_level(logging.WARNING, logger="quartznet_tutorial.datasets.speech_commands"):
        ds = SpeechCommands(speech_commands, skip_bad_files=True)
    assert f"skipped 1 unreadable clips of {speech_commands}: up/{bad.name}" in caplog.text
    assert len(ds) == full - 1 and bad not in ds.files
    assert [p for p, _ in ds.skipped] == [bad] and "not a readable" in ds.skipped[0][1]
    w = ds.waveforms(progress=False)  # from the cache the constructor wrote
    assert w.shape[0] == len(ds) == len(ds.targets_tensor())
    assert [ds.labels[t] for t in ds.targets] == [p.parent.name for p in ds.files]
    with pytest.raises(AudioError, match=str(bad)):  # the cache remembers, without skipping
        SpeechCommands(speech_commands).waveforms(progress=False)


def test_missing_root_and_lists_say_what_to_do(tmp_path, speech_commands):
    with pytest.raises(FileNotFoundError, match="no such folder; pass the extracted"):
        SpeechCommands(tmp_path / "nowhere")
    a_file = (
        speech_commands / "yes" / sorted(p.name for p in (speech_commands / "yes").iterdir())[0]
    )
    with pytest.raises(NotADirectoryError, match=f"^{a_file}: is a file, not a folder; pass"):
        SpeechCommands(a_file)
    (speech_commands / "testing_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"testing_list\.txt: missing; .*extract"):
        SpeechCommands(speech_commands)


def test_list_naming_a_missing_file(speech_commands):
    with (speech_commands / "validation_list.txt").open("a") as f:
        f.write("\nyes/ghost_nohash_0.wav\n")
    with pytest.raises(ValueError, match=r"line 6 names yes/ghost_nohash_0\.wav, which is not"):
        SpeechCommands(speech_commands)


def test_clip_in_both_lists(speech_commands):
    first = (speech_commands / "validation_list.txt").read_text().split()[0]
    with (speech_commands / "testing_list.txt").open("a") as f:
        f.write(first + "\n")
    with pytest.raises(ValueError, match=f"{first} is in both"):
        SpeechCommands(speech_commands, "testing")


def test_folder_outside_the_label_set(make_speech_commands):
    root = make_speech_commands(words=("yes", "learn", "visual"))
    with pytest.raises(
        ValueError, match=r"\['learn', 'visual'\] are not .* V1 .*version=2, --dataset-version 2"
    ):
        SpeechCommands(root, version=1)
    assert len(SpeechCommands(root, version=2).labels) == 35
    (root / "extra").mkdir()
    with pytest.raises(ValueError, match=r"\['extra'\] are not Speech Commands V2 words;"):
        SpeechCommands(root, version=2)


def test_bad_arguments(speech_commands):
    with pytest.raises(ValueError, match="unknown subset 'train'; choose one of"):
        SpeechCommands(speech_commands, "train")
    with pytest.raises(ValueError, match="choose 1 or 2"):
        SpeechCommands(speech_commands, version=0)
    with pytest.raises(ValueError, match="clip_samples must be positive"):
        SpeechCommands(speech_commands, clip_samples=0)


def test_cache_write_keeps_a_concurrent_winner(tmp_path):
    folder = tmp_path / "c" / "key"
    _write_cache(folder, np.ones((2, 3), np.int16), {"files": ["a", "b"], "skipped": []})
    _write_cache(folder, np.zeros((2, 3), np.int16), {"files": ["a", "b"], "skipped": []})
    assert np.load(folder / "waveforms.npy").min() == 1
    assert sorted(p.name for p in folder.parent.iterdir()) == ["key"]  # no temporaries left


def test_skip_bad_files_reads_once_into_one_cache(speech_commands, monkeypatch, capsys):
    import quartznet_tutorial.datasets.speech_commands as data

    bad = sorted((speech_commands / "yes").glob("*.wav"))[3]
    bad.write_bytes(b"junk")
    reads, fallbacks = [], []
    fast = data.read_pcm16
    monkeypatch.setattr(data, "read_pcm16", lambda path: reads.append(path) or fast(path))
    decode = data.decode_audio
    monkeypatch.setattr(data, "decode_audio", lambda path: fallbacks.append(path) or decode(path))
    ds = SpeechCommands(speech_commands, skip_bad_files=True, progress=False)
    assert len(reads) == len(ds) + 1 and capsys.readouterr().err == ""  # no progress bar
    assert fallbacks == [bad]  # libsndfile only for the file the fast reader declines
    ds.waveforms(progress=False)
    ds.lengths_tensor(progress=False)
    assert len(reads) == len(ds) + 1 and len(fallbacks) == 1  # from the cache written first
    caches = speech_commands.parent / "cache" / "speech-commands"
    assert len(list(caches.iterdir())) == 1


def test_skip_warning_names_ten_clips_and_counts_the_rest(make_speech_commands, caplog):
    root = make_speech_commands(per_word=6)
    training = SpeechCommands(root).files  # 4 words x 4 clips
    for path in training[:12]:
        path.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="quartznet_tutorial.datasets.speech_commands"):
        SpeechCommands(root, skip_bad_files=True, progress=False)
    names = ", ".join(p.relative_to(root).as_posix() for p in training[:10])
    assert caplog.messages == [f"skipped 12 unreadable clips of {root}: {names} and 2 more"]


def test_a_clip_at_another_rate_suggests_what_a_dataset_reader_can_do(speech_commands):
    ds = SpeechCommands(speech_commands, "validation")
    sf.write(ds.files[0], np.zeros(8_000, np.float32), 8_000, subtype="PCM_16")
    for read in (lambda: ds[0], lambda: ds.waveforms(progress=False)):
        with pytest.raises(AudioError, match=f"^{ds.files[0]}: expected 16000 Hz") as info:
            read()
        assert "resample" not in str(info.value) and "(--skip-bad-files)" in str(info.value)


def test_rebalance_repeats_each_words_clips_up_to_the_largest_count(make_speech_commands):
    root = make_speech_commands(words=("yes", "no", "up"), per_word=5)
    train = SpeechCommands(root, "training", cache=False)
    keep = [i for i, t in enumerate(train.targets) if t != train.labels.index("no") or i % 2]
    sub = subsets._Subset(train, torch.tensor(keep))  # "no" loses some clips
    counts = torch.bincount(sub.targets_tensor(), minlength=len(train.labels))
    balanced = rebalance(sub)
    after = torch.bincount(balanced.targets_tensor(), minlength=len(train.labels))
    most = int(counts.max())
    assert after.tolist() == [most if n else 0 for n in counts.tolist()]
    # NeMo's choice of repeats: RandomState(0).choice(n, most - n) among the word's clips.
    word = int(torch.argmin(torch.where(counts > 0, counts, most + 1)))
    clips = (sub.targets_tensor() == word).nonzero().flatten()
    n = len(clips)
    extra = np.random.RandomState(0).choice(n, most - n, replace=True)
    added = balanced.index[len(sub) :]
    assert sorted(added.tolist()) == sorted(clips[extra].tolist())
    assert torch.equal(balanced.waveforms()[: len(sub)], sub.waveforms())
    assert rebalance(train).index.tolist() == list(range(len(train)))  # balanced already


def test_version_of_names_the_version_whose_words_a_model_knows():
    assert version_of(list(reversed(V1_WORDS))) == 1
    assert version_of(V2_WORDS) == 2
    assert version_of(["yes", "no"]) is None
