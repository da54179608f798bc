"""The model-family seam: configs carry their family, old checkpoints load as QuartzNet, and a
family registered beside QuartzNet goes through the classifier, its checkpoints and fine-tuning."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pytest
import torch
from torch import nn

from quartznet_tutorial.audio.features import MFCC
from quartznet_tutorial.models import families
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.models.quartznet import build_model
from quartznet_tutorial.models.variants import VARIANTS, config_to_dict
from quartznet_tutorial.training.transfer import change_labels, freeze_encoder


def test_a_quartznet_config_round_trips_with_its_family_key():
    config = VARIANTS["se-quartznet-3x1"]
    d = families.config_to_dict(config)
    assert d["family"] == "quartznet"
    assert families.config_from_dict(d) is config  # a registry variant comes back as itself


def test_a_config_without_a_family_is_quartznet_as_checkpoints_before_families_were():
    old = config_to_dict(VARIANTS["quartznet-3x1"])  # what checkpoints on disk hold
    assert "family" not in old
    assert families.config_from_dict(old) is VARIANTS["quartznet-3x1"]


def test_an_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="model family 'conformer' is unknown"):
        families.config_from_dict({"family": "conformer", "name": "x"})
    with pytest.raises(TypeError, match="no registered model family"):
        families.family_of(object())


def test_names_and_builds_come_from_the_families():
    assert families.model_names()[: len(VARIANTS)] == list(VARIANTS)
    model = families.build("quartznet-3x1", num_classes=12)
    assert model.num_classes == 12 and model.config is VARIANTS["quartznet-3x1"]
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        families.find_config("nope")


@dataclass(frozen=True)
class _TinyConfig:
    name: str = "tiny"
    width: int = 8


class _Tiny(nn.Module):
    """A second family: mean-pooled MFCCs, one hidden layer."""

    def __init__(self, config: _TinyConfig, num_classes: int = 30) -> None:
        super().__init__()
        self.config, self.num_classes = config, num_classes
        self.encoder = nn.Linear(64, config.width)
        self.decoder = nn.Linear(config.width, num_classes)

    def forward(self, features, lengths=None):
        return self.decoder(torch.relu(self.encoder(features.mean(-1))))

    def replace_decoder(self, num_classes: int) -> None:
        self.decoder = nn.Linear(self.config.width, num_classes)
        self.num_classes = num_classes


@pytest.fixture
def tiny_family(monkeypatch):
    family = families.Family(
        key="tiny",
        config_class=_TinyConfig,
        variants={"tiny": _TinyConfig()},
        model_class=_Tiny,
        preprocessor=MFCC,
        to_dict=asdict,
        from_dict=lambda d: _TinyConfig(**d),
    )
    monkeypatch.setitem(families.FAMILIES, "tiny", family)
    return family


def test_another_family_goes_through_classifier_checkpoint_and_finetuning(tiny_family):
    torch.manual_seed(0)
    classifier = Classifier(families.build("tiny", num_classes=3), ["a", "b", "c"]).eval()
    waves = 0.1 * torch.randn(2, 16_000)
    d = classifier.to_dict()
    assert d["model_config"] == {"family": "tiny", "name": "tiny", "width": 8}
    again = Classifier.from_dict(d)
    assert isinstance(again.model, _Tiny)
    torch.testing.assert_close(again(waves), classifier(waves))  # no QuartzNet fast path
    change_labels(again, ["x", "y"])
    assert again(waves).shape == (2, 2)
    again.train()
    freeze_encoder(again.model)
    assert not any(p.requires_grad for p in again.model.encoder.parameters())
    assert all(p.requires_grad for p in again.model.decoder.parameters())


def test_quartznet_replace_decoder_keeps_the_encoder():
    model = build_model("quartznet-3x1")
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    model.replace_decoder(5)
    assert model.num_classes == 5 and model.decoder.out_features == 5
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in before.items())
