"""Train the models shipped with the package: ``quartznet_tutorial/assets/models/``.

For each entry of :data:`quartznet_tutorial.pretrained.PRETRAINED` (quartznet-3x1 and
se-quartznet-3x1 on V1's 30 words), train on synthetic speech only with the smoke profile's
recipe (the one the training notebooks run; ``--per-word`` and ``--epochs`` scale it up), then
write beside each other:

- ``<name>.pt``: the classifier alone (weights, labels, front end; no optimizer state), which
  ``load_classifier("<name>")`` and ``quartznet predict --checkpoint <name>`` load;
- ``<name>.json``: the result record: accuracy on the synthetic test split (unseen speakers)
  and on the bundled real clips (:mod:`quartznet_tutorial.samples`, never trained on), the
  data and recipe, hardware, date and this command. ``tests/test_pretrained.py`` checks that
  each model still scores what its record says.

Run from the repository root on a quiet machine::

    OMP_NUM_THREADS=2 python examples/train_shipped_models.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import tempfile
from pathlib import Path

import torch

from quartznet_tutorial.checkpoint import save_checkpoint
from quartznet_tutorial.loading import load_classifier
from quartznet_tutorial.pretrained import PRETRAINED
from quartznet_tutorial.samples import evaluate_real
from quartznet_tutorial.synthetic import GENERATOR_VERSION
from quartznet_tutorial.train import train
from quartznet_tutorial.tutorial.profiles import get_profile


def main(argv: list[str] | None = None) -> int:
    smoke = get_profile("smoke")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-word", type=int, default=smoke.per_word, help="clips per word")
    parser.add_argument("--speakers", type=int, default=smoke.speakers, help="speakers")
    parser.add_argument("--epochs", type=int, default=smoke.epochs)
    parser.add_argument("--names", nargs="+", default=list(PRETRAINED), choices=list(PRETRAINED))
    args = parser.parse_args(argv)
    profile = dataclasses.replace(
        smoke, name="shipped", per_word=args.per_word, speakers=args.speakers, epochs=args.epochs
    )
    print(profile.describe())
    command = shlex.join(["python", "examples/train_shipped_models.py", *(argv or sys.argv[1:])])
    for name in args.names:
        shipped = PRETRAINED[name]
        with tempfile.TemporaryDirectory(prefix=f"{name}-") as out_dir:
            recipe = dataclasses.replace(profile, augment=shipped.augment)
            result = train(recipe.train_config(shipped.variant, out_dir))
            classifier = load_classifier(result.best_checkpoint or result.last_checkpoint)
        real = evaluate_real(classifier)
        save_checkpoint(shipped.checkpoint, {"classifier": classifier.to_dict()})
        stamp = json.loads((Path(profile.data_root()) / ".synthetic.json").read_text())
        record = result.summary(
            name=name,
            profile=profile.name,
            command=command,
            data_args={**stamp["args"], "generator_version": GENERATOR_VERSION},
            lr=profile.lr,
            hold_ratio=profile.hold_ratio,
            augment=shipped.augment,
            real_accuracy=real.accuracy,
            real_clips=real.num_clips,
            real_data="quartznet_tutorial/assets/real_speech_commands (V1 words)",
            torch_threads=torch.get_num_threads(),
            cpu_capability=torch.backends.cpu.get_cpu_capability(),
        )
        shipped.record.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(
            f"{name}: synthetic test {100 * result.test_accuracy:.2f}%, real clips "
            f"{100 * real.accuracy:.2f}% of {real.num_clips}, trained in "
            f"{result.train_seconds:.0f} s; wrote {shipped.checkpoint}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
