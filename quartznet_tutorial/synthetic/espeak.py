"""An offline Speech Commands look-alike: the command words spoken by eSpeak NG.

:func:`make_synthetic` writes a folder in exactly Google's layout :cite:`warden2018speech`
(``<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt``, ``testing_list.txt``,
``_background_noise_/``), so :class:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands`, the CLI and
the notebooks read it as they read the real dataset, with no download.

A *speaker* is an eSpeak NG voice (one of 8 English accents and one of 88 voice variants)
with its own pitch, pitch range, speaking rate, loudness, microphone colour (band limits,
spectral tilt, resonances) and room (reverberation time and level), all drawn from the seed.
Every clip then varies the rate, pitch, intonation (``.``, ``!`` or ``?``), loudness and the
word's offset in the one-second window, and adds white, pink, brown or mains-hum noise at a
random SNR. Speakers, not clips, are split 80/10/10 by their hash, as Google splits people, so
validation and test voices are never heard in training.

Two options, off by default (the default output does not change), widen the data towards real
recordings: ``background_dirs`` mixes segments of noise recordings (such as Google's
``_background_noise_`` files) into the clips, and ``warp`` resamples each speaker's voice by a
factor of their own, which scales formants (the vocal tract's length), pitch and duration
together, as the speed perturbation of Ko et al. (2015) does.

Any other words can be spoken too (``words=["computer", "lights"]``): a set for your own
keywords (:mod:`quartznet_tutorial.training.finetune`) or for speech that is no keyword.

eSpeak NG (GPL-3.0), from the ``espeakng-loader`` wheel, is a separate program we call
(:mod:`quartznet_tutorial.synthetic.espeak_ng`), not code of this package.

Determinism: the same arguments give byte-identical files, however the work is scheduled.
Every random choice comes from a generator seeded by ``(seed, speaker)`` or ``(seed, word,
speaker, take)``; each speaker's clips are spoken in a fixed order by a freshly loaded engine
whose noise generators are seeded from the clip's generator (:mod:`quartznet_tutorial.synthetic.espeak_ng`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from quartznet_tutorial.audio.features import SAMPLE_RATE
from quartznet_tutorial.audio.file_io import save_wav
from quartznet_tutorial.datasets.speech_commands import check_words, labels_for
from quartznet_tutorial.synthetic.espeak_ng import Utterance, espeak_version, synthesize
from quartznet_tutorial.synthetic.speakers import run_in_workers
from quartznet_tutorial.utils.files import write_text_atomic
from quartznet_tutorial.utils.progress import progress_bar

__all__ = [
    "ACCENTS",
    "GENERATOR_VERSION",
    "VOICE_VARIANTS",
    "Speaker",
    "data_args",
    "espeak_version",
    "make_speakers",
    "make_synthetic",
    "split_speakers",
]

#: Bump when any change alters the audio written for the same arguments (invalidates caches).
#: 3: eSpeak NG's own noise generator is seeded (in version 2 eight breathy variants, such as
#: ``f2``, ``f3`` and ``Alicia``, took their noise from the clock and never repeated).
GENERATOR_VERSION = 3

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


@dataclass(frozen=True)
class Speaker:
    """One synthetic person: an eSpeak NG voice and the settings that stay fixed for them.

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


def make_speakers(count: int, seed: int = 0) -> list[Speaker]:
    """``count`` speakers drawn from ``seed``; speaker ``i`` depends only on ``(seed, i)``."""
    if count < 1:
        raise ValueError(f"need at least one speaker, got {count}")
    return [_make_speaker(seed, i) for i in range(count)]


def _make_speaker(seed: int, index: int) -> Speaker:
    rng = _rng("speaker", seed, index)
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


