"""Accuracy under noise: clips mixed with noise at an exact signal-to-noise ratio.

:func:`mix_at_snr` scales a noise so that ``10 log10(P_clip / P_noise)`` is the SNR asked for,
where ``P`` is the mean square of the clip over its recorded samples (before padding) and of
the noise over the whole window, which the noise fills. The noise is generated (``white``,
``pink`` 1/f, ``brown`` 1/f² power spectra) or cut from recordings, such as the
``_background_noise_`` files of Speech Commands :cite:`warden2018speech` shipped with the
package (:func:`background_recordings`). :class:`NoisyClips` puts a dataset's test clips under
noise for :func:`~quartznet_tutorial.evaluation.accuracy.evaluate` (``quartznet evaluate --snr DB
--noise KIND|FILE...``) and :func:`~quartznet_tutorial.evaluation.snr.accuracy_vs_snr` sweeps
the SNR for one model.

Everything is seeded: clip ``i`` gets its noise from a generator seeded by ``(seed, i)``,
so a result does not depend on batch sizes or on which other clips are evaluated. The mixed
clip is not clipped to ``[-1, 1]`` (that would change its SNR); the MFCC front end takes any
amplitude.

Example:
    >>> noisy = NoisyClips(SpeechCommands(root, "testing"), "pink", snr_db=10)
    >>> waveform, label = noisy[0]
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from quartznet_tutorial.audio.file_io import load_audio

__all__ = [
    "NOISE_KINDS",
    "SNR_LEVELS",
    "NoisyClips",
    "background_recordings",
    "check_noise",
    "colored_noise",
    "measure_snr",
    "mix_at_snr",
]

#: Names of the generated noises, whose power falls as ``1/f**k`` with ``k`` 0, 1 and 2.
NOISE_KINDS = ("white", "pink", "brown")
#: The SNRs of :func:`~quartznet_tutorial.evaluation.snr.accuracy_vs_snr`, in dB (clean speech is
#: measured besides).
SNR_LEVELS: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0, 20.0, 30.0, 40.0)
_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def background_recordings() -> list[Path]:
    """The real ``_background_noise_`` recordings shipped with the package (two, of Speech
    Commands: an exercise bike and a running tap, about a minute each)."""
    from quartznet_tutorial.datasets.real_clips import real_clips_root

    return sorted((real_clips_root() / "_background_noise_").glob("*.wav"))


def colored_noise(kind: str, samples: int, generator: np.random.Generator) -> torch.Tensor:
    """``(samples,)`` float32 noise of unit mean square whose power spectrum is ``1/f**k``.

    White Gaussian noise shaped in the frequency domain (the DC bin set to zero), then
    normalised: ``k`` is 0 for ``white``, 1 for ``pink`` and 2 for ``brown``.
    """
    if kind not in _EXPONENT:
        raise ValueError(f"unknown noise {kind!r}; choose one of {', '.join(NOISE_KINDS)}")
    white = generator.standard_normal(samples)
    if kind == "white":
        noise = white
    else:
        spectrum = np.fft.rfft(white)
        f = np.fft.rfftfreq(samples)
        f[0] = np.inf  # no DC: a brown noise would otherwise drift far from zero
        noise = np.fft.irfft(spectrum / f ** (_EXPONENT[kind] / 2), samples)
    return torch.from_numpy(noise / np.sqrt(np.mean(noise**2))).float()


def mix_at_snr(
    clips: torch.Tensor,
    noise: torch.Tensor,
    snr_db: float,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """``clips + g * noise`` with ``g`` chosen per clip so that the SNR is ``snr_db``.

    Args:
        clips (torch.Tensor): with shape ``(B, T)`` or ``(T,)``, float.
        noise (torch.Tensor): the same shape; each row must have some power.
        snr_db (float): the ratio of the clip's mean square to the scaled noise's, in dB.
        lengths (torch.Tensor, optional): ``(B,)`` samples of each clip before its zero
            padding: its power is the mean square of those. (Default: all ``T``)

    Returns:
        torch.Tensor: float32, the shape of ``clips``. A clip of all zeros (no signal, so no
        SNR) is returned unchanged.

    Raises:
        ValueError: a non-finite SNR, shapes that differ, or a noise row of zero power.
    """
    _check_snr(snr_db)
    mixed = _Mixture(clips, noise, lengths).at(snr_db)
    return mixed[0] if clips.dim() == 1 else mixed


def _check_snr(snr_db: float) -> None:
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db={snr_db}: must be a finite number of dB")


class _Mixture:
    """Clips, noise and both powers (float64), measured once for :func:`mix_at_snr` at any
    number of SNRs; each SNR then mixes in blocks of rows that stay in the CPU's cache."""

    def __init__(self, clips: torch.Tensor, noise: torch.Tensor, lengths: torch.Tensor | None):
        if clips.shape != noise.shape:
            raise ValueError(f"clips {tuple(clips.shape)} and noise {tuple(noise.shape)} differ")
        self.clips = clips.reshape(-1, clips.shape[-1])
        self.noise = noise.reshape(-1, clips.shape[-1])
        x, n = self.clips.double(), self.noise.double()
        count = torch.full((len(x),), x.shape[-1], dtype=torch.float64)
        if lengths is not None:
            count = lengths.reshape(-1).double().clamp(1, x.shape[-1])
        self.signal = x.pow(2).sum(-1) / count
        self.power = n.pow(2).mean(-1)
        if bool((self.power == 0).any()):
            raise ValueError("a noise of zero power cannot be scaled to an SNR; use another noise")

    def at(self, snr_db: float, rows: int = 64) -> torch.Tensor:
        """``(B, T)`` float32 mixtures at ``snr_db``, computed in float64, ``rows`` at a time."""
        gain = torch.sqrt(self.signal / (self.power * 10 ** (snr_db / 10)))  # 0: silent clip
        mixed = torch.empty(self.clips.shape, dtype=torch.float32, device=self.clips.device)
        for i in range(0, len(mixed), rows):
            x, n = self.clips[i : i + rows].double(), self.noise[i : i + rows].double()
            mixed[i : i + rows] = x + gain[i : i + rows, None] * n
        return mixed


