"""Measure candidate recipes for the ``smoke`` profile: test accuracy per second of training.

The ``smoke`` profile (:mod:`quartznet_tutorial.tutorial.profiles`) is what the docs' training
notebooks run on CI and Read the Docs: a synthetic Speech Commands V1 set spoken by eSpeak NG,
generated on first use, and a short fp32 run on the CPU. Its goal: every model the notebooks
train reaches at least 95 % on the test speakers (unseen in training) in at most 2 minutes of
training on 2 cores of an AVX2-level CPU, with the data generated in about a minute.

Each recipe names the data (clips per word, speakers) and the training (epochs, batch, lr,
schedule, augmentation, example length in frames). For each one this script generates the set
once (timed, 2 workers), trains every model and seed asked for with
:func:`quartznet_tutorial.training.loop.train`, and adds a row to ``results/smoke-recipes.json``:
test accuracy, best validation accuracy, training seconds (validation included), clips per second,
optimizer steps, clip-steps (clips through a training step), the machine's load average, the
CPU and its ISA level. Rows of other recipes, models and seeds already in the file are kept; a
rerun of the same one replaces it.

Emulate an AVX2-only CPU, with the thread count the docs build uses::

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=2 \\
        python examples/tune_smoke.py --recipe profile --seeds 0 1

``--recipe profile`` is the smoke profile as it is defined now; ``--list`` shows the others.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from quartznet_tutorial.synthetic.espeak import GENERATOR_VERSION, make_synthetic
from quartznet_tutorial.training.config import TrainConfig
from quartznet_tutorial.training.loop import train
from quartznet_tutorial.tutorial.profiles import get_profile
from quartznet_tutorial.utils.runtime import cpu_name

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("quartznet-3x1", "se-quartznet-3x1")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One candidate: the data and the training settings that differ from NeMo's recipe."""

    per_word: int
    speakers: int | None = None  # None: make_synthetic's default, max(10, per_word // 2)
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.05
    warmup_ratio: float = 0.05
    hold_ratio: float = 0.45
    augment: bool = True
    frames: int = 128  # NeMo's crop/pad length; 101 is one second, no padding


