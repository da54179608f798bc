"""A long test recording with its ground truth, for scoring keyword spotting anywhere.

:func:`make_stream` lays clips of Speech Commands' **test split** (speakers the models never
heard in training) on a continuous bed of background noise: keywords, other words and
stretches of noise alone, at known times and at chosen signal-to-noise ratios, as TensorFlow's
``generate_streaming_test_wav.py`` does for its streaming test. It writes ``stream.wav`` and
``stream.json``, which :func:`quartznet_tutorial.kws.scoring.score_detections` reads.

The clips come from any Speech Commands folder (``data_root``), or, by default, from a small
synthetic set made once with :func:`~quartznet_tutorial.synthetic.espeak.make_synthetic` in the
cache.

Layout: after a gap of noise alone (``gap`` seconds, uniform), the next one-second slot holds a
keyword (probability ``keyword_prob``), another word (``other_prob``) or nothing; so spoken
clips are at least ``gap[0]`` seconds apart and a detection matches one event unambiguously.
The noise bed is made of segments (5 to 20 s) of the folder's ``_background_noise_``
recordings, each scaled to the same level (``noise_dbfs``, RMS in dB of full scale). A clip is
scaled so that its power over its second is ``snr`` dB above the bed's power (one of
``snr_db``, drawn per clip); a clip that would then peak over 0.9 is turned down, and the
truth records the SNR it got.

Determinism: every choice comes from ``numpy.random.default_rng(seed)`` and the audio is
written as 16-bit PCM, so the same arguments (and the same clips) give the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from quartznet_tutorial.audio.features import SAMPLE_RATE
from quartznet_tutorial.audio.file_io import load_audio
from quartznet_tutorial.datasets.speech_commands import find_root, read_list
from quartznet_tutorial.utils.files import atomic_write, default_cache_dir, write_text_atomic

__all__ = ["KEYWORDS", "OTHER_WORDS", "make_stream", "read_truth", "synthetic_source"]

#: The ten keywords of the 12-class task (TensorFlow's ``--wanted_words`` default).
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
#: Non-keywords the default synthetic source speaks (Speech Commands V1 words).
OTHER_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow")
_CLIP = SAMPLE_RATE
_CHUNK = 30 * SAMPLE_RATE  # samples written at once
_PEAK = 0.9


def synthetic_source(per_word: int = 60, seed: int = 0, progress: bool = False) -> Path:
    """The default clip source: keywords and :data:`OTHER_WORDS` spoken by eSpeak NG, made
    once in :func:`~quartznet_tutorial.utils.files.default_cache_dir` (``per_word`` clips of each of
    20 words by ``per_word // 2`` speakers, whose test split has about a tenth of them)."""
    from quartznet_tutorial.synthetic.espeak import GENERATOR_VERSION, make_synthetic

    out = default_cache_dir() / f"stream-source-{per_word}-seed{seed}-gen{GENERATOR_VERSION}"
    out.parent.mkdir(parents=True, exist_ok=True)
    return make_synthetic(
        out, per_word=per_word, seed=seed, words=[*KEYWORDS, *OTHER_WORDS], progress=progress
    )


def make_stream(
    out: str | os.PathLike,
    *,
    minutes: float = 10.0,
    snr_db: Sequence[float] = (20.0, 10.0),
    data_root: str | os.PathLike | None = None,
    seed: int = 0,
    keywords: Sequence[str] = KEYWORDS,
    keyword_prob: float = 0.6,
    other_prob: float = 0.25,
    gap: tuple[float, float] = (1.5, 3.5),
    noise_dbfs: float = -45.0,
) -> Path:
    """Write ``out/stream.wav`` and its ground truth ``out/stream.json``.

    Args:
        out (str or Path): folder to write (created).
        minutes (float, optional): length of the recording. (Default: ``10``)
        snr_db (sequence of float, optional): SNRs in dB, one drawn per clip.
            (Default: ``(20, 10)``)
        data_root (str or Path, optional): a Speech Commands folder (its
            ``testing_list.txt`` clips and ``_background_noise_`` recordings are used).
            (Default: :func:`synthetic_source`)
        seed (int, optional): seeds every choice. (Default: ``0``)
        keywords (sequence of str, optional): the words scored as keywords; every other word
            of the test split may appear as a non-keyword. (Default: :data:`KEYWORDS`)
        keyword_prob (float, optional): chance a slot holds a keyword. (Default: ``0.6``)
        other_prob (float, optional): chance a slot holds another word. (Default: ``0.25``)
        gap (tuple of float, optional): ``(min, max)`` seconds of noise alone before each slot.
            (Default: ``(1.5, 3.5)``)
        noise_dbfs (float, optional): RMS level of the noise bed in dB of full scale.
            (Default: ``-45``)

    Returns:
        Path: the ground-truth JSON: ``{"audio", "duration", "keywords", "events": [{"word",
        "kind" ("keyword" or "other"), "start", "end", "time" (the clip's centre), "snr_db",
        "source"}], "args"}``, times in seconds.

    Raises:
        ValueError: bad arguments, or a folder without test clips of the keywords or without
            background noise.
    """
    if minutes <= 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    if not snr_db:
        raise ValueError("snr_db: give at least one SNR in dB, e.g. 20 10")
    if min(keyword_prob, other_prob) < 0 or keyword_prob + other_prob > 1:
        raise ValueError(
            f"keyword_prob={keyword_prob} and other_prob={other_prob}: "
            "each in [0, 1], their sum at most 1"
        )
    if not 0 < gap[0] <= gap[1]:
        raise ValueError(f"gap={gap}: needs 0 < min <= max seconds")
    args = {
        "minutes": minutes,
        "snr_db": [float(s) for s in snr_db],
        "data_root": str(data_root) if data_root is not None else None,
        "seed": seed,
        "keywords": list(keywords),
        "keyword_prob": keyword_prob,
        "other_prob": other_prob,
        "gap": list(gap),
        "noise_dbfs": noise_dbfs,
    }
    root = Path(data_root) if data_root is not None else synthetic_source()
    root = find_root(root, 2, download=False)
    by_word = _test_clips(root)
    missing = [w for w in keywords if w not in by_word]
    if missing:
        raise ValueError(
            f"{root}: no test clips of the keywords {missing} in testing_list.txt; "
            "pass keywords that the folder has"
        )
    others = sorted(w for w in by_word if w not in keywords)
    noises = _background(root)

    rng = np.random.default_rng(seed)
    total = round(minutes * 60 * SAMPLE_RATE)
    queues: dict[str, list[str]] = {}

    def next_clip(word: str) -> str:  # each word's clips in a shuffled order, then again
        if not queues.get(word):
            queues[word] = [str(c) for c in rng.permutation(by_word[word])]
        return queues[word].pop()

    events, t = [], 0
    while True:
        t += int(rng.uniform(*gap) * SAMPLE_RATE)
        if t + _CLIP > total:
            break
        u = rng.random()
        if u < keyword_prob or (u < keyword_prob + other_prob and others):
            kind = "keyword" if u < keyword_prob else "other"
            word = str(rng.choice(list(keywords) if kind == "keyword" else others))
            snr = float(rng.choice(args["snr_db"]))
            events.append({"word": word, "kind": kind, "at": t, "snr": snr, "src": next_clip(word)})
        t += _CLIP

    segments, s = [], 0  # the noise bed: (start, length, recording, offset)
    while s < total:
        length = int(rng.uniform(5, 20) * SAMPLE_RATE)
        k = int(rng.integers(len(noises)))
        segments.append((s, length, k, int(rng.integers(len(noises[k])))))
        s += length
    bed_rms = 10 ** (noise_dbfs / 20)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth_events = []
    with (
        atomic_write(out / "stream.wav") as f,
        sf.SoundFile(f, "w", SAMPLE_RATE, 1, "PCM_16", format="WAV") as wav,
    ):
        placed = iter(events)
        pending = next(placed, None)
        active: list[tuple[int, np.ndarray]] = []
        for c0 in range(0, total, _CHUNK):
            c1 = min(c0 + _CHUNK, total)
            chunk = _bed(noises, segments, c0, c1) * bed_rms
            while pending is not None and pending["at"] < c1:
                clip = load_audio(root / pending["src"]).numpy()[:_CLIP]
                clip = np.pad(clip, (0, _CLIP - len(clip)))
                rms = float(np.sqrt(np.mean(clip.astype(np.float64) ** 2))) or 1.0
                gain = bed_rms * 10 ** (pending["snr"] / 20) / rms
                gain = min(gain, _PEAK / max(float(np.abs(clip).max()), 1e-9))
                snr = 20 * np.log10(gain * rms / bed_rms)
                active.append((pending["at"], (clip * gain).astype(np.float32)))
                at = pending["at"] / SAMPLE_RATE
                truth_events.append(
                    {
                        "word": pending["word"],
                        "kind": pending["kind"],
                        "start": round(at, 4),
                        "end": round(at + 1.0, 4),
                        "time": round(at + 0.5, 4),
                        "snr_db": round(float(snr), 2),
                        "source": pending["src"],
                    }
                )
                pending = next(placed, None)
            for at, clip in active:
                lo, hi = max(at, c0), min(at + _CLIP, c1)
                if lo < hi:
                    chunk[lo - c0 : hi - c0] += clip[lo - at : hi - at]
            active = [(at, clip) for at, clip in active if at + _CLIP > c1]
            wav.write(np.clip(chunk, -1.0, 32767 / 32768))
    truth = {
        "audio": "stream.wav",
        "sample_rate": SAMPLE_RATE,
        "duration": total / SAMPLE_RATE,
        "keywords": list(keywords),
        "source": "synthetic" if data_root is None else str(root),
        "events": truth_events,
        "args": args,
    }
    path = out / "stream.json"
    write_text_atomic(path, json.dumps(truth, indent=1) + "\n")
    return path


def read_truth(path: str | os.PathLike) -> dict:
    """A ground truth written by :func:`make_stream`, checked for the keys scoring needs."""
    path = Path(path)
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no such file; write one with quartznet make-stream"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not JSON ({e}); pass the stream.json of make-stream") from None
    missing = [k for k in ("duration", "keywords", "events") if k not in truth]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)}; pass the stream.json of make-stream")
    return truth


