"""The synthetic Speech Commands set: layout, determinism, cache, speakers, and that it trains."""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from quartznet_tutorial.datasets.speech_commands import SpeechCommands, labels_for
from quartznet_tutorial.synthetic import espeak as synthetic
from quartznet_tutorial.synthetic import espeak_ng as espeak
from quartznet_tutorial.synthetic.espeak import make_synthetic
from quartznet_tutorial.synthetic.speakers import (
    ACCENTS,
    VOICE_VARIANTS,
    Speaker,
    make_speakers,
    run_in_workers,
    split_speakers,
)

WORDS = ["yes", "no", "sheila"]  # short, long, and a name eSpeak must spell out of its lexicon
NAME = re.compile(r"^[0-9a-f]{8}_nohash_\d+\.wav$")


def _make(root: Path, **kwargs) -> Path:
    args = {"words": WORDS, "per_word": 6, "speakers": 10, "seed": 0, "workers": 0}
    return make_synthetic(root, **{**args, **kwargs}, progress=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("synthetic") / "v1")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.wav"))}


def _split_lists(root: Path) -> dict[str, list[str]]:
    lists = {
        s: (root / f"{s}_list.txt").read_text().splitlines() for s in ("validation", "testing")
    }
    listed = {rel for rels in lists.values() for rel in rels}
    clips = {p.relative_to(root).as_posix() for w in WORDS for p in (root / w).glob("*.wav")}
    return {"training": sorted(clips - listed), **lists}


def test_layout_is_speech_commands(tree):
    folders = sorted(p.name for p in tree.iterdir() if p.is_dir())
    assert folders == sorted([*WORDS, "_background_noise_"])
    for word in WORDS:
        names = sorted(p.name for p in (tree / word).iterdir())
        assert len(names) == 6 and all(NAME.match(n) for n in names), names
    for path in tree.glob("[!_]*/*.wav"):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (16_000, 1, 16_000), path
        assert (info.format, info.subtype) == ("WAV", "PCM_16"), path
    noises = sorted(p.name for p in (tree / "_background_noise_").glob("*.wav"))
    assert noises == ["brown_noise.wav", "hum_noise.wav", "pink_noise.wav", "white_noise.wav"]
    for path in (tree / "_background_noise_").glob("*.wav"):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16"), path
        assert info.frames >= 30 * 16_000, path  # long recordings to cut noise from
    for split, rels in _split_lists(tree).items():
        assert rels, f"{split} is empty"
        assert all((tree / rel).is_file() and "\\" not in rel for rel in rels)


