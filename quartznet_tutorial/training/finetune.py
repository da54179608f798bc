"""Fine-tune a trained model to your own words: a new decoder, the trained encoder.

:func:`finetune` (CLI ``quartznet finetune``) starts from a trained model, a ``.pt`` checkpoint
or a shipped model's name (:mod:`~quartznet_tutorial.checkpoints.pretrained`), replaces its decoder
by one for your words, optionally trains the decoder alone for the first epochs, and then trains the
whole network with :func:`~quartznet_tutorial.training.loop.train`. The data is your folder in the
Speech Commands layout (``<word>/<speaker>_nohash_<n>.wav`` and the two split lists), or, with
none, your words spoken by eSpeak NG (:func:`~quartznet_tutorial.synthetic.espeak.make_synthetic`,
whose speakers are split 80/10/10, so test voices are never heard in training). The result is
an ordinary checkpoint (``best.pt``, labels = your words) that ``predict``, ``evaluate`` and
``export`` take.

Three :class:`~quartznet_tutorial.training.config.TrainConfig` fields do the work, so ``quartznet
train`` fine-tunes too: ``words``, ``init_checkpoint`` (read by
:func:`~quartznet_tutorial.training.transfer.init_from`) and
``freeze_encoder_epochs`` (applied by :func:`~quartznet_tutorial.training.transfer.freeze_encoder`).

How the decoder is replaced and the encoder frozen: :mod:`quartznet_tutorial.training.transfer`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from quartznet_tutorial.datasets.speech_commands import SpeechCommands, check_words
from quartznet_tutorial.training.config import TrainConfig, TrainResult
from quartznet_tutorial.training.loop import train
from quartznet_tutorial.utils.files import default_cache_dir

__all__ = ["FINETUNE_DEFAULTS", "finetune"]

logger = logging.getLogger(__name__)

#: Settings of :func:`finetune` that differ from
#: :class:`~quartznet_tutorial.training.config.TrainConfig`'s
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
        **options: :class:`~quartznet_tutorial.training.config.TrainConfig` fields, over
            :data:`FINETUNE_DEFAULTS`; ``model`` is the checkpoint's variant, ``frames``
            (the example length) the checkpoint's unless given.

    Returns:
        TrainResult: as :func:`~quartznet_tutorial.training.loop.train`'s; ``best_checkpoint`` is
        the fine-tuned model.

    Raises:
        ValueError: bad words, an unknown checkpoint, or a folder whose words differ.
        FileNotFoundError: no such checkpoint file or data folder.
    """
    from quartznet_tutorial.checkpoints.loading import load_classifier

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
    return train(config)


def _spoken(words: list[str], per_word: int, seed: int, progress: bool) -> Path:
    """``words`` spoken by eSpeak NG into the cache (made once; the name keeps sets apart)."""
    from quartznet_tutorial.synthetic.espeak import GENERATOR_VERSION, make_synthetic

    digest = hashlib.sha1("\n".join(words).encode()).hexdigest()[:10]
    name = f"synthetic-words-{digest}-{per_word}-seed{seed}-gen{GENERATOR_VERSION}"
    return make_synthetic(
        default_cache_dir() / name, per_word=per_word, seed=seed, words=words, progress=progress
    )
