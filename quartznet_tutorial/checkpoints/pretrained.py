"""Trained models that ship with the package, by name.

``load_classifier("synthetic-v1-quartznet-3x1")`` (and ``quartznet predict --checkpoint
synthetic-v1-quartznet-3x1 clip.wav``) classify a recording right after ``pip install``, with no
training. Each model sits in ``quartznet_tutorial/assets/models/`` beside the result record that
``examples/train_shipped_models.py``, which trained it, wrote: data, recipe, hardware, date, and
its accuracy on the synthetic test split and on the bundled real clips
(:mod:`quartznet_tutorial.datasets.real_clips`).

They are trained on synthetic speech only (eSpeak NG, :mod:`quartznet_tutorial.synthetic.espeak`,
and for the ``-piper`` ones Piper, :mod:`quartznet_tutorial.synthetic.piper`):
their accuracy on real speech is far below NeMo's reported figures, and the record says how far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from quartznet_tutorial.utils.files import package_data

__all__ = ["PRETRAINED", "Pretrained", "pretrained_path", "pretrained_record"]

_ASSETS = package_data("assets", "models")


@dataclass(frozen=True)
class Pretrained:
    """A shipped model.

    Args:
        name (str): what :func:`~quartznet_tutorial.checkpoints.loading.load_classifier` takes.
        variant (str): the architecture, a key of
            :data:`~quartznet_tutorial.models.variants.VARIANTS`.
        data (str): what it was trained on.
        augment (bool, optional): trained with NeMo's augmentation (shift, noise, SpecCutout,
            SpecAugment). (Default: ``False``: the smoke profile's recipe)
        piper (bool, optional): words spoken by Piper's neural voice
            (:mod:`~quartznet_tutorial.synthetic.piper`) joined the training split. (Default:
            ``False``: eSpeak NG speech only)
    """

    name: str
    variant: str
    data: str
    augment: bool = False
    piper: bool = False

    @property
    def checkpoint(self) -> Path:
        return _ASSETS / f"{self.name}.pt"

    @property
    def record(self) -> Path:
        return _ASSETS / f"{self.name}.json"


#: The shipped models by name (V1's 30 words, trained on synthetic speech only).
PRETRAINED: dict[str, Pretrained] = {
    p.name: p
    for p in (
        Pretrained("synthetic-v1-quartznet-3x1", "quartznet-3x1", "synthetic-v1"),
        Pretrained("synthetic-v1-se-quartznet-3x1", "se-quartznet-3x1", "synthetic-v1"),
        # The smoke recipe with NeMo's augmentation: the "Noise robustness" page compares it.
        Pretrained(
            "synthetic-v1-quartznet-3x1-augment", "quartznet-3x1", "synthetic-v1", augment=True
        ),
        # The smoke recipe plus Piper's voice in training: the best lever on the real clips.
        Pretrained("synthetic-v1-quartznet-3x1-piper", "quartznet-3x1", "synthetic-v1", piper=True),
        Pretrained(
            "synthetic-v1-se-quartznet-3x1-piper", "se-quartznet-3x1", "synthetic-v1", piper=True
        ),
    )
}


def pretrained_path(name: str) -> Path:
    """The checkpoint file of the shipped model ``name``.

    Raises:
        ValueError: ``name`` is not a shipped model (the message lists them).
    """
    try:
        return PRETRAINED[name].checkpoint
    except KeyError:
        raise ValueError(
            f"{name!r} is neither a file nor a shipped model; shipped: {', '.join(PRETRAINED)}"
        ) from None


def pretrained_record(name: str) -> dict:
    """The result record written when ``name`` was trained (accuracy, recipe, hardware, date)."""
    pretrained_path(name)  # a clear error for an unknown name
    return json.loads(PRETRAINED[name].record.read_text(encoding="utf-8"))
