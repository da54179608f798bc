"""``quartznet finetune``: a trained model to your own words; the options are
:class:`~quartznet_tutorial.training.config.TrainConfig`'s fields, with
:data:`~quartznet_tutorial.training.finetune.FINETUNE_DEFAULTS`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from quartznet_tutorial.cli.options import (
    PROG,
    add_dataclass_options,
    check_writable,
    checkpoint_type,
    device_type,
    positive_int,
    seed_type,
)

HELP = "fine-tune a trained model to your own words (a new decoder)"
DESCRIPTION = (
    "Start from a trained model, give it a decoder for your words and train on your clips "
    "(--data-root) or on your words spoken by eSpeak NG (--per-word)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` and ``--words`` required, ``--per-word`` for the spoken set."""
    from quartznet_tutorial.training.config import TrainConfig  # imports torch
    from quartznet_tutorial.training.finetune import FINETUNE_DEFAULTS

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
        type=positive_int,
        default=25,
        help="clips per word spoken by eSpeak NG without --data-root (default: 25)",
    )
    parser.add_argument("--synthetic-seed", type=seed_type, default=0, help="(default: 0)")
    parser.add_argument("--results", type=Path, help="also write the run's summary JSON here")


def run(args: argparse.Namespace) -> int:
    """Fine-tune, print the summary JSON (exit status as ``train``)."""
    from quartznet_tutorial.training.config import TrainConfig
    from quartznet_tutorial.training.finetune import finetune
    from quartznet_tutorial.utils.files import write_text_atomic

    if args.data_root is not None and "--per-word" in args.argv:
        raise ValueError("--per-word is for the spoken set; leave it out with --data-root")
    if args.results is not None:
        check_writable(args.results, "--results")
    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.init}
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
        print(f"{PROG}: {e}", file=sys.stderr)
        return code
    record = result.summary(command=shlex.join([PROG, *args.argv]))
    if args.results is not None:
        write_text_atomic(args.results, json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps(record, indent=2, default=str))
    return 0
