"""The GPU evidence run: one script for a machine with an H100/H200 (see README.md).

0. ``kernels``: the CUDA kernels each stage of one ``quartznet-3x1`` training step launches
   (fast pipeline, each mixed precision, our multi-tensor and per-tensor Novograd): the GPU
   side of ``dispatch.py``'s op counts.
1. ``train``: training clips/s of both pipelines (``"device"``: clips on the GPU, batched
   augmentation + MFCC there; ``"dataloader"``: per-clip workers on the CPU) for every variant
   and both mixed precisions, batch 256, NeMo's full augmentation; then ``torch.compile`` of
   ``quartznet-3x1`` (fast pipeline, the precision that won) in its ``default`` mode and in
   ``reduce-overhead`` (CUDA graphs of forward and backward); before those, ``quartznet-3x1``
   at batch 64 to 1,024, to show whether a step is bound by launches or by arithmetic.
2. ``schedule``: the full 200-epoch ``quartznet-3x1`` schedule (Novograd, warmup 5 %, hold
   45 %, power-2 decay) at batch 256 on 51,094 one-second clips (V1's training-set size),
   then accuracy on 6,798 held-out clips. The clips are :class:`~bench.SyntheticClips`
   (labelled tone bursts made on the GPU in a second: the run needs no Speech Commands and
   no eSpeak NG voice data); speed does not depend on what the audio says. The loop is
   ``training/loop.py``'s step (autocast, GradScaler for fp16, Novograd, the schedule per step)
   without its per-epoch checkpoint and validation, because ``train()`` reads Speech Commands
   folders from disk and this run has none.

The JSON (``gpu-<device>-<date>.json``: device name, versions, date, rows, epoch times) is
rewritten after every stage, so a run cut short still returns what it measured.
``--tiny`` runs every stage with tiny sizes on the CPU (``tests/test_bench.py``), so a GPU
run cannot fail on a typo.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from bench import bench_train, table
from common import (
    PRECISIONS,
    RESULTS,
    SyntheticClips,
    hardware,
    make_train_step,
    now,
    result_row,
    sync,
    versions,
)
from dispatch import count_kernels, count_ops, step_ops

from quartznet_tutorial import VARIANTS, build_model
from quartznet_tutorial.audio.augment import AugmentConfig
from quartznet_tutorial.datasets.pipeline import make_pipeline
from quartznet_tutorial.datasets.speech_commands import labels_for
from quartznet_tutorial.training.optim import Novograd, WarmupHoldPolyDecay

V1_TRAIN, V1_VALIDATION = 51_094, 6_798
COMPILE_MODES = ("default", "reduce-overhead")  # reduce-overhead: CUDA graphs of fwd and bwd
GOAL_SECONDS = 180.0  # the project's goal: 200 epochs of quartznet-3x1 in <= 3 min on one H100


_START = time.perf_counter()


def _elapsed() -> float:
    return time.perf_counter() - _START


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _write(doc: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / doc["file"]
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def stage_throughput(args: argparse.Namespace, device: torch.device, doc: dict, save) -> None:
    """Clips/s per variant, precision and pipeline; then torch.compile modes on the best 3x1."""
    steps = {"device": args.steps, "dataloader": max(1, args.steps // 3)}
    clips = (args.warmup + max(steps.values())) * args.batch
    on_device = SyntheticClips(clips, device=device, seed=1)
    on_host = SyntheticClips(clips, device="cpu", seed=1)  # the conventional path reads the host
    for variant in args.variants:
        for precision in args.precisions:
            for kind in ("device", "dataloader"):
                settings = dict(variant=variant, precision=precision, kind=kind, batch=args.batch)
                try:
                    row = bench_train(
                        on_device if kind == "device" else on_host,
                        **settings,
                        steps=steps[kind],
                        warmup=args.warmup,
                        device=device,
                        num_workers=args.num_workers,
                    )
                except Exception as e:  # one failing row must not cost the others (one GPU run)
                    row = _failed(settings, device, e)
                doc["rows"].append(row)
                print(_line(row), flush=True)
        save()
    fast = [
        r
        for r in doc["rows"]
        if r["variant"] == "quartznet-3x1" and r["pipeline"] == "device" and r["value"]
    ]
    if not fast:
        return
    best = max(fast, key=lambda r: r["value"])
    batch_sweep(args, device, doc, best["precision"])
    save()
    if not args.compile_probe:
        return
    for mode in args.compile_modes:
        if _elapsed() > args.deadline_s / 2:
            print(f"skipping torch.compile mode={mode}: over half the deadline is spent")
            continue
        try:
            row = bench_train(
                on_device,
                variant="quartznet-3x1",
                precision=best["precision"],
                kind="device",
                batch=args.batch,
                steps=args.steps,
                warmup=max(args.warmup, 3),  # the first steps compile (and record CUDA graphs)
                device=device,
                num_workers=0,
                compile=mode,
            )
        except Exception as e:  # a compiler failure must not cost the schedule run
            row = {**best, "value": None, "compile": mode, "note": _error(e)}
        doc["rows"].append(row)
        print(_line(row), flush=True)
        save()


def stage_kernels(args: argparse.Namespace, device: torch.device, doc: dict, save) -> None:
    """Kernels per stage of one quartznet-3x1 step (ops on the CPU of ``--tiny``)."""
    counter = count_kernels if device.type == "cuda" else count_ops
    dataset = SyntheticClips(3 * args.batch, device=device, seed=2)
    for precision in args.precisions:
        for optimizer in ("foreach", "per-tensor"):
            settings = dict(variant="quartznet-3x1", precision=precision, optimizer=optimizer)
            try:
                stages = step_ops(
                    dataset, **settings, batch=args.batch, device=device, counter=counter
                )
            except Exception as e:  # counting must not cost the timed stages
                doc["rows"].append(
                    result_row(
                        "kernels",
                        device,
                        None,
                        "kernels",
                        **settings,
                        stage="total",
                        note=_error(e),
                    )
                )
                continue
            for stage, kernels in [*stages.items(), ("total", sum(stages.values(), Counter()))]:
                row = result_row(
                    "kernels",
                    device,
                    sum(kernels.values()),
                    "kernels" if device.type == "cuda" else "ops",
                    **settings,
                    pipeline="device",
                    batch=args.batch,
                    stage=stage,
                    top=dict(kernels.most_common(4)),
                )
                doc["rows"].append(row)
            print(f"kernels {precision} {optimizer}: {doc['rows'][-1]['value']}", flush=True)
    save()


def batch_sweep(args: argparse.Namespace, device: torch.device, doc: dict, precision: str) -> None:
    """quartznet-3x1 clips/s against batch size (fast pipeline, eager). A step bound by launch
    overhead gets cheaper per clip as the batch grows; one bound by arithmetic does not."""
    if _elapsed() > args.deadline_s / 3:
        print("skipping the batch sweep: over a third of the deadline is spent")
        return
    clips = SyntheticClips((3 + args.sweep_steps) * max(args.sweep_batches), device=device, seed=4)
    for batch in args.sweep_batches:
        settings = dict(variant="quartznet-3x1", precision=precision, kind="device", batch=batch)
        try:
            row = bench_train(
                clips, **settings, steps=args.sweep_steps, warmup=3, device=device, num_workers=0
            )
        except Exception as e:
            row = _failed(settings, device, e)
        row["benchmark"] = "batch_sweep"
        doc["rows"].append(row)
        print(f"batch {batch}: {_line(row)}", flush=True)
    del clips


def _error(e: Exception) -> str:
    return f"not measured: {type(e).__name__}: {e}"[:300]


def _failed(settings: dict, device: torch.device, e: Exception) -> dict:
    """The row of a measurement that raised: its settings, no value, the error."""
    fields = {k: v for k, v in settings.items() if k != "kind"}
    note = _error(e)
    return result_row(
        "train",
        device,
        None,
        "clips/s",
        pipeline=settings["kind"],
        compile=None,
        note=note,
        **fields,
    )


def _line(row: dict) -> str:
    value = "not measured" if row["value"] is None else f"{row['value']:,.0f} clips/s"
    extra = f" compiled ({row['compile']})" if row.get("compile") else ""
    return f"{row['variant']:<24} {row['precision']:<11} {row['pipeline']:<10}{extra} {value}"


def _choose(args: argparse.Namespace, doc: dict) -> tuple[str, str | None]:
    """Precision and compile mode (``None``: eager) for the schedule: as asked, or the fastest
    measured 3x1 row."""
    rows = [
        r
        for r in doc["rows"]
        if r.get("benchmark") == "train"
        and r["variant"] == "quartznet-3x1"
        and r["pipeline"] == "device"
        and r["value"]
    ]
    best = max(rows, key=lambda r: r["value"]) if rows else None
    precision = args.precision
    if precision == "auto":
        precision = best["precision"] if best else args.precisions[0]
    if args.compile != "auto":
        return precision, None if args.compile == "off" else args.compile
    compile = best.get("compile") if best and best["precision"] == precision else None
    return precision, compile or None


def stage_schedule(args: argparse.Namespace, device: torch.device, doc: dict, save) -> None:
    """The 200-epoch quartznet-3x1 schedule on V1-sized synthetic data, timed per epoch."""
    precision, compile = _choose(args, doc)
    begin = time.perf_counter()
    train_set = SyntheticClips(args.train_clips, device=device, seed=2)
    val_set = SyntheticClips(args.val_clips, device=device, seed=3)
    sync(device)
    make_seconds = time.perf_counter() - begin
    pipeline = make_pipeline(
        train_set,
        batch_size=args.batch,
        train=True,
        device=device,
        kind="device",
        augment=AugmentConfig(),
        seed=0,
    )
    torch.manual_seed(0)
    model = build_model("quartznet-3x1", num_classes=len(train_set.labels)).to(device)
    optimizer = Novograd(model.parameters(), lr=0.05, betas=(0.95, 0.5), weight_decay=0.001)
    total_steps = args.epochs * len(pipeline)
    scheduler = WarmupHoldPolyDecay(optimizer, max_steps=total_steps, min_lr=0.001)
    step = make_train_step(
        model if compile is None else torch.compile(model, mode=compile),
        precision,
        device,
        optimizer=optimizer,
    )
    result = {
        "benchmark": "schedule",
        "device": device.type,
        "variant": "quartznet-3x1",
        "precision": precision,
        "compile": compile,
        "pipeline": "device",
        "batch": args.batch,
        "epochs_planned": args.epochs,
        "steps_per_epoch": len(pipeline),
        "train_clips": args.train_clips,
        "data": "synthetic tone bursts (bench.SyntheticClips), made on the device",
        "make_data_seconds": round(make_seconds, 2),
        "epoch_seconds": [],
        "goal_seconds": GOAL_SECONDS,
    }
    doc["schedule"] = result
    # Stop early (and project the rest) rather than lose the run to the device's time limit.
    budget = min(args.budget_s, args.deadline_s - _elapsed() - 30)
    result["budget_seconds"] = round(budget, 1)
    model.train()
    begin = time.perf_counter()
    for epoch in range(args.epochs):
        epoch_begin = time.perf_counter()
        for features, target in pipeline.batches(epoch):
            loss = step(features, target)
            scheduler.step()
        sync(device)
        clock = time.perf_counter()
        result["epoch_seconds"].append(round(clock - epoch_begin, 4))
        result["last_loss"] = float(loss)
        if epoch % 10 == 9 or epoch + 1 == args.epochs:
            print(f"epoch {epoch + 1}: {clock - begin:.1f} s, loss {float(loss):.3f}", flush=True)
            save()
        if clock - begin > budget and epoch + 1 < args.epochs:
            print(f"stopping after {epoch + 1} epochs: budget of {budget:.0f} s spent")
            break
    seconds = time.perf_counter() - begin
    done = len(result["epoch_seconds"])
    clips = done * len(pipeline) * args.batch
    # Epoch 1 holds the warm-up (cuDNN autotuning, compilation); the steady rate excludes it.
    steady = result["epoch_seconds"][1:] or result["epoch_seconds"]
    rate = len(steady) * len(pipeline) * args.batch / sum(steady)
    result.update(
        epochs_done=done,
        train_seconds=round(seconds, 2),
        clips_per_second=round(clips / seconds, 1),
        steady_clips_per_second=round(rate, 1),
        projected_seconds=round(
            seconds + (args.epochs - done) * len(pipeline) * args.batch / rate, 1
        ),
        val_accuracy=_accuracy(model, val_set, args.batch, device, precision),
    )
    result["goal_met"] = (
        result["projected_seconds"] <= GOAL_SECONDS if device.type == "cuda" else None
    )
    print(
        f"schedule: {done}/{args.epochs} epochs in {seconds:.1f} s "
        f"({result['clips_per_second']:,.0f} clips/s; projected {result['projected_seconds']} s "
        f"for all; val accuracy {result['val_accuracy']:.3f})",
        flush=True,
    )
    save()


@torch.no_grad()
def _accuracy(model, dataset, batch: int, device: torch.device, precision: str) -> float:
    pipeline = make_pipeline(
        dataset, batch_size=batch, train=False, device=device, kind="device", augment=None
    )
    model.eval()
    correct = total = 0
    dtype = PRECISIONS[precision]
    for features, target in pipeline.batches(0):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            correct += int((model(features).argmax(-1) == target).sum())
        total += len(target)
    model.train()
    return correct / total


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (a test)")
    parser.add_argument(
        "--stages",
        nargs="+",
        choices=("kernels", "train", "schedule"),
        default=["kernels", "train", "schedule"],
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per throughput row")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--num-workers", type=int, default=8, help="dataloader pipeline workers")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=330.0,
        help="stop the schedule after this many seconds and project the rest",
    )
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=540.0,
        help="the whole script's time limit; the schedule shortens itself to fit",
    )
    parser.add_argument(
        "--precision", default="auto", choices=("auto", "32", "bf16-mixed", "16-mixed")
    )
    parser.add_argument(
        "--compile",
        default="auto",
        choices=("auto", "off", *COMPILE_MODES),
        help="torch.compile mode of the schedule (auto: the fastest in the probe)",
    )
    parser.add_argument(
        "--compile-modes",
        nargs="+",
        choices=COMPILE_MODES,
        default=list(COMPILE_MODES),
        help="torch.compile modes the probe times after the eager rows",
    )
    parser.add_argument("--no-compile-probe", dest="compile_probe", action="store_false")
    parser.add_argument(
        "--sweep-batches",
        nargs="+",
        type=int,
        default=[64, 128, 256, 512, 1024],
        help="batch sizes of the quartznet-3x1 batch sweep",
    )
    parser.add_argument("--sweep-steps", type=int, default=10)
    args = parser.parse_args(argv)
    args.variants = list(VARIANTS)
    args.precisions = ["bf16-mixed", "16-mixed"]
    args.train_clips, args.val_clips = V1_TRAIN, V1_VALIDATION
    if args.tiny:
        args.variants = ["quartznet-3x1", "se-quartznet-3x1"]
        args.precisions = ["32", "bf16-mixed"]
        args.batch, args.steps, args.warmup, args.num_workers = 8, 2, 1, 0
        args.epochs, args.train_clips, args.val_clips = 2, 40, 16
        args.compile_probe = False
        args.sweep_batches, args.sweep_steps = [4, 8], 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available() and not args.tiny:
        print("gpu_evidence.py needs a CUDA GPU; --tiny checks it on the CPU", file=sys.stderr)
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed (B, 64, 128) shapes, as training/loop.py does
    hw = hardware(device)
    name = hw["gpu"]["name"] if hw["gpu"] else "cpu-tiny"
    doc = {
        "schema": 1,
        "kind": "gpu" if device.type == "cuda" else "gpu-script-test",
        "mode": "tiny" if args.tiny else "full",
        "date": now(),
        "hardware": hw,
        "versions": versions(),
        "settings": {k: str(v) for k, v in vars(args).items()},
        "labels": len(labels_for(1)),
        "rows": [],
    }
    doc["file"] = f"gpu-{_slug(name)}-{doc['date'][:10]}.json"

    def save() -> None:
        _write(doc, args.out)

    save()
    if "kernels" in args.stages:
        stage_kernels(args, device, doc, save)
    if "train" in args.stages:
        stage_throughput(args, device, doc, save)
        doc["train_stage_seconds"] = round(_elapsed(), 1)
    if "schedule" in args.stages:
        try:
            stage_schedule(args, device, doc, save)
        except Exception as e:  # keep what was measured, say why it stopped, then fail loudly
            doc["schedule_error"] = _error(e)
            save()
            raise
    doc["seconds"] = round(_elapsed(), 1)
    save()
    print()
    print(table(doc))
    print(f"\nwrote {args.out / doc['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
