"""Which pipeline ``quartznet train`` should pick on a CPU: both, end to end, with its defaults.

``bench.py``'s ``train`` rows give the training step one thread, so there the DataLoader's
worker processes compute features on cores the step does not use. What a user runs is
``quartznet train`` with PyTorch's default threads (every core) and the default 4 workers;
this script times exactly that, :func:`~quartznet_tutorial.training.loop.train` on the synthetic
Speech Commands set the docs train on (the ``smoke`` profile's, 30 words x 100 clips),
``--pipeline device`` against ``--pipeline dataloader``, alternating, and records the
training clips/s of the last epoch (the first warms up). It backs ``pipeline="auto"``'s
choice on a CPU (``quartznet_tutorial.datasets.pipeline._CPU_KIND``).

    python benchmarks/cpu_pipeline.py [--json benchmarks/results/cpu-pipeline-DATE.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import RESULTS, hardware, now, versions, write_results

from quartznet_tutorial.training.config import TrainConfig
from quartznet_tutorial.training.loop import train
from quartznet_tutorial.tutorial.profiles import get_profile

KINDS = ("device", "dataloader")


def run_once(root: Path, kind: str, precision: str, epochs: int, out: Path) -> float:
    """Training clips/s of the last epoch of one ``train`` run."""
    result = train(
        TrainConfig(
            model="quartznet-3x1",
            data_root=str(root),
            epochs=epochs,
            pipeline=kind,
            precision=precision,
            device="cpu",
            out_dir=str(out),
            progress=False,
        )
    )
    return result.history[-1]["clips_per_second"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="where to write (default: results/)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["32", "bf16-mixed"])
    args = parser.parse_args(argv)

    root = get_profile("smoke").data_root()
    defaults = TrainConfig()
    doc = {
        "schema": 1,
        "kind": "cpu-pipeline",
        "mode": "full",
        "date": now(),
        "hardware": hardware(torch.device("cpu")),
        "versions": versions(),
        "settings": {
            "model": "quartznet-3x1",
            "data": f"smoke profile synthetic V1 ({root.name})",
            "batch": defaults.batch_size,
            "threads": torch.get_num_threads(),
            "num_workers": defaults.num_workers,
            "augment": defaults.augment,
            "epochs": args.epochs,
            "repeats": args.repeats,
        },
        "rows": [],
    }
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        timings: dict[tuple[str, str], list[float]] = {}
        for repeat in range(args.repeats):
            for precision in args.precisions:
                for kind in KINDS:
                    out = Path(tmp) / f"{kind}-{precision}-{repeat}"
                    rate = run_once(root, kind, precision, args.epochs, out)
                    timings.setdefault((precision, kind), []).append(rate)
                    print(f"{precision:<11} {kind:<10} {rate:8.1f} clips/s", flush=True)
    for (precision, kind), rates in timings.items():
        doc["rows"].append(
            {
                "benchmark": "train_cli",
                "device": "cpu",
                "variant": "quartznet-3x1",
                "precision": precision,
                "pipeline": kind,
                "value": statistics.median(rates),
                "unit": "clips/s",
                "runs": rates,
            }
        )
    doc["seconds"] = round(time.perf_counter() - begin, 1)
    write_results(doc, args.json or RESULTS / f"cpu-pipeline-{doc['date'][:10]}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
