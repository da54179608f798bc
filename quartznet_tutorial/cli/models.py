"""``quartznet models``: the model variants with their parameter counts, or the shipped models."""

from __future__ import annotations

import argparse
import json

HELP = "list the model variants with their parameter counts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="list the trained models shipped with the package, with their recorded accuracy",
    )


def run(args: argparse.Namespace) -> int:
    rows = _pretrained() if args.pretrained else _variants()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if args.pretrained:
        header = ["name", "variant", "synthetic test", "real clips"]
        table = [
            [r["name"], r["variant"], f"{100 * r['test_accuracy']:.1f}%",
             f"{100 * r['real_accuracy']:.1f}%"]
            for r in rows
        ]  # fmt: skip
    else:
        header = ["name", "BxR", "SE", "source", "params", "reported"]
        table = [
            [r["name"], r["BxR"], "yes" if r["SE"] else "no", r["source"], f"{r['params']:,}",
             r["reported_params"] or "-"]
            for r in rows
        ]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table, strict=True)]
    for line in [header, *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    return 0


def _variants() -> list[dict]:
    from quartznet_tutorial.models.quartznet import build_model, count_parameters
    from quartznet_tutorial.models.variants import VARIANTS

    return [
        {
            "name": name,
            "BxR": f"{c.num_blocks}x{c.repeat}",
            "SE": c.has_se,
            "source": c.source,
            "params": count_parameters(build_model(c)),
            "reported_params": c.reported.params if c.reported else None,
        }
        for name, c in VARIANTS.items()
    ]


def _pretrained() -> list[dict]:
    from quartznet_tutorial.checkpoints.pretrained import PRETRAINED, pretrained_record

    rows = []
    for name, p in PRETRAINED.items():
        record = pretrained_record(name)
        rows.append(
            {
                "name": name,
                "variant": p.variant,
                "data": p.data,
                "test_accuracy": record["test_accuracy"],
                "real_accuracy": record["real_accuracy"],
            }
        )
    return rows
