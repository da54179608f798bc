"""NeMo's training augmentation for speech commands, batched, on any device.

Waveform (per clip, before features): :func:`time_shift` (``ShiftPerturbation``), then
:func:`white_noise` (``WhiteNoisePerturbation``), then optionally :func:`mix_background`
(``NoisePerturbation``; off in NeMo's recipe). Features (after MFCC and crop/pad to 128
frames): :func:`spec_cutout` (``SpecCutout``, :cite:`devries2017cutout`), then
:func:`spec_augment` (``SpecAugment``, :cite:`park2019specaugment`), both filling with 0.

NeMo draws every number with Python's ``random`` one clip at a time. Here each op draws all
clips' numbers at once from a :class:`torch.Generator` on the tensor's device and builds its
masks from ``arange`` comparisons, so a GPU batch is augmented on the GPU with no host sync;
the distribution of every draw is NeMo's (``tests/test_augment.py`` checks each against a
loop written from NeMo's code).

Which NeMo? The models NVIDIA reported (Feb 2020) were trained with NeMo 0.x, whose spectrogram
augmentations drew integers as ``int(rng.uniform(0, n))`` (so ``0 .. n-1``) and whose
``SpecCutout`` swapped its two limits: a rectangle spans up to ``rect_time - 1`` MFCC bins and
``rect_freq - 1`` frames. NeMo switched to ``rng.randint(0, n)`` (``0 .. n``, PR #1538, Dec 2020)
and fixed the swap (PR #2201, May 2021). ``AugmentConfig.rules`` picks ``"nemo-2020"`` (the
default, the reported models' recipe) or ``"nemo-1.x"`` (NeMo's later MatchboxNet recipe).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import nn

from quartznet_tutorial.audio.features import SAMPLE_RATE
from quartznet_tutorial.ops import cpu_kernels

__all__ = [
    "RULES",
    "AugmentConfig",
    "Augmenter",
    "NoiseBank",
    "mix_background",
    "spec_augment",
    "spec_cutout",
    "time_shift",
    "white_noise",
]

RULES = ("nemo-2020", "nemo-1.x")
_COUNTS = (
    "rect_masks",
    "rect_time",
    "rect_freq",
    "freq_masks",
    "freq_width",
    "time_masks",
    "time_width",
)


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; the defaults are NeMo's speech-commands recipe.

    Args:
        shift_ms (float): time shift drawn uniformly in ``±shift_ms``; ``0`` disables.
        white_noise_db (tuple of int, optional): white-noise level ``(min, max)`` in dB
            relative to full scale, an integer drawn from ``min .. max - 1``; ``None`` disables.
        background_prob (float): probability that a clip gets background noise.
        background_snr_db (tuple of float): SNR range of the background noise in dB.
        background_max_gain_db (float): cap on the gain applied to the noise (NeMo's).
        rect_masks, rect_time, rect_freq (int): SpecCutout rectangles and their size limits.
        freq_masks, freq_width, time_masks, time_width (int): SpecAugment masks and widths.
        rules (str): ``"nemo-2020"`` or ``"nemo-1.x"``, see the module docstring.
    """

    shift_ms: float = 5.0
    # NeMo's WhiteNoisePerturbation: np.random.randint(-90, -46), high end excluded.
    white_noise_db: tuple[int, int] | None = (-90, -46)
    background_prob: float = 0.0  # off in NeMo's speech-commands recipe
    background_snr_db: tuple[float, float] = (10.0, 50.0)  # NoisePerturbation's defaults
    background_max_gain_db: float = 300.0
    rect_masks: int = 5
    rect_time: int = 25
    rect_freq: int = 15
    freq_masks: int = 2
    freq_width: int = 15
    time_masks: int = 2
    time_width: int = 25
    rules: str = "nemo-2020"  # the code that trained the models NVIDIA reported

    def __post_init__(self) -> None:
        if self.rules not in RULES:
            raise ValueError(f"AugmentConfig.rules={self.rules!r}: expected one of {RULES}")
        for name in _COUNTS:
            _check_count(f"AugmentConfig.{name}", getattr(self, name))
        if self.shift_ms < 0:
            raise ValueError(f"AugmentConfig.shift_ms={self.shift_ms}: must be >= 0")
        if self.white_noise_db is not None:
            low, high = self.white_noise_db
            if int(low) != low or int(high) != high or low >= high:
                raise ValueError(
                    f"AugmentConfig.white_noise_db={self.white_noise_db}: expected integers "
                    "(min, max) with min < max, or None to disable"
                )
        if not 0.0 <= self.background_prob <= 1.0:
            raise ValueError(
                f"AugmentConfig.background_prob={self.background_prob}: must be in [0, 1]"
            )
        low, high = self.background_snr_db
        if low > high:
            raise ValueError(f"AugmentConfig.background_snr_db={self.background_snr_db}: min > max")

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all: every op is the identity."""
        return cls(
            shift_ms=0.0,
            white_noise_db=None,
            background_prob=0.0,
            rect_masks=0,
            freq_masks=0,
            time_masks=0,
        )

    @property
    def is_identity(self) -> bool:
        return (
            self.shift_ms == 0
            and self.white_noise_db is None
            and self.background_prob == 0
            and self.rect_masks == 0
            and self.freq_masks == 0
            and self.time_masks == 0
        )

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _check_count(name: str, value: int) -> None:
    if int(value) != value or value < 0:
        raise ValueError(f"{name}={value}: must be a non-negative integer")


def _draw_high(n: int, rules: str) -> int:
    """Exclusive upper bound of NeMo's integer draw "from 0 to n" under ``rules``.

    NeMo 0.x: ``int(rng.uniform(0, n))`` gives ``0 .. n-1`` (and 0 when ``n == 0``);
    NeMo 1.x: ``rng.randint(0, n)`` gives ``0 .. n``.
    """
    return max(n, 1) if rules == "nemo-2020" else n + 1


def _randint(high: int, size: tuple[int, ...], generator, device) -> torch.Tensor:
    return torch.randint(0, high, size, generator=generator, device=device)


def _span(start: torch.Tensor, width: torch.Tensor, size: int) -> torch.Tensor:
    """``(..., size)`` bool mask of ``start <= i < start + width`` (the slice NeMo assigns)."""
    pos = torch.arange(size, device=start.device)
    return (pos >= start[..., None]) & (pos < (start + width)[..., None])


def _valid(waveforms: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
    """``(B, N)`` mask of the samples inside each clip, or ``None`` when all are."""
    if lengths is None:
        return None
    pos = torch.arange(waveforms.shape[-1], device=waveforms.device)
    return pos < lengths.to(waveforms.device)[:, None]


def _beyond(end: torch.Tensor, waveforms: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` mask of the samples at or past ``end`` (``(B,)``) in each row."""
    pos = torch.arange(waveforms.shape[-1], device=waveforms.device)
    return pos >= end.to(waveforms.device)[:, None]


