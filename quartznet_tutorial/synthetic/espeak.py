"""An offline Speech Commands look-alike: the command words spoken by eSpeak NG.

:func:`make_synthetic` writes a folder in exactly Google's layout :cite:`warden2018speech`
(``<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt``, ``testing_list.txt``,
``_background_noise_/``), so
:class:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands`, the CLI and the notebooks
read it as they read the real dataset, with no download.

A *speaker* (:class:`~quartznet_tutorial.synthetic.speakers.Speaker`) is an eSpeak NG voice
(one of 8 English accents and one of 88 voice variants)
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
whose noise generators are seeded from the clip's generator
(:mod:`quartznet_tutorial.synthetic.espeak_ng`). The speakers, microphone, room, noise and
folder come from :mod:`quartznet_tutorial.synthetic.speakers`, shared with the other engines.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import numpy as np

from quartznet_tutorial.audio.features import SAMPLE_RATE
from quartznet_tutorial.datasets.speech_commands import check_words, labels_for
from quartznet_tutorial.synthetic.espeak_ng import (
    Utterance,
    espeak_version,
    is_loaded,
    library_paths,
    synthesize,
)
from quartznet_tutorial.synthetic.speakers import (
    Channel,
    Speaker,
    describe_splits,
    finish,
    make_speakers,
    seeded_rng,
    split_speakers,
    write_dataset,
)

__all__ = ["GENERATOR_VERSION", "make_synthetic", "render"]

#: Bump when any change alters the audio written for the same arguments (invalidates caches).
#: 3: eSpeak NG's own noise generator is seeded (in version 2 eight breathy variants, such as
#: ``f2``, ``f3`` and ``Alicia``, took their noise from the clock and never repeated).
GENERATOR_VERSION = 3


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
            (:func:`~quartznet_tutorial.datasets.speech_commands.check_words` says which can be
            folder names).
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
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be 0 (this process) or more, got {workers}")
    extras = _make_extras(background_dirs, background_prob, background_snr_db, warp)
    people = make_speakers(speakers, seed)
    splits = split_speakers(people)
    stamp = {
        "generator": "quartznet_tutorial.synthetic",  # its old name: cached sets stay valid
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
    about = ("Synthetic Speech Commands", _readme(stamp, speakers, splits))
    fork = not is_loaded(library_paths()[0])  # a fork would inherit another user's engine
    return write_dataset(
        out,
        stamp,
        about,
        people,
        splits,
        render,
        (extras,),
        workers=workers,
        fork=fork,
        progress=progress,
    )


# --- one speaker's clips (runs in a worker process) -------------------------------------


def render(
    seed: int, speaker: Speaker, takes: list[tuple[str, int]], extras: _Extras | None = None
) -> list[np.ndarray]:
    """Every take of every word of ``speaker``, in order, from one freshly loaded engine.

    Args:
        seed (int): the seed of every random choice.
        speaker (~quartznet_tutorial.synthetic.speakers.Speaker): who speaks.
        takes (list of (str, int)): ``(word, number of takes)``.
        extras (optional): :func:`make_synthetic`'s widening options. (Default: none)

    Returns:
        list of np.ndarray: one 16 kHz float32 second per take.
    """
    extras = extras or _Extras()
    keys = [(w, n) for w, count in takes for n in range(count)]
    rngs = [seeded_rng("clip", seed, w, speaker.name, n) for w, n in keys]
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
    speech = [s.astype(np.float32) / 32768 for s in synthesize(speaker.voice, utterances)]
    channel = Channel(seed, speaker)
    if extras.is_default:
        return [finish(s, channel, speaker, rng) for s, rng in zip(speech, rngs, strict=True)]
    # The options draw from streams of their own, so the rest of each clip stays as it was.
    rate = extras.rate(seed, speaker)
    clips = []
    for s, rng, (w, n) in zip(speech, rngs, keys, strict=True):
        add = None
        if extras.background:
            add = partial(extras.add_background, seeded_rng("clip-extra", seed, w, speaker.name, n))
        clips.append(finish(s, channel, speaker, rng, rate, add))
    return clips


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
        factor = seeded_rng("warp", seed, speaker.name).uniform(*self.warp)
        return round(22050 * factor / 50) * 50

    def add_background(
        self, rng: np.random.Generator, clip: np.ndarray, speech_power: float
    ) -> None:
        """Add a random second of a recording to ``clip`` (``rng.random() < background_prob``)."""
        if rng.random() < self.background_prob:
            recording = _load_background(self.background)[int(rng.integers(len(self.background)))]
            at = int(rng.integers(0, len(recording) - len(clip) + 1))
            segment = recording[at : at + len(clip)]
            snr_db = rng.uniform(*self.background_snr_db)
            power = max(float(np.mean(segment**2)), 1e-12)
            clip += segment * np.sqrt(speech_power / power / 10 ** (snr_db / 10))


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
        if len(recording) < SAMPLE_RATE:
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


def _readme(stamp: dict, speakers: int, splits: dict[str, str]) -> str:
    args = stamp["args"]
    what = f"Speech Commands V{args['version']} words"
    if not set(args["words"]) <= set(labels_for(args["version"])):
        what = f"The words {', '.join(args['words'])},"
    return (
        f"{what} spoken by eSpeak NG {stamp['espeak_ng']} "
        f"(GPL-3.0, from the espeakng-loader wheel), {args['per_word']} clips per word by "
        f"{speakers} synthetic speakers ({describe_splits(splits)}), seed {args['seed']}. "
        "Written by quartznet_tutorial.synthetic.espeak (generator version "
        f"{stamp['generator_version']}); the same arguments give byte-identical files."
    )