def _test_clips(root: Path) -> dict[str, list[str]]:
    by_word: dict[str, list[str]] = {}
    for _, rel in read_list(root, "testing_list.txt"):
        if (root / rel).is_file():
            by_word.setdefault(rel.split("/")[0], []).append(rel)
    return {w: sorted(v) for w, v in sorted(by_word.items())}


def _background(root: Path) -> list[np.ndarray]:
    folder = root / "_background_noise_"
    files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    noises = []
    for p in files:
        x = load_audio(p).numpy().astype(np.float64)
        rms = np.sqrt(np.mean(x**2))
        if len(x) >= SAMPLE_RATE and rms > 0:
            noises.append((x / rms).astype(np.float32))
    if not noises:
        raise ValueError(
            f"{folder}: no background-noise recordings (16 kHz .wav, a second or more); "
            "the stream's noise bed is made from them"
        )
    return noises


def _bed(noises: list[np.ndarray], segments: list[tuple], c0: int, c1: int) -> np.ndarray:
    """Samples ``[c0, c1)`` of the noise bed (unit RMS), each segment looping its recording."""
    out = np.zeros(c1 - c0, dtype=np.float32)
    for s, length, k, offset in segments:
        lo, hi = max(s, c0), min(s + length, c1)
        if lo >= hi:
            continue
        x = noises[k]
        idx = (offset + np.arange(lo - s, hi - s)) % len(x)
        out[lo - c0 : hi - c0] = x[idx]
    return out
