"""How many examples per word does fine-tuning need? Accuracy against examples per word.

Five words no shipped model ever heard ("computer", "lights", "music", "pause", "volume") are
spoken by eSpeak NG (``make_synthetic``, seed 1: other speakers than the shipped models'
seed 0) by 60 synthetic speakers, split 48/6/6 by speaker. For each N in 5, 10, 25, 100 we keep
N training clips per word (nested: the 5 are among the 10), the validation speakers' clips (to
pick the best epoch) and the test speakers' clips (voices never heard in training), and train

- ``finetune``: the shipped ``synthetic-v1-quartznet-3x1`` with a new decoder
  (:func:`quartznet_tutorial.training.finetune.finetune`), the decoder alone for the first quarter
  of the epochs;
- ``scratch``: ``quartznet-3x1`` from random weights with NeMo's recipe (lr 0.05);

each for the same number of optimizer steps and batch size, whatever N (so a small N means
more epochs over fewer clips). Writes ``results/few-shot.json`` with the CPU model, ISA level
and date. Takes a few minutes on 2 CPU cores.

Run: ``python examples/few_shot.py [--steps 80] [--threads 1] [--out results/few-shot.json]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from quartznet_tutorial.datasets.speech_commands import SpeechCommands
from quartznet_tutorial.synthetic.espeak import GENERATOR_VERSION, make_synthetic
from quartznet_tutorial.training.config import TrainConfig
from quartznet_tutorial.training.finetune import FINETUNE_DEFAULTS, finetune
from quartznet_tutorial.training.loop import train
from quartznet_tutorial.utils.files import default_cache_dir
from quartznet_tutorial.utils.runtime import cpu_name, versions

WORDS = ["computer", "lights", "music", "pause", "volume"]
SHOTS = (5, 10, 25, 100)
BASE = "synthetic-v1-quartznet-3x1"
DATA = {"per_word": 200, "speakers": 60, "seed": 1}  # 48 training, 6 val, 6 test speakers


def subset(base: Path, root: Path, n: int) -> Path:
    """``base`` with only ``n`` training clips per word (links, not copies); the validation and
    test clips all stay. The clips kept are the first ``n`` of a fixed shuffle."""
    if root.exists():
        shutil.rmtree(root)
    train_set = SpeechCommands(base, "training", words=WORDS, cache=False)
    by_word: dict[str, list[Path]] = {w: [] for w in WORDS}
    for path, target in zip(train_set.files, train_set.targets, strict=True):
        by_word[WORDS[target]].append(path)
    keep = []
    for word, paths in by_word.items():
        order = np.random.default_rng(list(word.encode())).permutation(len(paths))
        keep += [paths[i] for i in order[:n]]
    listed = [
        base / line
        for name in ("validation_list.txt", "testing_list.txt")
        for line in (base / name).read_text().split()
    ]
    for path in keep + listed:
        link = root / path.parent.name / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path.resolve(), link)
    for name in ("validation_list.txt", "testing_list.txt"):
        shutil.copy(base / name, root / name)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=80, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: shared CPU)")
    parser.add_argument("--shots", type=int, nargs="+", default=SHOTS, help="N to measure")
    parser.add_argument("--out", type=Path, default=Path("results/few-shot.json"))
    parser.add_argument("--work", type=Path, default=default_cache_dir() / "few-shot")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = make_synthetic(
        args.work / f"base-gen{GENERATOR_VERSION}", words=WORDS, progress=False, **DATA
    )
    counts = {
        s: len(SpeechCommands(base, s, words=WORDS, cache=False)) for s in ("validation", "testing")
    }
    rows = []
    for n in args.shots:
        root = subset(base, args.work / f"n{n}", n)
        n_train = len(SpeechCommands(root, "training", words=WORDS, cache=False))
        epochs = math.ceil(args.steps / (n_train // args.batch_size))
        common = {
            "epochs": epochs,
            "max_steps": args.steps,
            "batch_size": args.batch_size,
            "eval_every": max(1, epochs // 10),
            "progress": False,
            "seed": 0,
        }
        for arm in ("finetune", "scratch"):
            out_dir = args.work / "runs" / f"{arm}-n{n}"
            shutil.rmtree(out_dir, ignore_errors=True)
            begin = time.perf_counter()
            if arm == "finetune":
                freeze = max(1, round(epochs / 4))
                result = finetune(
                    BASE, WORDS, data_root=root, out_dir=str(out_dir),
                    freeze_encoder_epochs=freeze, **common,
                )  # fmt: skip
            else:
                freeze = 0
                config = TrainConfig(
                    data_root=str(root), words=WORDS, out_dir=str(out_dir), **common
                )
                result = train(config)
            seconds = time.perf_counter() - begin
            test = result.test
            rows.append(
                {
                    "examples_per_word": n,
                    "arm": arm,
                    "test_accuracy": result.test_accuracy,
                    "test_correct": int(np.trace(test.confusion)),
                    "test_clips": test.num_clips,
                    "val_accuracy": result.val_accuracy,
                    "train_clips": n_train,
                    "epochs": len(result.history),
                    "steps": result.history[-1]["step"],
                    "freeze_encoder_epochs": freeze,
                    "lr": result.config.lr,
                    "seconds": round(seconds, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)

    record = {
        "kind": "few-shot",
        "words": WORDS,
        "base_model": BASE,
        "data": (
            f"the words spoken by eSpeak NG (make_synthetic, per_word={DATA['per_word']}, "
            f"speakers={DATA['speakers']}, seed={DATA['seed']}, generator {GENERATOR_VERSION}); "
            f"N training clips per word from the training speakers; {counts['validation']} "
            f"validation and {counts['testing']} test clips of speakers unseen in training"
        ),
        "recipe": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "finetune": {
                "lr": FINETUNE_DEFAULTS["lr"],
                "min_lr": FINETUNE_DEFAULTS["min_lr"],
                "freeze_encoder_epochs": "a quarter of the epochs, at least 1",
            },
            "scratch": "TrainConfig defaults (NeMo's recipe, lr 0.05), same steps",
            "best_checkpoint": "best validation accuracy; its test accuracy is reported",
        },
        "rows": rows,
        "cpu": cpu_name(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.date.today().isoformat(),
        "versions": versions(),
        "command": "python examples/few_shot.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
