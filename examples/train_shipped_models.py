"""Train the models shipped with the package: ``quartznet_tutorial/assets/models/``.

For each entry of :data:`quartznet_tutorial.checkpoints.pretrained.PRETRAINED` (quartznet-3x1 and
se-quartznet-3x1 on V1's 30 words), train on synthetic speech only with the smoke profile's
recipe (the one the training notebooks run; ``--per-word`` and ``--epochs`` scale it up) on
NeMo's 128-frame examples, as the shipped models were (``--frames``; the profile now keeps one
second's 101), then write beside each other:

- ``<name>.pt``: the classifier alone (weights, labels, front end; no optimizer state), which
  ``load_classifier("<name>")`` and ``quartznet predict --checkpoint <name>`` load;
- ``<name>.json``: the result record: accuracy on the synthetic test split (unseen speakers)
  and on the bundled real clips (:mod:`quartznet_tutorial.datasets.real_clips`, never trained on),
  the data and recipe, hardware, date and this command. ``tests/test_pretrained.py`` checks that
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

from quartznet_tutorial.checkpoints.checkpoint import save_checkpoint
from quartznet_tutorial.checkpoints.loading import load_classifier
from quartznet_tutorial.checkpoints.pretrained import PRETRAINED
from quartznet_tutorial.evaluation.real import evaluate_real
from quartznet_tutorial.synthetic.piper import LEVER
from quartznet_tutorial.synthetic.speakers import data_args
from quartznet_tutorial.training.loop import train
from quartznet_tutorial.tutorial.profiles import get_profile
from quartznet_tutorial.utils.files import default_cache_dir


def main(argv: list[str] | None = None) -> int:
    smoke = get_profile("smoke")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-word", type=int, default=smoke.per_word, help="clips per word")
    parser.add_argument("--speakers", type=int, default=smoke.speakers, help="speakers")
    parser.add_argument("--epochs", type=int, default=smoke.epochs)
    parser.add_argument("--frames", type=int, default=128, help="MFCC frames per example")
    parser.add_argument("--names", nargs="+", default=list(PRETRAINED), choices=list(PRETRAINED))
    parser.add_argument("--piper-per-word", type=int, default=LEVER["per_word"])
    args = parser.parse_args(argv)
    profile = dataclasses.replace(
        smoke,
        name="shipped",
        per_word=args.per_word,
        speakers=args.speakers,
        epochs=args.epochs,
        frames=args.frames,
    )
    print(profile.describe())
    command = shlex.join(["python", "examples/train_shipped_models.py", *(argv or sys.argv[1:])])
    for name in args.names:
        shipped = PRETRAINED[name]
        piper = {**LEVER, "per_word": args.piper_per_word} if shipped.piper else {}
        with tempfile.TemporaryDirectory(prefix=f"{name}-") as out_dir:
            recipe = dataclasses.replace(profile, augment=shipped.augment)
            config = recipe.train_config(shipped.variant, out_dir)
            if piper:
                config = dataclasses.replace(config, data_root=str(_with_piper(profile, piper)))
            result = train(config)
            classifier = load_classifier(result.best_checkpoint or result.last_checkpoint)
        real = evaluate_real(classifier)
        save_checkpoint(shipped.checkpoint, {"classifier": classifier.to_dict()})
        record = result.summary(
            name=name,
            profile=profile.name,
            command=command,
            data_args=data_args(profile.data_root()),
            lr=profile.lr,
            hold_ratio=profile.hold_ratio,
            augment=shipped.augment,
            real_accuracy=real.accuracy,
            real_clips=real.num_clips,
            real_data="quartznet_tutorial/assets/real_speech_commands (V1 words)",
            torch_threads=torch.get_num_threads(),
            cpu_capability=torch.backends.cpu.get_cpu_capability(),
            **({"piper_args": piper, **_piper_versions()} if piper else {}),
        )
        shipped.record.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(
            f"{name}: synthetic test {100 * result.test_accuracy:.2f}%, real clips "
            f"{100 * real.accuracy:.2f}% of {real.num_clips}, trained in "
            f"{result.train_seconds:.0f} s; wrote {shipped.checkpoint}"
        )
    return 0


def _with_piper(profile, piper: dict) -> Path:
    """The profile's eSpeak NG set plus the training clips of a Piper set (both cached); the
    validation and test splits stay eSpeak NG's, so the test column compares with the others."""
    from quartznet_tutorial.datasets.speech_commands import labels_for
    from quartznet_tutorial.synthetic.piper import GENERATOR_VERSION as PIPER_VERSION
    from quartznet_tutorial.synthetic.piper import make_piper, mix_training

    espeak = Path(profile.data_root())
    name = f"piper-v{profile.version}-{piper['per_word']}x{piper['speakers']}"
    piper_root = default_cache_dir() / f"{name}-seed{piper['seed']}-gen{PIPER_VERSION}"
    make_piper(piper_root, labels_for(profile.version), **piper)
    return mix_training(
        espeak, piper_root, default_cache_dir() / f"{espeak.name}+{piper_root.name}"
    )


def _piper_versions() -> dict:
    from importlib.metadata import version

    from quartznet_tutorial.synthetic.piper import GENERATOR_VERSION as PIPER_VERSION

    return {
        "piper_generator_version": PIPER_VERSION,
        "piper_tts": version("piper-tts"),
        "onnxruntime": version("onnxruntime"),
    }


if __name__ == "__main__":
    sys.exit(main())
