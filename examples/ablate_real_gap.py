"""Which lever closes the gap from synthetic to real speech? One QuartzNet3x1 per lever.

A model trained on eSpeak NG speech (:func:`quartznet_tutorial.make_synthetic`) scores far
lower on real Speech Commands clips than on unseen synthetic speakers. Each *lever* below is a
named recipe: a synthetic set (cached under ``--data-dir``) and training settings, changed one
at a time from the base. Every model is judged on the 117 real V1 clips that ship with the
package (:func:`quartznet_tutorial.evaluation.real.evaluate_real`), which are never trained or tuned
on; with 117 clips the 95 % interval is about ±9 points, so a lever counts as helpful only
when the intervals separate or the gain repeats over seeds.

The real ``_background_noise_`` recordings (a running tap, an exercise bike) are noise, not
word clips: the ``real-noise`` lever mixes them into the synthetic training clips.

The ``piper`` levers add a second engine: the words spoken by Piper's neural voices
(:func:`quartznet_tutorial.synthetic.piper.make_piper`, needs ``pip install
quartznet-tutorial[piper]``), whose training speakers' clips join the eSpeak NG training split;
validation and test stay the eSpeak NG ones, so the synthetic column compares with the others.

Run from the repository root (rows are added to, or replace rows of, the results file)::

    python examples/ablate_real_gap.py --recipes base augment --seeds 0
    python examples/ablate_real_gap.py --table   # print the Markdown table

The base recipe: 30 words x 1,000 clips by 500 speakers, 3 epochs of batch 64, float32, CPU.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import logging
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from quartznet_tutorial.datasets.real_clips import real_clips_root
from quartznet_tutorial.evaluation.real import evaluate_real, wilson_interval
from quartznet_tutorial.synthetic.espeak import GENERATOR_VERSION, make_synthetic
from quartznet_tutorial.synthetic.espeak_ng import espeak_version
from quartznet_tutorial.synthetic.piper import LEVER
from quartznet_tutorial.training.config import TrainConfig
from quartznet_tutorial.training.loop import train
from quartznet_tutorial.tutorial.ablation import KIND, load_rows, markdown_table

ROOT = Path(__file__).resolve().parents[1]
REAL_NOISE = "real_noise"  # stands for the real _background_noise_ folder in data args


@dataclass(frozen=True)
class Recipe:
    """A lever: extra ``make_synthetic`` options and ``TrainConfig`` overrides of the base."""

    data: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    about: str = ""
    piper: dict = field(default_factory=dict)  # make_piper options; empty: no Piper clips


BASE_DATA = {"version": 1, "per_word": 1000, "speakers": 500, "seed": 0}
BASE_TRAIN = {"epochs": 3, "batch_size": 64, "augment": False, "precision": "32"}
NOISE = {"background_dirs": [REAL_NOISE], "background_prob": 0.8, "background_snr_db": (0, 20)}
WARP = {"warp": (0.85, 1.15)}
PIPER = LEVER  # quartznet_tutorial.synthetic.piper.LEVER (importing it needs no piper)

RECIPES: dict[str, Recipe] = {
    "base": Recipe(about="eSpeak NG set, no augmentation, 3 epochs"),
    "augment": Recipe(train={"augment": True}, about="NeMo's augmentation"),
    "augment-6ep": Recipe(train={"augment": True, "epochs": 6}, about="augmentation, 6 epochs"),
    "real-noise": Recipe(data=NOISE, about="real background noise mixed into 80 % of clips"),
    "warp": Recipe(data=WARP, about="vocal-tract-length warp 0.85-1.15 per speaker"),
    "real-noise+warp": Recipe(data={**NOISE, **WARP}, about="real noise and warp"),
    "real-noise+warp+augment": Recipe(
        data={**NOISE, **WARP}, train={"augment": True}, about="real noise, warp, augmentation"
    ),
    "real-noise+warp+augment-6ep": Recipe(
        data={**NOISE, **WARP},
        train={"augment": True, "epochs": 6},
        about="real noise, warp, augmentation, 6 epochs",
    ),
    "piper": Recipe(piper=PIPER, about="plus 300 Piper clips a word (en_US-joe-medium, warped)"),
    "piper+augment": Recipe(
        piper=PIPER, train={"augment": True}, about="Piper clips and augmentation"
    ),
    "more-espeak": Recipe(
        data={"per_word": 1300, "speakers": 650},
        about="1,300 eSpeak NG clips a word: as many as base + Piper, one engine",
    ),
    "piper-600": Recipe(
        piper={**PIPER, "per_word": 600, "speakers": 300}, about="plus 600 Piper clips a word"
    ),
}


def _name(options: dict) -> str:
    parts = []
    for key, value in sorted(options.items()):
        text = "-".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        parts.append(f"{key}={text}")
    return "_".join(parts).replace("/", "")


def data_folder(data_dir: Path, recipe: Recipe) -> Path:
    """The cached set of a recipe: one folder per distinct set of data options."""
    name = _name(recipe.data) if recipe.data else "base"
    return data_dir / (f"{name}+piper_{_name(recipe.piper)}" if recipe.piper else name)


def synthesise(data_dir: Path, recipe: Recipe) -> Path:
    options = dict(recipe.data)
    if "background_dirs" in options:
        noise = real_clips_root() / "_background_noise_"
        options["background_dirs"] = [
            noise if d == REAL_NOISE else d for d in options["background_dirs"]
        ]
    espeak = data_dir / (_name(recipe.data) if recipe.data else "base")
    make_synthetic(espeak, **{**BASE_DATA, **options}, progress=False)
    if not recipe.piper:
        return espeak
    from quartznet_tutorial.datasets.speech_commands import labels_for
    from quartznet_tutorial.synthetic.piper import make_piper, mix_training

    piper = data_dir / f"piper_{_name(recipe.piper)}"
    make_piper(piper, labels_for(BASE_DATA["version"]), **recipe.piper, progress=False)
    return mix_training(espeak, piper, data_folder(data_dir, recipe))


def cpu_description() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "isa": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "logical_cpus": os.cpu_count(),
    }


def run(name: str, seed: int, data_dir: Path, runs_dir: Path) -> dict:
    recipe = RECIPES[name]
    root = synthesise(data_dir, recipe)
    settings = {**BASE_TRAIN, **recipe.train}
    out_dir = runs_dir / f"{name}-seed{seed}"
    load_before = os.getloadavg()
    result = train(
        TrainConfig(
            model="quartznet-3x1",
            data_root=str(root),
            device="cpu",
            seed=seed,
            out_dir=str(out_dir),
            progress=False,
            **settings,
        )
    )
    real = evaluate_real(result.best_checkpoint, device="cpu")
    correct = round(real.accuracy * real.num_clips)
    low, high = wilson_interval(correct, real.num_clips)
    return {
        "lever": name,
        "about": recipe.about,
        "seed": seed,
        "epochs": settings["epochs"],
        "synthetic_test_accuracy": result.test_accuracy,
        "synthetic_val_accuracy": result.val_accuracy,
        "real_accuracy": round(real.accuracy, 4),
        "real_correct": correct,
        "real_n": real.num_clips,
        "real_interval_95": [round(low, 4), round(high, 4)],
        "train_seconds": round(result.train_seconds, 1),
        **cpu_description(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.date.today().isoformat(),
        "data_args": {**BASE_DATA, **recipe.data},
        **({"piper_args": recipe.piper, **piper_versions()} if recipe.piper else {}),
        "train_args": {"model": "quartznet-3x1", **settings},
        "generator_version": GENERATOR_VERSION,
        "espeak_ng": espeak_version(),
        "torch": torch.__version__,
    }


def piper_versions() -> dict:
    from quartznet_tutorial.synthetic import piper as piper_voices

    return {
        "piper_generator_version": piper_voices.GENERATOR_VERSION,
        "piper_tts": importlib.metadata.version("piper-tts"),
        "onnxruntime": importlib.metadata.version("onnxruntime"),
    }


def save(path: Path, rows: list[dict]) -> None:
    order = list(RECIPES)
    rows = sorted(
        rows, key=lambda r: (order.index(r["lever"]) if r["lever"] in order else 99, r["seed"])
    )
    record = {
        "kind": KIND,
        "model": "quartznet-3x1",
        "judge": "the 117 real Speech Commands V1 clips of quartznet_tutorial.datasets.real_clips",
        "command": "python examples/ablate_real_gap.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=["base"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "real-gap")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "real-gap")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "real-gap-ablation.json")
    parser.add_argument("--table", action="store_true", help="print the table and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(load_rows(args.results)), end="")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.recipes:
        for seed in args.seeds:
            row = run(name, seed, args.data_dir, args.runs_dir)
            rows = load_rows(args.results) if args.results.is_file() else []
            rows = [r for r in rows if (r["lever"], r["seed"]) != (name, seed)] + [row]
            save(args.results, rows)
            low, high = row["real_interval_95"]
            print(
                f"{name} seed {seed}: synthetic test {row['synthetic_test_accuracy']:.3f}, "
                f"real {row['real_accuracy']:.3f} ({low:.2f}-{high:.2f}, n={row['real_n']}), "
                f"{row['train_seconds']:.0f} s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