RECIPES = {
    # The smoke profile before this search: 30 words x 100 clips, 20 epochs of batch 64.
    "old": Recipe(per_word=100, epochs=20, batch_size=64),
    # More speakers and clips instead of epochs; NeMo's augmentation off.
    "pw1000-e2-b128": Recipe(per_word=1000, epochs=2, batch_size=128, augment=False),
    "pw1000-e2-b64": Recipe(per_word=1000, epochs=2, batch_size=64, augment=False),
    "pw1000-e2-b32": Recipe(per_word=1000, epochs=2, batch_size=32, augment=False),
    "pw1000-e2-b32-lr0.1": Recipe(per_word=1000, epochs=2, batch_size=32, lr=0.1, augment=False),
    "pw1000-e2-b32-lr0.02": Recipe(per_word=1000, epochs=2, batch_size=32, lr=0.02, augment=False),
    "pw1000-e2-b64-lr0.1": Recipe(per_word=1000, epochs=2, batch_size=64, lr=0.1, augment=False),
    "pw1000-e2-b64-lr0.2": Recipe(per_word=1000, epochs=2, batch_size=64, lr=0.2, augment=False),
    "pw1500-e1-b64-lr0.1": Recipe(per_word=1500, epochs=1, batch_size=64, lr=0.1, augment=False),
    "pw1000-e2-b64-lr0.025": Recipe(
        per_word=1000, epochs=2, batch_size=64, lr=0.025, augment=False
    ),
    "pw1000-e2-b64-hold0.2": Recipe(
        per_word=1000, epochs=2, batch_size=64, hold_ratio=0.2, augment=False
    ),
    "pw1000-e3-b64": Recipe(per_word=1000, epochs=3, batch_size=64, augment=False),
    "pw1500-e2-b64": Recipe(per_word=1500, epochs=2, batch_size=64, augment=False),
    "pw1000-e2-b16": Recipe(per_word=1000, epochs=2, batch_size=16, augment=False),
    "pw1500-e1-b32": Recipe(per_word=1500, epochs=1, batch_size=32, augment=False),
    "pw600-e3-b32": Recipe(per_word=600, epochs=3, batch_size=32, augment=False),
    "pw1000-e2-b128-lr0.1": Recipe(per_word=1000, epochs=2, batch_size=128, lr=0.1, augment=False),
    "pw600-e3-b128": Recipe(per_word=600, epochs=3, batch_size=128, augment=False),
    "pw600-e3-b64": Recipe(per_word=600, epochs=3, batch_size=64, augment=False),
    "pw600-e3-b128-lr0.1": Recipe(per_word=600, epochs=3, batch_size=128, lr=0.1, augment=False),
    "pw1500-e1-b128": Recipe(per_word=1500, epochs=1, batch_size=128, augment=False),
    "pw1500-e1-b64": Recipe(per_word=1500, epochs=1, batch_size=64, augment=False),
    "pw1000-e2-b128-aug": Recipe(per_word=1000, epochs=2, batch_size=128, augment=True),
    "pw1000-e2-b128-spk250": Recipe(
        per_word=1000, speakers=250, epochs=2, batch_size=128, augment=False
    ),
    "pw1000-e2-b128-spk1000": Recipe(
        per_word=1000, speakers=1000, epochs=2, batch_size=128, augment=False
    ),
    "pw1000-e2-b128-short-hold": Recipe(
        per_word=1000, epochs=2, batch_size=128, hold_ratio=0.2, augment=False
    ),
    # The smoke profile of 2026-12-02 (1,750 clips per word by 875 speakers, 2 epochs of batch
    # 64, no augmentation), with NeMo's 128 frames and with the 101 of one second.
    "pw1750-e2-b64": Recipe(per_word=1750, speakers=875, epochs=2, batch_size=64, augment=False),
    "pw1750-e2-b64-f101": Recipe(
        per_word=1750, speakers=875, epochs=2, batch_size=64, augment=False, frames=101
    ),
    "pw1500-e2-b64-f101": Recipe(
        per_word=1500, speakers=750, epochs=2, batch_size=64, augment=False, frames=101
    ),
}


def profile_recipe() -> Recipe:
    """The smoke profile as :mod:`quartznet_tutorial.tutorial.profiles` defines it now."""
    p = get_profile("smoke")
    return Recipe(
        per_word=p.per_word,
        speakers=getattr(p, "speakers", None),
        epochs=p.epochs,
        batch_size=p.batch_size,
        lr=getattr(p, "lr", 0.05),
        warmup_ratio=getattr(p, "warmup_ratio", 0.05),
        hold_ratio=getattr(p, "hold_ratio", 0.45),
        augment=getattr(p, "augment", True),
        frames=p.frames,
    )


