"""The options of the ``quartznet`` command: types that check a value as it is parsed, options
that mean the same in every command, and :func:`add_dataclass_options`, which makes one option
per field of a dataclass (``quartznet train`` and ``finetune`` take
:class:`~quartznet_tutorial.training.config.TrainConfig`'s fields, ``quartznet detect``
:class:`~quartznet_tutorial.kws.detector.DetectConfig`'s, so the options cannot drift from them).

A type raises :class:`argparse.ArgumentTypeError`, which argparse turns into one line,
``quartznet train: error: argument --seed: ...``, exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "add_dataclass_options",
    "check_plot",
    "check_writable",
    "checkpoint_option",
    "checkpoint_type",
    "count_type",
    "dataclass_from_args",
    "dataset_version_option",
    "device_option",
    "device_type",
    "hop_ms_type",
    "opset_type",
    "positive_float",
    "positive_int",
    "probability_type",
    "seed_type",
]

PROG = "quartznet"
SEED_MAX = 2**63 - 1  # torch.manual_seed takes a 64-bit integer


# --- options that mean the same in every command ---------------------------------------------


def checkpoint_option(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--checkpoint FILE_OR_NAME``: a model file or a shipped model (:func:`checkpoint_type`)."""
    parser.add_argument(
        "--checkpoint",
        required=required,
        type=checkpoint_type,
        help="a .pt checkpoint, a NeMo .nemo file, or a shipped model's name "
        "(quartznet models --pretrained lists them)",
    )


def device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``: ``auto`` by default in every command (:func:`device_type`)."""
    parser.add_argument(
        "--device",
        default="auto",
        type=device_type,
        help="auto (CUDA if present), cpu, cuda or cuda:N (default: auto)",
    )


def dataset_version_option(parser: argparse.ArgumentParser) -> None:
    """``--dataset-version 1|2``: which Speech Commands release (its words)."""
    parser.add_argument(
        "--dataset-version",
        dest="version",
        type=int,
        choices=[1, 2],
        default=1,
        help="Speech Commands V1 (30 words) or V2 (35 words) (default: 1)",
    )


def positive_int(text: str, low: int = 1) -> int:
    """An argparse type: an integer of at least ``low``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value


def device_type(text: str) -> str:
    """An argparse type: ``auto`` or a device this machine has."""
    from quartznet_tutorial.utils.precision import resolve_device

    try:
        resolve_device(text, use_cpu="--device cpu")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def seed_type(text: str) -> int:
    """An argparse type: a seed ``torch.manual_seed`` takes, 0 to 2**63 - 1."""
    value = positive_int(text, low=0)
    if value > SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be at most 2**63 - 1 ({SEED_MAX}), got {value}")
    return value


def opset_type(text: str) -> int:
    """An argparse type: an ONNX opset that
    :func:`~quartznet_tutorial.export.onnx_export.export_onnx` supports."""
    from quartznet_tutorial.export.onnx_export import OPSETS

    value = positive_int(text)
    if value not in OPSETS:
        raise argparse.ArgumentTypeError(
            f"opset {value} is not supported; choose {OPSETS.start} to {OPSETS.stop - 1}"
        )
    return value


def checkpoint_type(text: str) -> Path | str:
    """An argparse type: a checkpoint path or a shipped model's name; a run's folder is a
    mistake the message can correct."""
    from quartznet_tutorial.checkpoints.pretrained import PRETRAINED

    if text in PRETRAINED:
        return text
    path = Path(text)
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix in (".pt", ".nemo"))
        if "best.pt" in found:
            hint = f"pass {path / 'best.pt'}"
        elif found:
            hint = f"pass one of its checkpoints ({', '.join(found[:5])})"
        else:
            hint = "pass a .pt checkpoint or a .nemo file"
        raise argparse.ArgumentTypeError(f"{path} is a folder; {hint}")
    return path


