"""Static int8 quantisation of an exported classifier with ONNX Runtime's tools.

:func:`quantize_onnx` turns a file written by
:func:`~quartznet_tutorial.export.onnx_export.export_onnx`
into an int8 one: weights per output channel, activations per tensor, both with scales fixed
ahead of time from calibration clips (``onnxruntime.quantization.quantize_static``, QDQ
format, min/max calibration). ONNX Runtime fuses each ``DequantizeLinear -> Conv ->
QuantizeLinear`` into an integer ``QLinearConv`` when it loads the file.

Only the model (the QuartzNet encoder and decoder, the graph's ``/model/`` nodes) is
quantised; the MFCC front end and the centre crop/pad stay float32. The power spectrum the
front end computes spans many orders of magnitude before its ``log``, and an 8-bit tensor
with one scale keeps about two of them: every quiet bin (the silence around a spoken word,
most of a Speech Commands clip) would round to zero and come out of the ``log`` as
``log(1e-6)``. The front end's weights are fixed DFT, mel and DCT matrices, not learned, so
int8 would buy no accuracy trade-off worth having there; ``benchmarks/int8.py`` measures the
fully quantised graph beside this one (``include_front_end=True``).

Calibration clips come from a Speech Commands folder's training split (``N`` clips spread
evenly over it, every word kept: :func:`~quartznet_tutorial.datasets.subsets.limit_clips`); the int8
model is then compared with the float32 one in ONNX Runtime on clips it was not calibrated
on (the validation split): top-1 agreement and the largest logit difference.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from quartznet_tutorial.export.session import OnnxClassifier, import_optional

__all__ = ["QUANTIZED_SCOPE", "Int8Check", "compare_onnx", "quantize_onnx", "speech_commands_clips"]

logger = logging.getLogger(__name__)

#: The name prefix of the nodes that are quantised. The TorchScript exporter names each node
#: by its module path, and the exported wrapper holds the QuartzNet model as ``model``.
QUANTIZED_SCOPE = "/model/"
#: Calibration clips a command-line export uses unless told otherwise.
DEFAULT_CLIPS = 256
#: Below this top-1 agreement with float32 on held-out clips, the export warns.
MIN_AGREEMENT = 0.9
_BATCH = 16  # clips per calibration batch: ONNX Runtime's min/max merge is per batch


@dataclass(frozen=True)
class Int8Check:
    """The int8 model against the float32 one, both run in ONNX Runtime on the same clips.

    Attributes:
        clips (int): held-out clips compared.
        agreement (float): fraction of clips whose top-1 class is the same.
        max_logit_diff (float): largest absolute logit difference over all clips and classes.
        fp32_accuracy (float or None): float32 top-1 accuracy, where the clips have labels.
        int8_accuracy (float or None): int8 top-1 accuracy on the same clips.
        fp32_bytes (int): size of the float32 file.
        int8_bytes (int): size of the int8 file.
    """

    clips: int
    agreement: float
    max_logit_diff: float
    fp32_accuracy: float | None
    int8_accuracy: float | None
    fp32_bytes: int
    int8_bytes: int

    def __str__(self) -> str:
        accuracy = ""
        if self.fp32_accuracy is not None and self.int8_accuracy is not None:
            accuracy = (
                f", accuracy {100 * self.fp32_accuracy:.1f} % float32 vs "
                f"{100 * self.int8_accuracy:.1f} % int8"
            )
        return (
            f"int8 vs float32 on {self.clips} held-out clips: top-1 agreement "
            f"{100 * self.agreement:.1f} %, max logit difference {self.max_logit_diff:.3g}"
            f"{accuracy}; {self.int8_bytes / 1e6:.2f} MB vs {self.fp32_bytes / 1e6:.2f} MB"
        )


def speech_commands_clips(
    root: str | os.PathLike,
    subset: str,
    clips: int,
    version: int = 1,
    words: Sequence[str] | None = None,
):
    """``clips`` clips of one split of a Speech Commands folder, spread evenly over it
    (``words``: a folder of your own words, as
    :class:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands` takes them).

    The choice is deterministic (every ``len / clips``-th clip in sorted order), so every word
    keeps clips and two exports with the same folder calibrate on the same audio.
    """
    from quartznet_tutorial.datasets.speech_commands import SpeechCommands
    from quartznet_tutorial.datasets.subsets import limit_clips

    if clips < 1:
        raise ValueError(f"calibration clips must be at least 1, got {clips}")
    dataset = SpeechCommands(root, subset, version, words=words, cache=False)
    if len(dataset) == 0:
        raise ValueError(
            f"{dataset.root}: the {subset} split has no clips; pass a Speech Commands folder "
            "with clips in it (`quartznet make-synthetic` writes one)"
        )
    return limit_clips(dataset, clips)


def quantize_onnx(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    calibration,
    *,
    held_out=None,
    per_channel: bool = True,
    include_front_end: bool = False,
) -> Int8Check | None:
    """Write an int8 copy of an exported classifier, calibrated on ``calibration``.

    Args:
        fp32_path (str or Path): a file written by
            :func:`~quartznet_tutorial.export.onnx_export.export_onnx`.
        int8_path (str or Path): the int8 ``.onnx`` file to write.
        calibration: the clips that fix the activation scales: waveforms ``(N, samples)``
            (tensor or array, 16 kHz float) or a dataset of ``(waveform, label)`` items such as
            :class:`~quartznet_tutorial.datasets.speech_commands.SpeechCommands` (its training
            split).
        held_out (optional): clips of the same kinds, not used for calibration, on which the
            int8 model is compared with the float32 one. (Default: ``None``, no comparison)
        per_channel (bool, optional): one weight scale per output channel (``False``: one per
            tensor). (Default: ``True``)
        include_front_end (bool, optional): quantise the MFCC front end too, which costs
            accuracy (see the module's notes); for measuring that. (Default: ``False``)

    Returns:
        Int8Check or None: the comparison on ``held_out``, or ``None`` without it.
    """
    import_optional("onnxruntime")  # fail early, with the install hint, if it is missing
    onnx = import_optional("onnx")
    quantization = import_optional("onnxruntime.quantization")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    if not fp32_path.is_file():
        raise FileNotFoundError(f"{fp32_path}: no such file; write it with export_onnx first")
    if fp32_path.resolve() == int8_path.resolve():
        raise ValueError(f"{int8_path}: the int8 file must not overwrite the float32 one")
    waveforms, _ = _clips(calibration, "calibration")
    model = onnx.load(str(fp32_path))
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch_size = batch.dim_value or _BATCH  # a fixed-batch export takes exactly that batch
    nodes = [n.name for n in model.graph.node if include_front_end or _in_model(n.name)]
    if not any(_in_model(name) for name in nodes):
        raise ValueError(
            f"{fp32_path}: no {QUANTIZED_SCOPE} nodes; quantize_onnx takes the files "
            "export_onnx writes"
        )
    if len(waveforms) % batch_size:
        # Fixed-batch files need whole batches; repeat the first clips to fill the last one.
        fill = batch_size - len(waveforms) % batch_size
        waveforms = np.concatenate([waveforms, waveforms[np.arange(fill) % len(waveforms)]])

    int8_path.parent.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger("onnxruntime")  # its progress lines are INFO; keep them out
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            # Shape inference and constant folding first, as ONNX Runtime's docs ask; node names
            # and the labels in the metadata survive it.
            quantization.quant_pre_process(str(fp32_path), str(prepared))
            quantization.quantize_static(
                str(prepared),
                str(int8_path),
                _Reader(waveforms, batch_size),
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=per_channel,
                # uint8 activations x int8 weights: the pairing ONNX Runtime's x86 kernels (VNNI,
                # AVX2) are fastest with.
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                nodes_to_quantize=nodes,
                calibrate_method=quantization.CalibrationMethod.MinMax,
            )
    finally:
        quiet.setLevel(level)
    quantized = onnx.load(str(int8_path))
    onnx.helper.set_model_props(
        quantized,
        {
            **{p.key: p.value for p in model.metadata_props},
            "quantization": "int8 static QDQ, per-channel weights" if per_channel else "int8",
            "calibration_clips": str(len(waveforms)),
        },
    )
    onnx.save(quantized, str(int8_path))
    if held_out is None:
        return None
    return compare_onnx(fp32_path, int8_path, held_out)


def compare_onnx(fp32_path: str | os.PathLike, int8_path: str | os.PathLike, clips) -> Int8Check:
    """Run both files in ONNX Runtime on ``clips`` (as ``held_out`` of :func:`quantize_onnx`)."""

    waveforms, targets = _clips(clips, "held-out")
    fp32, int8 = OnnxClassifier(fp32_path), OnnxClassifier(int8_path)
    step = fp32.batch_size or _BATCH
    a = np.concatenate([fp32(waveforms[i : i + step]) for i in range(0, len(waveforms), step)])
    b = np.concatenate([int8(waveforms[i : i + step]) for i in range(0, len(waveforms), step)])
    accuracy = [None, None]
    if targets is not None:
        accuracy = [float((x.argmax(1) == targets).mean()) for x in (a, b)]
    return Int8Check(
        clips=len(waveforms),
        agreement=float((a.argmax(1) == b.argmax(1)).mean()),
        max_logit_diff=float(np.abs(a - b).max()),
        fp32_accuracy=accuracy[0],
        int8_accuracy=accuracy[1],
        fp32_bytes=Path(fp32_path).stat().st_size,
        int8_bytes=Path(int8_path).stat().st_size,
    )


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader``: the calibration clips, one batch at a time."""

    def __init__(self, waveforms: np.ndarray, batch_size: int) -> None:
        self._batches: Iterator[np.ndarray] = (
            waveforms[i : i + batch_size] for i in range(0, len(waveforms), batch_size)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"waveforms": batch}


def _clips(clips, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Waveforms ``(N, samples)`` float32 and labels ``(N,)`` (or ``None``) from either kind."""
    if isinstance(clips, (str, os.PathLike)):
        raise ValueError(
            f"{what} clips: got the path {clips}; pass waveforms or a dataset, e.g. "
            f"speech_commands_clips({str(clips)!r}, 'training', 256)"
        )
    if isinstance(clips, (torch.Tensor, np.ndarray)):
        waveforms, targets = np.asarray(clips.detach() if torch.is_tensor(clips) else clips), None
    else:
        try:
            items = [clips[i] for i in range(len(clips))]
            waveforms = np.stack([np.asarray(w, dtype=np.float32) for w, _ in items])
            targets = np.asarray([int(t) for _, t in items])
        except (TypeError, ValueError):  # not a dataset, or clips of different lengths
            raise ValueError(
                f"{what} clips must be waveforms (N, samples) or a non-empty dataset of "
                f"(waveform, label) items of one length, got {type(clips).__name__}"
            ) from None
    if waveforms.ndim != 2 or len(waveforms) == 0 or waveforms.shape[1] <= 256:
        raise ValueError(
            f"{what} clips must be waveforms of shape (N, samples) with N >= 1 and more than 256 "
            f"samples, got {tuple(waveforms.shape)}"
        )
    return np.ascontiguousarray(waveforms, dtype=np.float32), targets


def _in_model(name: str) -> bool:
    return name.startswith(QUANTIZED_SCOPE)