def generate(recipe: Recipe, cache: Path, workers: int) -> tuple[Path, float]:
    """The recipe's synthetic set (made once) and the seconds it took (0 when cached)."""
    speakers = recipe.speakers or max(10, recipe.per_word // 2)
    out = cache / f"synthetic-v1-{recipe.per_word}-spk{speakers}-seed0-gen{GENERATOR_VERSION}"
    cached = (out / ".synthetic.json").is_file()
    begin = time.perf_counter()
    make_synthetic(
        out, per_word=recipe.per_word, speakers=speakers, workers=workers, progress=False
    )
    return out, 0.0 if cached else time.perf_counter() - begin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", nargs="+", default=["profile"], help="names (see --list)")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, help="torch threads (default: OMP_NUM_THREADS)")
    parser.add_argument("--workers", type=int, default=2, help="data generation processes")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "quartznet-smoke-recipes",
        help="where the synthetic sets are generated",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "smoke-recipes.json")
    parser.add_argument("--list", action="store_true", help="show the recipes and exit")
    args = parser.parse_args(argv)
    recipes = {"profile": profile_recipe(), **RECIPES}
    if args.list:
        for name, recipe in recipes.items():
            print(f"{name}: {recipe}")
        return 0
    unknown = [r for r in args.recipe if r not in recipes]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; choose from {', '.join(recipes)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    machine = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "torch": torch.__version__,
        "generator_version": GENERATOR_VERSION,
    }
    for name in args.recipe:
        recipe = recipes[name]
        load_before = os.getloadavg()
        root, gen_seconds = generate(recipe, args.cache, args.workers)
        stamp = json.loads((root / ".synthetic.json").read_text(encoding="utf-8"))
        clips = 30 * recipe.per_word
        if gen_seconds:
            print(f"{name}: generated {clips} clips in {gen_seconds:.1f} s "
                  f"({clips / gen_seconds:.0f} clips/s, {args.workers} workers, "
                  f"load {load_before[0]:.2f})")  # fmt: skip
        for model in args.models:
            for seed in args.seeds:
                load = os.getloadavg()[0]
                with tempfile.TemporaryDirectory(prefix="smoke-recipe-") as out_dir:
                    begin = time.perf_counter()
                    result = train(
                        TrainConfig(
                            model=model,
                            data_root=str(root),
                            epochs=recipe.epochs,
                            batch_size=recipe.batch_size,
                            lr=recipe.lr,
                            warmup_ratio=recipe.warmup_ratio,
                            hold_ratio=recipe.hold_ratio,
                            augment=recipe.augment,
                            frames=recipe.frames,
                            precision="32",
                            device="cpu",
                            seed=seed,
                            out_dir=out_dir,
                            progress=False,
                        )
                    )
                    wall = time.perf_counter() - begin
                clip_steps = sum(h["clips"] for h in result.history)
                row = {
                    "recipe": name,
                    **dataclasses.asdict(recipe),
                    "speakers": stamp["args"].get("speakers"),
                    "model": model,
                    "seed": seed,
                    "test_accuracy": round(result.test_accuracy, 4),
                    "val_accuracy": round(result.val_accuracy, 4),
                    "val_curve": [round(h["val_accuracy"], 4) for h in result.history],
                    "train_seconds": round(result.train_seconds, 1),
                    "wall_seconds": round(wall, 1),  # + reading the clips, test evaluation
                    "clips_per_second": round(result.clips_per_second, 1),
                    "steps": result.history[-1]["step"],
                    "clip_steps": clip_steps,
                    "test_clips": int(result.test.confusion.sum()),
                    "data_clips": clips,
                    "data_generation_seconds": round(gen_seconds, 1) or None,
                    "data_clips_per_second": round(clips / gen_seconds, 1) if gen_seconds else None,
                    "loadavg_1min": round(load, 2),
                    "loadavg_1min_after": round(os.getloadavg()[0], 2),
                    **machine,
                    "date": datetime.date.today().isoformat(),
                }
                print(
                    f"{name} {model} seed {seed}: test {100 * row['test_accuracy']:.2f}% "
                    f"(val {100 * row['val_accuracy']:.2f}%), {row['train_seconds']} s, "
                    f"{row['clips_per_second']} clips/s, load {load:.2f}",
                    flush=True,
                )
                gen_seconds = 0.0  # counted on the first row only
                key = (name, model, seed, machine["isa"], machine["threads"])
                # Read just before writing: runs in parallel (1 thread each) share the file.
                data = {"kind": "recipe-search", "rows": []}
                if args.results.is_file():
                    data = json.loads(args.results.read_text(encoding="utf-8"))
                data["rows"] = [
                    r
                    for r in data["rows"]
                    if (r["recipe"], r["model"], r["seed"], r["isa"], r["threads"]) != key
                ] + [row]
                args.results.parent.mkdir(parents=True, exist_ok=True)
                args.results.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
