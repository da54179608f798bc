"""``quartznet detect``: keywords in a long recording; the smoothing options are
:class:`~quartznet_tutorial.kws.detector.DetectConfig`'s fields."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quartznet_tutorial.cli.options import (
    add_dataclass_options,
    checkpoint_option,
    dataclass_from_args,
    device_option,
    hop_ms_type,
    positive_float,
    positive_int,
    probability_type,
)

HELP = "spot keywords in a long recording (word, time, score)"
DESCRIPTION = (
    "Score 1 s windows every --hop-ms and report each detected keyword (TensorFlow's "
    "RecognizeCommands smoothing). With --truth, also hit rate, false accepts per hour and the "
    "threshold for at most 1 false accept per hour."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from quartznet_tutorial.kws.detector import DetectConfig  # imports torch

    p = parser
    p.add_argument("audio", type=Path, metavar="LONG.wav", help="a 16 kHz recording, any length")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the detections (and metrics)")
    add_dataclass_options(
        p,
        DetectConfig,
        overrides={
            "hop_ms": {"type": hop_ms_type},
            "threshold": {"type": probability_type},
            "average_window_ms": {"type": positive_int},
            "suppression_ms": {"type": positive_int},
            "minimum_count": {"type": positive_int},
            "keywords": {"metavar": "WORD"},
        },
    )
    p.add_argument("--batch-size", type=positive_int, default=32, help="(default: 32)")
    p.add_argument(
        "--truth",
        type=Path,
        metavar="JSON",
        help="ground truth of make-stream: print hit rate, false accepts per hour, DET curve",
    )
    p.add_argument(
        "--tolerance",
        type=positive_float,
        default=0.75,
        help="seconds, with --truth (default: 0.75)",
    )
    checkpoint_option(p)
    device_option(p)


def run(args: argparse.Namespace) -> int:
    from quartznet_tutorial.checkpoints.loading import load_classifier
    from quartznet_tutorial.kws.detector import DetectConfig, detect_file, keyword_set
    from quartznet_tutorial.kws.scoring import det_curve, score_detections, threshold_for
    from quartznet_tutorial.kws.stream import read_truth
    from quartznet_tutorial.utils.files import write_json
    from quartznet_tutorial.utils.precision import resolve_device

    truth = read_truth(args.truth) if args.truth is not None else None
    if args.json is not None and args.json.parent and not args.json.parent.is_dir():
        raise ValueError(f"--json {args.json}: the folder {args.json.parent} does not exist")
    config = dataclass_from_args(DetectConfig, args)
    classifier = load_classifier(args.checkpoint).to(resolve_device(args.device))
    keyword_set(classifier.labels, config.keywords)  # a clear error before any work
    detections, posteriors = detect_file(classifier, args.audio, config, batch_size=args.batch_size)
    for d in detections:
        print(f"{d.time:10.2f} s  {d.word:<10} {d.score:.3f}")
    doc: dict = {
        "audio": str(args.audio),
        "checkpoint": str(args.checkpoint),
        "duration": posteriors.duration,
        "config": vars(config),
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
        write_json(args.json, doc)
    return 0
