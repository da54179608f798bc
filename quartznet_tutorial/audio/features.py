"""The MFCC front end of NeMo's speech-commands recipe, batched, on any device.

``AudioToMFCCPreprocessor`` in NeMo is ``torchaudio.transforms.MFCC`` with a 25 ms Hann
window, 10 ms hop, ``n_fft=512``, 64 mel bands, 64 log-mel DCT-II (ortho) coefficients, no
dither and no normalisation; the feature length it reports is ``ceil(samples / hop)``.
Training then crops (randomly) or centre-pads every sequence to 128 frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchaudio
from torch import nn

__all__ = ["MFCC", "SAMPLE_RATE", "FeatureConfig", "crop_or_pad", "num_frames"]

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class FeatureConfig:
    """MFCC settings; the defaults are NeMo's speech-commands preprocessor."""

    sample_rate: int = SAMPLE_RATE
    window_size: float = 0.025  # 400 samples
    window_stride: float = 0.01  # 160 samples: 101 frames per second (centred STFT)
    n_fft: int = 512
    n_mels: int = 64
    n_mfcc: int = 64
    frames: int | None = 128  # crop/pad target of the training recipe; None: keep all frames

    @property
    def win_length(self) -> int:
        return int(self.window_size * self.sample_rate)

    @property
    def hop_length(self) -> int:
        return int(self.window_stride * self.sample_rate)


# Clips per MFCC computation on a CPU (see MFCC._mfcc).
_CPU_CHUNK = 64
# Mel filters per band of the filterbank on a CPU (see MFCC._mel_bands).
_MEL_BAND = 16


def num_frames(samples: int, hop_length: int = 160) -> int:
    """Frames the centred STFT produces: ``samples // hop + 1`` (101 for one second)."""
    return samples // hop_length + 1


