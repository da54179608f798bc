"""quartznet-tutorial: exact PyTorch QuartzNet and SE-QuartzNet for Speech Commands.

The names below are imported on first use (PEP 562), so ``import quartznet_tutorial`` and
``quartznet --help`` load no more than they need. What the documentation site alone uses
(tables, diagrams, plots, the notebooks' profiles) is the subpackage
:mod:`quartznet_tutorial.tutorial`, never imported from here.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "AudioError": "audio",
    "load_audio": "audio",
    "AugmentConfig": "augment",
    "Classifier": "classifier",
    "VARIANTS": "config",
    "BlockConfig": "config",
    "QuartzNetConfig": "config",
    "get_config": "config",
    "SpeechCommands": "data",
    "evaluate": "evaluate",
    "export_onnx": "export",
    "MFCC": "features",
    "FeatureConfig": "features",
    "crop_or_pad": "features",
    "load_classifier": "loading",
    "JasperBlock": "model",
    "QuartzNet": "model",
    "SqueezeExcite": "model",
    "build_model": "model",
    "count_parameters": "model",
    "Novograd": "optim",
    "make_synthetic": "synthetic",
    "TrainConfig": "train",
    "train": "train",
}

if TYPE_CHECKING:
    from .audio import AudioError, load_audio
    from .augment import AugmentConfig
    from .classifier import Classifier
    from .config import VARIANTS, BlockConfig, QuartzNetConfig, get_config
    from .data import SpeechCommands
    from .evaluate import evaluate
    from .export import export_onnx
    from .features import MFCC, FeatureConfig, crop_or_pad
    from .loading import load_classifier
    from .model import JasperBlock, QuartzNet, SqueezeExcite, build_model, count_parameters
    from .optim import Novograd
    from .synthetic import make_synthetic
    from .train import TrainConfig, train


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


class _Package(types.ModuleType):
    """``evaluate`` and ``train`` name a function and the submodule defining it. Importing a
    submodule sets the package's attribute to the module; here the function wins, as it did
    when this file imported both eagerly."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