def test_every_clip_holds_a_word_above_the_noise(tree):
    for path in tree.glob("[!_]*/*.wav"):
        x, _ = sf.read(path, dtype="float32")
        frames = x[: len(x) // 160 * 160].reshape(-1, 160)
        energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        # speech frames stand well above the quietest ones (the SNR is at least 5 dB)
        assert energy_db.max() - np.percentile(energy_db, 10) > 6, path
        assert np.abs(x).max() > 10 ** (-40 / 20), path


def test_splits_are_disjoint_by_speaker(tree):
    speakers = {
        split: {rel.split("/")[1].split("_nohash_")[0] for rel in rels}
        for split, rels in _split_lists(tree).items()
    }
    assert not speakers["training"] & speakers["validation"]
    assert not speakers["training"] & speakers["testing"]
    assert not speakers["validation"] & speakers["testing"]
    assert sum(map(len, speakers.values())) == 10


def test_split_speakers_takes_exact_fractions_by_hash():
    people = make_speakers(200, seed=3)
    splits = split_speakers(people)
    counts = {s: list(splits.values()).count(s) for s in ("training", "validation", "testing")}
    assert counts == {"training": 160, "validation": 20, "testing": 20}
    # by hash, not by position: the first speakers drawn are not all in one split
    assert len({splits[p.name] for p in people[:30]}) == 3
    with pytest.raises(ValueError, match="at least 3 speakers"):
        split_speakers(people[:2])


def test_speakers_vary_and_depend_only_on_seed_and_index():
    people = make_speakers(60, seed=0)
    assert make_speakers(60, seed=0) == people
    assert make_speakers(10, seed=0) == people[:10]
    assert make_speakers(10, seed=1) != people[:10]
    assert len({p.name for p in people}) == 60
    assert len({p.voice.split("+")[0] for p in people}) >= 6  # accents
    assert len({p.voice.split("+")[1] for p in people}) >= 30  # voice variants
    assert np.std([p.pitch for p in people]) > 10 and np.std([p.rate for p in people]) > 20
    assert 0 < sum(p.rt60 > 0 for p in people) < 60  # some rooms reverberate, some are dry


def test_same_seed_gives_identical_bytes_however_scheduled(tree, tmp_path):
    again = _files(_make(tmp_path / "two-workers", workers=2))
    assert again == _files(tree)
    other = _files(_make(tmp_path / "seed-1", seed=1))
    assert other.keys() != again.keys()  # other speaker names
    assert (
        other["_background_noise_/white_noise.wav"] != again["_background_noise_/white_noise.wav"]
    )


def test_second_call_does_nothing(tree, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in tree.rglob("*")}

    def fail(*args, **kwargs):
        raise AssertionError("synthesised again")

    monkeypatch.setattr(synthetic, "synthesize", fail)
    assert _make(tree) == tree
    assert {p: p.stat().st_mtime_ns for p in tree.rglob("*")} == before


def test_an_interrupted_run_is_completed_identically(tree, tmp_path):
    root = _make(tmp_path / "run")
    stamp = json.loads((root / ".synthetic.json").read_text())
    (root / ".synthetic.json").write_text(json.dumps({**stamp, "complete": False}))
    lost = sorted((root / "no").glob("*.wav"))[-1]
    lost.unlink()
    (root / "testing_list.txt").unlink()
    _make(root)
    assert _files(root) == _files(tree)
    assert (root / "testing_list.txt").read_text() == (tree / "testing_list.txt").read_text()
    assert json.loads((root / ".synthetic.json").read_text())["complete"] is True


def test_refuses_folders_it_did_not_make(tree, tmp_path):
    foreign = tmp_path / "speech_commands"
    foreign.mkdir()
    (foreign / "validation_list.txt").write_text("")
    with pytest.raises(ValueError, match="not made by make_synthetic"):
        _make(foreign)
    with pytest.raises(ValueError, match="other arguments"):
        _make(tree, per_word=7)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"words": ["yes", "Yes"]}, "more than once"),
        ({"words": []}, "at least 1"),
        ({"words": "yes"}, "not one string"),
        ({"words": ["yes", "../up"]}, "folder names"),
        ({"words": ["turn on"]}, "folder names"),
        ({"words": ["_silence_"]}, "folder names"),
        ({"words": [""]}, "folder names"),
        ({"per_word": 0}, "per_word"),
        ({"version": 3}, "version"),
        ({"workers": -1}, "workers"),
        ({"speakers": 2}, "at least 3 speakers"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _make(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_loader_reads_it_like_real_speech_commands(tree, make_speech_commands):
    real = make_speech_commands(words=WORDS, per_word=5)
    for root in (tree, real):
        lists = _split_lists(root)
        for subset in ("training", "validation", "testing"):
            ds = SpeechCommands(root, subset, version=1, cache=False)
            assert ds.labels == labels_for(1)  # the version's 30 words, whatever is on disk
            assert [f.relative_to(root).as_posix() for f in ds.files] == sorted(lists[subset])
            waveform, target = ds[0]
            assert waveform.shape == (16_000,) and ds.labels[target] in WORDS
        noises = SpeechCommands(root, "training", cache=False).background_noise()
        assert noises and all(n.dtype == torch.float32 for n in noises)


def test_version_2_words(tmp_path):
    root = _make(tmp_path / "v2", version=2, words=["learn", "yes"], per_word=3)
    assert {p.name for p in root.iterdir() if p.is_dir()} == {"learn", "yes", "_background_noise_"}
    assert len(SpeechCommands(root, "training", version=2, cache=False).labels) == 35


def test_speaks_any_word_list_deterministically(tree, tmp_path):
    words = ["yes", "computer", "lights"]  # and two words of no Speech Commands version
    root = _make(tmp_path / "own", words=words, per_word=4)
    again = _make(tmp_path / "again", words=words, per_word=4, workers=2)
    assert _files(root) == _files(again)
    assert {p.name for p in root.iterdir() if p.is_dir()} == {*words, "_background_noise_"}
    # the first word's clips are those of the default set (each speaker says it first)
    yes = {rel: data for rel, data in _files(root).items() if rel.startswith("yes/")}
    assert len(yes) == 4 and yes == {rel: _files(tree)[rel] for rel in yes}
    assert "yes, computer, lights" in (root / "README.md").read_text()
    ds = SpeechCommands(root, "training", words=words, cache=False)
    assert ds.labels == words and {ds.labels[t] for t in ds.targets} == set(words)
    with pytest.raises(ValueError, match="not Speech Commands V1 words"):
        SpeechCommands(root, "training", cache=False)
    with pytest.raises(ValueError, match=r"\['computer'\] are not among the words"):
        SpeechCommands(root, "training", words=["lights", "yes"], cache=False)


def test_never_shares_the_engine_with_another_user_of_the_library(tree, tmp_path):
    lib_path, _ = espeak.library_paths()
    other = ctypes.CDLL(lib_path)  # another package holding eSpeak NG in this process
    try:
        with pytest.raises(RuntimeError, match="already loaded"):
            _make(tmp_path / "in-process")
        # worker processes are then spawned afresh, not forked with the library inside
        assert _files(_make(tmp_path / "spawned", workers=1)) == _files(tree)
    finally:
        espeak.unload(other._handle)


def test_a_few_training_steps_lower_the_loss(tree):
    from quartznet_tutorial import MFCC, build_model, crop_or_pad

    ds = SpeechCommands(tree, "training", cache=False)
    waveforms = torch.stack([ds[i][0] for i in range(len(ds))])
    words = sorted(WORDS)
    targets = torch.tensor([words.index(ds.labels[ds.targets[i]]) for i in range(len(ds))])
    features = crop_or_pad(MFCC()(waveforms)[0])  # (N, 64, 128)
    torch.manual_seed(0)
    model = build_model("quartznet-3x1", num_classes=len(words))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = torch.nn.functional.cross_entropy(model(features), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_speaker_is_a_plain_record():
    speaker = make_speakers(1, seed=0)[0]
    assert isinstance(speaker, Speaker) and re.fullmatch(r"[0-9a-f]{8}", speaker.name)
    assert speaker.voice.split("+")[0] in ACCENTS
    assert speaker.voice.split("+")[1] in VOICE_VARIANTS


def test_example_script_trains_and_writes_a_valid_result(tmp_path):
    import importlib.util

    from quartznet_tutorial.tutorial.results import validate_record

    path = Path(__file__).resolve().parents[1] / "examples" / "train_synthetic_3x1.py"
    spec = importlib.util.spec_from_file_location("train_synthetic_3x1", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = tmp_path / "result.json"
    argv = ["--per-word", "4", "--epochs", "1", "--batch-size", "32",
            "--data-root", str(tmp_path / "data"), "--out-dir", str(tmp_path / "run"),
            "--results", str(result)]  # fmt: skip
    assert example.main(argv) == 0
    record = validate_record(json.loads(result.read_text()), str(result))
    assert record["data"] == "synthetic-v1" and record["model"] == "quartznet-3x1"
    assert record["profile"] == "example" and record["epochs"] == 1
    assert record["data_args"]["per_word"] == 4 and record["data_args"]["speakers"] == 10


_STUCK_WORKER = """
import os, signal, sys, threading
from quartznet_tutorial.synthetic import espeak as synthetic
from quartznet_tutorial.cli.main import main

def stuck(*args):  # a worker that never finishes, as one stuck on a lock
    threading.Event().wait()

synthetic.render = stuck  # the forked workers inherit it
threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()  # to this process alone
sys.exit(main(["-q", "make-synthetic", "--out", sys.argv[1], "--words", "yes",
               "--per-word", "4", "--speakers", "3", "--workers", "2"]))
"""


def test_ctrl_c_to_the_parent_ends_the_workers_however_stuck(tmp_path, interruptible):
    """SIGINT to the parent only, while every worker is stuck: the pool is terminated and the
    command exits 130 at once, rather than waiting for the workers at exit (forever)."""
    pytest.importorskip("espeakng_loader")
    root = Path(__file__).parents[1]
    process = subprocess.Popen(
        [sys.executable, "-c", _STUCK_WORKER, str(tmp_path / "out")],
        stderr=subprocess.PIPE, text=True, cwd=root, start_new_session=True,
        env={"PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130 and err == "quartznet: interrupted\n"
    with pytest.raises(ProcessLookupError):  # no worker left behind
        os.killpg(process.pid, 0)


# --- eSpeak NG's noise: seeded, not drawn from the clock --------------------------------------

# Breathy variants (``breath`` in voices/!v): eSpeak NG 1.52 draws their breath noise from its
# own generator, which espeak_Initialize seeds from time(NULL); Reed and caleb (speechPlayer,
# ``klatt 6``) draw theirs from libc's rand().
BREATHY = ["gmw/en-GB-x-gbcwmd+f3", "gmw/en-GB-scotland+f2", "gmw/en-US-nyc+f3",
           "gmw/en-GB-x-rp+Alicia", "gmw/en-029+whisperf", "gmw/en-GB-x-gbclan+victor",
           "gmw/en+Reed", "gmw/en-US+caleb"]  # fmt: skip


def _speak(voice: str, rand_seed: int = 12345, text: str = "yes?") -> bytes:
    u = espeak.Utterance(text=text, rate=175, pitch=50, pitch_range=50, rand_seed=rand_seed)
    (speech,) = espeak.synthesize(voice, [u])
    return speech.tobytes()


def _next_second() -> None:
    """Wait until the clock's second changes (what eSpeak NG would seed itself with)."""
    import time

    second = int(time.time())
    while int(time.time()) == second:
        time.sleep(0.01)


def test_breathy_voices_do_not_depend_on_the_clock():
    first = [_speak(v) for v in BREATHY]
    _next_second()
    assert [_speak(v) for v in BREATHY] == first
    # the seed reaches every voice's breath noise: another seed, other bytes
    other = [_speak(v, rand_seed=54321) for v in BREATHY]
    assert [v for v, a, b in zip(BREATHY, first, other, strict=True) if a == b] == []


_SPEAK_EVERY_VOICE = """
import hashlib, json
from quartznet_tutorial.synthetic import espeak_ng as espeak
from quartznet_tutorial.synthetic.speakers import ACCENTS, VOICE_VARIANTS
u = espeak.Utterance(text="yes?", rate=175, pitch=50, pitch_range=50, rand_seed=12345)
print(json.dumps({
    f"{a}+{v}": hashlib.sha256(espeak.synthesize(f"{a}+{v}", [u])[0].tobytes()).hexdigest()
    for a in ACCENTS for v in VOICE_VARIANTS
}))
"""


def _in_new_process(*args: str) -> str:
    root = Path(__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=root, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_every_accent_and_variant_speaks_the_same_bytes_in_another_process():
    """One utterance per (accent, variant), in two processes run one after the other (so the
    clock's second differs between them for each voice): the same bytes for all 704."""
    first = json.loads(_in_new_process("-c", _SPEAK_EVERY_VOICE))
    assert len(first) == len(ACCENTS) * len(VOICE_VARIANTS)
    _next_second()
    second = json.loads(_in_new_process("-c", _SPEAK_EVERY_VOICE))
    assert [voice for voice in first if first[voice] != second[voice]] == []


def _hashes(root: Path) -> dict[str, str]:
    import hashlib

    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_cli_gives_identical_bytes_in_separate_processes_for_every_voice_variant(tmp_path):
    # seed 33's first 249 speakers use all 88 variants and all 8 accents
    seed, speakers = 33, 249
    people = make_speakers(speakers, seed)
    assert {p.voice.split("+")[1] for p in people} == set(VOICE_VARIANTS)
    assert {p.voice.split("+")[0] for p in people} == set(ACCENTS)
    runs = []
    for name, workers in (("a", "0"), ("b", "2")):
        out = tmp_path / name
        _in_new_process(
            "-m", "quartznet_tutorial.cli.main", "-q", "make-synthetic", "--out", str(out),
            "--words", "yes", "--per-word", str(speakers), "--speakers", str(speakers),
            "--seed", str(seed), "--workers", workers,
        )  # fmt: skip
        runs.append(_hashes(out))
        _next_second()
    assert len(runs[0]) == speakers + 9  # clips, 4 noises and their README, lists, README, stamp
    assert [rel for rel in runs[0] if runs[0][rel] != runs[1].get(rel)] == []


# --- options that widen the data (background recordings, warp) -------------------------------


def _small(root: Path, **kwargs) -> Path:
    args = {"words": ["yes", "no"], "per_word": 3, "speakers": 3, "seed": 0, "workers": 0}
    return make_synthetic(root, **{**args, **kwargs}, progress=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return _small(tmp_path_factory.mktemp("synthetic-small") / "plain")


@pytest.fixture(scope="module")
def hum_dir(tmp_path_factory) -> Path:
    """A 'recording' that is easy to find in a clip: a 3 kHz tone, 2 s."""
    folder = tmp_path_factory.mktemp("noise")
    t = np.arange(2 * 16000) / 16000
    sf.write(folder / "tone.wav", (0.5 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32), 16000)
    return folder


def _tone_share(path: Path) -> float:
    """The fraction of a clip's energy within 50 Hz of 3 kHz."""
    x, rate = sf.read(path)
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spectrum[np.abs(f - 3000) < 50].sum() / spectrum.sum())


def test_options_that_are_off_leave_every_clip_as_it_was(small, hum_dir, tmp_path):
    # background_prob=0 and a warp of exactly 1 draw from their own streams only.
    same = _small(tmp_path / "off", background_dirs=[hum_dir], background_prob=0.0, warp=(1, 1))
    assert _files(same) == _files(small)
    stamp = json.loads((same / ".synthetic.json").read_text())["args"]
    assert stamp["background"][0]["file"] == "tone.wav" and stamp["warp"] == [1.0, 1.0]
    assert "background" not in json.loads((small / ".synthetic.json").read_text())["args"]


def test_background_recordings_are_mixed_in_at_the_asked_snr(small, hum_dir, tmp_path):
    loud = _small(tmp_path / "loud", background_dirs=[hum_dir], background_prob=1.0,
                  background_snr_db=(-10.0, -10.0))  # fmt: skip
    clips = sorted(loud.rglob("*_nohash_*.wav"))
    assert clips and all(_tone_share(p) > 0.8 for p in clips)  # 10 dB above the speech
    assert all(_tone_share(p) < 0.05 for p in sorted(small.rglob("*_nohash_*.wav")))
    # Google's layout is kept: the recordings are not copied into _background_noise_.
    assert (
        _files(loud)["_background_noise_/white_noise.wav"]
        == _files(small)["_background_noise_/white_noise.wav"]
    )


def test_warp_changes_the_voice_and_is_deterministic_however_scheduled(small, tmp_path):
    warped = _files(_small(tmp_path / "warp", warp=(0.85, 1.15)))
    again = _files(_small(tmp_path / "warp-2-workers", warp=(0.85, 1.15), workers=2))
    assert warped == again
    plain = _files(small)
    assert warped.keys() == plain.keys()
    changed = [k for k in plain if "_nohash_" in k and warped[k] != plain[k]]
    assert len(changed) == sum("_nohash_" in k for k in plain)
    rates = {synthetic._Extras(warp=(0.85, 1.15)).rate(0, s) for s in make_speakers(20)}
    assert len(rates) > 10 and all(18700 <= r <= 25400 and r % 50 == 0 for r in rates)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"background_prob": 1.5}, "background_prob"),
        ({"background_snr_db": (20.0, 0.0)}, "min > max"),
        ({"warp": (0.3, 1.0)}, "warp"),
        ({"warp": (1.2, 1.0)}, "warp"),
        ({"background_dirs": ["EMPTY"]}, "no .wav"),
    ],
)
def test_bad_widening_options_raise_clear_errors(tmp_path, kwargs, message):
    if kwargs.get("background_dirs") == ["EMPTY"]:
        kwargs = {"background_dirs": [tmp_path]}
    with pytest.raises(ValueError, match=message):
        _small(tmp_path / "out", **kwargs)


def _fail_on_second(n: int) -> int:
    if n == 1:
        raise ValueError("job 1 fails")
    import time

    time.sleep(0.2)
    return n


def test_a_failing_job_stops_the_pool_and_its_manager_thread():
    """The pool is gone when the error reaches the caller: no worker, and no manager thread left
    for Python's exit hook to race (it then wrote to a closed pipe after "interrupted")."""
    import threading

    before = set(threading.enumerate())
    with pytest.raises(ValueError, match="job 1 fails"):
        list(run_in_workers(_fail_on_second, [(n,) for n in range(6)], workers=2))
    assert set(threading.enumerate()) <= before
