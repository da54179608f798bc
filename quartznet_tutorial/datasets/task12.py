"""The 12-class keyword-spotting task of Speech Commands :cite:`warden2018speech`.

Ten keywords (yes, no, up, down, left, right, on, off, stop, go) plus ``_silence_`` and
``_unknown_``, as :class:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands` reads it with
``task="12"``. Its two reference implementations agree on the proportions and differ in the details:

- TensorFlow's ``speech_commands/input_data.py``: each split (by Warden's file-name hash, which
  the official lists reproduce) gets ``ceil(10% x its keyword clips)`` silence clips and as
  many unknown clips, drawn (``random.seed(59185)``) from the split's clips of the other words.
  A silence clip is a random one-second cut of a random ``_background_noise_`` recording times
  a volume drawn uniformly from ``[0, 1)``, drawn anew every time it is read, in validation and
  test as in training.
- NeMo's ``process_speech_commands_data.py --class_split sub``: the same ``ceil(10%)`` silence
  and unknown per split (unknown shuffled with ``RandomState(0)``), and silence written once as
  files: every 1 s window at a 1,000-sample stride of every recording, times a volume drawn
  uniformly from ``[0, 1)``, shuffled and dealt out to training, validation and test in turn.

We follow the shared proportions and volume and fix every choice once, as NeMo does, from a
seeded generator (TensorFlow's seed, 59185, by default), so that validation and test are the
same clips on every run; silence is cut from the first 80% of each recording for training, the
next 10% for validation and the last 10% for test, so that no test silence overlaps training
audio. Google's separate V2 test archive (``speech_commands_test_set_v0.02``: folders of the
ten words, ``_silence_`` and ``_unknown_``, no lists) is read as it is, as the test split.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import soundfile as sf

from quartznet_tutorial.audio.features import SAMPLE_RATE
from quartznet_tutorial.audio.file_io import AudioError

__all__ = [
    "KEYWORDS",
    "SILENCE",
    "TASK12_SEED",
    "UNKNOWN",
    "SilenceClip",
    "archive_clips",
    "choose_unknown",
    "cut_silence",
    "is_test_archive",
]

logger = logging.getLogger(__name__)

#: The ten keywords of the 12-class task, in the order of TensorFlow's ``--wanted_words``.
KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
#: TensorFlow's ``RANDOM_SEED`` (``input_data.py``), the default seed of the 12-class choices.
TASK12_SEED = 59185
# Each background recording's share of time per split: silence never crosses splits.
_SILENCE_PORTIONS = {"training": (0.0, 0.8), "validation": (0.8, 0.9), "testing": (0.9, 1.0)}


class SilenceClip(NamedTuple):
    """A ``_silence_`` clip of the 12-class task: ``noise[offset : offset + clip] * volume``."""

    #: The ``_background_noise_`` recording it is cut from.
    noise: Path
    #: Its first sample in the recording.
    offset: int
    #: The gain, drawn uniformly from ``[0, 1)`` (TensorFlow's and NeMo's).
    volume: float


def _word(rel: str) -> str:
    return PurePosixPath(rel).parts[0]


def choose_unknown(
    root: Path, subset: str, rel_files: Sequence[str], percentage: float, rng: np.random.Generator
) -> list[str]:
    """The keyword clips of the ``subset`` split of ``root`` (``rel_files``, as
    ``word/name.wav``) and ``ceil(percentage %)`` as many clips of the other words, drawn
    with ``rng`` (all of them if fewer)."""
    keywords = [rel for rel in rel_files if _word(rel) in KEYWORDS]
    others = [rel for rel in rel_files if _word(rel) not in KEYWORDS]
    if not keywords:
        raise ValueError(
            f"{root}: no clips of the ten keywords ({', '.join(KEYWORDS)}) in the "
            f"{subset} split, which the 12-class task needs; use a folder that has them "
            "(`quartznet make-synthetic` writes them)"
        )
    wanted = math.ceil(len(keywords) * percentage / 100)
    if wanted > len(others):
        logger.warning(
            "%s: %d unknown clips wanted in the %s split but only %d clips of other words; "
            "using all of them",
            root,
            wanted,
            subset,
            len(others),
        )
        wanted = len(others)
    chosen = rng.choice(len(others), wanted, replace=False) if wanted else []
    return sorted([*keywords, *(others[int(j)] for j in chosen)])


def cut_silence(
    background: Path, subset: str, count: int, clip_samples: int, rng: np.random.Generator
) -> list[SilenceClip]:
    """``count`` cuts of ``clip_samples`` from ``subset``'s share of the recordings in the
    ``background`` folder, each with a volume drawn uniformly from ``[0, 1)``."""
    if count == 0:
        return []
    low, high = _SILENCE_PORTIONS[subset]
    spans = []  # (recording, first allowed offset, number of allowed offsets)
    for path in sorted(background.glob("*.wav")):
        try:
            frames = sf.info(str(path)).frames
        except RuntimeError as e:  # soundfile.LibsndfileError
            raise AudioError(f"{path}: cannot read it ({e}); fix or remove the file") from None
        start, stop = int(low * frames), int(high * frames)
        if stop - start >= clip_samples:
            spans.append((path, start, stop - start - clip_samples + 1))
    if not spans:
        raise ValueError(
            f"{background}: no recording there is long enough to cut {subset} silence from "
            f"(each needs {clip_samples} samples in its {subset} share, "
            f"{high - low:.0%} of its length); add _background_noise_ recordings of at least "
            f"{math.ceil(clip_samples / (high - low) / SAMPLE_RATE)} s, or pass "
            "silence_percentage=0"
        )
    clips = []
    for _ in range(count):
        path, start, choices = spans[int(rng.integers(len(spans)))]
        offset = start + int(rng.integers(choices))
        clips.append(SilenceClip(path, offset, float(rng.uniform(0.0, 1.0))))
    return clips


def is_test_archive(root: Path) -> bool:
    """Google's 12-class test archive: ``_silence_/`` and ``_unknown_/`` folders, no lists."""
    return (root / UNKNOWN).is_dir() and not (root / "validation_list.txt").is_file()


def archive_clips(root: Path, labels: Sequence[str], *, ignore: str) -> list[str]:
    """Every clip of the test archive as sorted ``label/name.wav``; its folders are classes
    (``ignore`` names the one that is not: the background noise)."""
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    strange = [f for f in folders if f not in labels and f != ignore]
    if strange:
        raise ValueError(
            f"{root}: folders {strange} are not classes of the 12-class test archive "
            f"({', '.join(labels)}); move them out of the folder"
        )
    return sorted(f"{f}/{p.name}" for f in folders if f in labels for p in (root / f).glob("*.wav"))
