"""What every text-to-speech engine shares: speakers, microphone and room, the folder layout.

A new engine is one module: it renders one speaker's takes with a ``render(...)`` function and
uses these helpers. Like :mod:`.espeak` and :mod:`.piper`, such a module provides

- its speakers, drawn from the seed: a record with a ``name`` (the file prefix) that is, or
  holds, a :class:`Speaker` for the microphone, room and level (:func:`make_speakers`; Piper
  draws them under the key ``"piper-<seed>"`` and replaces ``voice`` with its own);
- ``render(seed, speaker, takes, *options) -> list of np.ndarray``: every take of every
  ``(word, number of takes)`` of ``takes``, in order, each one second of 16 kHz float32 made
  by :func:`finish` from the engine's speech and the speaker's :class:`Channel`, every random
  choice from :func:`seeded_rng` keyed by the seed, word, speaker name and take. It runs in a
  worker process, so it is a module-level function of picklable arguments;
- ``make_<engine>(out, ...)``: checks its arguments, draws the speakers, splits them with
  :func:`split_speakers`, builds the stamp (``generator``: the module; ``generator_version``;
  the engine's versions; ``args``, with ``words``, ``per_word`` and ``seed``) and calls
  :func:`write_dataset` with its ``render``;
- ``GENERATOR_VERSION``, bumped when its audio changes for the same arguments (a change here
  that alters the audio bumps every engine's).

:func:`write_dataset` writes Google's layout :cite:`warden2018speech`
(``<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt``, ``testing_list.txt``,
``_background_noise_/``, ``README.md``) and the stamp ``.synthetic.json`` that
:func:`data_args` reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from quartznet_tutorial.audio.features import SAMPLE_RATE
from quartznet_tutorial.audio.file_io import save_wav
from quartznet_tutorial.utils.files import write_text_atomic
from quartznet_tutorial.utils.progress import progress_bar

__all__ = [
    "ACCENTS",
    "VOICE_VARIANTS",
    "Channel",
    "Speaker",
    "data_args",
    "describe_splits",
    "finish",
    "make_speakers",
    "run_in_workers",
    "seeded_rng",
    "split_speakers",
    "write_dataset",
    "write_speaker",
]

#: eSpeak NG's English voices, by file (``lang/gmw/...``), one per accent.
ACCENTS: tuple[str, ...] = (
    "gmw/en",  # British English
    "gmw/en-US",
    "gmw/en-US-nyc",
    "gmw/en-GB-x-rp",  # received pronunciation
    "gmw/en-GB-scotland",
    "gmw/en-GB-x-gbclan",  # Lancastrian
    "gmw/en-GB-x-gbcwmd",  # West Midlands
    "gmw/en-029",  # Caribbean
)

#: Voice variants (``voices/!v/``) that sound like people: the robot, demon, heavy-echo and
#: test variants of the wheel are left out.
VOICE_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6",
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Denis", "Diogo", "Gene",
    "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike",
    "Mr serious", "Nguyen", "Reed", "Storm", "Tweaky", "adam", "anika", "antonio", "aunty",
    "belinda", "benjamin", "boris", "caleb", "croak", "david", "ed", "edward", "edward2",
    "grandma", "grandpa", "gustave", "ian", "iven", "iven2", "iven3", "iven4", "john",
    "kaukovalta", "linda", "marcelo", "max", "michel", "miguel", "mike2", "norbert", "pablo",
    "paul", "pedro", "quincy", "rob", "robert", "sandro", "shelby", "steph", "steph2",
    "steph3", "travis", "victor", "whisper", "whisperf", "zac",
)  # fmt: skip

_CLIP = SAMPLE_RATE  # every clip is exactly one second, as Google's full-length clips
_FIR_TAPS = 255  # microphone filter length; linear phase, so it delays by 127 samples
_NOISES = ("white", "pink", "brown", "hum")
_BACKGROUND_SECONDS = 60
_STAMP = ".synthetic.json"


# --- speakers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speaker:
    """One synthetic person: an eSpeak NG voice and the settings that stay fixed for them.

    Another engine keeps the name, level, microphone and room and brings its own voice.

    Args:
        name (str): 8 hex digits, as Google's speaker hashes; the file-name prefix.
        voice (str): eSpeak NG voice file and variant, e.g. ``"gmw/en-US+m3"``.
        rate (int): speaking rate in words per minute (eSpeak's default is 175).
        pitch (int): base pitch, 0-99 (default 50).
        pitch_range (int): intonation range, 0-99 (default 50).
        level_db (float): peak level of the spoken word, dB below full scale.
        highpass_hz (float): the microphone's low cut-off.
        lowpass_hz (float): the microphone's high cut-off.
        tilt_db (float): spectral tilt of the microphone, dB per octave.
        resonances (tuple of (float, float)): ``(frequency Hz, gain dB)`` peaks of the
            microphone and its housing.
        rt60 (float): reverberation time of the room in seconds; 0 is a dry room.
        reverb_db (float): direct-to-reverberant energy ratio in dB.
    """

    name: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    level_db: float
    highpass_hz: float
    lowpass_hz: float
    tilt_db: float
    resonances: tuple[tuple[float, float], ...]
    rt60: float
    reverb_db: float


def make_speakers(count: int, seed: int | str = 0) -> list[Speaker]:
    """``count`` speakers drawn from ``seed``; speaker ``i`` depends only on ``(seed, i)``.

    Another engine draws people of its own under a key of its own, e.g. ``"piper-0"``.
    """
    if count < 1:
        raise ValueError(f"need at least one speaker, got {count}")
    return [_make_speaker(seed, i) for i in range(count)]


def _make_speaker(seed: int | str, index: int) -> Speaker:
    rng = seeded_rng("speaker", seed, index)
    name = hashlib.sha1(f"synthetic-{seed}-{index}".encode()).hexdigest()[:8]
    voice = f"{rng.choice(ACCENTS)}+{rng.choice(VOICE_VARIANTS)}"
    reverberant = rng.random() < 0.6  # some rooms are close to dry, as phone recordings are
    return Speaker(
        name=name,
        voice=voice,
        rate=int(rng.integers(125, 251)),  # the slowest fits "marvin" in ~0.8 s
        pitch=int(rng.integers(15, 86)),
        pitch_range=int(rng.integers(15, 91)),
        level_db=round(float(rng.uniform(-28.0, -6.0)), 2),
        highpass_hz=round(float(np.exp(rng.uniform(np.log(50), np.log(400)))), 1),
        lowpass_hz=round(float(rng.uniform(3000.0, 7800.0)), 1),
        tilt_db=round(float(rng.uniform(-3.0, 2.0)), 2),
        resonances=tuple(
            (
                round(float(np.exp(rng.uniform(np.log(300), np.log(6000)))), 1),
                round(float(rng.uniform(-6.0, 6.0)), 2),
            )
            for _ in range(int(rng.integers(0, 4)))
        ),
        rt60=round(float(rng.uniform(0.15, 0.7)), 3) if reverberant else 0.0,
        reverb_db=round(float(rng.uniform(2.0, 18.0)), 2),
    )


def split_speakers(
    speakers: Sequence[Speaker], validation: float = 0.1, testing: float = 0.1
) -> dict[str, str]:
    """Assign each speaker to ``"training"``, ``"validation"`` or ``"testing"`` by hash.

    Google puts a speaker in a split by a hash of their id; we sort the speakers by the SHA-1
    of their name and take the first ``validation`` fraction (at least one) for validation and
    the next ``testing`` fraction for testing, so the proportions are exact even for a few
    speakers. Returns ``{speaker name: split}``.
    """
    if len(speakers) < 3:
        raise ValueError(f"need at least 3 speakers to fill three splits, got {len(speakers)}")
    order = sorted(speakers, key=lambda s: hashlib.sha1(s.name.encode()).hexdigest())
    n_val = max(1, round(validation * len(order)))
    n_test = max(1, round(testing * len(order)))
    if n_val + n_test >= len(order):
        raise ValueError(f"{len(order)} speakers are too few for a training split; use more")
    return {
        s.name: "validation" if i < n_val else "testing" if i < n_val + n_test else "training"
        for i, s in enumerate(order)
    }


def describe_splits(splits: dict[str, str]) -> str:
    """``"8 training, 1 validation, 1 testing"``: the speakers of each split, for a README."""
    counts = {
        s: sum(v == s for v in splits.values()) for s in ("training", "validation", "testing")
    }
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def seeded_rng(*key) -> np.random.Generator:
    """A generator seeded by the SHA-256 of ``key``: independent streams, stable across runs."""
    digest = hashlib.sha256(json.dumps(key).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


# --- microphone, room and noise ----------------------------------------------------------------


class Channel:
    """The speaker's microphone filter, then their room's decaying noise tail, as one FIR.

    Args:
        seed (int): the seed of the room's tail (with the speaker's name).
        speaker (Speaker): the microphone and room.
    """

    def __init__(self, seed: int, speaker: Speaker) -> None:
        f = np.maximum(np.fft.rfftfreq(1024, 1 / SAMPLE_RATE), 20.0)
        gain_db = (
            -10 * np.log10(1 + (speaker.highpass_hz / f) ** 4)  # 2nd-order high-pass
            - 10 * np.log10(1 + (f / speaker.lowpass_hz) ** 8)  # 4th-order low-pass
            + speaker.tilt_db * np.log2(f / 1000)
        )
        for centre, peak_db in speaker.resonances:
            gain_db += peak_db * np.exp(-0.5 * (np.log2(f / centre) / 0.25) ** 2)
        response = np.roll(np.fft.irfft(10 ** (gain_db / 20)), _FIR_TAPS // 2)[:_FIR_TAPS]
        response *= np.hanning(_FIR_TAPS)
        if speaker.rt60 > 0:
            rng = seeded_rng("room", seed, speaker.name)
            t = np.arange(1, int(speaker.rt60 * SAMPLE_RATE)) / SAMPLE_RATE
            tail = rng.standard_normal(len(t)) * 10 ** (-3 * t / speaker.rt60)  # -60 dB at rt60
            tail *= np.sqrt(10 ** (-speaker.reverb_db / 10) / np.sum(tail**2))
            response = np.convolve(response, np.concatenate([[1.0], tail]))
        self.response = response
        self._size = 1 << (_CLIP + len(response)).bit_length()  # FFT size, no wrap-around
        self._spectrum = np.fft.rfft(response, self._size)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x`` (at most one second) through the channel, reverberation tail included."""
        return np.fft.irfft(np.fft.rfft(x, self._size) * self._spectrum, self._size)