def measure_snr(
    clips: torch.Tensor, mixed: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """The SNR in dB of each row of ``mixed`` against ``clips`` (as :func:`mix_at_snr`
    defines it), computed in float64."""
    x = clips.reshape(-1, clips.shape[-1]).double()
    n = mixed.reshape(-1, clips.shape[-1]).double() - x
    count = torch.full((len(x),), x.shape[-1], dtype=torch.float64)
    if lengths is not None:
        count = lengths.reshape(-1).double()
    return 10 * torch.log10((x.pow(2).sum(-1) / count) / n.pow(2).mean(-1))


def check_noise(noise: str | os.PathLike | Sequence[str | os.PathLike], snr_db: float = 0.0) -> str:
    """The name of ``noise`` (its kind, or its recordings' names joined by ``+``), after
    reading it; ``ValueError`` with the fix for an unknown kind, a missing or unreadable file,
    or a non-finite ``snr_db``."""
    _check_snr(snr_db)
    return _Source(noise, 0).name


class _Source:
    """Noise for clip ``i``: a generated kind or a cut of one of the recordings."""

    def __init__(self, noise: str | os.PathLike | Sequence[str | os.PathLike], seed: int):
        items = [noise] if isinstance(noise, (str, os.PathLike)) else list(noise)
        if not items:
            raise ValueError("no noise given; name a kind (white, pink, brown) or .wav files")
        self.seed = seed
        self.kind: str | None = None
        self.recordings: list[tuple[Path, torch.Tensor]] = []
        if len(items) == 1 and str(items[0]) in _EXPONENT:
            self.kind = str(items[0])
            self.name = self.kind
            return
        for item in items:
            path = Path(item)
            if str(item) in _EXPONENT:
                raise ValueError(
                    f"noise {item!r} together with files: give one noise kind or files, not both"
                )
            if path.is_dir():
                found = sorted(path.glob("*.wav"))
                if not found:
                    raise ValueError(f"{path}: no .wav files in this folder; name noise files")
                self.recordings += [(p, load_audio(p, resample=True)) for p in found]
            elif path.exists():
                self.recordings.append((path, load_audio(path, resample=True)))
            else:
                raise ValueError(
                    f"noise {str(item)!r}: no such file or folder; name a kind "
                    f"({', '.join(NOISE_KINDS)}) or noise recordings (.wav)"
                )
        self.name = "+".join(p.stem for p, _ in self.recordings)

    def __call__(self, i: int, samples: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, i])
        if self.kind is not None:
            return colored_noise(self.kind, samples, rng)
        path, audio = self.recordings[int(rng.integers(len(self.recordings)))]
        if len(audio) < samples:
            raise ValueError(
                f"{path}: {len(audio)} samples, shorter than a clip ({samples}); use noise "
                "recordings of at least the clip's length"
            )
        offset = int(rng.integers(len(audio) - samples + 1))
        cut = audio[offset : offset + samples]
        if not bool(cut.any()):
            raise ValueError(
                f"{path}: samples {offset}..{offset + samples} are all zero, so no SNR can be "
                "set with them; trim the silence from the recording"
            )
        return cut


