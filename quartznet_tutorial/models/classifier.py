"""Audio in, label out: a front end + a network of any model family + labels as one module.

:class:`Classifier` is what ``predict``, ONNX export, the docs and users' own code use. The
network's family (:mod:`~quartznet_tutorial.models.families`) says which front end it reads:
MFCCs for QuartzNet. :func:`~quartznet_tutorial.checkpoints.loading.load_classifier` returns
one from our checkpoint, a NeMo ``.nemo`` archive or a shipped model's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import torch
from torch import nn

from quartznet_tutorial.audio.features import FeatureConfig, crop_or_pad
from quartznet_tutorial.models.cpu_fast import eval_logits, eval_logits_prepadded
from quartznet_tutorial.models.families import build, config_from_dict, config_to_dict, family_of
from quartznet_tutorial.models.quartznet import QuartzNet

__all__ = ["Classifier", "fixed_frame_logits"]


class Classifier(nn.Module):
    """Waveforms ``(B, samples)`` at 16 kHz -> logits ``(B, num_classes)``.

    Features are cropped/padded to ``features.frames`` frames (128, the training recipe) with
    every frame valid, as in training. A classifier loaded from a ``.nemo`` archive has
    ``frames=None``: like today's NeMo inference it keeps all frames and masks past
    ``ceil(samples / 160)``.

    Args:
        model (nn.Module): the network, of a registered family (a
            :class:`~quartznet_tutorial.models.quartznet.QuartzNet`, say); its ``num_classes``
            must equal ``len(labels)``.
        labels (sequence of str): class names, index ``i`` is logit ``i``.
        features (FeatureConfig, optional): front-end settings. (Default: NeMo's recipe)
    """

    def __init__(
        self, model: nn.Module, labels: Sequence[str], features: FeatureConfig | None = None
    ) -> None:
        super().__init__()
        if len(labels) != model.num_classes:
            raise ValueError(f"{len(labels)} labels for a model with {model.num_classes} classes")
        self.preprocessor = family_of(model.config).preprocessor(features)
        self.model = model
        self.labels = list(labels)

    @property
    def features(self) -> FeatureConfig:
        return self.preprocessor.config

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``waveforms`` (B, samples) float32, ``lengths`` (B,) samples or None -> (B, C) logits."""
        features, frames = self.preprocessor(waveforms, lengths)  # (B, F, T), (B,)
        if self.features.frames is None:
            return self.model(features, frames)
        return fixed_frame_logits(self.model, crop_or_pad(features, self.features.frames))

    @torch.no_grad()
    def predict(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None, top_k: int = 1
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(label, probability)`` pairs for each item of the batch."""
        probs = self(waveforms, lengths).float().softmax(-1)
        values, indices = probs.topk(min(top_k, len(self.labels)), dim=-1)
        return [
            [(self.labels[i], p) for i, p in zip(row_i.tolist(), row_p.tolist(), strict=True)]
            for row_i, row_p in zip(indices, values, strict=True)
        ]

    def to_dict(self) -> dict:
        """Everything needed to rebuild this classifier, as builtins and tensors only."""
        return {
            "model_config": config_to_dict(self.model.config),
            "labels": list(self.labels),
            "features": asdict(self.features),
            "state_dict": self.model.state_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Classifier:
        """Inverse of :meth:`to_dict`; shape mismatches raise ``ValueError`` naming the tensor."""
        model = build(config_from_dict(d["model_config"]), num_classes=len(d["labels"]))
        _load_state_dict(model, d["state_dict"])
        return cls(model, d["labels"], FeatureConfig(**d["features"])).eval()


# Small CPU batches in eval mode take cpu_fast.eval_logits. quartznet-3x1, one thread, 128
# frames, AMD EPYC (Zen 5) with load ~5, 2026-12-01: batch 1 1.24 -> 0.84 ms (AVX-512),
# 1.26 -> 0.78 ms (AVX2 emulated); batch 8 about even; batch 64 15-20% slower (its
# (B, T, C, k) products leave the caches), so larger batches take the model's own layout with
# the convolutions' padding added beforehand (cpu_fast.eval_logits_prepadded).
_EVAL_LAYOUT_MAX_BATCH = 4


def fixed_frame_logits(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """``model(features)`` for features of the model's fixed length (every frame valid), by
    the fastest path that computes the same: for QuartzNet on the CPU in eval mode,
    cpu_fast's layouts."""
    cpu_eval = (
        isinstance(model, QuartzNet)  # the layouts are QuartzNet's; another family runs as is
        and not model.training
        and features.device.type == "cpu"
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
    )
    if not cpu_eval:
        return model(features)
    if features.shape[0] <= _EVAL_LAYOUT_MAX_BATCH:
        return eval_logits(model, features)
    return eval_logits_prepadded(model, features)


def _load_state_dict(model: nn.Module, state_dict: dict) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"weights do not fit {model.config.name!r}: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for key, value in state_dict.items():
        if value.shape != expected[key].shape:
            raise ValueError(
                f"weights do not fit {model.config.name!r}: {key} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state_dict)
