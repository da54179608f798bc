"""ONNX export of a whole :class:`~quartznet_tutorial.models.classifier.Classifier`: audio in,
logits out.

``torch.stft`` returns complex numbers, which the ONNX exporter cannot write. The exported
graph therefore computes the same MFCCs without complex numbers: :class:`ConvMFCC` frames the
reflect-padded waveform with one strided ``Conv1d`` whose kernels are the windowed cosine and
sine DFT bases (the real and imaginary parts of the STFT), then applies the mel filterbank,
``log(x + 1e-6)`` and the DCT from the classifier's own
:class:`~quartznet_tutorial.audio.features.MFCC`
buffers. It is checked against :class:`~quartznet_tutorial.audio.features.MFCC` in the tests, and
every export is checked against PyTorch with onnxruntime (max abs difference of the logits).

The graph takes ``waveforms`` of shape ``(B, samples)`` (float32, 16 kHz; batch and length
dynamic, every item the same length, as ``Classifier(waveforms)`` without ``lengths``) and
returns ``logits`` ``(B, num_classes)``; the labels are stored in the model's metadata.

``export_onnx(..., int8=True, calibration=...)`` writes a statically quantised int8 model
instead (:mod:`quartznet_tutorial.export.quantize`), compared with the float32 one on held-out
clips.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.onnx import operators

from quartznet_tutorial.audio.features import MFCC
from quartznet_tutorial.export.session import OnnxClassifier, import_optional
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.models.families import config_to_dict

__all__ = ["OPSETS", "ConvMFCC", "check_onnx", "export_onnx"]

logger = logging.getLogger(__name__)

#: Max abs logit difference onnxruntime vs PyTorch that :func:`export_onnx` accepts.
ATOL = 1e-4


def _max_opset() -> int:
    try:  # the TorchScript exporter's own limit (20 in torch 2.11); newer opsets warn or fail
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    except ImportError:  # pragma: no cover - a torch without the constant
        return 20
    return ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET


#: The opsets :func:`export_onnx` writes: 17 to the TorchScript exporter's newest (20 in
#: torch 2.11; above it the exporter warns, or fails with a traceback).
OPSETS = range(17, _max_opset() + 1)


class ConvMFCC(nn.Module):
    """:class:`~quartznet_tutorial.audio.features.MFCC` without ``torch.stft``: exportable to ONNX.

    The STFT frame ``t`` of a centred, reflect-padded signal is ``X[k, t] = sum_n w[n] x[t*hop
    + n] exp(-2 pi i k n / n_fft)``: a strided convolution with ``2 * (n_fft // 2 + 1)`` fixed
    kernels ``w[n] cos(2 pi k n / n_fft)`` and ``-w[n] sin(...)``. Only the ``win_length``
    non-zero taps of the (centred, zero-padded) window are kept.

    Args:
        mfcc (MFCC): the front end to reproduce; its window, filterbank and DCT are copied.
    """

    def __init__(self, mfcc: MFCC) -> None:
        super().__init__()
        spec = mfcc.featurizer.MelSpectrogram.spectrogram
        if not (spec.center and spec.pad_mode == "reflect" and spec.onesided and spec.power == 2):
            raise ValueError("ConvMFCC reproduces a centred, reflect-padded, one-sided power STFT")
        if spec.normalized or spec.pad:
            raise ValueError("ConvMFCC does not support normalized or pre-padded spectrograms")
        n_fft, win_length = spec.n_fft, spec.win_length
        self.n_fft, self.hop_length = n_fft, spec.hop_length
        # torch.stft centres a shorter window inside n_fft; taps outside it are zero.
        self.offset = (n_fft - win_length) // 2
        self.offset_right = n_fft - win_length - self.offset
        n = torch.arange(win_length, dtype=torch.float64) + self.offset
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * n[None, :] / n_fft  # (F, win_length)
        window = spec.window.double()
        kernels = torch.cat([window * torch.cos(angle), -window * torch.sin(angle)])
        self.register_buffer("dft", kernels.float().unsqueeze(1), persistent=False)  # (2F, 1, W)
        self.register_buffer("fb", mfcc.featurizer.MelSpectrogram.mel_scale.fb.clone(), False)
        self.register_buffer("dct", mfcc.featurizer.dct_mat.clone(), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``waveforms`` (B, samples) -> MFCCs (B, n_mfcc, samples // hop + 1)."""
        pad = self.n_fft // 2
        x = nn.functional.pad(waveforms.unsqueeze(1), (pad, pad), mode="reflect")  # (B, 1, S')
        # Drop the taps outside the window on both sides; keeping the right ones would add a
        # frame whenever samples % hop >= hop - (n_fft - win_length) / 2.
        x = x[..., self.offset : x.shape[-1] - self.offset_right]
        spec = nn.functional.conv1d(x, self.dft, stride=self.hop_length)  # (B, 2F, T)
        real, imag = spec.chunk(2, dim=1)
        power = real * real + imag * imag  # (B, F, T)
        mel = torch.matmul(power.transpose(1, 2), self.fb)  # (B, T, n_mels)
        return torch.matmul(torch.log(mel + 1e-6), self.dct).transpose(1, 2)  # (B, n_mfcc, T)


class _ExportableClassifier(nn.Module):
    """``Classifier.forward`` with shape arithmetic done on tensors, so it stays dynamic in ONNX.

    ``crop_or_pad`` and the length mask branch on Python ints, which tracing would freeze at
    the example's length; here the centre crop/pad is one ``index_select`` with a validity mask.
    """

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.mfcc = ConvMFCC(classifier.preprocessor)
        self.model = classifier.model
        self.frames = classifier.features.frames
        self.hop_length = classifier.features.hop_length

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        features = self.mfcc(waveforms)  # (B, 64, T)
        t = operators.shape_as_tensor(features)[2]
        if self.frames is None:
            # NeMo inference: keep all T frames, mask those at or past ceil(samples / hop).
            samples = operators.shape_as_tensor(waveforms)[1]
            valid = torch.div(samples + self.hop_length - 1, self.hop_length, rounding_mode="floor")
            lengths = valid.expand(features.shape[0])  # (B,)
            return self.model(features, lengths)
        # Centre crop or symmetric zero pad to `frames` (crop_or_pad with random_crop=False).
        frames = torch.tensor(self.frames)
        shift = torch.where(
            t <= frames,
            torch.div(frames - t, 2, rounding_mode="floor"),
            -torch.div(t - frames, 2, rounding_mode="floor"),
        )
        index = torch.arange(self.frames) - shift  # input frame of each output frame
        inside = (index >= 0) & (index < t)
        index = torch.minimum(index.clamp(min=0), t - 1)
        features = features.index_select(2, index) * inside.to(features.dtype)
        return self.model(features)


def export_onnx(
    classifier: Classifier,
    path: str | Path,
    *,
    opset: int = 18,
    dynamic_batch: bool = True,
    samples: int = 16_000,
    check: bool = True,
    int8: bool = False,
    calibration=None,
    held_out=None,
    calibration_clips: int = 256,
) -> Path:
    """Write ``classifier`` (waveforms -> logits) as an ONNX model and verify it.

    Args:
        classifier (Classifier): the model to export (it is exported in eval mode).
        path (str or Path): the ``.onnx`` file to write.
        opset (int, optional): ONNX opset, one of :data:`OPSETS` (17 to 20 with torch
            2.11). (Default: ``18``)
        dynamic_batch (bool, optional): leave the batch size free; ``False`` fixes it at 1,
            which some runtimes run faster. The number of samples is always free.
            (Default: ``True``)
        samples (int, optional): length of the example clip used for tracing and the check.
            (Default: ``16000``, one second)
        check (bool, optional): run the file in onnxruntime on random audio and raise
            ``RuntimeError`` unless the logits are within ``1e-4`` of PyTorch's.
            (Default: ``True``)
        int8 (bool, optional): write a statically quantised int8 model
            (:func:`~quartznet_tutorial.export.quantize.quantize_onnx`: the encoder and decoder in
            int8, the MFCC front end in float32); needs ``calibration``. The float32 model is
            exported and checked first; the comparison of the two on ``held_out`` is logged.
            (Default: ``False``)
        calibration (optional): with ``int8``, a Speech Commands folder (``calibration_clips``
            clips of its training split calibrate, as many of its validation split are held
            out), a dataset of ``(waveform, label)`` items, or waveforms ``(N, samples)``.
        held_out (optional): with ``int8`` and a dataset or waveforms as ``calibration``, the
            clips the int8 model is compared on. (Default: ``None``, no comparison)
        calibration_clips (int, optional): clips taken from a ``calibration`` folder.
            (Default: ``256``)

    Returns:
        Path: ``path``.
    """
    if int8 and calibration is None:
        raise ValueError(
            "int8 export needs calibration clips: pass calibration= a Speech Commands folder, "
            "a dataset or waveforms (on the command line: --calibration-data DIR)"
        )
    if not int8 and (calibration is not None or held_out is not None):
        raise ValueError("calibration and held_out are used by int8 export only; pass int8=True")
    if int8:
        return _export_int8(
            classifier, path, calibration, held_out, calibration_clips,
            opset=opset, dynamic_batch=dynamic_batch, samples=samples, check=check,
        )  # fmt: skip
    if opset not in OPSETS:
        raise ValueError(
            f"opset {opset} is not supported; choose {OPSETS.start} to {OPSETS.stop - 1} "
            "(the newest the TorchScript exporter writes)"
        )
    if samples <= 256:
        raise ValueError(f"samples must be > 256 (half the STFT size), got {samples}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if any(t.device.type != "cpu" for t in classifier.state_dict().values()):
        # An ONNX file is device-free: trace (and check) a CPU copy, leave the model in place.
        classifier = copy.deepcopy(classifier).cpu()
    was_training = classifier.training
    classifier.eval()
    wrapper = _ExportableClassifier(classifier).eval()
    example = torch.randn(
        2 if dynamic_batch else 1, samples, generator=torch.Generator().manual_seed(0)
    )
    axes = {"waveforms": {1: "samples"}, "logits": {}}
    if dynamic_batch:
        axes = {"waveforms": {0: "batch", 1: "samples"}, "logits": {0: "batch"}}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter (deprecated since torch 2.9, present in the pinned 2.11)
            # keeps this graph's shapes dynamic; the torch.export one needs onnxscript, takes
            # ~10 s and (torch 2.11) fails on the shape arithmetic of the crop/pad.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding")
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=["waveforms"],
                output_names=["logits"],
                dynamic_axes=axes,
            )
    finally:
        classifier.train(was_training)
    _write_metadata(path, classifier)
    if check:
        diff = check_onnx(classifier, path, samples=samples)
        if diff > ATOL:
            raise RuntimeError(
                f"{path}: onnxruntime logits differ from PyTorch by {diff:.2e} > {ATOL:.0e}"
            )
    return path


def _export_int8(classifier, path, calibration, held_out, clips: int, **kwargs) -> Path:
    """Export float32 to a temporary file, quantise it into ``path``, log the comparison."""
    from quartznet_tutorial.datasets.speech_commands import version_of
    from quartznet_tutorial.export.quantize import (
        MIN_AGREEMENT,
        quantize_onnx,
        speech_commands_clips,
    )

    if isinstance(calibration, (str, os.PathLike)):
        if held_out is not None:
            raise ValueError("held_out comes from the calibration folder's validation split")
        version = version_of(classifier.labels)
        words = classifier.labels if version is None else None  # fine-tuned to other words
        folder, calibration = (
            calibration,
            speech_commands_clips(calibration, "training", clips, version or 1, words),
        )
        try:
            held_out = speech_commands_clips(folder, "validation", clips, version or 1, words)
        except ValueError:  # no validation clips: quantise without the comparison
            logger.warning("%s: no validation clips, so int8 is not compared with float32", folder)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        fp32 = export_onnx(classifier, Path(tmp) / "fp32.onnx", **kwargs)
        result = quantize_onnx(fp32, path, calibration, held_out=held_out)
    if result is not None:
        logger.info("%s: %s", path, result)
        if result.agreement < MIN_AGREEMENT:
            logger.warning(
                "%s: the int8 model picks another word than float32 on %.0f %% of held-out "
                "clips; calibrate on more clips or keep the float32 model",
                path,
                100 * (1 - result.agreement),
            )
    return path


def check_onnx(
    classifier: Classifier, path: str | Path, *, samples: int = 16_000, seed: int = 0
) -> float:
    """Max abs difference between PyTorch and onnxruntime logits on random audio.

    Two batches are compared, of ``samples`` and of a shorter, odd length (a clip shorter than
    a second, as many Speech Commands clips are), so a shape frozen at export shows up here.
    A file exported with a fixed batch is checked at batch 1.
    """
    session = OnnxClassifier(path)
    batch = session.batch_size or 3
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    was_training = classifier.training
    classifier.eval()
    try:
        for length in (samples, max(257, int(samples * 0.93)) | 1):
            audio = 0.1 * torch.randn(batch, length, generator=generator)
            with torch.no_grad():
                expected = classifier(audio).float().numpy()
            worst = max(worst, float(np.abs(session(audio.numpy()) - expected).max()))
    finally:
        classifier.train(was_training)
    return worst


def _write_metadata(path: Path, classifier: Classifier) -> None:
    """Store labels and the model config in the file, so it is usable on its own."""
    onnx = import_optional("onnx")
    model = onnx.load(str(path))
    meta = {
        "labels": json.dumps(classifier.labels),
        "model_config": json.dumps(config_to_dict(classifier.model.config)),
        "features": json.dumps(asdict(classifier.features)),
    }
    onnx.helper.set_model_props(model, meta)
    model.producer_name = "quartznet-tutorial"
    onnx.save(model, str(path))
