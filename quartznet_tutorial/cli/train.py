"""``quartznet train``: train a model; the options are
:class:`~quartznet_tutorial.training.config.TrainConfig`'s fields."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from quartznet_tutorial.cli.options import (
    PROG,
    add_dataclass_options,
    check_writable,
    dataclass_from_args,
    device_type,
    seed_type,
)

HELP = "train a model on Speech Commands (NeMo's recipe)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from quartznet_tutorial.training.config import TrainConfig  # imports torch

    add_dataclass_options(
        parser,
        TrainConfig,
        overrides={
            "data_root": {"required": True},
            "version": {"choices": [1, 2], "flags": ["--dataset-version"]},
            "device": {"type": device_type},
            "seed": {"type": seed_type},
        },
    )
    parser.add_argument(
        "--seeds",
        type=seed_type,
        nargs="+",
        metavar="SEED",
        help="train once per seed, one after another (each in its own folder); replaces --seed",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="also write the run's summary JSON here (with --seeds: NAME-seedS.json each)",
    )
    parser.add_argument(
        "--profile", default="custom", help="profile name recorded in the summary (default: custom)"
    )


def run(args: argparse.Namespace) -> int:
    from quartznet_tutorial.training.config import TrainConfig
    from quartznet_tutorial.training.loop import train, train_seeds
    from quartznet_tutorial.utils.files import write_text_atomic

    out_dir = getattr(args, "out_dir", None)
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"--out-dir {out_dir}: is a file, not a folder; choose a folder")
    if args.results is not None:
        check_writable(args.results, "--results")
    if args.quiet:
        args.progress = False
    if args.seeds:
        args.seed = args.seeds[0]  # so that the default out_dir is the first seed's
    config = dataclass_from_args(TrainConfig, args)
    try:
        results = train_seeds(config, args.seeds) if args.seeds else [train(config)]
    except RuntimeError as e:
        code = getattr(e, "exit_code", None)  # TrainingInterrupted: SIGTERM, last.pt saved
        if code is None:
            raise
        print(f"{PROG}: {e}", file=sys.stderr)
        return code
    command = shlex.join([PROG, *args.argv])
    summaries = [r.summary(profile=args.profile, command=command) for r in results]
    for record in summaries:
        if args.results is not None:
            path = args.results
            if args.seeds:
                path = path.with_name(f"{path.stem}-seed{record['seed']}{path.suffix}")
            write_text_atomic(path, json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps(summaries if args.seeds else summaries[0], indent=2, default=str))
    return 0
