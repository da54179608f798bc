"""quartznet-tutorial: exact PyTorch QuartzNet and SE-QuartzNet for Speech Commands.

The names below are imported on first use (PEP 562), so ``import quartznet_tutorial`` and
``quartznet --help`` load no more than they need. What the documentation site alone uses
(tables, diagrams, plots, the notebooks' profiles) is the subpackage
:mod:`quartznet_tutorial.tutorial`, never imported from here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from quartznet_tutorial.utils import version as _version

__version__ = _version.package_version()

# name -> the module that defines it
_EXPORTS = {
    "AudioError": "audio.file_io",
    "load_audio": "audio.file_io",
    "AugmentConfig": "audio.augment",
    "Classifier": "models.classifier",
    "VARIANTS": "models.variants",
    "BlockConfig": "models.variants",
    "QuartzNetConfig": "models.variants",
    "get_config": "models.variants",
    "SpeechCommands": "datasets.speech_commands",
    "evaluate": "evaluation.accuracy",
    "export_onnx": "export.onnx_export",
    "MFCC": "audio.features",
    "FeatureConfig": "audio.features",
    "crop_or_pad": "audio.features",
    "load_classifier": "checkpoints.loading",
    "JasperBlock": "models.quartznet",
    "QuartzNet": "models.quartznet",
    "SqueezeExcite": "models.quartznet",
    "build_model": "models.quartznet",
    "count_parameters": "models.quartznet",
    "Novograd": "training.optim",
    "make_synthetic": "synthetic.espeak",
    "TrainConfig": "training.config",
    "train": "training.loop",
}

if TYPE_CHECKING:
    from quartznet_tutorial.audio.augment import AugmentConfig
    from quartznet_tutorial.audio.features import MFCC, FeatureConfig, crop_or_pad
    from quartznet_tutorial.audio.file_io import AudioError, load_audio
    from quartznet_tutorial.checkpoints.loading import load_classifier
    from quartznet_tutorial.datasets.speech_commands import SpeechCommands
    from quartznet_tutorial.evaluation.accuracy import evaluate
    from quartznet_tutorial.export.onnx_export import export_onnx
    from quartznet_tutorial.models.classifier import Classifier
    from quartznet_tutorial.models.quartznet import (
        JasperBlock,
        QuartzNet,
        SqueezeExcite,
        build_model,
        count_parameters,
    )
    from quartznet_tutorial.models.variants import (
        VARIANTS,
        BlockConfig,
        QuartzNetConfig,
        get_config,
    )
    from quartznet_tutorial.synthetic.espeak import make_synthetic
    from quartznet_tutorial.training.config import TrainConfig
    from quartznet_tutorial.training.loop import train
    from quartznet_tutorial.training.optim import Novograd


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "MFCC",
    "VARIANTS",
    "AudioError",
    "AugmentConfig",
    "BlockConfig",
    "Classifier",
    "FeatureConfig",
    "JasperBlock",
    "Novograd",
    "QuartzNet",
    "QuartzNetConfig",
    "SpeechCommands",
    "SqueezeExcite",
    "TrainConfig",
    "build_model",
    "count_parameters",
    "crop_or_pad",
    "evaluate",
    "export_onnx",
    "get_config",
    "load_audio",
    "load_classifier",
    "make_synthetic",
    "train",
]
