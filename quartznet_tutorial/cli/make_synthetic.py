"""``quartznet make-synthetic``: a Speech Commands tree of eSpeak NG speech."""

from __future__ import annotations

import argparse
from pathlib import Path

from quartznet_tutorial.cli.options import (
    count_type,
    dataset_version_option,
    positive_int,
    seed_type,
)

HELP = "write a synthetic Speech Commands tree (eSpeak NG speech)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser
    p.add_argument("--out", required=True, type=Path, help="folder to write")
    dataset_version_option(p)
    p.add_argument(
        "--per-word", type=positive_int, default=100, help="clips per word (default: 100)"
    )
    p.add_argument("--seed", type=seed_type, default=0, help="(default: 0)")
    p.add_argument(
        "--words",
        nargs="+",
        metavar="WORD",
        help="the words to speak: some of the version's or any others (default: the version's)",
    )
    p.add_argument("--speakers", type=positive_int, help="synthetic speakers (default: auto)")
    p.add_argument(
        "--workers", type=count_type, help="processes; 0: this one (default: the usable cores)"
    )


def run(args: argparse.Namespace) -> int:
    from quartznet_tutorial.synthetic.espeak import make_synthetic

    out = make_synthetic(
        args.out,
        version=args.version,
        per_word=args.per_word,
        seed=args.seed,
        words=args.words,
        speakers=args.speakers,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(out)
    return 0
