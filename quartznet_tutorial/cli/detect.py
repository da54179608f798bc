"""The ``quartznet detect`` and ``quartznet make-stream`` commands (options and handlers).

Kept apart from :mod:`quartznet_tutorial.kws.detector` so that building the parser imports no torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = [
    "add_detect_arguments",
    "add_make_stream_arguments",
    "run_detect",
    "run_make_stream",
]


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be positive")
        return value

    return parse


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return value


def _hop(text: str) -> int:
    value = _positive(int)(text)
    if value % 10:
        raise argparse.ArgumentTypeError(f"{value} ms is not a multiple of 10 ms (the MFCC hop)")
    return value


def add_detect_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``quartznet detect`` (the checkpoint and device options come from the CLI)."""
    p.add_argument("audio", type=Path, metavar="LONG.wav", help="a 16 kHz recording, any length")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the detections (and metrics)")
    p.add_argument(
        "--mode",
        choices=("exact", "one-pass"),
        default="exact",
        help="exact: every window classified alone; one-pass: the encoder runs once over the "
        "stream, ~10x faster, slightly different posteriors (default: exact)",
    )
    p.add_argument("--hop-ms", type=_hop, default=100, help="window step (default: 100)")
    p.add_argument(
        "--threshold", type=_probability, default=0.7, help="averaged score (default: 0.7)"
    )
    p.add_argument("--average-window-ms", type=_positive(int), default=500, help="(default: 500)")
    p.add_argument("--suppression-ms", type=_positive(int), default=500, help="(default: 500)")
    p.add_argument("--minimum-count", type=_positive(int), default=4, help="(default: 4)")
    p.add_argument(
        "--keywords",
        nargs="+",
        metavar="WORD",
        help="labels to report (default: all but _silence_ and _unknown_)",
    )
    p.add_argument("--batch-size", type=_positive(int), default=32, help="(default: 32)")
    p.add_argument(
        "--truth",
        type=Path,
        metavar="JSON",
        help="ground truth of make-stream: print hit rate, false accepts per hour, DET curve",
    )
    p.add_argument(
        "--tolerance",
        type=_positive(float),
        default=0.75,
        help="seconds, with --truth (default: 0.75)",
    )


def add_make_stream_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``quartznet make-stream``."""
    p.add_argument("--out", required=True, type=Path, help="folder for stream.wav, stream.json")
    p.add_argument("--minutes", type=_positive(float), default=10.0, help="(default: 10)")
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
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")


def run_detect(args: argparse.Namespace) -> int:
    """Handler of ``quartznet detect``."""
    from quartznet_tutorial.checkpoints.loading import load_classifier
    from quartznet_tutorial.kws.detector import DetectConfig, _keywords, detect_file
    from quartznet_tutorial.kws.scoring import det_curve, score_detections, threshold_for
    from quartznet_tutorial.kws.stream import read_truth
    from quartznet_tutorial.utils.precision import resolve_device

    truth = read_truth(args.truth) if args.truth is not None else None
    if args.json is not None and args.json.parent and not args.json.parent.is_dir():
        raise ValueError(f"--json {args.json}: the folder {args.json.parent} does not exist")
    config = DetectConfig(
        hop_ms=args.hop_ms,
        average_window_ms=args.average_window_ms,
        threshold=args.threshold,
        suppression_ms=args.suppression_ms,
        minimum_count=args.minimum_count,
        mode=args.mode,
        keywords=tuple(args.keywords) if args.keywords else None,
    )
    classifier = load_classifier(args.checkpoint).to(resolve_device(args.device))
    _keywords(classifier.labels, config.keywords)  # a clear error before any work
    detections, posteriors = detect_file(classifier, args.audio, config, batch_size=args.batch_size)
    for d in detections:
        print(f"{d.time:10.2f} s  {d.word:<10} {d.score:.3f}")
    doc: dict = {
        "audio": str(args.audio),
        "checkpoint": str(args.checkpoint),
        "duration": posteriors.duration,
        "config": {**vars(config), "keywords": config.keywords},
        "detections": [vars(d) for d in detections],
    }
    if truth is not None:
        score = score_detections(detections, truth, args.tolerance)
        curve = det_curve(posteriors, truth, config, tolerance=args.tolerance)
        best = threshold_for(curve, 1.0)
        print(
            f"{score.hits}/{score.events} keywords found (hit rate {score.hit_rate:.1%}, "
            f"miss rate {score.miss_rate:.1%}), {score.false_accepts} false accepts in "
            f"{posteriors.duration / 60:.1f} min = {score.false_accepts_per_hour:.1f} per hour",
            file=sys.stderr,
        )
        if best is None:
            print("no threshold gives <= 1 false accept per hour", file=sys.stderr)
        else:
            print(
                f"threshold {best['threshold']:.3f} gives <= 1 false accept per hour "
                f"(hit rate {best['hit_rate']:.1%}; on {posteriors.duration / 60:.1f} min of "
                f"audio one false accept is {3600 / posteriors.duration:.1f} per hour)",
                file=sys.stderr,
            )
        doc.update(score=score.to_dict(), det_curve=curve, threshold_1_per_hour=best)
    if args.json is not None:
        from quartznet_tutorial.utils.files import write_text_atomic

        write_text_atomic(args.json, json.dumps(doc, indent=1) + "\n")
    return 0


def run_make_stream(args: argparse.Namespace) -> int:
    """Handler of ``quartznet make-stream``."""
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
