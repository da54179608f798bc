"""The smoke profile's training-page models over several seeds: how far apart do runs land?

A docs build trains each training page's model once (seed 0): at about two minutes a model on
two CPU cores, three seeds would triple the build. This script trains the same recipe
(:func:`~quartznet_tutorial.tutorial.profiles.get_profile` ``"smoke"``: same data, epochs,
batch and learning rate) for each seed and writes one result file per run,
``results/synthetic-v1-smoke-<model>-seed<S>.json``, with its accuracy on the synthetic test
split (unseen speakers) and on the real clips that ship with the package
(:func:`~quartznet_tutorial.evaluation.real.evaluate_real`). The Results page groups the files of
one recipe into mean ± standard deviation over seeds, and the training pages print the spread
beside their own run.

Run from the repository root on a quiet machine::

    python examples/smoke_seeds.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import torch

from quartznet_tutorial.evaluation.real import evaluate_real
from quartznet_tutorial.synthetic.speakers import data_args
from quartznet_tutorial.training.loop import train_seeds
from quartznet_tutorial.tutorial.profiles import get_profile
from quartznet_tutorial.tutorial.results import checkout

RESULTS_DIR = checkout(__file__) / "results"


def main(argv: list[str] | None = None) -> int:
    profile = get_profile("smoke")
    models = [*profile.quartznet_models, *profile.se_models]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=models, choices=models)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder of the files")
    args = parser.parse_args(argv)
    print(profile.describe())
    command = shlex.join(["python", "examples/smoke_seeds.py", *(argv or sys.argv[1:])])
    for model in args.models:
        with tempfile.TemporaryDirectory(prefix=f"{model}-") as out_dir:
            for result in train_seeds(profile.train_config(model, out_dir), args.seeds):
                real = evaluate_real(result.best_checkpoint or result.last_checkpoint)
                record = result.summary(
                    profile=profile.name,
                    command=command,
                    data_args=data_args(profile.data_root()),
                    real_accuracy=real.accuracy,
                    real_clips=real.num_clips,
                    torch_threads=torch.get_num_threads(),
                    cpu_capability=torch.backends.cpu.get_cpu_capability(),
                )
                path = args.results / f"synthetic-v1-smoke-{model}-seed{result.config.seed}.json"
                path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
                print(
                    f"{model} seed {result.config.seed}: synthetic test "
                    f"{100 * result.test_accuracy:.2f}%, real {100 * real.accuracy:.1f}% of "
                    f"{real.num_clips}, {result.train_seconds:.0f} s; wrote {path}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
