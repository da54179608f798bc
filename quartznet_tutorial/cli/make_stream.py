"""``quartznet make-stream``: a long test recording with keywords at known times."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quartznet_tutorial.cli.options import positive_float, seed_type

HELP = "write a long test recording and its ground truth (keywords at known times)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser
    p.add_argument("--out", required=True, type=Path, help="folder for stream.wav, stream.json")
    p.add_argument("--minutes", type=positive_float, default=10.0, help="(default: 10)")
    p.add_argument(
        "--snr",
        type=float,
        nargs="+",
        default=[20.0, 10.0],
        metavar="DB",
        help="speech-to-noise ratios, one drawn per clip (default: 20 10)",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        metavar="SPEECH_COMMANDS_DIR",
        help="take test-split clips and background noise from this folder "
        "(default: a synthetic set, made once in the cache)",
    )
    p.add_argument(
        "--keywords",
        nargs="+",
        metavar="WORD",
        help="the words scored as keywords (default: yes no up down left right on off stop go)",
    )
    p.add_argument("--seed", type=seed_type, default=0, help="(default: 0)")


def run(args: argparse.Namespace) -> int:
    from quartznet_tutorial.kws.stream import KEYWORDS, make_stream

    path = make_stream(
        args.out,
        minutes=args.minutes,
        snr_db=args.snr,
        data_root=args.data_root,
        seed=args.seed,
        keywords=args.keywords or KEYWORDS,
    )
    truth = json.loads(path.read_text())
    keywords = sum(e["kind"] == "keyword" for e in truth["events"])
    print(
        f"wrote {args.out / 'stream.wav'} ({truth['duration'] / 60:.1f} min, {keywords} keywords, "
        f"{len(truth['events']) - keywords} other words) and {path}"
    )
    return 0
