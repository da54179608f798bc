"""Model families: every kind of network a :class:`~.classifier.Classifier` can hold.

A family is four things, registered once in :data:`FAMILIES`:

- a config dataclass with a ``name`` (a frozen dataclass, e.g.
  :class:`~quartznet_tutorial.models.variants.QuartzNetConfig`) and a table of named configs
  (the family's variants);
- an ``nn.Module`` built as ``model_class(config, num_classes=N)``, whose
  ``forward(features, lengths)`` returns logits ``(B, N)``, with an ``encoder``, a
  ``decoder`` and ``replace_decoder(num_classes)`` (what fine-tuning changes);
- the front end that turns waveforms into its features, built from a
  :class:`~quartznet_tutorial.audio.features.FeatureConfig`;
- how its config becomes a plain dict and back (for checkpoints and ONNX metadata).

A checkpoint's ``model_config`` names its family under ``"family"``; one without (every
QuartzNet checkpoint written before families existed) is QuartzNet's. A new family is one
module in this folder and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from quartznet_tutorial.audio.features import MFCC, FeatureConfig
from quartznet_tutorial.models import quartznet, variants

__all__ = [
    "FAMILIES",
    "Family",
    "build",
    "config_from_dict",
    "config_to_dict",
    "family_of",
    "find_config",
    "model_names",
]


@dataclass(frozen=True)
class Family:
    """One model family.

    Args:
        key (str): its name in a checkpoint's ``model_config["family"]``.
        config_class (type): its config dataclass.
        variants (Mapping[str, config]): its named configs, the names ``--model`` takes.
        model_class (type): ``model_class(config, num_classes=N)`` builds the network.
        preprocessor (callable): ``FeatureConfig -> nn.Module``, the front end the network
            reads: ``module(waveforms, lengths) -> (features, frames)``.
        to_dict (callable): config -> dict of builtins.
        from_dict (callable): inverse of ``to_dict``.
    """

    key: str
    config_class: type
    variants: Mapping[str, Any]
    model_class: type
    preprocessor: Callable[[FeatureConfig], nn.Module]
    to_dict: Callable[[Any], dict]
    from_dict: Callable[[dict], Any]


#: Every family, by key. QuartzNet (and SE-QuartzNet, a setting of its config) is the first.
FAMILIES: dict[str, Family] = {
    "quartznet": Family(
        key="quartznet",
        config_class=variants.QuartzNetConfig,
        variants=variants.VARIANTS,
        model_class=quartznet.QuartzNet,
        preprocessor=MFCC,
        to_dict=variants.config_to_dict,
        from_dict=variants.config_from_dict,
    ),
}


def family_of(config: Any) -> Family:
    """The family whose config class ``config`` is."""
    for family in FAMILIES.values():
        if isinstance(config, family.config_class):
            return family
    raise TypeError(f"{type(config).__name__} is the config of no registered model family")


def model_names() -> list[str]:
    """Every named model of every family, the choices of ``quartznet train --model``."""
    return [name for family in FAMILIES.values() for name in family.variants]


def find_config(name: str) -> Any:
    """The config named ``name`` in any family; a ``ValueError`` lists the names."""
    for family in FAMILIES.values():
        if name in family.variants:
            return family.variants[name]
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")


def build(config: Any, num_classes: int) -> nn.Module:
    """A fresh network of ``config``'s family (a config or a name) for ``num_classes``."""
    if isinstance(config, str):
        config = find_config(config)
    return family_of(config).model_class(config, num_classes=num_classes)


def config_to_dict(config: Any) -> dict:
    """``config`` as builtins with its family's key, for checkpoints and ONNX metadata."""
    family = family_of(config)
    return {"family": family.key, **family.to_dict(config)}


def config_from_dict(d: Mapping) -> Any:
    """Inverse of :func:`config_to_dict`; a dict without ``"family"`` is QuartzNet's."""
    d = dict(d)
    key = d.pop("family", "quartznet")
    if key not in FAMILIES:
        raise ValueError(
            f"model family {key!r} is unknown to this version of quartznet-tutorial "
            f"(it knows {', '.join(FAMILIES)}); upgrade it to load this model"
        )
    return FAMILIES[key].from_dict(d)
