"""Keyword spotting in a long recording: posteriors every hop, smoothed into detections.

A classifier trained on one-second clips becomes a detector in two steps:

1. **Posteriors** (:func:`stream_posteriors`): the softmax of one-second windows every ``hop``
   (100 ms by default) over the whole recording, read in blocks from the file, so memory stays
   bounded whatever the length (the result itself grows by ``labels x 4`` bytes per hop, 4 MB
   per hour for 30 labels). Two modes:

   - ``"exact"``: every window is classified as a clip on its own, exactly as ``predict``
     would (zero-padded MFCCs, the training recipe's 128 frames). The MFCC frames that
     overlapping windows share are computed once: of a window's 101 centred frames only the
     two at each end read its reflect padding, and those four are computed per window, so
     the posteriors are the lone windows' up to float32 rounding (``tests/test_detect.py``);
   - ``"one-pass"``: MFCCs and the encoder run once over the whole stream (in blocks, each
     with enough context that it equals one run over everything); as QuartzNet is fully
     convolutional and its decoder averages over time, a window's logits are the decoder
     applied to the mean of the encoder frames under that window. About ten times less work
     at a 100 ms hop; a window's encoder now sees the neighbouring audio instead of the zero
     padding of a lone clip, so posteriors differ a little (``benchmarks/detect.py`` measures
     by how much).

2. **Detections** (:class:`RecognizeCommands`): the smoothing of TensorFlow's speech_commands
   example (``tensorflow/examples/speech_commands/recognize_commands.py``, used by
   ``test_streaming_accuracy.py``): posteriors are averaged over the last
   ``average_window_ms``; a word is detected when its average is the top score, above
   ``threshold``, differs from the previous top word, and comes more than ``suppression_ms``
   after it (unless that was ``_silence_``); fewer than ``minimum_count`` results, or results
   spanning less than a quarter of the averaging window, decide nothing. The defaults are that
   script's: 500 ms, 0.7, 500 ms and 4 (hard-coded there). What differs, and why:

   - the hop is 100 ms (TensorFlow's script strides 30 ms): ten windows a second suffice for
     one-second words and keep an hour of audio within about 30 s of CPU;
   - a detection's time is the centre of the newest window when it fires (TensorFlow gives the
     window's start), so it lies near the spoken word, not half a second before it;
   - ``_silence_`` and ``_unknown_`` take part in the smoothing (they win and reset the
     previous word as in TensorFlow) but are never reported; TensorFlow's script reports
     ``_unknown_``.

:mod:`quartznet_tutorial.kws.scoring` matches detections to a ground truth (``quartznet
make-stream`` writes one): hit rate, miss rate, false accepts per hour and a DET curve.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from quartznet_tutorial.audio.features import SAMPLE_RATE, crop_or_pad
from quartznet_tutorial.audio.file_io import AudioError, check_not_truncated
from quartznet_tutorial.models.classifier import Classifier, fixed_frame_logits

__all__ = [
    "MODES",
    "NON_KEYWORDS",
    "DetectConfig",
    "Detection",
    "Posteriors",
    "RecognizeCommands",
    "detect",
    "detect_file",
    "keyword_set",
    "receptive_field",
    "stream_posteriors",
]

#: Posterior modes of :func:`stream_posteriors`.
MODES = ("exact", "one-pass")
#: Labels that are never reported as detections (the 12-class task's non-keywords).
NON_KEYWORDS = frozenset({"_silence_", "_unknown_", "_background_noise_"})
_WINDOW = SAMPLE_RATE  # one-second windows, the clips the models were trained on


@dataclass(frozen=True)
class DetectConfig:
    """How posteriors become detections (TensorFlow's ``RecognizeCommands`` settings).

    Args:
        hop_ms (int): window step; a multiple of 10 ms (the MFCC hop). (Default: ``100``)
        average_window_ms (int): posteriors are averaged over this much history.
            (Default: ``500``, TensorFlow's)
        threshold (float): the averaged score a word must exceed. (Default: ``0.7``,
            TensorFlow's)
        suppression_ms (int): the least time between two detections. (Default: ``500``)
        minimum_count (int): the fewest results the average may hold. (Default: ``4``)
        mode (str): ``"exact"`` or ``"one-pass"`` (see the module docstring).
            (Default: ``"exact"``)
        keywords (tuple of str, optional): the labels that may be reported. (Default: every
            label but ``_silence_`` and ``_unknown_``)
    """

    # The metadata is the help text of ``quartznet detect``'s options, made from these fields.
    hop_ms: int = field(
        default=100, metadata={"help": "window step in ms, a multiple of 10 (the MFCC hop)"}
    )
    average_window_ms: int = field(
        default=500, metadata={"help": "ms of posteriors averaged (TensorFlow's)"}
    )
    threshold: float = field(
        default=0.7, metadata={"help": "the averaged score a word must exceed (TensorFlow's)"}
    )
    suppression_ms: int = field(
        default=500, metadata={"help": "the least time between two detections, in ms"}
    )
    minimum_count: int = field(
        default=4, metadata={"help": "the fewest results the average may hold"}
    )
    mode: str = field(
        default="exact",
        metadata={
            "help": "exact: every window classified alone; one-pass: the encoder runs once over "
            "the stream, ~10x faster, slightly different posteriors",
            "choices": MODES,
        },
    )
    keywords: tuple[str, ...] | None = field(
        default=None,
        metadata={"help": "labels to report (default: all but _silence_ and _unknown_)"},
    )

    def __post_init__(self) -> None:
        if self.hop_ms < 10 or self.hop_ms % 10:
            raise ValueError(f"hop_ms={self.hop_ms}: must be a positive multiple of 10 ms")
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}: choose one of {', '.join(MODES)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold={self.threshold}: must be between 0 and 1")
        if self.average_window_ms < 0 or self.suppression_ms < 0 or self.minimum_count < 1:
            raise ValueError(
                "average_window_ms and suppression_ms must be >= 0, minimum_count >= 1; got "
                f"{self.average_window_ms}, {self.suppression_ms}, {self.minimum_count}"
            )


@dataclass(frozen=True)
class Detection:
    """One detected keyword: ``word`` at ``time`` seconds with averaged posterior ``score``."""

    word: str
    time: float
    score: float


@dataclass
class Posteriors:
    """Softmax outputs of the windows of one recording.

    Args:
        probs (numpy.ndarray): ``(windows, labels)`` float32.
        labels (list of str): the classifier's labels.
        hop_ms (int): window step.
        duration (float): the recording's length in seconds.
    """

    probs: np.ndarray
    labels: list[str]
    hop_ms: int
    duration: float

    @property
    def times(self) -> np.ndarray:
        """Centre of each window in seconds."""
        return np.arange(len(self.probs)) * self.hop_ms / 1000 + _WINDOW / SAMPLE_RATE / 2


class RecognizeCommands:
    """TensorFlow's ``RecognizeCommands``: average, threshold, suppress (see module docstring).

    Feed results in time order with :meth:`process`; it returns the word when one is newly
    detected, else ``None``.
    """

    def __init__(self, labels: Sequence[str], config: DetectConfig) -> None:
        self.labels = list(labels)
        self.config = config
        self._results: list[tuple[int, np.ndarray]] = []
        self._sum = np.zeros(len(self.labels), dtype=np.float64)
        self._previous_label = "_silence_"
        self._previous_time = -math.inf

    def process(self, scores: np.ndarray, time_ms: int) -> tuple[str, float] | None:
        """Add the posteriors of the window at ``time_ms``; ``(label, score)`` if one fires."""
        c = self.config
        self._results.append((time_ms, scores))
        self._sum += scores
        while time_ms - c.average_window_ms > self._results[0][0]:
            self._sum -= self._results.pop(0)[1]
        count = len(self._results)
        if count < c.minimum_count or time_ms - self._results[0][0] < c.average_window_ms / 4:
            return None
        average = self._sum / count
        top = int(average.argmax())
        label, score = self.labels[top], float(average[top])
        if self._previous_label == "_silence_" or self._previous_time == -math.inf:
            since = math.inf
        else:
            since = time_ms - self._previous_time
        if score > c.threshold and label != self._previous_label and since > c.suppression_ms:
            self._previous_label, self._previous_time = label, time_ms
            return label, score
        return None


def detect(posteriors: Posteriors, config: DetectConfig | None = None) -> list[Detection]:
    """Detections from posteriors computed once (:func:`stream_posteriors`); cheap, so a
    threshold sweep calls it many times.

    ``config.hop_ms`` must equal ``posteriors.hop_ms``; the mode does not matter here.
    """
    config = config or DetectConfig(hop_ms=posteriors.hop_ms)
    if config.hop_ms != posteriors.hop_ms:
        raise ValueError(f"posteriors at {posteriors.hop_ms} ms, config.hop_ms={config.hop_ms}")
    keywords = keyword_set(posteriors.labels, config.keywords)
    recognizer = RecognizeCommands(posteriors.labels, config)
    out = []
    centre = _WINDOW / SAMPLE_RATE / 2
    for i, scores in enumerate(posteriors.probs.astype(np.float64)):
        time_ms = i * config.hop_ms
        fired = recognizer.process(scores, time_ms)
        if fired is not None and fired[0] in keywords:
            out.append(Detection(fired[0], round(time_ms / 1000 + centre, 3), round(fired[1], 4)))
    return out


def keyword_set(labels: Sequence[str], keywords: Sequence[str] | None) -> set[str]:
    """The words to detect: ``keywords``, or every label but silence and unknown; a word the
    model lacks is a ``ValueError``."""
    if keywords is None:
        return {w for w in labels if w not in NON_KEYWORDS}
    missing = [w for w in keywords if w not in labels]
    if missing:
        raise ValueError(
            f"keywords {missing} are not labels of this model; it knows: {', '.join(labels)}"
        )
    return set(keywords) - NON_KEYWORDS


# --- posteriors ---------------------------------------------------------------------------


def _open(path: Path) -> sf.SoundFile:
    if path.is_dir():
        raise AudioError(f"{path}: is a directory; pass an audio file")
    if not path.exists():
        raise AudioError(f"{path}: no such file; check the path")
    try:
        f = sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: not a readable audio file ({e}); expected 16 kHz mono") from None
    check_not_truncated(path, f.extra_info)
    if f.samplerate != SAMPLE_RATE:
        f.close()
        raise AudioError(
            f"{path}: expected {SAMPLE_RATE} Hz, got {f.samplerate} Hz; convert it first "
            f"(e.g. sox in.wav -r {SAMPLE_RATE} out.wav)"
        )
    if f.frames == 0:
        f.close()
        raise AudioError(f"{path}: the file holds no audio samples")
    return f


def _blocks(f: sf.SoundFile, block: int) -> Iterator[np.ndarray]:
    """Mono float32 blocks of ``f``; channels are averaged."""
    while True:
        data = f.read(block, dtype="float32", always_2d=True)
        if not len(data):
            return
        if not np.isfinite(data).all():
            raise AudioError(f"{f.name}: has NaN or infinite samples; fix or remove the file")
        yield data.mean(axis=1, dtype=np.float32)


@torch.inference_mode()
def stream_posteriors(
    classifier: Classifier,
    path: str | os.PathLike,
    *,
    hop_ms: int = 100,
    mode: str = "exact",
    batch_size: int = 64,
    block_seconds: float = 60.0,
) -> Posteriors:
    """Posteriors of one-second windows every ``hop_ms`` over an audio file of any length.

    Windows start at 0, hop, 2 hop... while they fit in the file (a file shorter than a second
    gives one zero-padded window). The file is read ``block_seconds`` at a time.

    Args:
        classifier (Classifier): the model (a classifier with ``features.frames=None``, loaded
            from a ``.nemo`` archive, runs the same way on each one-second window).
        path (str or Path): a 16 kHz audio file (any format libsndfile reads; channels are
            averaged).
        hop_ms (int, optional): window step, a multiple of 10 ms. (Default: ``100``)
        mode (str, optional): ``"exact"`` or ``"one-pass"``. (Default: ``"exact"``)
        batch_size (int, optional): windows per forward pass in ``"exact"`` mode.
            (Default: ``64``)
        block_seconds (float, optional): audio read at once. (Default: ``60``)

    Returns:
        Posteriors: ``(windows, labels)`` probabilities.

    Raises:
        AudioError: the file is missing, unreadable or not 16 kHz.
        ValueError: a bad ``hop_ms``, ``mode`` or ``batch_size``.
    """
    DetectConfig(hop_ms=hop_ms, mode=mode)  # validates both
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    path = Path(path)
    hop = hop_ms * SAMPLE_RATE // 1000
    block = max(int(block_seconds * SAMPLE_RATE) // hop * hop, hop)
    was_training = classifier.training
    classifier.eval()
    try:
        with _open(path) as f:
            total = f.frames
            if mode == "exact":
                probs = _exact(classifier, _blocks(f, block), total, hop, batch_size)
            else:
                probs = _one_pass(classifier, _blocks(f, block), total, hop)
    finally:
        classifier.train(was_training)
    return Posteriors(probs, list(classifier.labels), hop_ms, total / SAMPLE_RATE)


def _num_windows(total: int, hop: int) -> int:
    return 1 if total <= _WINDOW else (total - _WINDOW) // hop + 1


def _exact(
    classifier: Classifier, blocks: Iterator[np.ndarray], total: int, hop: int, batch: int
) -> np.ndarray:
    device = next(classifier.parameters()).device
    n = _num_windows(total, hop)
    out = np.empty((n, len(classifier.labels)), dtype=np.float32)
    buffer = np.zeros(0, dtype=np.float32)  # samples from `offset` on
    offset, done = 0, 0
    shared = _frames_shareable(classifier, hop)
    for data in _pad_short(blocks, total):
        buffer = np.concatenate([buffer, data])
        while done < n:
            start = done * hop - offset
            count = min(batch, n - done, (len(buffer) - start - _WINDOW) // hop + 1)
            if count <= 0 or (count < batch and done + count < n):
                break
            samples = torch.from_numpy(buffer[start : start + (count - 1) * hop + _WINDOW])
            if shared:
                logits = _shared_frame_logits(classifier, samples.to(device), count, hop)
            else:
                logits = classifier(samples.unfold(0, _WINDOW, hop).to(device))  # (count, labels)
            out[done : done + count] = logits.float().softmax(-1).cpu().numpy()
            done += count
        keep = done * hop - offset
        buffer, offset = buffer[keep:], offset + keep
    return out


# Exact windows from shared MFCC frames. A window's centred STFT (reflect padding at its own
# two ends) has frames at window samples 0, 160, ..., 16000, each reading 256 samples either
# side: frames 2..98 lie inside the window and are frames of the stream itself, the same for
# every window that holds them; only frames 0, 1, 99 and 100 see the reflection.
_HOP_LENGTH = 160
_FRAMES = _WINDOW // _HOP_LENGTH + 1  # 101
_EDGE = 2  # reflected frames at each end of a window


def _frames_shareable(classifier: torch.nn.Module, hop: int) -> bool:
    """Whether ``classifier`` is the package's MFCC + QuartzNet with the recipe's framing, for
    which :func:`_shared_frame_logits` equals classifying each window on its own."""
    if not isinstance(classifier, Classifier) or hop % _HOP_LENGTH:
        return False
    featurizer = classifier.preprocessor.featurizer
    spec = featurizer.MelSpectrogram.spectrogram
    return (
        type(classifier).forward is Classifier.forward
        and spec.hop_length == _HOP_LENGTH
        and spec.n_fft // 2 == 256
        and spec.center
        and spec.pad_mode == "reflect"
        and not spec.pad
        and not spec.normalized
        and spec.power == 2.0
        and featurizer.log_mels
    )


def _shared_frame_logits(
    classifier: Classifier, samples: torch.Tensor, count: int, hop: int
) -> torch.Tensor:
    """``classifier(samples.unfold(0, 16000, hop)[:count])``, up to float32 rounding, with the
    MFCCs of the frames that windows share computed once.

    The interior frames 2..98 of window ``w`` are frames ``w * hop / 160 + (0..96)`` of the
    stream framed without centring from sample 64 (``160 * 2 - 256``); the four edge frames
    are the centred STFT of the window's first 416 and last 480 samples (both start on the
    10 ms grid, and hold every sample the edge frames and their reflections read).
    """
    step = hop // _HOP_LENGTH
    inner = _FRAMES - 2 * _EDGE  # 97
    start = _EDGE * _HOP_LENGTH - 256  # 64
    shared = _mfcc_uncentred(classifier, samples[start:])  # (64, frames)
    windows = samples.unfold(0, _WINDOW, hop)[:count]  # (count, 16000) view
    mfcc = classifier.preprocessor._mfcc
    head = mfcc(windows[:, : (_EDGE - 1) * _HOP_LENGTH + 256].contiguous())[..., :_EDGE]
    tail_start = (_FRAMES - 2 * _EDGE) * _HOP_LENGTH  # 15520: frames 99, 100 are its 2, 3
    tail = mfcc(windows[:, tail_start:].contiguous())[..., _EDGE : 2 * _EDGE]
    middle = shared.unfold(1, inner, step)[:, :count].transpose(0, 1)  # (count, 64, 97)
    features = torch.cat([head, middle, tail], dim=-1)  # (count, 64, 101)
    if classifier.features.frames is None:
        lengths = torch.full((count,), -(-_WINDOW // _HOP_LENGTH), device=samples.device)
        return classifier.model(features, lengths)
    return fixed_frame_logits(classifier.model, crop_or_pad(features, classifier.features.frames))


def _pad_short(blocks: Iterator[np.ndarray], total: int) -> Iterator[np.ndarray]:
    yield from blocks
    if total < _WINDOW:
        yield np.zeros(_WINDOW - total, dtype=np.float32)


def receptive_field(model: torch.nn.Module) -> int:
    """Frames one encoder output sees on each side: ``sum(dilation * (kernel - 1) // 2)``
    over every convolution of the encoder (the 'same' padding of each)."""
    return sum(
        m.dilation[0] * (m.kernel_size[0] - 1) // 2
        for m in model.encoder.modules()
        if isinstance(m, torch.nn.Conv1d)
    )


# One-pass pooling: a window's logits are the decoder on the mean of these encoder frames,
# relative to the window's first MFCC frame: its own 101 frames and the 13 + 14 around them,
# where the exact mode's zero padding sits (128 in all, as in training).
_POOL = (-13, 115)


def _one_pass(
    classifier: Classifier, blocks: Iterator[np.ndarray], total: int, hop: int
) -> np.ndarray:
    model = classifier.model
    device = next(classifier.parameters()).device
    step = hop // 160
    frames_total = total // 160 + 1  # the centred STFT of the whole stream
    context = receptive_field(model)
    n = _num_windows(total, hop)
    out = np.empty((n, len(classifier.labels)), dtype=np.float32)
    spec = classifier.preprocessor.featurizer.MelSpectrogram.spectrogram
    half = spec.n_fft // 2
    pieces: list[torch.Tensor] = []  # per-frame decoder outputs not yet pooled
    first = 0  # index of the first frame in `pieces`
    done = 0
    for a, b, feats in _stream_mfcc(classifier, blocks, total, half, context):
        # feats: (64, frames) MFCCs of frames [a - ctx_left, b + ctx_right) as available
        left = min(context, a)
        x = feats.unsqueeze(0).to(device)
        for block in model.encoder:
            x = block(x)
        enc = x[0, :, left : left + (b - a)]  # (C, b - a): equal to one run over everything
        pieces.append(model.decoder(enc.t()).double())  # (b - a, labels): linear, so pool after
        have = torch.cat(pieces)  # frames [first, b)
        cum = torch.cat([torch.zeros(1, have.shape[1], device=have.device), have.cumsum(0)])
        while done < n:
            f0 = done * step
            lo, hi = max(f0 + _POOL[0], 0), min(f0 + _POOL[1], frames_total)
            if hi > b:
                break
            logits = (cum[hi - first] - cum[lo - first]) / (hi - lo)
            out[done] = logits.softmax(-1).float().cpu().numpy()
            done += 1
        drop = max(min(done * step + _POOL[0], b) - first, 0)
        pieces, first = [have[drop:]], first + drop
    return out


def _stream_mfcc(
    classifier: Classifier, blocks: Iterator[np.ndarray], total: int, half: int, context: int
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """MFCC frames of the whole stream (centred STFT, reflect padding at its two ends only), in
    blocks ``[a, b)`` each with up to ``context`` frames either side: yields ``(a, b, feats)``
    with ``feats`` covering ``[max(a - context, 0), min(b + context, frames))``."""
    hop_length = 160
    frames_total = total // hop_length + 1
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0  # stream sample index of buffer[0]
    a = 0
    eof = False
    blocks = iter(blocks)
    while a < frames_total:
        try:
            data = next(blocks)
        except StopIteration:
            eof = True
            data = np.zeros(0, dtype=np.float32)
        buffer = np.concatenate([buffer, data])
        end = offset + len(buffer)  # stream samples available
        if eof:
            b = frames_total
        else:
            # frame f needs samples up to f * hop + half; frames up to b + context must fit
            b = (end - half) // hop_length + 1 - context
            if b - a < 100:
                continue
        lo, hi = max(a - context, 0), min(b + context, frames_total)
        s0, s1 = lo * hop_length - half, (hi - 1) * hop_length + half  # samples [s0, s1)
        x = torch.from_numpy(buffer[max(s0, 0) - offset : min(s1, total) - offset])
        pad_left, pad_right = max(-s0, 0), max(s1 - total, 0)
        if pad_left or pad_right:
            x = torch.nn.functional.pad(x[None, None], (pad_left, pad_right), mode="reflect")[0, 0]
        yield a, b, _mfcc_uncentred(classifier, x)
        a = b
        keep = max(a - context, 0) * hop_length - half - offset
        if keep > 0:
            buffer, offset = buffer[keep:], offset + keep


def _mfcc_uncentred(classifier: Classifier, x: torch.Tensor) -> torch.Tensor:
    """The classifier's MFCCs of samples ``x`` framed without centring: ``(64, frames)``."""
    spec = classifier.preprocessor.featurizer.MelSpectrogram.spectrogram
    stft = torch.stft(
        x.to(spec.window.device),
        n_fft=spec.n_fft,
        hop_length=spec.hop_length,
        win_length=spec.win_length,
        window=spec.window,
        center=False,
        return_complex=True,
    ).t()  # (T, freq)
    return classifier.preprocessor.from_stft(stft).t()  # (64, T)


def detect_file(
    classifier: Classifier, path: str | os.PathLike, config: DetectConfig | None = None, **kwargs
) -> tuple[list[Detection], Posteriors]:
    """:func:`stream_posteriors` then :func:`detect`; ``kwargs`` go to the former."""
    config = config or DetectConfig()
    posteriors = stream_posteriors(
        classifier, path, hop_ms=config.hop_ms, mode=config.mode, **kwargs
    )
    return detect(posteriors, config), posteriors
