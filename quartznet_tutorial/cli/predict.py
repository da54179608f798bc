"""``quartznet predict``: the top-k words of audio files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quartznet_tutorial.cli.main import EXIT_USAGE, fail
from quartznet_tutorial.cli.options import checkpoint_option, device_option, positive_int

HELP = "classify audio files"
DESCRIPTION = (
    "Print the top-k words of each file. A folder stands for its *.wav files. Bad files are "
    "reported on stderr, the others are still classified; the exit status is 2 if any file "
    "failed."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    checkpoint_option(parser)
    parser.add_argument(
        "--top-k", type=positive_int, default=3, help="labels per file (default: 3)"
    )
    parser.add_argument("--resample", action="store_true", help="convert other rates to 16 kHz")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="(default: 32)")
    device_option(parser)


def run(args: argparse.Namespace) -> int:
    from quartznet_tutorial.checkpoints.loading import load_classifier
    from quartznet_tutorial.models.predict import predict_files
    from quartznet_tutorial.utils.precision import resolve_device

    classifier = load_classifier(args.checkpoint).to(resolve_device(args.device))
    results = predict_files(
        classifier, args.paths, top_k=args.top_k, resample=args.resample, batch_size=args.batch_size
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    for r in results:
        if r.error is not None:
            fail(r.error)
        elif not args.json:
            print(f"{r.path}  " + "  ".join(f"{w} {p:.3f}" for w, p in r.predictions))
    return EXIT_USAGE if any(r.error is not None for r in results) else 0
