"""Moving a trained model to other words: a new decoder, weights from another checkpoint, a
frozen encoder.

The new decoder follows NeMo's ``EncDecClassificationModel.change_labels``
(``nemo/collections/asr/models/classification_models.py``, NeMo commit ``8cfedd72``, 2025):
only the decoder is replaced, by a fresh one built from the same configuration with the new
number of classes (initialised as the model family initialises it); the encoder and the
preprocessor are kept; the same labels change nothing; no labels is an error. Freezing follows
NeMo's ``NeuralModule.freeze`` (``nemo/core/classes/module.py``): ``requires_grad`` off *and*
the module in eval mode.

These work on every model family (:mod:`quartznet_tutorial.models.families`): a family's model
has an ``encoder``, a ``decoder`` and ``replace_decoder(num_classes)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from quartznet_tutorial.audio.features import FeatureConfig
from quartznet_tutorial.checkpoints.loading import load_classifier
from quartznet_tutorial.datasets.speech_commands import check_words
from quartznet_tutorial.models.classifier import Classifier

__all__ = ["change_labels", "freeze_encoder", "init_from"]

logger = logging.getLogger(__name__)


def change_labels(classifier: Classifier, labels: Sequence[str]) -> Classifier:
    """Give ``classifier`` a new decoder for ``labels`` (in place, and returned), as NeMo's
    ``EncDecClassificationModel.change_labels`` does: the encoder and the front end are kept,
    the decoder is a fresh ``Linear(C, len(labels))``; the same labels change nothing.

    Raises:
        ValueError: fewer than two labels, or labels that cannot be folder names
            (:func:`~quartznet_tutorial.datasets.speech_commands.check_words`).
    """
    labels = check_words(labels, what="labels")
    if labels == classifier.labels:
        logger.warning("the labels are the model's already (%s); nothing changed", labels)
        return classifier
    classifier.model.replace_decoder(len(labels))
    classifier.labels = labels
    return classifier


def init_from(model: nn.Module, source: str | os.PathLike, labels: Sequence[str]) -> nn.Module:
    """Load the trained weights of ``source`` into ``model``, a freshly built network for
    ``labels``: the whole network if ``source`` has the same labels in the same order, else
    every weight but the decoder's, which stays as built (:func:`change_labels`).

    Args:
        model (nn.Module): the network to train, built for ``len(labels)`` classes.
        source (str or Path): a ``.pt`` checkpoint, a ``.nemo`` archive or a shipped model's
            name (:func:`~quartznet_tutorial.checkpoints.loading.load_classifier`).
        labels (sequence of str): the classes ``model`` is trained for.

    Raises:
        ValueError: ``source`` is no model, or another architecture than ``model``.
    """
    trained = load_classifier(source if isinstance(source, str) else Path(source))
    if trained.model.config != model.config:
        raise ValueError(
            f"init_checkpoint {source}: holds {trained.model.config.name!r}, but "
            f"{model.config.name!r} is being trained; pass --model {trained.model.config.name}"
        )
    if replace(trained.features, frames=None) != replace(FeatureConfig(), frames=None):
        raise ValueError(
            f"init_checkpoint {source}: its front end ({trained.features}) is not the one "
            "training uses (FeatureConfig()); fine-tune a model trained with it"
        )
    state = trained.model.state_dict()
    if list(labels) == trained.labels:
        model.load_state_dict(state)
        return model
    encoder = {k: v for k, v in state.items() if not k.startswith("decoder.")}
    missing, unexpected = model.load_state_dict(encoder, strict=False)
    if unexpected or any(not k.startswith("decoder.") for k in missing):  # pragma: no cover
        raise ValueError(f"init_checkpoint {source}: weights do not fit ({missing, unexpected})")
    logger.info(
        "started from %s: its encoder, and a new decoder for %d words (was %d)",
        source,
        len(labels),
        len(trained.labels),
    )
    return model


def freeze_encoder(model: nn.Module, frozen: bool = True) -> None:
    """Freeze (or unfreeze) the encoder of ``model``, as NeMo's ``NeuralModule.freeze`` does.

    Frozen: every encoder parameter has ``requires_grad=False`` (no gradient, so the optimizer
    leaves it alone, weight decay included) and the encoder is in eval mode, so BatchNorm
    normalises with the running statistics of the trained model and leaves them alone, and
    dropout is off. ``requires_grad`` alone would not freeze it: in train mode BatchNorm would
    normalise with the statistics of each small batch of the new words and overwrite its
    running statistics with them, so the decoder would learn on features other than those it
    is later evaluated on. Call it after ``model.train()``, which puts the encoder back in
    train mode. Unfrozen: ``requires_grad=True``, and the mode is left to the caller.

    Raises:
        ValueError: under DDP with several processes (which fixes the trainable parameters
            when it wraps the model).
    """
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        raise ValueError("freeze_encoder_epochs is for one process; train without torchrun")
    model.encoder.requires_grad_(not frozen)
    if frozen:
        model.encoder.eval()
