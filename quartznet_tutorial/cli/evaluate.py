"""``quartznet evaluate``: a checkpoint's accuracy on a data folder, clean or under noise."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quartznet_tutorial.cli.options import (
    check_plot,
    checkpoint_option,
    dataset_version_option,
    device_option,
    positive_int,
    seed_type,
)
from quartznet_tutorial.utils.precision import PRECISIONS

HELP = "accuracy and confusion matrix of a checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser
    checkpoint_option(p)
    p.add_argument("--data-root", required=True, type=Path, help="extracted Speech Commands")
    p.add_argument(
        "--subset",
        default="testing",
        choices=["training", "validation", "testing"],
        help="the split to evaluate (default: testing)",
    )
    dataset_version_option(p)
    p.add_argument(
        "--plot", type=Path, help="write the confusion matrix figure to this .png/.pdf/.svg file"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    device_option(p)
    p.add_argument("--batch-size", type=positive_int, help="(default: 64 on a CPU, 256 on a GPU)")
    p.add_argument(
        "--precision", default="32", choices=PRECISIONS, help="autocast precision (default: 32)"
    )
    p.add_argument("--limit-clips", type=positive_int, help="evaluate only this many clips")
    p.add_argument("--skip-bad-files", action="store_true", help="leave unreadable clips out")
    p.add_argument(
        "--task",
        choices=["all", "12"],
        help="all words, or 12: ten keywords + _silence_ + _unknown_ (default: the checkpoint's)",
    )
    p.add_argument("--snr", type=float, metavar="DB", help="mix noise into each clip at this SNR")
    p.add_argument(
        "--noise",
        nargs="+",
        metavar="KIND_OR_FILE",
        help="with --snr: white, pink, brown, or noise .wav files/folders (default: white)",
    )
    p.add_argument("--noise-seed", type=seed_type, default=0, help="seed of the noise (default: 0)")


def run(args: argparse.Namespace) -> int:
    """Print the accuracy and each class's (or JSON), and write the confusion matrix figure
    with ``--plot``."""
    from quartznet_tutorial.evaluation.accuracy import evaluate_checkpoint

    if args.plot is not None:
        check_plot(args.plot)
    if args.noise is not None and args.snr is None:
        raise ValueError("--noise needs --snr DB: the SNR to mix the noise in at")
    args.noise = args.noise or ["white"]
    result = evaluate_checkpoint(
        args.checkpoint,
        args.data_root,
        subset=args.subset,
        version=args.version,
        device=args.device,
        batch_size=args.batch_size,
        precision=args.precision,
        limit_clips=args.limit_clips,
        skip_bad_files=args.skip_bad_files,
        progress=not args.quiet,
        task=args.task,
        snr_db=args.snr,
        noise=args.noise,
        noise_seed=args.noise_seed,
    )
    if args.plot is not None:
        _plot(result, args.plot)
    if args.json:
        record = {"checkpoint": str(args.checkpoint), "subset": args.subset, **result.to_dict()}
        if args.snr is not None:
            record.update(snr_db=args.snr, noise=args.noise, noise_seed=args.noise_seed)
        print(json.dumps(record, indent=2))
        return 0
    noisy = "" if args.snr is None else f" with {' '.join(args.noise)} noise at {args.snr:g} dB"
    print(
        f"{args.subset} accuracy{noisy}: {100 * result.accuracy:.2f}% of {result.num_clips:,} "
        f"clips (loss {result.loss:.4f})"
    )
    support = result.confusion.sum(axis=1)
    width = max(map(len, result.labels))
    for label, accuracy, n in zip(result.labels, result.per_class_accuracy, support, strict=True):
        if n:
            print(f"  {label:<{width}}  {100 * accuracy:6.2f}%  of {n:,}")
    return 0


def _plot(result, path: Path) -> None:
    """The confusion matrix figure, written atomically (the format is ``path``'s suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from quartznet_tutorial.evaluation.plots import plot_confusion
    from quartznet_tutorial.utils.files import atomic_write

    fig, ax = plt.subplots(figsize=(10, 9))
    plot_confusion(result, ax=ax)
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format=path.suffix.lower().lstrip("."), bbox_inches="tight", dpi=150)
    finally:
        plt.close(fig)
