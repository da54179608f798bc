"""eSpeak NG through :mod:`ctypes`: the voice of :mod:`quartznet_tutorial.synthetic.espeak`.

eSpeak NG (GPL-3.0) comes from the ``espeakng-loader`` wheel, library and voice data; it is a
separate program we call, not code of this package.

Determinism. eSpeak NG keeps state from one utterance to the next (its pitch-flutter phase,
filter memories), so :func:`synthesize` speaks a list of utterances with a freshly loaded
library. Its noise has two sources, both seeded from ``Utterance.rand_seed`` before every
utterance: eSpeak NG 1.52's own generator, which ``espeak_Initialize`` seeds from the clock
(the breath noise of ``f2``, ``f3``, ``f5``, ``Alicia``, ``sandro``, ``victor``, ``whisper``
and ``whisperf``; the Klatt synthesiser's noise), and libc's ``rand()`` (the breath of the
speechPlayer voices ``Reed`` and ``caleb``; all noise before eSpeak NG 1.52).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

__all__ = [
    "Utterance",
    "espeak_version",
    "is_loaded",
    "library_paths",
    "synthesize",
    "unload",
]


@dataclass(frozen=True)
class Utterance:
    """What eSpeak NG says, and how.

    Args:
        text (str): the text, e.g. ``"yes?"`` (the punctuation sets the intonation).
        rate (int): speaking rate in words per minute (eSpeak's default is 175).
        pitch (int): base pitch, 0-99 (default 50).
        pitch_range (int): intonation range, 0-99 (default 50).
        rand_seed (int): the seed of eSpeak NG's noise generators for this utterance.
    """

    text: str
    rate: int
    pitch: int
    pitch_range: int
    rand_seed: int


# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4
_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_chunks: list[np.ndarray] = []
_engine_lock = threading.Lock()  # the library is one global engine per process


@_CALLBACK_TYPE
def _collect(wav, samples, events):  # eSpeak's callback signature
    if wav and samples > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(samples,)).copy())
    return 0


def espeak_version() -> str:
    """The eSpeak NG version of the installed ``espeakng-loader`` wheel, e.g. ``"1.52.0"``."""
    lib_path, _ = library_paths()
    with _engine_lock:
        lib = ctypes.CDLL(lib_path)
        try:
            lib.espeak_Info.restype = ctypes.c_char_p
            return lib.espeak_Info(None).decode()
        finally:
            unload(lib._handle)


def synthesize(voice: str, utterances: Sequence[Utterance]) -> list[np.ndarray]:
    """Speak ``utterances`` with a freshly loaded engine: ``int16`` arrays at 22,050 Hz.

    Loading the shared library anew (about 1.5 ms with the voice) resets every static variable
    of eSpeak NG, so the output does not depend on what this process synthesised before.
    """
    lib_path, data_parent = library_paths()
    with _engine_lock:
        _check_not_loaded(lib_path)
        lib = ctypes.CDLL(lib_path)
        try:
            rate = lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent.encode(), _INITIALIZE_DONT_EXIT
            )
            if rate != 22050:
                raise RuntimeError(f"eSpeak NG failed to start from {data_parent} ({rate})")
            lib.espeak_SetSynthCallback(_collect)
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice {voice!r}")
            speech = []
            for u in utterances:
                for parameter, value in (
                    (_RATE, u.rate),
                    (_PITCH, u.pitch),
                    (_RANGE, u.pitch_range),
                ):
                    lib.espeak_SetParameter(parameter, value, 0)
                _seed_noise(lib, u.rand_seed)
                text = u.text.encode() + b"\0"
                _chunks.clear()
                lib.espeak_Synth(text, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
                lib.espeak_Synchronize()
                if not _chunks:
                    raise RuntimeError(f"eSpeak NG ({voice}) produced no audio for {u.text!r}")
                speech.append(np.concatenate(_chunks))
            lib.espeak_Terminate()
        finally:
            _chunks.clear()
            unload(lib._handle)
            del lib
    return speech


def _seed_noise(lib: ctypes.CDLL, seed: int) -> None:
    """Seed every random source of eSpeak NG's next utterance.

    eSpeak NG 1.52 draws the breath noise of voices with ``breath`` (``f2``, ``f3``, ``Alicia``,
    ...) and its Klatt noise from its own generator, which ``espeak_Initialize`` seeds with
    ``time(NULL)``; older versions draw them from libc's ``rand()``, as the speechPlayer
    synthesiser (``klatt 6`` voices) still does. So seed both, with the same number.
    """
    if hasattr(lib, "espeak_ng_SetRandSeed"):  # eSpeak NG >= 1.52
        lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
    _libc().srand(ctypes.c_uint(seed))


@cache
def library_paths() -> tuple[str, str]:
    """The shared library and the parent of its voice data (what ``espeak_Initialize`` takes)."""
    try:
        import espeakng_loader
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise ImportError(
            "the synthetic dataset needs eSpeak NG: pip install espeakng-loader"
        ) from None
    data = Path(espeakng_loader.get_data_path())
    return espeakng_loader.get_library_path(), str(data.parent)


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL("msvcrt" if sys.platform == "win32" else None)


def unload(handle: int) -> None:
    """Unload a library handle (``dlclose``), so that the next load starts from fresh statics."""
    import _ctypes

    (_ctypes.FreeLibrary if sys.platform == "win32" else _ctypes.dlclose)(handle)


def is_loaded(lib_path: str) -> bool:
    """Whether something in this process holds the library (so unloading would not reset it)."""
    if not hasattr(os, "RTLD_NOLOAD"):
        return False
    try:
        other = ctypes.CDLL(lib_path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return False
    unload(other._handle)
    return True


def _check_not_loaded(lib_path: str) -> None:
    if is_loaded(lib_path):
        raise RuntimeError(
            f"{lib_path} is already loaded in this process (by another package?), so its state "
            "would leak into the clips; call make_synthetic with workers >= 1"
        )