class MFCC(nn.Module):
    """Waveforms ``(B, samples)`` -> MFCCs ``(B, n_mfcc, frames)`` and NeMo's lengths.

    The buffers (``featurizer.dct_mat``, the window, the mel filterbank) have NeMo's names,
    so a ``.nemo`` preprocessor state dict loads into this module unchanged.

    Args:
        config (FeatureConfig, optional): the feature settings. (Default: NeMo's recipe)
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or FeatureConfig()
        self.featurizer = torchaudio.transforms.MFCC(
            sample_rate=config.sample_rate,
            n_mfcc=config.n_mfcc,
            dct_type=2,
            norm="ortho",
            log_mels=True,
            melkwargs=dict(
                f_min=0.0,
                f_max=None,
                n_mels=config.n_mels,
                n_fft=config.n_fft,
                win_length=config.win_length,
                hop_length=config.hop_length,
                window_fn=torch.hann_window,
                normalized=False,
            ),
        )

    @torch.no_grad()
    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute features in float32 (also under autocast).

        Args:
            waveforms (torch.Tensor): ``(B, samples)`` float audio at ``sample_rate``.
            lengths (torch.Tensor, optional): ``(B,)`` valid samples per item. (Default: all)

        Returns:
            (torch.Tensor, torch.Tensor): features ``(B, n_mfcc, samples // hop + 1)`` and
            ``ceil(lengths / hop)`` frame lengths, as NeMo reports them.
        """
        if waveforms.dim() != 2:
            raise ValueError(
                f"expected waveforms of shape (batch, samples), got {tuple(waveforms.shape)}"
            )
        with torch.autocast(waveforms.device.type, enabled=False):
            features = self._mfcc(waveforms.float())
        if lengths is None:  # every item is whole: one op, not four (training calls this a lot)
            whole = math.ceil(waveforms.shape[1] / self.config.hop_length)
            return features, torch.full(waveforms.shape[:1], whole, device=waveforms.device)
        frames = torch.ceil(lengths.to(waveforms.device).float() / self.config.hop_length).long()
        return features, frames

    def _mfcc(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``self.featurizer(waveforms)`` with the same buffers and float32 ops, faster.

        torchaudio's own sequence, STFT then :meth:`from_stft` over the frequency axis of the
        time-major spectrum. Returns ``(B, n_mfcc, T)`` as a transposed view of a ``(B, T,
        n_mfcc)`` tensor, which is the layout ``eval_logits`` reads.

        On a CPU, 64 clips at a time, with the same numbers: a CPU's caches hold the spectra
        of 64 clips, not of more. In one piece, 128 clips took 1.2-2x as long and 256 clips
        2.3-2.7x (AMD EPYC, 2 threads, AVX2 and AVX-512 kernels, 2026-12-02); inside a
        training pipeline, where the step has already emptied the caches, no difference.
        """
        spec = self.featurizer.MelSpectrogram.spectrogram
        if spec.pad or spec.normalized or spec.power != 2.0 or not self.featurizer.log_mels:
            return self.featurizer(waveforms)  # settings the recipe never uses
        chunk = _CPU_CHUNK if waveforms.device.type == "cpu" else max(len(waveforms), 1)
        out = None
        for lo in range(0, len(waveforms), chunk):
            stft = self._stft(waveforms[lo : lo + chunk])
            if out is None:
                out = stft.real.new_empty(len(waveforms), stft.shape[1], self.config.n_mfcc)
            self.from_stft(stft, out=out[lo : lo + chunk])
        if out is None:  # no clips
            return self.featurizer(waveforms)
        return out.transpose(1, 2)

    def _stft(self, waveforms: torch.Tensor) -> torch.Tensor:
        """The featurizer's STFT of ``(B, samples)``, time-major: ``(B, T, freq)`` complex."""
        spec = self.featurizer.MelSpectrogram.spectrogram
        center = spec.center
        if center and spec.pad_mode == "reflect" and waveforms.shape[-1] > spec.n_fft // 2:
            waveforms, center = _reflect_pad(waveforms, spec.n_fft // 2), False
        return torch.stft(
            waveforms,
            n_fft=spec.n_fft,
            hop_length=spec.hop_length,
            win_length=spec.win_length,
            window=spec.window,
            center=center,
            pad_mode=spec.pad_mode,
            normalized=False,
            onesided=spec.onesided,
            return_complex=True,
        ).transpose(1, 2)  # aten's STFT output is time-major in memory

    def from_stft(self, stft: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Time-major STFT ``(..., T, freq)`` (complex, overwritten) -> ``(..., T, n_mfcc)``.

        torchaudio takes the power spectrum as ``|X|.pow(2)``: a complex ``abs`` (``hypot``)
        then a square, the costliest step of the whole front end on a CPU. ``re² + im²`` is
        the same number up to float32 rounding (~1e-7 relative, ``tests/test_pipeline.py``)
        at a fraction of the cost; squaring the STFT's own buffer in place saves a copy. Then
        torchaudio's mel filterbank (on a CPU in bands, ``_mel_bands``), ``log(mel +
        1e-6)`` and DCT.
        """
        parts = torch.view_as_real(stft).square_()
        power = parts[..., 0] + parts[..., 1]  # |X|^2
        log_mel = self._mel(power).add_(1e-6).log_()  # (..., T, n_mels)
        if out is None:
            return torch.matmul(log_mel, self.featurizer.dct_mat)
        return torch.matmul(log_mel, self.featurizer.dct_mat, out=out)

    def _mel(self, power: torch.Tensor) -> torch.Tensor:
        """``power (..., freq) @ fb``: on a CPU band by band (:meth:`_mel_bands`)."""
        fb = self.featurizer.MelSpectrogram.mel_scale.fb
        if power.device.type != "cpu":
            return torch.matmul(power, fb)
        mel = power.new_empty(*power.shape[:-1], fb.shape[1])
        for (lo, hi), (first, last), weights in self._mel_bands(fb):
            torch.matmul(power[..., lo:hi], weights, out=mel[..., first:last])
        return mel

    def _mel_bands(self, fb: torch.Tensor) -> list:
        """The filterbank ``(freq, n_mels)`` cut into 16-filter bands, each with only the
        frequency bins it weights: ``[((lo, hi), (first, last), fb[lo:hi, first:last])]``.

        A triangular filter weights a few bins; the dense product multiplies the zeros too
        (500 of 16,448 weights are non-zero in NeMo's 64 x 257 bank). The bands skip most of
        them and add the same non-zero terms, in a different order: ~3e-7 relative to the
        dense product (``tests/test_pipeline.py``). 64 clips' mel spectra took 0.58-0.89 ms
        instead of 1.38-2.05 (AMD EPYC, 2 threads, AVX2 kernels, 2026-12-02, two runs of
        ``benchmarks/cpu_frontend.py``). Rebuilt when the filterbank changes (e.g. a loaded
        state dict).
        """
        key = (fb.data_ptr(), fb._version, tuple(fb.shape))
        cached = getattr(self, "_band_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        bands = []
        for first in range(0, fb.shape[1], _MEL_BAND):
            last = min(first + _MEL_BAND, fb.shape[1])
            rows = fb[:, first:last].ne(0).any(1).nonzero().flatten().tolist()
            lo, hi = (rows[0], rows[-1] + 1) if rows else (0, 0)
            bands.append(((lo, hi), (first, last), fb[lo:hi, first:last].contiguous()))
        self._band_cache = (key, bands)
        return bands


def _reflect_pad(waveforms: torch.Tensor, pad: int) -> torch.Tensor:
    """``F.pad(waveforms, (pad, pad), mode="reflect")`` for ``(B, N)``, ``N > pad``: the STFT's
    centring. The same values, faster than aten's reflection-pad kernel on a CPU (64 clips:
    0.11-0.13 against 0.54-0.78 ms, AMD EPYC, 2 threads, AVX2 kernels, 2026-12-02, two runs
    of ``benchmarks/cpu_frontend.py``)."""
    n = waveforms.shape[-1]
    left = waveforms[:, 1 : pad + 1].flip(-1)
    right = waveforms[:, n - pad - 1 : n - 1].flip(-1)
    return torch.cat([left, waveforms, right], -1)


def crop_or_pad(
    features: torch.Tensor,
    frames: int = 128,
    generator: torch.Generator | None = None,
    random_crop: bool = False,
) -> torch.Tensor:
    """NeMo's ``CropOrPadSpectrogramAugmentation``: ``(B, F, T)`` -> ``(B, F, frames)``.

    Shorter inputs are zero-padded symmetrically (the odd frame on the right); longer ones
    are cropped at a random offset per item when ``random_crop`` (training), else centred.
    All output lengths are then ``frames``, as in NeMo.
    """
    t = features.shape[-1]
    if t <= frames:
        left = (frames - t) // 2
        return nn.functional.pad(features, (left, frames - t - left))
    if not random_crop:
        start = (t - frames) // 2
        return features[..., start : start + frames]
    offsets = torch.randint(
        0,
        t - frames + 1,
        (features.shape[0],),
        generator=generator,
        device=generator.device if generator is not None else "cpu",
    )
    index = offsets.to(features.device)[:, None] + torch.arange(frames, device=features.device)
    return features.gather(-1, index[:, None, :].expand(-1, features.shape[1], -1))
