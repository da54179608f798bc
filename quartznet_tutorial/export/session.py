"""ONNX Runtime around an exported classifier, and the import of the optional ONNX packages.

:class:`OnnxClassifier` runs a file that :func:`~quartznet_tutorial.export.onnx_export.export_onnx`
wrote (float32 or int8); :func:`import_optional` imports ``onnx`` or ``onnxruntime`` with the
install hint in its error.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import torch

__all__ = ["OnnxClassifier", "import_optional"]


class OnnxClassifier:
    """Run an exported classifier with onnxruntime: ``(B, samples)`` float32 -> ``(B, C)``.

    Args:
        path (str or Path): a file written by :func:`export_onnx`.
        threads (int, optional): onnxruntime intra-op threads. (Default: ``1``)
    """

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        ort = import_optional("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # onnxruntime warns about unused initializers
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        self.labels: list[str] = json.loads(meta.get("labels", "[]"))
        batch = self.session.get_inputs()[0].shape[0]
        self.batch_size: int | None = batch if isinstance(batch, int) else None

    def __call__(self, waveforms: np.ndarray | torch.Tensor) -> np.ndarray:
        """``waveforms`` (B, samples) at 16 kHz -> logits (B, num_classes) as numpy."""
        if isinstance(waveforms, torch.Tensor):
            waveforms = waveforms.detach().cpu().numpy()
        waveforms = np.ascontiguousarray(waveforms, dtype=np.float32)
        if waveforms.ndim != 2:
            raise ValueError(
                f"expected waveforms of shape (batch, samples), got {tuple(waveforms.shape)}"
            )
        return self.session.run(None, {"waveforms": waveforms})[0]

    def predict(self, waveforms: np.ndarray | torch.Tensor, top_k: int = 1):
        """Top-``k`` ``(label, probability)`` pairs per item, like ``Classifier.predict``."""
        logits = torch.from_numpy(self(waveforms))
        values, indices = logits.softmax(-1).topk(min(top_k, logits.shape[-1]), dim=-1)
        return [
            [(self.labels[i], p) for i, p in zip(row_i.tolist(), row_p.tolist(), strict=True)]
            for row_i, row_p in zip(indices, values, strict=True)
        ]


def import_optional(name: str):
    """``importlib.import_module(name)``, or an ``ImportError`` saying which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(
            f"ONNX export needs {name}; install it with `pip install quartznet-tutorial[export]`"
        ) from None