def time_shift(
    waveforms: torch.Tensor,
    *,
    shift_ms: float = 5.0,
    sample_rate: int = SAMPLE_RATE,
    lengths: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """NeMo's ``ShiftPerturbation(min_shift_ms=-shift_ms, max_shift_ms=shift_ms)``.

    Per clip, ``ms ~ U(-shift_ms, shift_ms)`` and ``s = floor(ms * sample_rate / 1000)``
    samples (``-80 .. 79`` for ±5 ms at 16 kHz); ``s > 0`` moves the audio ``s`` samples
    earlier, ``s < 0`` later, zero-filling what is uncovered, so ``out[t] = in[t + s]`` inside
    the clip. Within ``lengths`` (the clip before batch padding) audio shifted past the clip's
    end is dropped, as NeMo does on the unpadded clip.

    Args:
        waveforms (torch.Tensor): ``(B, N)`` float audio.
        shift_ms (float, optional): the shift range in ms. (Default: ``5.0``)
        sample_rate (int, optional): samples per second. (Default: ``16000``)
        lengths (torch.Tensor, optional): ``(B,)`` valid samples per clip. (Default: all ``N``)
        generator (torch.Generator, optional): on ``waveforms.device``. (Default: global RNG)

    Returns:
        torch.Tensor: ``(B, N)`` shifted audio.
    """
    if shift_ms == 0:
        return waveforms
    batch, n = waveforms.shape
    device = waveforms.device
    ms = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    ms = ms * (2 * shift_ms) - shift_ms
    shift = torch.floor(ms * sample_rate / 1000).long()
    # NeMo leaves a clip shorter than the shift untouched (whole clips are never that short).
    if lengths is not None:
        length = lengths.to(device)
        shift = torch.where(ms.abs() / 1000 > length / sample_rate, 0, shift)
    elif n / sample_rate < shift_ms / 1000:
        shift = torch.where(ms.abs() / 1000 > n / sample_rate, 0, shift)
    # out[b] is the window of N samples at shift[b] in the zero-padded clip: B rows gathered
    # from the padded batch's windows, no (B, N) index tensor (``index_select``, faster than
    # indexing (B, 2 pad + 1, N) windows; benchmarks/cpu_frontend.py).
    pad = math.ceil(shift_ms * sample_rate / 1000) + 1
    padded = nn.functional.pad(waveforms, (pad, pad))  # (B, N + 2 pad)
    starts = torch.arange(batch, device=device) * padded.shape[1] + shift + pad
    out = padded.view(-1).unfold(0, n, 1).index_select(0, starts)  # a new tensor
    if lengths is not None:  # audio shifted past the clip's end is gone, as in NeMo
        out.masked_fill_(_beyond(length - shift.clamp(min=0), out), 0.0)
    return out


def white_noise(
    waveforms: torch.Tensor,
    *,
    level_db: tuple[int, int] = (-90, -46),
    lengths: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """NeMo's ``WhiteNoisePerturbation(min_level, max_level)``.

    Per clip an integer level ``L`` is drawn from ``min .. max - 1`` dB (NumPy's ``randint``
    excludes ``max``) and ``randn * 10 ** (L / 20)`` is added to every sample of the clip
    (only inside ``lengths`` when given: NeMo adds it before batch padding). On the CPU the
    normal samples come from :func:`~quartznet_tutorial.ops.cpu_kernels.randn` where the kernels
    are built (the same distribution, drawn in parallel), else from ``torch.randn``.

    Args:
        waveforms (torch.Tensor): ``(B, N)`` float audio.
        level_db (tuple of int, optional): ``(min, max)``. (Default: ``(-90, -46)``)
        lengths (torch.Tensor, optional): ``(B,)`` valid samples per clip. (Default: all ``N``)
        generator (torch.Generator, optional): on ``waveforms.device``. (Default: global RNG)

    Returns:
        torch.Tensor: ``(B, N)`` noisy audio.
    """
    batch = waveforms.shape[0]
    device = waveforms.device
    low, high = level_db
    level = torch.randint(int(low), int(high), (batch, 1), generator=generator, device=device)
    scale = torch.pow(10.0, level.to(waveforms.dtype) / 20)
    if waveforms.dtype == torch.float32 and cpu_kernels.usable(waveforms):
        noise = cpu_kernels.randn(waveforms.shape, generator)  # drawn in parallel
    else:
        noise = torch.randn(
            waveforms.shape, generator=generator, device=device, dtype=waveforms.dtype
        )
    if lengths is not None:
        noise.masked_fill_(_beyond(lengths, waveforms), 0.0)
    # waveforms + noise * scale in one pass, into the noise buffer: one (B, N) tensor, not four.
    return torch.addcmul(waveforms, noise, scale, out=noise)


@dataclass(frozen=True)
class NoiseBank:
    """Background-noise recordings packed for batched gathering.

    Build with :meth:`from_clips`. ``flat`` holds all recordings end to end, ``starts`` and
    ``lengths`` locate recording ``k`` in it, ``rms_db`` is its level over the whole file (what
    NeMo's ``NoisePerturbation`` uses to set the gain); ``shortest`` (a Python int, so checking
    it needs no device sync) is the shortest recording's length.
    """

    flat: torch.Tensor
    starts: torch.Tensor
    lengths: torch.Tensor
    rms_db: torch.Tensor
    shortest: int

    @classmethod
    def from_clips(cls, clips: Sequence[torch.Tensor], min_length: int = 0) -> NoiseBank:
        """Pack 1-D float recordings; those shorter than ``min_length`` are zero-padded.

        (NeMo would place a short recording at a random offset inside the clip; Speech
        Commands' ``_background_noise_`` files are all a minute long, so this never happens.)
        """
        if len(clips) == 0:
            raise ValueError("background noise: no recordings given; pass at least one clip")
        rms_db, padded = [], []
        for k, clip in enumerate(clips):
            clip = torch.as_tensor(clip, dtype=torch.float32).flatten()
            if clip.numel() == 0:
                raise ValueError(f"background noise recording {k} is empty; remove it")
            rms_db.append(10 * torch.log10(clip.double().pow(2).mean()).float())
            padded.append(nn.functional.pad(clip, (0, max(0, min_length - clip.numel()))))
        lengths = [c.numel() for c in padded]
        starts = torch.cumsum(torch.tensor(lengths), 0) - torch.tensor(lengths)
        return cls(
            torch.cat(padded), starts, torch.tensor(lengths), torch.stack(rms_db), min(lengths)
        )

    def to(self, device) -> NoiseBank:
        moved = (t.to(device) for t in (self.flat, self.starts, self.lengths, self.rms_db))
        return NoiseBank(*moved, shortest=self.shortest)


def _rms_db(waveforms: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    power = waveforms.double().pow(2)
    if valid is None:
        return 10 * torch.log10(power.mean(1))
    return 10 * torch.log10((power * valid).sum(1) / valid.sum(1).clamp(min=1))


def mix_background(
    waveforms: torch.Tensor,
    noise_bank: NoiseBank,
    *,
    prob: float = 1.0,
    snr_db: tuple[float, float] = (10.0, 50.0),
    max_gain_db: float = 300.0,
    lengths: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """NeMo's ``NoisePerturbation`` (applied with probability ``prob``) from a noise bank.

    Per clip: a recording ``k`` uniformly, ``snr ~ U(snr_db)``, a segment of the clip's length
    at a uniform offset in recording ``k``, scaled by ``gain_db = min(rms_db(clip) -
    rms_db(recording k) - snr, max_gain_db)`` and added inside the clip.

    Args:
        waveforms (torch.Tensor): ``(B, N)`` float audio.
        noise_bank (NoiseBank): recordings at least ``N`` samples long, on ``waveforms.device``.
        prob (float, optional): chance that a clip gets noise. (Default: ``1.0``)
        snr_db (tuple of float, optional): SNR range in dB. (Default: ``(10, 50)``)
        max_gain_db (float, optional): cap on the noise gain. (Default: ``300``)
        lengths (torch.Tensor, optional): ``(B,)`` valid samples per clip. (Default: all ``N``)
        generator (torch.Generator, optional): on ``waveforms.device``. (Default: global RNG)

    Returns:
        torch.Tensor: ``(B, N)`` audio with background noise.
    """
    batch, n = waveforms.shape
    device = waveforms.device
    if noise_bank.shortest < n:
        raise ValueError(
            f"background noise recordings must be at least {n} samples; build the bank with "
            f"NoiseBank.from_clips(clips, min_length={n})"
        )
    length = torch.full((batch,), n, device=device) if lengths is None else lengths.to(device)
    apply = torch.rand(batch, generator=generator, device=device) < prob
    k = torch.randint(0, len(noise_bank.lengths), (batch,), generator=generator, device=device)
    snr = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    snr = snr * (snr_db[1] - snr_db[0]) + snr_db[0]
    room = (noise_bank.lengths[k] - length + 1).double()  # offsets 0 .. len_k - L
    u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    offset = torch.minimum(torch.floor(u * room).long(), (room - 1).long())

    valid = _valid(waveforms, lengths)
    gain_db = _rms_db(waveforms, valid) - noise_bank.rms_db[k].double() - snr
    gain = torch.pow(10.0, gain_db.clamp(max=max_gain_db) / 20)
    gain = torch.nan_to_num(torch.where(apply, gain, 0.0), nan=0.0, posinf=0.0)
    index = noise_bank.starts[k, None] + offset[:, None] + torch.arange(n, device=device)
    segment = noise_bank.flat[index.clamp(max=noise_bank.flat.numel() - 1)]
    if valid is not None:
        segment = segment.masked_fill(~valid, 0.0)
    return waveforms + (segment * gain[:, None]).to(waveforms.dtype)


def _check_size(name: str, limit: int, size: int, axis: str) -> None:
    if limit > size:
        raise ValueError(f"{name}={limit} exceeds the {size} {axis} of the features; lower it")


def spec_cutout(
    features: torch.Tensor,
    *,
    rect_masks: int = 5,
    rect_time: int = 25,
    rect_freq: int = 15,
    rules: str = "nemo-2020",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """NeMo's ``SpecCutout``: zero ``rect_masks`` random rectangles per item.

    A rectangle starts at bin ``0 .. F - rect_freq`` and frame ``0 .. T - rect_time``; under
    ``"nemo-2020"`` (upper ends excluded) it spans ``0 .. rect_time - 1`` bins and
    ``0 .. rect_freq - 1`` frames (NeMo 0.x's swapped limits); under ``"nemo-1.x"`` (upper ends
    included) ``0 .. rect_freq`` bins and ``0 .. rect_time`` frames. Rectangles are clipped
    at the edges like NeMo's slices.

    Args:
        features (torch.Tensor): ``(B, F, T)`` features.
        rect_masks (int, optional): rectangles per item. (Default: ``5``)
        rect_time (int, optional): time limit. (Default: ``25``)
        rect_freq (int, optional): frequency limit. (Default: ``15``)
        rules (str, optional): ``"nemo-2020"`` or ``"nemo-1.x"``. (Default: ``"nemo-2020"``)
        generator (torch.Generator, optional): on ``features.device``. (Default: global RNG)

    Returns:
        torch.Tensor: ``(B, F, T)`` features with the rectangles set to 0.
    """
    mask = _cutout_mask(features, rect_masks, rect_time, rect_freq, rules, generator)
    return features if mask is None else features.masked_fill(mask, 0.0)


def _cutout_mask(
    features: torch.Tensor, rect_masks: int, rect_time: int, rect_freq: int, rules: str, generator
) -> torch.Tensor | None:
    """:func:`spec_cutout`'s draws: the ``(B, F, T)`` mask of its rectangles (``None``: none)."""
    if rules not in RULES:
        raise ValueError(f"rules={rules!r}: expected one of {RULES}")
    if rect_masks == 0:
        return None
    batch, f, t = features.shape
    _check_size("rect_freq", rect_freq, f, "frequency bins")
    _check_size("rect_time", rect_time, t, "frames")
    device = features.device
    size = (batch, rect_masks)
    f0 = _randint(_draw_high(f - rect_freq, rules), size, generator, device)
    t0 = _randint(_draw_high(t - rect_time, rules), size, generator, device)
    f_max, t_max = (rect_time, rect_freq) if rules == "nemo-2020" else (rect_freq, rect_time)
    fw = _randint(_draw_high(f_max, rules), size, generator, device)
    tw = _randint(_draw_high(t_max, rules), size, generator, device)
    in_f = _span(f0, fw, f).float()  # (B, M, F)
    in_t = _span(t0, tw, t).float()  # (B, M, T)
    return torch.bmm(in_f.transpose(1, 2), in_t) > 0  # (B, F, T): inside any rectangle


def spec_augment(
    features: torch.Tensor,
    *,
    freq_masks: int = 2,
    freq_width: int = 15,
    time_masks: int = 2,
    time_width: int = 25,
    rules: str = "nemo-2020",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """NeMo's ``SpecAugment`` with ``mask_value=0``: zero whole bands and whole frame spans.

    A frequency mask starts at bin ``0 .. F - freq_width`` and spans ``0 .. freq_width`` bins, a
    time mask starts at frame ``0 .. T - time_width`` (NeMo 1.x: at most ``max(1, ...)``) and
    spans ``0 .. time_width`` frames; the upper ends are excluded under ``"nemo-2020"`` and
    included under ``"nemo-1.x"``.

    Args:
        features (torch.Tensor): ``(B, F, T)`` features.
        freq_masks (int, optional): frequency masks per item. (Default: ``2``)
        freq_width (int, optional): widest frequency mask. (Default: ``15``)
        time_masks (int, optional): time masks per item. (Default: ``2``)
        time_width (int, optional): widest time mask. (Default: ``25``)
        rules (str, optional): ``"nemo-2020"`` or ``"nemo-1.x"``. (Default: ``"nemo-2020"``)
        generator (torch.Generator, optional): on ``features.device``. (Default: global RNG)

    Returns:
        torch.Tensor: ``(B, F, T)`` masked features.
    """
    bands = _band_masks(features, freq_masks, freq_width, time_masks, time_width, rules, generator)
    mask = _union(None, bands)
    return features if mask is None else features.masked_fill(mask, 0.0)


def _band_masks(
    features: torch.Tensor,
    freq_masks: int,
    freq_width: int,
    time_masks: int,
    time_width: int,
    rules: str,
    generator,
) -> list[torch.Tensor]:
    """:func:`spec_augment`'s draws: its ``(B, F, 1)`` band and ``(B, 1, T)`` span masks."""
    if rules not in RULES:
        raise ValueError(f"rules={rules!r}: expected one of {RULES}")
    batch, f, t = features.shape
    device = features.device
    masks = []
    if freq_masks:
        _check_size("freq_width", freq_width, f, "frequency bins")
        size = (batch, freq_masks)
        f0 = _randint(_draw_high(f - freq_width, rules), size, generator, device)
        fw = _randint(_draw_high(freq_width, rules), size, generator, device)
        masks.append(_span(f0, fw, f).any(1)[:, :, None])
    if time_masks:
        _check_size("time_width", time_width, t, "frames")
        size = (batch, time_masks)
        start_max = t - time_width if rules == "nemo-2020" else max(1, t - time_width)
        t0 = _randint(_draw_high(start_max, rules), size, generator, device)
        tw = _randint(_draw_high(time_width, rules), size, generator, device)
        masks.append(_span(t0, tw, t).any(1)[:, None, :])
    return masks


def _union(mask: torch.Tensor | None, broadcast: list[torch.Tensor]) -> torch.Tensor | None:
    """``mask | b0 | b1 ...``, broadcast; ``mask`` (a fresh tensor) is updated in place."""
    for part in broadcast:
        if mask is None:
            mask = part
        elif mask.shape == torch.broadcast_shapes(mask.shape, part.shape):
            mask |= part
        else:
            mask = mask | part
    return mask


class Augmenter(nn.Module):
    """The whole recipe: ``waveform`` before the MFCC, ``spectrogram`` after crop/pad.

    Move it to the data's device with ``.to(device)`` (the noise bank is a buffer) and pass a
    generator on that device.

    Args:
        config (AugmentConfig, optional): what to apply. (Default: NeMo's recipe)
        background (sequence of torch.Tensor, optional): 1-D background recordings, needed when
            ``config.background_prob > 0``. (Default: none)
        sample_rate (int, optional): audio sample rate. (Default: ``16000``)
        clip_samples (int, optional): clip length, the shortest usable recording; shorter ones
            are zero-padded. (Default: ``16000``)
    """

    def __init__(
        self,
        config: AugmentConfig | None = None,
        *,
        background: Sequence[torch.Tensor] = (),
        sample_rate: int = SAMPLE_RATE,
        clip_samples: int = SAMPLE_RATE,
    ) -> None:
        super().__init__()
        self.config = config = config if config is not None else AugmentConfig()
        self.sample_rate = sample_rate
        self.has_background = config.background_prob > 0
        if self.has_background:
            if len(background) == 0:
                raise ValueError(
                    f"AugmentConfig.background_prob={config.background_prob} needs background "
                    "recordings (the dataset's _background_noise_ folder); set it to 0 otherwise"
                )
            bank = NoiseBank.from_clips(background, min_length=clip_samples)
            for name in ("flat", "starts", "lengths", "rms_db"):
                self.register_buffer(f"noise_{name}", getattr(bank, name), persistent=False)
            self.noise_shortest = bank.shortest

    @property
    def noise_bank(self) -> NoiseBank | None:
        if not self.has_background:
            return None
        return NoiseBank(
            self.noise_flat,
            self.noise_starts,
            self.noise_lengths,
            self.noise_rms_db,
            shortest=self.noise_shortest,
        )

    @torch.no_grad()
    def waveform(
        self,
        waveforms: torch.Tensor,
        generator: torch.Generator | None = None,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Shift, white noise, background noise: ``(B, N)`` -> ``(B, N)``."""
        c = self.config
        out = time_shift(
            waveforms,
            shift_ms=c.shift_ms,
            sample_rate=self.sample_rate,
            lengths=lengths,
            generator=generator,
        )
        if c.white_noise_db is not None:
            out = white_noise(out, level_db=c.white_noise_db, lengths=lengths, generator=generator)
        if self.has_background:
            out = mix_background(
                out,
                self.noise_bank,
                prob=c.background_prob,
                snr_db=c.background_snr_db,
                max_gain_db=c.background_max_gain_db,
                lengths=lengths,
                generator=generator,
            )
        return out

    @torch.no_grad()
    def spectrogram(
        self,
        features: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        inplace: bool = False,
    ) -> torch.Tensor:
        """SpecCutout then SpecAugment: ``(B, F, T)`` -> ``(B, F, T)``; ``inplace`` zeroes the
        masked values of ``features`` itself (one ``(B, F, T)`` copy fewer)."""
        c = self.config
        # One fill for both: the union of their masks zeroes what one after the other would.
        mask = _cutout_mask(features, c.rect_masks, c.rect_time, c.rect_freq, c.rules, generator)
        bands = _band_masks(
            features, c.freq_masks, c.freq_width, c.time_masks, c.time_width, c.rules, generator
        )
        mask = _union(mask, bands)
        if mask is None:
            return features
        return features.masked_fill_(mask, 0.0) if inplace else features.masked_fill(mask, 0.0)