def make_synthetic(
    out: str | os.PathLike,
    version: int = 1,
    per_word: int = 100,
    seed: int = 0,
    *,
    words: Sequence[str] | None = None,
    speakers: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    background_dirs: Sequence[str | os.PathLike] | None = None,
    background_prob: float = 0.8,
    background_snr_db: tuple[float, float] = (0.0, 20.0),
    warp: tuple[float, float] | None = None,
) -> Path:
    """Write a synthetic Speech Commands dataset to ``out`` (skipped if already there).

    Args:
        out (str or Path): the dataset folder; created, or empty, or a previous, possibly
            interrupted, run with the same arguments (which this call completes).
        version (int, optional): 1 (30 words) or 2 (35 words). (Default: ``1``)
        per_word (int, optional): clips of each word. (Default: ``100``)
        seed (int, optional): the seed of every random choice. (Default: ``0``)
        words (sequence of str, optional): the words to speak: some of the version's (small
            sets for tests) or any others, such as your own keywords
            (:func:`~quartznet_tutorial.datasets.speech_commands.check_words` says which can be folder names).
            (Default: the version's words)
        speakers (int, optional): how many synthetic speakers share the clips; each says each
            word about ``per_word / speakers`` times. (Default: ``max(10, per_word // 2)``)
        workers (int, optional): worker processes; ``0`` synthesises in this process.
            (Default: the CPUs this process may use)
        progress (bool, optional): show a progress bar. (Default: ``True``)
        background_dirs (sequence of str or Path, optional): folders of ``.wav`` noise
            recordings (16 kHz mono, at least one second each), e.g. Google's
            ``_background_noise_``; a random second of one of them is added to a clip, on top of
            its synthetic noise. (Default: none)
        background_prob (float, optional): the fraction of clips that get a recording, used
            with ``background_dirs``. (Default: ``0.8``)
        background_snr_db (tuple of float, optional): ``(min, max)`` speech-to-recording ratio
            in dB, drawn uniformly per clip. (Default: ``(0.0, 20.0)``)
        warp (tuple of float, optional): ``(min, max)`` resampling factor, one per speaker
            drawn uniformly (e.g. ``(0.85, 1.15)``); above 1 a shorter vocal tract, a higher
            voice and faster speech. (Default: none, no warp)

    Returns:
        Path: ``out``.

    Raises:
        ValueError: bad arguments, or ``out`` holds something else (another dataset, or a
            synthetic set made with other arguments).
    """
    out = Path(out)
    all_words = labels_for(version)
    words = all_words if words is None else check_words(words, at_least=1)
    if per_word < 1:
        raise ValueError(f"per_word must be at least 1, got {per_word}")
    speakers = max(10, per_word // 2) if speakers is None else speakers
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if workers < 0:
        raise ValueError(f"workers must be 0 (this process) or more, got {workers}")
    extras = _make_extras(background_dirs, background_prob, background_snr_db, warp)
    people = make_speakers(speakers, seed)
    splits = split_speakers(people)

    stamp = {
        "generator": "quartznet_tutorial.synthetic.espeak",
        "generator_version": GENERATOR_VERSION,
        "espeak_ng": espeak_version(),
        "args": {
            "version": version,
            "per_word": per_word,
            "seed": seed,
            "words": words,
            "speakers": speakers,
            **extras.args(),
        },
    }
    if _claim(out, stamp):
        return out

    takes, tasks = _assign_takes(words, per_word, speakers)
    for word in words:
        (out / word).mkdir(exist_ok=True)

    jobs = [(str(out), seed, people[s], groups, extras) for s, groups in sorted(tasks.items())]
    bar = progress_bar(
        total=len(words) * per_word, unit="clip", desc="synthesising", disable=not progress
    )
    with bar:
        for done in run_in_workers(_write_speaker, jobs, workers):
            bar.update(done)

    _write_background(out / "_background_noise_", seed)
    _write_split_lists(out, takes, [p.name for p in people], splits)
    write_text_atomic(out / "README.md", _readme(stamp, speakers, splits))
    write_text_atomic(out / _STAMP, json.dumps({**stamp, "complete": True}, indent=1) + "\n")
    return out


def _assign_takes(
    words: Sequence[str], per_word: int, speakers: int
) -> tuple[dict[tuple[str, int], int], dict[int, list[tuple[str, int]]]]:
    """How many clips of each word each speaker says, by ``(word, speaker)`` and by speaker.

    Clip n of a word goes to speaker (n + offset) % speakers: every speaker says every word
    about equally often; the offset (from the word) spreads the first speakers over words.
    """
    takes: dict[tuple[str, int], int] = {}
    for word in words:
        offset = int(hashlib.sha1(word.encode()).hexdigest(), 16) % speakers
        for n in range(per_word):
            s = (n + offset) % speakers
            takes[word, s] = takes.get((word, s), 0) + 1
    tasks: dict[int, list[tuple[str, int]]] = {}
    for (word, s), count in takes.items():
        tasks.setdefault(s, []).append((word, count))
    return takes, tasks


def _write_split_lists(
    out: Path, takes: dict[tuple[str, int], int], names: Sequence[str], splits: dict[str, str]
) -> None:
    """``validation_list.txt`` and ``testing_list.txt``: the clips of speakers in each split."""
    for split, filename in (("validation", "validation_list.txt"), ("testing", "testing_list.txt")):
        listed = sorted(
            f"{word}/{names[s]}_nohash_{n}.wav"
            for (word, s), count in takes.items()
            if splits[names[s]] == split
            for n in range(count)
        )
        write_text_atomic(out / filename, "".join(f"{rel}\n" for rel in listed))


# --- one speaker's clips (runs in a worker process) -------------------------------------


def _write_speaker(
    out: str,
    seed: int,
    speaker: Speaker,
    takes: list[tuple[str, int]],
    extras: _Extras | None = None,
) -> int:
    """Write one speaker's ``(word, number of takes)`` clips; returns the number of clips.

    All of them or none: the clips come from one engine, so a partly written speaker (an
    interrupted run) is made again whole, to the same bytes.
    """
    paths = [
        Path(out, w, f"{speaker.name}_nohash_{n}.wav") for w, count in takes for n in range(count)
    ]
    if not all(p.is_file() for p in paths):
        clips = _render_speaker(seed, speaker, takes, extras or _Extras())
        for path, clip in zip(paths, clips, strict=True):
            save_wav(path, clip)
    return len(paths)


def _render_speaker(
    seed: int, speaker: Speaker, takes: list[tuple[str, int]], extras: _Extras
) -> list[np.ndarray]:
    """Every take of every word of ``speaker``, in order, from one freshly loaded engine."""
    keys = [(w, n) for w, count in takes for n in range(count)]
    rngs = [_rng("clip", seed, w, speaker.name, n) for w, n in keys]
    words = [w for w, count in takes for _ in range(count)]
    utterances = []
    for word, rng in zip(words, rngs, strict=True):
        ending = rng.choice([".", "!", "?"], p=[0.6, 0.2, 0.2])  # falling, emphatic, rising
        utterances.append(
            Utterance(
                text=f"{word}{ending}",
                rate=round(speaker.rate * rng.uniform(0.9, 1.1)),
                pitch=int(np.clip(speaker.pitch + rng.integers(-6, 7), 0, 99)),
                pitch_range=int(np.clip(speaker.pitch_range + rng.integers(-10, 11), 0, 99)),
                rand_seed=int(rng.integers(1, 2**31)),
            )
        )
    speech = synthesize(speaker.voice, utterances)
    channel = _Channel(seed, speaker)
    if extras.is_default:
        return [_finish(s, channel, speaker, rng) for s, rng in zip(speech, rngs, strict=True)]
    # The options draw from streams of their own, so the rest of each clip stays as it was.
    rate = extras.rate(seed, speaker)
    return [
        _finish(
            s, channel, speaker, rng, rate, extras, _rng("clip-extra", seed, w, speaker.name, n)
        )
        for s, rng, (w, n) in zip(speech, rngs, keys, strict=True)
    ]


def _finish(
    speech: np.ndarray,
    channel: _Channel,
    speaker: Speaker,
    rng: np.random.Generator,
    rate: int = 22050,
    extras: _Extras | None = None,
    extra_rng: np.random.Generator | None = None,
) -> np.ndarray:
    """eSpeak's 22.05 kHz int16 -> one 16 kHz float32 second: microphone, room, level, noise.

    ``rate`` is the rate the speech is taken to be at (22,050 Hz unless warped).
    """
    x = _resampler(rate)(torch.from_numpy(speech.astype(np.float32) / 32768)).numpy()
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
    if extras is not None and extras.background and extra_rng.random() < extras.background_prob:
        recording = _load_background(extras.background)[
            int(extra_rng.integers(len(extras.background)))
        ]
        at = int(extra_rng.integers(0, len(recording) - _CLIP + 1))
        segment = recording[at : at + _CLIP]
        snr_db = extra_rng.uniform(*extras.background_snr_db)
        power = max(float(np.mean(segment**2)), 1e-12)
        clip += segment * np.sqrt(speech_power / power / 10 ** (snr_db / 10))
    return clip.astype(np.float32)


class _Channel:
    """The speaker's microphone filter, then their room's decaying noise tail, as one FIR."""

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
            rng = _rng("room", seed, speaker.name)
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


def _write_background(folder: Path, seed: int) -> None:
    """A minute of each noise kind, like Google's ``_background_noise_`` recordings."""
    folder.mkdir(exist_ok=True)
    for kind in _NOISES:
        path = folder / f"{kind}_noise.wav"
        if not path.is_file():
            noise = _noise(kind, _BACKGROUND_SECONDS * SAMPLE_RATE, _rng("background", seed, kind))
            save_wav(path, (0.3 * noise / np.abs(noise).max()).astype(np.float32))
    write_text_atomic(
        folder / "README.md",
        "Synthetic background noise for augmentation (not a class): white, pink (1/f), brown "
        f"(1/f^2) and mains hum with hiss, {_BACKGROUND_SECONDS} s each, written by "
        "quartznet_tutorial.synthetic.espeak.\n",
    )


@cache
def _resampler(rate: int = 22050):
    import torchaudio

    return torchaudio.transforms.Resample(rate, SAMPLE_RATE)  # caches the sinc kernel


# --- options that widen the data ---------------------------------------------------------------


@dataclass(frozen=True)
class _Extras:
    """``make_synthetic``'s optional widening; the defaults leave every byte as it was."""

    background: tuple[str, ...] = ()  # noise recordings, sorted by file name
    background_digests: tuple[str, ...] = ()
    background_prob: float = 0.8
    background_snr_db: tuple[float, float] = (0.0, 20.0)
    warp: tuple[float, float] | None = None

    @property
    def is_default(self) -> bool:
        return not self.background and self.warp is None

    def args(self) -> dict:
        """The options as the dataset's stamp records them (nothing when off)."""
        args: dict = {}
        if self.background:
            args["background"] = [
                {"file": Path(p).name, "sha256": d}
                for p, d in zip(self.background, self.background_digests, strict=True)
            ]
            args["background_prob"] = self.background_prob
            args["background_snr_db"] = list(self.background_snr_db)
        if self.warp is not None:
            args["warp"] = list(self.warp)
        return args

    def rate(self, seed: int, speaker: Speaker) -> int:
        """The rate a speaker's speech is taken to be at: ``22050 * factor`` in 50 Hz steps."""
        if self.warp is None:
            return 22050
        factor = _rng("warp", seed, speaker.name).uniform(*self.warp)
        return round(22050 * factor / 50) * 50


def _make_extras(
    background_dirs: Sequence[str | os.PathLike] | None,
    background_prob: float,
    background_snr_db: tuple[float, float],
    warp: tuple[float, float] | None,
) -> _Extras:
    if not 0.0 <= background_prob <= 1.0:
        raise ValueError(f"background_prob={background_prob}: must be in [0, 1]")
    low, high = background_snr_db
    if low > high:
        raise ValueError(f"background_snr_db={background_snr_db}: min > max; swap them")
    if warp is not None and not 0.5 <= warp[0] <= warp[1] <= 2.0:
        raise ValueError(f"warp={warp}: expected (min, max) with 0.5 <= min <= max <= 2")
    files: list[Path] = []
    for folder in background_dirs or ():
        found = sorted(Path(folder).glob("*.wav"))
        if not found:
            raise ValueError(f"{folder}: no .wav noise recordings in background_dirs; fix the path")
        files += found
    files.sort(key=lambda p: (p.name, str(p)))
    for path, recording in zip(files, _load_background(tuple(map(str, files))), strict=True):
        if len(recording) < _CLIP:
            raise ValueError(f"{path}: shorter than one second; leave it out of background_dirs")
    return _Extras(
        background=tuple(map(str, files)),
        background_digests=tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in files),
        background_prob=float(background_prob),
        background_snr_db=(float(low), float(high)),
        warp=None if warp is None else (float(warp[0]), float(warp[1])),
    )


