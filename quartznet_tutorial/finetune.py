"""Fine-tune a trained model to your own words: a new decoder, the trained encoder.

:func:`finetune` (CLI ``quartznet finetune``) starts from a trained model, a ``.pt`` checkpoint
or a shipped model's name (:mod:`~quartznet_tutorial.pretrained`), replaces its decoder by one
for your words, optionally trains the decoder alone for the first epochs, and then trains the
whole network with :func:`~quartznet_tutorial.train.train`. The data is your folder in the
Speech Commands layout (``<word>/<speaker>_nohash_<n>.wav`` and the two split lists), or, with
none, your words spoken by eSpeak NG (:func:`~quartznet_tutorial.synthetic.make_synthetic`,
whose speakers are split 80/10/10, so test voices are never heard in training). The result is
an ordinary checkpoint (``best.pt``, labels = your words) that ``predict``, ``evaluate`` and
``export`` take.

Three :class:`~quartznet_tutorial.train.TrainConfig` fields do the work, so ``quartznet train``
fine-tunes too: ``words``, ``init_checkpoint`` (read by :func:`init_from`) and
``freeze_encoder_epochs`` (applied by :func:`freeze_encoder`).

The new decoder follows NeMo's ``EncDecClassificationModel.change_labels``
(``nemo/collections/asr/models/classification_models.py``, NeMo commit ``8cfedd72``, 2025):
only the decoder is replaced, by a fresh one built from the same configuration with the new
number of classes (initialised as NeMo initialises it, Xavier-uniform); the encoder and the
preprocessor are kept; the same labels change nothing; no labels is an error. Freezing follows
NeMo's ``NeuralModule.freeze`` (``nemo/core/classes/module.py``): ``requires_grad`` off *and*
the module in eval mode.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

import torch
from torch import nn

from .classifier import Classifier
from .data import SpeechCommands, check_words, default_cache_dir
from .features import FeatureConfig
from .model import QuartzNet, _init_weights
from .train_config import TrainConfig, TrainResult

__all__ = ["FINETUNE_DEFAULTS", "change_labels", "finetune", "freeze_encoder", "init_from"]

logger = logging.getLogger(__name__)

#: Settings of :func:`finetune` that differ from :class:`~quartznet_tutorial.train.TrainConfig`'s
#: (NeMo's 200-epoch recipe from scratch): few, short epochs on a few clips per word, the
#: decoder alone first, small batches so that a small set still makes several steps an epoch,
#: and a lower peak learning rate than from scratch, not to wash out what the encoder knows.
#: Set by hand, not tuned; ``examples/few_shot.py`` measures them.
FINETUNE_DEFAULTS: dict = {
    "epochs": 30,
    "batch_size": 16,
    "lr": 0.01,
    "min_lr": 0.0001,
    "freeze_encoder_epochs": 5,
}


def change_labels(classifier: Classifier, labels: Sequence[str]) -> Classifier:
    """Give ``classifier`` a new decoder for ``labels`` (in place, and returned), as NeMo's
    ``EncDecClassificationModel.change_labels`` does: the encoder and the front end are kept,
    the decoder is a fresh ``Linear(C, len(labels))``; the same labels change nothing.

    Raises:
        ValueError: fewer than two labels, or labels that cannot be folder names
            (:func:`~quartznet_tutorial.data.check_words`).
    """
    labels = check_words(labels, what="labels")
    if labels == classifier.labels:
        logger.warning("the labels are the model's already (%s); nothing changed", labels)
        return classifier
    _new_decoder(classifier.model, len(labels))
    classifier.labels = labels
    return classifier


def _new_decoder(model: QuartzNet, num_classes: int) -> None:
    old = model.decoder
    model.decoder = nn.Linear(old.in_features, num_classes).to(old.weight.device)
    _init_weights(model.decoder)
    model.num_classes = num_classes


def init_from(model: QuartzNet, source: str | os.PathLike, labels: Sequence[str]) -> QuartzNet:
    """Load the trained weights of ``source`` into ``model``, a freshly built network for
    ``labels``: the whole network if ``source`` has the same labels in the same order, else
    every weight but the decoder's, which stays as built (:func:`change_labels`).

    Args:
        model (QuartzNet): the network to train, built for ``len(labels)`` classes.
        source (str or Path): a ``.pt`` checkpoint, a ``.nemo`` archive or a shipped model's
            name (:func:`~quartznet_tutorial.loading.load_classifier`).
        labels (sequence of str): the classes ``model`` is trained for.

    Raises:
        ValueError: ``source`` is no model, or another architecture than ``model``.
    """
    from .loading import load_classifier

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


def freeze_encoder(model: QuartzNet, frozen: bool = True) -> None:
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


def finetune(
    checkpoint: str | os.PathLike,
    words: Sequence[str],
    *,
    data_root: str | os.PathLike | None = None,
    per_word: int = 25,
    synthetic_seed: int = 0,
    **options,
) -> TrainResult:
    """Fine-tune the model ``checkpoint`` to ``words`` and test it on unseen speakers.

    Args:
        checkpoint (str or Path): the trained model: a ``.pt`` checkpoint, a ``.nemo`` archive,
            or a shipped model's name such as ``"synthetic-v1-quartznet-3x1"``.
        words (sequence of str): your words, the new classes in this order.
        data_root (str or Path, optional): your data in the Speech Commands layout, one
            folder per word. (Default: ``words`` spoken by eSpeak NG, made once into the cache)
        per_word (int, optional): clips per word of the spoken set (80% of them for
            training). (Default: ``25``)
        synthetic_seed (int, optional): the seed of the spoken set. (Default: ``0``)
        **options: :class:`~quartznet_tutorial.train.TrainConfig` fields, over
            :data:`FINETUNE_DEFAULTS`; ``model`` is the checkpoint's variant, ``frames``
            (the example length) the checkpoint's unless given.

    Returns:
        TrainResult: as :func:`~quartznet_tutorial.train.train`'s; ``best_checkpoint`` is the
        fine-tuned model.

    Raises:
        ValueError: bad words, an unknown checkpoint, or a folder whose words differ.
        FileNotFoundError: no such checkpoint file or data folder.
    """
    from .loading import load_classifier

    words = check_words(words)
    source = checkpoint if isinstance(checkpoint, str) else Path(checkpoint)
    trained = load_classifier(source)  # a clear error for a bad checkpoint
    variant = trained.model.config.name
    if options.get("model") not in (None, variant):
        raise ValueError(f"{checkpoint} holds {variant!r}, not {options['model']!r}; drop model")
    if data_root is None:
        data_root = _spoken(words, per_word, synthetic_seed, options.get("progress", True))
    settings = {**FINETUNE_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    if trained.features.frames is not None:  # the example length the encoder learnt on
        settings.setdefault("frames", trained.features.frames)
    train_clips = len(SpeechCommands(data_root, "training", words=words, cache=False))
    if train_clips == 0:
        raise ValueError(f"{data_root}: no training clips (all are in the split lists)")
    if train_clips < settings["batch_size"]:
        settings["batch_size"] = train_clips  # a training epoch drops its partial batch
    settings.setdefault("out_dir", f"runs/finetune-{variant}-seed{settings.get('seed', 0)}")
    config = TrainConfig(
        **{
            **settings,
            "model": variant,
            "data_root": str(data_root),
            "words": words,
            "init_checkpoint": str(checkpoint),
        }
    )
    from .train import train  # which imports this module for init_from and freeze_encoder

    return train(config)


def _spoken(words: list[str], per_word: int, seed: int, progress: bool) -> Path:
    """``words`` spoken by eSpeak NG into the cache (made once; the name keeps sets apart)."""
    from .synthetic import GENERATOR_VERSION, make_synthetic

    digest = hashlib.sha1("\n".join(words).encode()).hexdigest()[:10]
    name = f"synthetic-words-{digest}-{per_word}-seed{seed}-gen{GENERATOR_VERSION}"
    return make_synthetic(
        default_cache_dir() / name, per_word=per_word, seed=seed, words=words, progress=progress
    )


# --- the command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``quartznet finetune``: :class:`~quartznet_tutorial.train.TrainConfig`'s,
    with :data:`FINETUNE_DEFAULTS`, ``--checkpoint`` and ``--words`` required, and
    ``--per-word`` for the spoken set."""
    from .cli_options import add_dataclass_options, checkpoint_type, device_type, seed_type

    add_dataclass_options(
        parser,
        TrainConfig,
        overrides={
            "init_checkpoint": {
                "flags": ["--checkpoint"],
                "required": True,
                "type": checkpoint_type,
                "metavar": "FILE_OR_NAME",
                "help": "the trained model: a .pt checkpoint, a .nemo file or a shipped "
                "model's name (quartznet models --pretrained)",
            },
            "words": {"required": True, "help": "your words, the new classes"},
            "data_root": {
                "help": "your clips in the Speech Commands layout, a folder per word "
                "(default: the words spoken by eSpeak NG)"
            },
            "model": {"default": None, "help": argparse.SUPPRESS},
            "version": {"help": argparse.SUPPRESS, "flags": ["--dataset-version"]},
            "device": {"type": device_type},
            "seed": {"type": seed_type},
            "out_dir": {"default": None, "help": "(default: runs/finetune-MODEL-seedS)"},
            "frames": {
                "default": None,
                "help": "crop or pad every example to this many MFCC frames "
                "(default: the trained model's)",
            },
            **{
                name: {"default": value, "help": f"(default: {value})"}
                for name, value in FINETUNE_DEFAULTS.items()
            },
        },
    )
    parser.add_argument(
        "--per-word",
        type=int,
        default=25,
        help="clips per word spoken by eSpeak NG without --data-root (default: 25)",
    )
    parser.add_argument("--synthetic-seed", type=seed_type, default=0, help="(default: 0)")
    parser.add_argument("--results", type=Path, help="also write the run's summary JSON here")


def run_cli(args: argparse.Namespace) -> int:
    """``quartznet finetune``: fine-tune, print the summary JSON (exit status as ``train``)."""
    if args.data_root is not None and "--per-word" in args.argv:
        raise ValueError("--per-word is for the spoken set; leave it out with --data-root")
    if args.per_word < 1:
        raise ValueError(f"--per-word {args.per_word}: must be at least 1")
    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    if args.quiet:
        options["progress"] = False
    checkpoint, words = options.pop("init_checkpoint"), options.pop("words")
    try:
        result = finetune(
            checkpoint,
            words,
            per_word=args.per_word,
            synthetic_seed=args.synthetic_seed,
            **options,
        )
    except RuntimeError as e:
        code = getattr(e, "exit_code", None)  # TrainingInterrupted: last.pt holds the position
        if code is None:
            raise
        print(f"quartznet: {e}", file=sys.stderr)
        return code
    record = result.summary(command=shlex.join(["quartznet", *args.argv]))
    if args.results is not None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps(record, indent=2, default=str))
    return 0