def finish(
    speech: np.ndarray,
    channel: Channel,
    speaker: Speaker,
    rng: np.random.Generator,
    rate: int = 22050,
    add: Callable[[np.ndarray, float], None] | None = None,
) -> np.ndarray:
    """An engine's speech -> one 16 kHz float32 second: microphone, room, level, offset, noise.

    Args:
        speech (np.ndarray): float32 samples in [-1, 1].
        channel (Channel): the speaker's microphone and room.
        speaker (Speaker): the speaker's level.
        rng (np.random.Generator): the clip's generator (level, offset, noise kind and SNR).
        rate (int, optional): the rate ``speech`` is taken to be at. (Default: ``22050``)
        add (callable, optional): ``add(clip, speech_power)`` adds more to the float64 clip in
            place, e.g. a noise recording at an SNR. (Default: nothing)
    """
    x = _resampler(rate)(torch.from_numpy(speech)).numpy()
    loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
    pad = SAMPLE_RATE // 200  # keep 5 ms around the word's onset and release
    x = x[max(0, loud[0] - pad) : loud[-1] + pad][:_CLIP].astype(np.float64)
    spoken = min(len(x) + _FIR_TAPS // 2, _CLIP)  # the word, as delayed by the microphone
    wet = channel(x)
    wet *= 10 ** ((speaker.level_db + rng.uniform(-3.0, 3.0)) / 20) / np.abs(wet).max()

    start = int(rng.integers(0, _CLIP - spoken + 1))
    clip = np.zeros(_CLIP)
    clip[start:] = wet[: _CLIP - start]
    speech_power = np.mean(wet[:spoken] ** 2)
    snr_db = rng.uniform(5.0, 40.0)
    noise = _noise(str(rng.choice(_NOISES)), _CLIP, rng)
    clip += noise * np.sqrt(speech_power / 10 ** (snr_db / 10))
    if add is not None:
        add(clip, speech_power)
    return clip.astype(np.float32)


def _noise(kind: str, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise: ``white``, ``pink`` (1/f), ``brown`` (1/f²) or mains ``hum``."""
    white = rng.standard_normal(samples)
    if kind == "white":
        return white
    if kind == "hum":
        # Harmonics 1-7 of 50 or 60 Hz, drawn as FFT lines (whole cycles in whole seconds).
        harmonics = np.arange(1, 8)
        lines = np.zeros(samples // 2 + 1, dtype=complex)
        bins = np.round(rng.choice([50, 60]) * harmonics * samples / SAMPLE_RATE).astype(int)
        phases = np.exp(2j * np.pi * rng.random(len(harmonics)))
        lines[bins] = rng.uniform(0.2, 1.0, len(harmonics)) / harmonics * phases
        hum = np.fft.irfft(lines, samples)
        noise = hum + 0.1 * np.std(hum) * white  # the hiss of the amplifier
    else:
        f = np.maximum(np.fft.rfftfreq(samples, 1 / SAMPLE_RATE), 20.0)  # flat below 20 Hz
        noise = np.fft.irfft(np.fft.rfft(white) / f ** (0.5 if kind == "pink" else 1.0), samples)
    return noise / np.sqrt(np.mean(noise**2))


@cache
def _resampler(rate: int = 22050):
    import torchaudio

    return torchaudio.transforms.Resample(rate, SAMPLE_RATE)  # caches the sinc kernel


# --- the folder ------------------------------------------------------------------------------


def write_dataset(
    out: Path,
    stamp: dict,
    about: tuple[str, str],
    people: Sequence,
    splits: dict[str, str],
    render: Callable[..., list[np.ndarray]],
    options: tuple = (),
    *,
    workers: int | None = None,
    fork: bool = True,
    progress: bool = True,
    desc: str = "synthesising",
) -> Path:
    """Write a dataset in Google's layout to ``out``, or complete it (skipped if already there).

    Clip n of a word goes to speaker ``(n + offset) % len(people)``, the offset from the word,
    so every speaker says every word about equally often.

    Args:
        out (Path): the dataset folder: created, or empty, or holding ``stamp`` (maybe not
            complete).
        stamp (dict): what made the set (``generator``, ``generator_version``, ``args`` with
            the ``words``, ``per_word`` and ``seed``, ...); another stamp in ``out`` raises.
        about (tuple of str): ``(title, text)`` of ``README.md``; the layout follows the text.
        people (sequence): the speakers, each with a ``name``.
        splits (dict): ``{speaker name: split}``, from :func:`split_speakers`.
        render (callable): ``render(seed, speaker, takes, *options)``: the speaker's clips.
        options (tuple, optional): more arguments of ``render``. (Default: none)
        workers (int, optional): as :func:`run_in_workers`'s. (Default: the CPUs)
        fork (bool, optional): as :func:`run_in_workers`'s. (Default: ``True``)
        progress (bool, optional): show a progress bar. (Default: ``True``)
        desc (str, optional): the progress bar's label. (Default: ``"synthesising"``)

    Returns:
        Path: ``out``.
    """
    words, per_word, seed = (stamp["args"][k] for k in ("words", "per_word", "seed"))
    if _claim(out, stamp):
        return out
    takes: dict[tuple[str, int], int] = {}
    for word in words:
        offset = int(hashlib.sha1(word.encode()).hexdigest(), 16) % len(people)
        for n in range(per_word):
            s = (n + offset) % len(people)
            takes[word, s] = takes.get((word, s), 0) + 1
    tasks: dict[int, list[tuple[str, int]]] = {}
    for (word, s), count in takes.items():
        tasks.setdefault(s, []).append((word, count))
    for word in words:
        (out / word).mkdir(exist_ok=True)

    jobs = [(render, str(out), seed, people[s], g, *options) for s, g in sorted(tasks.items())]
    bar = progress_bar(total=len(words) * per_word, unit="clip", desc=desc, disable=not progress)
    with bar:
        for done in run_in_workers(write_speaker, jobs, workers, fork):
            bar.update(done)

    _write_background(out / "_background_noise_", seed)
    names = [p.name for p in people]
    for split in ("validation", "testing"):
        listed = sorted(
            f"{word}/{names[s]}_nohash_{n}.wav"
            for (word, s), count in takes.items()
            if splits[names[s]] == split
            for n in range(count)
        )
        write_text_atomic(out / f"{split}_list.txt", "".join(f"{rel}\n" for rel in listed))
    title, text = about
    write_text_atomic(
        out / "README.md",
        f"# {title}\n\n{text}\n\n"
        "Layout as Google's dataset: <word>/<speaker>_nohash_<n>.wav (16 kHz mono 16-bit, 1 s), "
        "validation_list.txt, testing_list.txt, _background_noise_/.\n",
    )
    write_text_atomic(out / _STAMP, json.dumps({**stamp, "complete": True}, indent=1) + "\n")
    return out


def write_speaker(
    render: Callable[..., list[np.ndarray]],
    out: str,
    seed: int,
    speaker,
    takes: list[tuple[str, int]],
    *options,
) -> int:
    """Write one speaker's ``(word, number of takes)`` clips; returns the number of clips.

    All of them or none: the clips come from one engine, so a partly written speaker (an
    interrupted run) is made again whole, to the same bytes.

    Args:
        render (callable): ``render(seed, speaker, takes, *options)``: the clips, in order.
        out (str): the dataset folder (its word folders exist).
        seed (int): the seed of every random choice.
        speaker: the speaker, with a ``name``.
        takes (list of (str, int)): ``(word, number of takes)``.
        *options: more arguments of ``render``.
    """
    paths = [
        Path(out, w, f"{speaker.name}_nohash_{n}.wav") for w, count in takes for n in range(count)
    ]
    if not all(p.is_file() for p in paths):
        for path, clip in zip(paths, render(seed, speaker, takes, *options), strict=True):
            save_wav(path, clip)
    return len(paths)


def _write_background(folder: Path, seed: int) -> None:
    """A minute of each noise kind, like Google's ``_background_noise_`` recordings."""
    folder.mkdir(exist_ok=True)
    for kind in _NOISES:
        path = folder / f"{kind}_noise.wav"
        if not path.is_file():
            noise = _noise(
                kind, _BACKGROUND_SECONDS * SAMPLE_RATE, seeded_rng("background", seed, kind)
            )
            save_wav(path, (0.3 * noise / np.abs(noise).max()).astype(np.float32))
    write_text_atomic(
        folder / "README.md",
        "Synthetic background noise for augmentation (not a class): white, pink (1/f), brown "
        f"(1/f^2) and mains hum with hiss, {_BACKGROUND_SECONDS} s each, written by "
        "quartznet_tutorial.synthetic.speakers.\n",
    )


def data_args(root: str | os.PathLike) -> dict | None:
    """The arguments that made the synthetic set at ``root``, with its generator version (what
    result files record as ``data_args``); ``None`` for a folder the generator did not make."""
    path = Path(root) / _STAMP
    if not path.is_file():
        return None
    stamp = json.loads(path.read_text(encoding="utf-8"))
    return {**stamp["args"], "generator_version": stamp["generator_version"]}


def _claim(out: Path, stamp: dict) -> bool:
    """True if ``out`` already holds this dataset; else make it ours (or raise)."""
    stamp_path = out / _STAMP
    if stamp_path.is_file():
        previous = json.loads(stamp_path.read_text())
        same = {k: v for k, v in previous.items() if k != "complete"} == stamp
        if same and previous.get("complete"):
            return True
        if not same:
            raise ValueError(
                f"{out}: holds a synthetic dataset made with other arguments or another "
                f"generator ({previous.get('args')}); choose another folder or delete this one"
            )
        return False  # an interrupted run with the same arguments: complete it
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(
            f"{out}: exists and was not made by make_synthetic; choose a new or empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stamp_path, json.dumps({**stamp, "complete": False}, indent=1) + "\n")
    return False


# --- worker processes ------------------------------------------------------------------------


def run_in_workers(
    fn: Callable[..., int], jobs: Sequence[tuple], workers: int | None = None, fork: bool = True
) -> Iterator[int]:
    """``fn(*job)`` for each job, in order: in this process (``workers=0``) or in ``workers``
    processes, each with one thread; Ctrl-C or a failing job stops every worker at once.

    fork starts in milliseconds and, unlike spawn, needs no ``if __name__ == "__main__"`` guard
    in the user's script. But macOS frameworks are not fork-safe, and a caller whose process
    holds what the workers must not inherit (eSpeak NG loaded by another package) passes
    ``fork=False``: spawn then. ``workers=None`` is the CPUs this process may use.
    """
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if workers == 0:
        for job in jobs:
            yield fn(*job)
        return
    fork = fork and sys.platform.startswith("linux")
    pool = ProcessPoolExecutor(
        workers, get_context("fork" if fork else "spawn"), initializer=_init_worker
    )
    try:
        yield from pool.map(fn, *zip(*jobs, strict=True))
    except BaseException:  # Ctrl-C or a failed job: stop the others now
        _terminate(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _init_worker() -> None:
    torch.set_num_threads(1)  # one worker per core already
    # Ctrl-C reaches the whole process group: the parent alone handles it (and terminates
    # the workers), so no worker prints a KeyboardInterrupt from inside an engine or libsndfile.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and kill the workers.

    ``shutdown`` would wait for the running speakers, and the interpreter waits at exit for
    workers that are not done (they are not daemons): forever if one is stuck.
    """
    if hasattr(pool, "terminate_workers"):  # Python 3.14
        pool.terminate_workers()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    # Taken before shutdown, which forgets it: the join below lets the pool's manager thread
    # finish its cleanup now. Racing it at interpreter exit, Python 3.11's exit hook can write
    # to the pipe the thread is closing ("Bad file descriptor" after "interrupted").
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()
    if manager is not None:
        manager.join(timeout=10)
