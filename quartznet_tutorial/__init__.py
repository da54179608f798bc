"""quartznet-tutorial: exact PyTorch QuartzNet and SE-QuartzNet for Speech Commands."""

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

__version__ = "0.1.0"

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