def count_type(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    return positive_int(text, low=0)


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def probability_type(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def hop_ms_type(text: str) -> int:
    """An argparse type: a step in milliseconds, a positive multiple of 10 ms (the MFCC hop)."""
    value = positive_int(text)
    if value % 10:
        raise argparse.ArgumentTypeError(f"{value} ms is not a multiple of 10 ms (the MFCC hop)")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


# --- checks before the work ----------------------------------------------------------------


def check_writable(path: Path, option: str) -> None:
    """Fail before the work, not after it: create ``path``'s folder and try a file there
    (``option`` names it in the message)."""
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a folder; pass a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise ValueError(
            f"{option} {path}: cannot write there ({e.strerror or e}); choose another path"
        ) from None


def check_plot(path: Path) -> None:
    """Fail before the work if matplotlib cannot write ``path`` (``--plot``)."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        what = f"unknown image format {suffix!r}" if suffix else "no file extension"
        raise ValueError(
            f"--plot {path}: {what}; name a file ending in one of: {', '.join(sorted(formats))}"
        )
    check_writable(path, "--plot")


# --- dataclass fields -> options -----------------------------------------------------------


def add_dataclass_options(
    parser: argparse.ArgumentParser,
    cls: type,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Add one ``--field-name`` option per init field of the dataclass ``cls``.

    Types: ``str``, ``int``, ``float``, ``bool`` (``--x/--no-x``), ``list[X]`` and
    ``tuple[X, ...]`` (``--x a b``) and ``X | None`` (``none`` gives ``None``), what
    :class:`~quartznet_tutorial.training.config.TrainConfig` and
    :class:`~quartznet_tutorial.kws.detector.DetectConfig` use. The help text is
    ``field(metadata={"help": ...})``; ``metadata["choices"]`` restricts the values. A field
    without a default becomes a required option.
    ``overrides`` maps a field name to ``add_argument`` keywords that replace the generated
    ones (``{"data_root": {"required": True}}``; ``"flags"`` renames the option); names of other
    fields are ignored.
    """
    overrides = overrides or {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind, optional = _strip_optional(hints[f.name])
        options: dict = {"dest": f.name, "help": f.metadata.get("help", "")}
        default = _default(f)
        if default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = default
            if default is not None:  # "None" says nothing; the help text explains it
                options["help"] = f"{options['help']} (default: %(default)s)".strip()
        sequence = typing.get_origin(kind)
        if sequence in (list, tuple):  # list[str] or tuple[str, ...]: --words a b c
            options["nargs"] = "+"
            options["metavar"] = f.name.upper().removesuffix("S")  # --words WORD [WORD ...]
            kind = _item_type(kind)
            if sequence is tuple:  # argparse collects a list; a frozen dataclass wants a tuple
                options["action"] = _StoreTuple
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
            state = "on" if default else "off"
            options["help"] = f"{f.metadata.get('help', '')} (default: {state})".strip()
        else:
            options["type"] = _scalar(kind, optional)
        if "choices" in f.metadata:
            options["choices"] = list(f.metadata["choices"])
        options.update(overrides.get(f.name, {}))
        flags = options.pop("flags", ["--" + f.name.replace("_", "-")])
        parser.add_argument(*flags, **options)


def dataclass_from_args(cls: type, args: argparse.Namespace):
    """Build ``cls`` from the options :func:`add_dataclass_options` added."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.init})


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _strip_optional(hint) -> tuple[object, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        raise TypeError(f"unsupported option type {hint}")
    return hint, False


def _item_type(hint):
    items = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and (len(items) != 2 or items[1] is not Ellipsis):
        raise TypeError(f"unsupported option type {hint}; a tuple option is tuple[X, ...]")
    return items[0]


class _StoreTuple(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, tuple(values))


def _scalar(kind, optional: bool):
    if kind not in (str, int, float):
        raise TypeError(f"unsupported option type {kind}")

    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        return kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value: 'x'"
    return parse
