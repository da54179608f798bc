"""``quartznet evaluate``: a checkpoint's accuracy on a data folder, clean or under noise."""

from __future__ import annotations

import argparse
import json

from quartznet_tutorial.evaluation.accuracy import evaluate_checkpoint


def run(args: argparse.Namespace) -> int:
    """``quartznet evaluate``: print the accuracy and each class's (or JSON), and write the
    confusion matrix figure with ``--plot``."""
    from quartznet_tutorial.cli.options import check_plot

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
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        from quartznet_tutorial.evaluation.plots import plot_confusion

        fig, ax = plt.subplots(figsize=(10, 9))
        plot_confusion(result, ax=ax)
        fig.savefig(args.plot, bbox_inches="tight", dpi=150)
        plt.close(fig)
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