@cache
def _load_background(paths: tuple[str, ...]) -> list[np.ndarray]:
    """Noise recordings as float64 at 16 kHz (each resampled if it is not)."""
    from quartznet_tutorial.audio.file_io import load_audio

    return [load_audio(p, resample=True).numpy().astype(np.float64) for p in paths]


# --- small helpers ---------------------------------------------------------------------------


def _rng(*key) -> np.random.Generator:
    """A generator seeded by the SHA-256 of ``key``: independent streams, stable across runs."""
    digest = hashlib.sha256(json.dumps(key).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


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


def _readme(stamp: dict, speakers: int, splits: dict[str, str]) -> str:
    counts = {
        s: sum(v == s for v in splits.values()) for s in ("training", "validation", "testing")
    }
    args = stamp["args"]
    what = f"Speech Commands V{args['version']} words"
    if not set(args["words"]) <= set(labels_for(args["version"])):
        what = f"The words {', '.join(args['words'])},"
    return (
        "# Synthetic Speech Commands\n\n"
        f"{what} spoken by eSpeak NG {stamp['espeak_ng']} "
        f"(GPL-3.0, from the espeakng-loader wheel), {args['per_word']} clips per word by "
        f"{speakers} synthetic speakers ({counts['training']} training, {counts['validation']} "
        f"validation, {counts['testing']} testing), seed {args['seed']}. Written by "
        f"quartznet_tutorial.synthetic.espeak (generator version {stamp['generator_version']}); "
        "the same arguments give byte-identical files.\n\n"
        "Layout as Google's dataset: <word>/<speaker>_nohash_<n>.wav (16 kHz mono 16-bit, 1 s), "
        "validation_list.txt, testing_list.txt, _background_noise_/.\n"
    )
