"""Real Google Speech Commands clips shipped with the package: the check on real speech.

132 unmodified clips of the Speech Commands dataset :cite:`warden2018speech` (all 35 V2
words, 3 to 6 clips per word, 126 speakers) and two ``_background_noise_`` recordings, in
the dataset's own layout under ``assets/real_speech_commands/``, with the licence (CC BY 4.0),
the provenance of every file (``SOURCES.md``) and their SHA-256 sums (``SHA256SUMS``).

They are for evaluation only: nothing in the package trains on them. A model trained on the
synthetic eSpeak NG set (:mod:`quartznet_tutorial.synthetic.espeak`) is scored on them by
:func:`~quartznet_tutorial.evaluation.real.evaluate_real`, which is how the docs say what such a
model does with real voices. A clip is read exactly as a test clip of
:class:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands` is:
zero-padded at the end (or truncated) to one second, then the classifier's front end.

Example:
    >>> clips = real_clips(version=1)  # the 30 V1 words' clips
    >>> result = evaluate_real("runs/quartznet-3x1/best.pt")
    >>> print(f"{100 * result.accuracy:.1f}% of {result.num_clips} real clips")
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from quartznet_tutorial.audio.features import SAMPLE_RATE
from quartznet_tutorial.datasets.speech_commands import SpeechCommands, labels_for
from quartznet_tutorial.utils.files import package_data

__all__ = [
    "RealSpeechCommands",
    "hash_split",
    "real_clips",
    "real_clips_root",
    "verify_real_clips",
]

_ASSETS = package_data("assets", "real_speech_commands")
# Warden's which_set() in TensorFlow's speech_commands/input_data.py.
_MAX_NUM_WAVS_PER_CLASS = 2**27 - 1


def real_clips_root() -> Path:
    """The folder of the real clips: ``<word>/<speaker>_nohash_<n>.wav``, ``_background_noise_/``,
    ``LICENSE``, ``SOURCES.md`` and ``SHA256SUMS``."""
    if not (_ASSETS / "SHA256SUMS").is_file():
        raise FileNotFoundError(
            f"{_ASSETS}: the real Speech Commands clips are missing from this installation; "
            "reinstall quartznet-tutorial from a wheel or a full checkout (they are package data)"
        )
    return _ASSETS


class RealSpeechCommands(SpeechCommands):
    """The real clips whose word is one of Speech Commands ``version``'s, as one test split.

    A :class:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands` in every way that matters
    to :func:`~quartznet_tutorial.evaluation.accuracy.evaluate` and the pipelines (``labels``,
    ``targets``, ``files``, ``dataset[i]``, ``waveforms()``, ``lengths_tensor()``), read from the
    package's folder, which has no split lists: every clip of a known word belongs to it. For
    version 1 the clips of the five V2-only words are left out. Clips are few, so they are read
    again on each ``waveforms()`` call rather than cached on disk.

    Args:
        version (int, optional): 1 (30 words) or 2 (35 words). (Default: ``1``)
        task (str, optional): ``"all"`` or ``"12"``: the ten keywords, ``_unknown_`` (10% as
            many clips of the other words) and ``_silence_`` (cut from the two background
            recordings), as :class:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands`
            makes a test split. (Default: ``"all"``)
        clip_samples (int, optional): every clip is zero-padded at the end or truncated to
            this many samples, as a test clip is. (Default: ``16000``, one second)

    Attributes:
        speakers (list of str): each clip's speaker id, the 8 hex digits before ``_nohash_``.
    """

    def __init__(
        self, version: int = 1, *, clip_samples: int = SAMPLE_RATE, task: str = "all"
    ) -> None:
        super().__init__(
            real_clips_root(), "testing", version, clip_samples=clip_samples, cache=False, task=task
        )

    @property
    def speakers(self) -> list[str]:
        return [path.name.split("_nohash_")[0] for path in self.files] + [""] * len(self.silence)

    def _list_clips(self) -> list[str]:
        words = set(labels_for(self.version))  # the 12-class task maps them after
        return sorted(
            f"{p.parent.name}/{p.name}" for p in self.root.glob("*/*.wav") if p.parent.name in words
        )

    def __repr__(self) -> str:
        return f"RealSpeechCommands(version={self.version}, clips={len(self)})"


def real_clips(version: int = 1) -> RealSpeechCommands:
    """The real clips of Speech Commands ``version``'s words (V1: 30 words, V2: all 35)."""
    return RealSpeechCommands(version)


def verify_real_clips(root: str | os.PathLike | None = None) -> int:
    """Check every file listed in ``SHA256SUMS`` against its SHA-256, and that no ``.wav`` is
    unlisted; return the number of files checked.

    Args:
        root (str or Path, optional): the folder to check. (Default: :func:`real_clips_root`)

    Raises:
        ValueError: a file is missing, altered or unlisted.
    """
    root = Path(root) if root is not None else real_clips_root()
    sums = root / "SHA256SUMS"
    listed = {}
    for line in sums.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            listed[rel.lstrip("*")] = digest
    for rel, digest in listed.items():
        path = root / rel
        if not path.is_file():
            raise ValueError(f"{path}: listed in {sums} but missing; reinstall the package")
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != digest:
            raise ValueError(
                f"{path}: SHA-256 {actual[:12]}..., {sums} says {digest[:12]}...; the clip was "
                "altered: reinstall the package (or restore the file from git)"
            )
    unlisted = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.wav")
        if p.relative_to(root).as_posix() not in listed
    )
    if unlisted:
        raise ValueError(
            f"{root}: {unlisted[:3]} are not in {sums}; remove them (the real-clip set is fixed)"
        )
    return len(listed)


def hash_split(filename: str, validation: float = 10.0, testing: float = 10.0) -> str:
    """The split Warden's hashing rule puts a clip in: ``"training"``, ``"validation"`` or
    ``"testing"``.

    Speech Commands assigns clips by the SHA-1 of the speaker part of the name (what comes
    before ``_nohash_``), so that a speaker's clips stay in one split (``which_set`` in
    TensorFlow's ``speech_commands/input_data.py`` :cite:`warden2018speech`). The official
    lists follow it; a clip whose split is ``"training"`` may have been trained on by a model
    of the real dataset.

    Args:
        filename (str): the clip's file name, e.g. ``"0a196374_nohash_0.wav"``.
        validation (float, optional): percentage of speakers in validation. (Default: ``10``)
        testing (float, optional): percentage of speakers in testing. (Default: ``10``)
    """
    speaker = re.sub(r"_nohash_.*$", "", Path(filename).name)
    digest = int(hashlib.sha1(speaker.encode()).hexdigest(), 16)
    percent = (digest % (_MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_NUM_WAVS_PER_CLASS)
    if percent < validation:
        return "validation"
    if percent < validation + testing:
        return "testing"
    return "training"