class NoisyClips:
    """A dataset's clips with noise mixed in at ``snr_db``: what
    :func:`~quartznet_tutorial.evaluation.accuracy.evaluate` reads in place of the dataset.

    Args:
        dataset: a :class:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands` (or anything
        with
            ``labels``, ``waveforms()`` and ``targets_tensor()``).
        noise (str, Path or sequence): ``"white"``, ``"pink"`` or ``"brown"``, or
            ``.wav`` recordings (or folders of them): clip ``i`` gets a random cut of one.
        snr_db (float): the SNR of every clip, in dB (see :func:`mix_at_snr`).
        seed (int, optional): seed of the noise. (Default: ``0``)

    The noise fills the whole window, so the clips have no padding left: there is no
    ``lengths_tensor``, and a classifier reads every clip to its end.
    """

    def __init__(
        self,
        dataset,
        noise: str | os.PathLike | Sequence[str | os.PathLike],
        snr_db: float,
        *,
        seed: int = 0,
    ) -> None:
        _check_snr(snr_db)
        self.dataset = dataset
        self.labels = dataset.labels
        self.snr_db = float(snr_db)
        self._source = _Source(noise, seed)
        self._parts: dict[str, _Mixture] = {}  # clips, noise, powers: shared by at()
        self._mixed: torch.Tensor | None = None

    def at(self, snr_db: float) -> NoisyClips:
        """The same clips and the same noise at another SNR. The clips are read and the noise
        drawn once for all the SNRs asked this way (what
        :func:`~quartznet_tutorial.evaluation.snr.accuracy_vs_snr` sweeps)."""
        _check_snr(snr_db)
        other = copy.copy(self)  # shares _parts
        other.snr_db, other._mixed = float(snr_db), None
        return other

    @property
    def noise_name(self) -> str:
        """The noise's kind, or its recordings' names joined by ``+``."""
        return self._source.name

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.waveforms()[i] / 32768, int(self.dataset.targets_tensor()[i])

    def targets_tensor(self) -> torch.Tensor:
        return self.dataset.targets_tensor()

    def waveforms(self, progress: bool = False) -> torch.Tensor:
        """``(N, samples)`` float32 in int16 units (divide by 32768, as for
        :meth:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands.waveforms`;
        floats, because the noisy clips may leave the int16 range)."""
        if self._mixed is None:
            if not self._parts:
                clean = self.dataset.waveforms(progress=progress).float() / 32768
                lengths = getattr(self.dataset, "lengths_tensor", None)
                lengths = None if lengths is None else lengths(progress=progress)
                samples = clean.shape[-1]
                noise = torch.stack([self._source(i, samples) for i in range(len(clean))])
                self._parts["mixture"] = _Mixture(clean, noise, lengths)
            self._mixed = self._parts["mixture"].at(self.snr_db).mul_(32768)
        return self._mixed
