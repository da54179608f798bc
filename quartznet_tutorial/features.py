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

        torchaudio takes the power spectrum as ``|X|.pow(2)``: a complex ``abs`` (``hypot``)
        then a square, the costliest step of the whole front end on a CPU. ``re² + im²`` is
        the same number up to float32 rounding (~1e-7 relative, ``tests/test_pipeline.py``)
        at a quarter of the cost. Everything else is torchaudio's own sequence: STFT, mel
        filterbank and DCT as products over the frequency axis of the time-major spectrum,
        ``log(mel + 1e-6)``. Returns ``(B, n_mfcc, T)`` as a transposed view of a ``(B, T,
        n_mfcc)`` tensor, which is the layout ``eval_logits`` reads.
        """
        mel = self.featurizer.MelSpectrogram
        spec = mel.spectrogram
        if spec.pad or spec.normalized or spec.power != 2.0 or not self.featurizer.log_mels:
            return self.featurizer(waveforms)  # settings the recipe never uses
        if waveforms.device.type == "cpu" and len(waveforms) > _CPU_CHUNK:
            # The same numbers, a chunk at a time: a CPU's caches hold the spectra of 64
            # clips, not of more. In one piece, 128 clips took 1.2-2x as long and 256 clips
            # 2.3-2.7x (AMD EPYC, 2 threads, AVX2 and AVX-512 kernels, 2026-12-02); inside a
            # training pipeline, where the step has already emptied the caches, no difference.
            chunks = [self._mfcc(w).transpose(1, 2) for w in waveforms.split(_CPU_CHUNK)]
            return torch.cat(chunks).transpose(1, 2)
        stft = torch.stft(
            waveforms,
            n_fft=spec.n_fft,
            hop_length=spec.hop_length,
            win_length=spec.win_length,
            window=spec.window,
            center=spec.center,
            pad_mode=spec.pad_mode,
            normalized=False,
            onesided=spec.onesided,
            return_complex=True,
        ).transpose(1, 2)  # (B, T, freq): aten's STFT output is time-major in memory
        power = stft.real.square().add_(stft.imag.square())  # |X|^2
        log_mel = torch.matmul(power, mel.mel_scale.fb).add_(1e-6).log_()  # (B, T, n_mels)
        return torch.matmul(log_mel, self.featurizer.dct_mat).transpose(1, 2)


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
