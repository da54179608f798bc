"""One entry point for a trained model, whatever it is stored as: :func:`load_classifier`.

It sits above the formats it reads (our checkpoints in
:mod:`~quartznet_tutorial.checkpoints.checkpoint`,
NeMo archives in :mod:`~quartznet_tutorial.checkpoints.nemo`, the models shipped in
:mod:`~quartznet_tutorial.checkpoints.pretrained`), each of which builds a
:class:`~quartznet_tutorial.models.classifier.Classifier`, so no module imports one that imports it.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import torch

from quartznet_tutorial.checkpoints.checkpoint import load_checkpoint
from quartznet_tutorial.checkpoints.nemo import load_nemo_classifier
from quartznet_tutorial.checkpoints.pretrained import PRETRAINED, pretrained_path
from quartznet_tutorial.models.classifier import Classifier

__all__ = ["load_classifier"]


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> Classifier:
    """Load a :class:`~quartznet_tutorial.models.classifier.Classifier` from our checkpoint
    (``.pt``), a NeMo ``.nemo`` archive, or the name of a model shipped with the package
    (:data:`~quartznet_tutorial.checkpoints.pretrained.PRETRAINED`, e.g.
    ``"synthetic-v1-quartznet-3x1"``).

    Files are read with ``torch.load(weights_only=True)``: no code in the file is executed.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a name that is neither a file nor a shipped model (the message lists them),
            or a file that is no checkpoint
            (:class:`~quartznet_tutorial.checkpoints.checkpoint.CheckpointError`).
    """
    if isinstance(path, str) and path in PRETRAINED:
        path = pretrained_path(path)
    path = Path(path)
    if not path.is_file():
        if not path.suffix and len(path.parts) == 1:  # a name, not a path: say which names exist
            pretrained_path(str(path))
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".nemo" or tarfile.is_tarfile(path):
        return load_nemo_classifier(path, map_location=map_location)
    return Classifier.from_dict(load_checkpoint(path, map_location=map_location)["classifier"])
