"""Measure training and inference speed on this machine; write one JSON file and a table.

Run it through ``nox -s bench`` (installs NeMo too, for the side-by-side rows) or directly::

    python benchmarks/bench.py            # full run -> benchmarks/results/cpu-<date>.json
    python benchmarks/bench.py --quick    # seconds: CI-sized, same schema

What is measured (every row names its variant, precision, pipeline, batch, threads):

* ``train``: training clips/s, the whole step as ``training/loop.py`` runs it (batch from
  :func:`~quartznet_tutorial.datasets.pipeline.make_pipeline` with NeMo's augmentation, forward,
  cross-entropy, backward, Novograd), for the fast ``"device"`` pipeline and the conventional
  ``"dataloader"`` one in the same run, per variant and precision.
* ``train_vs_nemo``: forward + backward + optimizer step of our ``quartznet-3x1`` and of NeMo's
  own ``ConvASREncoder`` + ``ConvASRDecoderClassification`` built from the same config, same
  batch of features, same threads, same process, alternating; the ratio is NeMo's time / ours.
* ``latency``: one 1 s clip -> label on one thread (MFCC + model + argmax), p50 and p99, for
  PyTorch and for onnxruntime running the file
  :func:`~quartznet_tutorial.export.onnx_export.export_onnx`
  writes; ``throughput``: clips/s of both at batch 64.
* ``epoch``: seconds for one training epoch (fast pipeline) at a few dataset sizes.
* ``dispatch``: the ATen ops each stage of a training step dispatches (``dispatch.py``), the
  launches a GPU step is made of, for our Novograd (multi-tensor, and per tensor as NeMo does)
  and NeMo's own Novograd.

The clips are synthetic (:class:`SyntheticClips`: labelled tone bursts in noise, made in
memory): speed does not depend on what the audio says.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from common import (
    PRECISIONS,
    RESULTS,
    SCHEMA,
    NemoClassifier,
    SyntheticClips,
    hardware,
    import_nemo,
    make_train_step,
    nemo_jasper_config,
    now,
    percentile,
    result_row,
    sync,
    torch_threads,
    versions,
)

from quartznet_tutorial import VARIANTS, build_model
from quartznet_tutorial.audio.features import SAMPLE_RATE
from quartznet_tutorial.datasets.speech_commands import labels_for
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.models.cpu_fast import resolve_layout, training_module

GOALS = {
    # The project's CPU goals, checked against the rows of the same run.
    "train_vs_nemo": 1.5,  # our quartznet-3x1 step >= 1.5x NeMo's at batch 128, same cores
    "latency_ms": 3.0,  # 1 s clip -> label, p50, one CPU thread
}

__all__ = ["SyntheticClips", "hardware", "make_train_step", "run", "versions"]


# --- the machine ---------------------------------------------------------------------------


# --- data ----------------------------------------------------------------------------------


# --- timing --------------------------------------------------------------------------------


def _endless(pipeline) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for epoch in itertools.count():
        yield from pipeline.batches(epoch)


def _not_measured(precision: str, device: torch.device) -> str | None:
    if precision == "16-mixed" and device.type != "cuda":
        return (
            "float16 autocast + GradScaler is the GPU recipe (training/loop.py refuses it on CPU)"
        )
    if precision == "bf16-mixed" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bfloat16"
    return None


def bench_train(
    dataset: SyntheticClips,
    *,
    variant: str,
    precision: str,
    kind: str,
    batch: int,
    steps: int,
    warmup: int,
    device: torch.device,
    num_workers: int,
    compile: str | None = None,
) -> dict:
    """Training clips/s of one (variant, precision, pipeline): batches + step, end to end.

    ``compile``: a ``torch.compile`` mode (``"default"``, ``"reduce-overhead"``: CUDA graphs)
    for the model, or ``None`` for eager.
    """
    from quartznet_tutorial.audio.augment import AugmentConfig
    from quartznet_tutorial.datasets.pipeline import make_pipeline

    common = dict(
        variant=variant,
        precision=precision,
        pipeline=kind,
        batch=batch,
        threads=torch.get_num_threads(),
        num_workers=num_workers if kind == "dataloader" else 0,
        compile=compile,
        layout=resolve_layout("auto", device),  # as training/loop.py runs it (cpu_layout="auto")
    )
    reason = _not_measured(precision, device)
    if reason is not None:
        return result_row(
            "train", device, None, "clips/s", note=f"not measured: {reason}", **common
        )
    torch.manual_seed(0)
    model = build_model(variant, num_classes=len(dataset.labels)).to(device).train()
    net = training_module(model, layout="auto", device=device)
    compiled = net if compile is None else torch.compile(net, mode=compile)
    step = make_train_step(compiled, precision, device)
    pipeline = make_pipeline(
        dataset,
        batch_size=batch,
        train=True,
        device=device,
        kind=kind,
        augment=AugmentConfig(),
        num_workers=num_workers,
        seed=0,
    )
    batches = _endless(pipeline)
    for _ in range(warmup):
        step(*next(batches))
    sync(device)
    begin = time.perf_counter()
    for _ in range(steps):
        loss = step(*next(batches))
    sync(device)
    seconds = time.perf_counter() - begin
    del batches  # stops DataLoader workers
    return result_row(
        "train",
        device,
        steps * batch / seconds,
        "clips/s",
        steps=steps,
        seconds=round(seconds, 4),
        loss=float(loss),
        **common,
    )


def bench_epoch(
    sizes: Sequence[int], *, variant: str, batch: int, device: torch.device, precision: str
) -> list[dict]:
    """Seconds for one full training epoch (fast pipeline) at each dataset size."""
    from quartznet_tutorial.audio.augment import AugmentConfig
    from quartznet_tutorial.datasets.pipeline import make_pipeline

    rows = []
    for size in sizes:
        dataset = SyntheticClips(size, device=device, seed=size)
        torch.manual_seed(0)
        model = build_model(variant).to(device).train()
        step = make_train_step(
            training_module(model, layout="auto", device=device), precision, device
        )
        pipeline = make_pipeline(
            dataset,
            batch_size=batch,
            train=True,
            device=device,
            kind="device",
            augment=AugmentConfig(),
        )
        step(*next(iter(pipeline.batches(99))))  # warm up (allocator, kernels) on another epoch
        sync(device)
        begin = time.perf_counter()
        for features, target in pipeline.batches(0):
            step(features, target)
        sync(device)
        seconds = time.perf_counter() - begin
        rows.append(
            result_row(
                "epoch",
                device,
                seconds,
                "s",
                variant=variant,
                precision=precision,
                pipeline="device",
                batch=batch,
                threads=torch.get_num_threads(),
                layout=resolve_layout("auto", device),
                clips=len(pipeline) * batch,
                dataset_clips=size,
            )
        )
    return rows


# --- NeMo side by side -------------------------------------------------------------------


def bench_vs_nemo(
    *,
    variant: str,
    batch: int,
    precisions: Sequence[str],
    steps: int,
    warmup: int,
    repeats: int,
    device: torch.device,
    ours_candidates: Sequence[str] = ("package",),
) -> list[dict]:
    """Our step vs NeMo's for the same config, batch, features, threads; alternating.

    ``ours_candidates``: ``"package"`` is what :func:`~quartznet_tutorial.training.loop.train` runs
    on this device (``cpu_layout="auto"``: the ``(C, B, T)`` layout of
    :mod:`quartznet_tutorial.models.cpu_fast` on the CPU); ``"eager"`` the readable reference model
    itself, the baseline.
    """
    common = dict(variant=variant, batch=batch, threads=torch.get_num_threads(), frames=128)
    nemo, reason = import_nemo()
    if nemo is None:
        return [
            result_row(
                "train_vs_nemo",
                device,
                None,
                "x",
                precision=p,
                note=f"not measured: {reason}",
                **common,
            )
            for p in precisions
        ]
    encoder_cls, decoder_cls, nemo_novograd = nemo
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(batch, 64, 128, generator=generator).to(device)
    target = torch.randint(0, 30, (batch,), generator=generator).to(device)
    rows = []
    for precision in precisions:
        reason = _not_measured(precision, device)
        if reason is not None:
            rows.append(
                result_row(
                    "train_vs_nemo",
                    device,
                    None,
                    "x",
                    precision=precision,
                    note=f"not measured: {reason}",
                    **common,
                )
            )
            continue
        torch.manual_seed(0)
        nemo_model = NemoClassifier(
            encoder_cls(jasper=nemo_jasper_config(variant), activation="relu", feat_in=64),
            decoder_cls(feat_in=VARIANTS[variant].blocks[-1].filters, num_classes=30),
        ).to(device)
        nemo_model.train()
        steps_by_name = {
            "nemo": make_train_step(
                nemo_model,
                precision,
                device,
                optimizer=nemo_novograd(
                    nemo_model.parameters(), lr=0.05, betas=(0.95, 0.5), weight_decay=0.001
                ),
            )
        }
        for name in ours_candidates:
            torch.manual_seed(0)
            ours = _OURS[name](build_model(variant).to(device).train(), device)
            if sum(p.numel() for p in nemo_model.parameters()) != sum(
                p.numel() for p in ours.parameters()
            ):
                raise RuntimeError(f"NeMo's {variant} has another parameter count than ours")
            steps_by_name[name] = make_train_step(ours, precision, device)
        times = {name: [] for name in steps_by_name}
        for _ in range(warmup):
            for step in steps_by_name.values():
                step(features, target)
        for _ in range(repeats):
            for name, step in steps_by_name.items():
                sync(device)
                begin = time.perf_counter()
                for _ in range(steps):
                    step(features, target)
                sync(device)
                times[name].append((time.perf_counter() - begin) / steps)
        nemo_s = statistics.median(times["nemo"])
        for name in ours_candidates:
            ours_s = statistics.median(times[name])
            rows.append(
                result_row(
                    "train_vs_nemo",
                    device,
                    nemo_s / ours_s,
                    "x",
                    precision=precision,
                    ours=name,
                    ours_ms=round(ours_s * 1e3, 2),
                    nemo_ms=round(nemo_s * 1e3, 2),
                    ours_clips_per_s=round(batch / ours_s, 1),
                    nemo_clips_per_s=round(batch / nemo_s, 1),
                    repeats=repeats,
                    steps=steps,
                    note="median of alternating repeats; each side with its own Novograd; "
                    "NeMo gets the recipe's lengths (all 128), ours none (all frames valid)",
                    **common,
                )
            )
    return rows


_OURS: dict[str, Callable[[torch.nn.Module, torch.device], torch.nn.Module]] = {
    # What train() calls each step on this device (cpu_layout="auto").
    "package": lambda model, device: training_module(model, layout="auto", device=device),
    # The readable models/quartznet.py forward: the baseline the fast layout is measured against.
    "eager": lambda model, device: model,
}


# --- inference ---------------------------------------------------------------------------


def _classifier(variant: str) -> Classifier:
    torch.manual_seed(0)
    return Classifier(build_model(variant), labels_for(1)).eval()


def _timings(fn: Callable[[], object], runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        begin = time.perf_counter()
        fn()
        out.append(time.perf_counter() - begin)
    return out


def bench_inference(*, variant: str, runs: int, batch: int, batch_runs: int) -> list[dict]:
    """Single-clip latency (one thread) and batch throughput, PyTorch and onnxruntime."""
    from quartznet_tutorial.export.onnx_export import export_onnx
    from quartznet_tutorial.export.session import OnnxClassifier

    device = torch.device("cpu")
    threads = torch.get_num_threads()  # batch throughput uses the run's threads
    classifier = _classifier(variant)
    clip = 0.1 * torch.randn(1, SAMPLE_RATE, generator=torch.Generator().manual_seed(0))
    clips = 0.1 * torch.randn(batch, SAMPLE_RATE, generator=torch.Generator().manual_seed(1))
    labels = classifier.labels

    def torch_label(x: torch.Tensor):
        with torch.inference_mode():
            return [labels[i] for i in classifier(x).argmax(-1).tolist()]

    runtimes: dict[str, Callable] = {"pytorch": torch_label}
    onnx_note = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = export_onnx(classifier, Path(tmp) / "model.onnx")
            session1 = OnnxClassifier(path, threads=1)
            session_n = OnnxClassifier(path, threads=threads)
        except ImportError as e:
            onnx_note = f"not measured: {e}"
        else:

            def ort_label(x: torch.Tensor, session=session1):
                return [labels[i] for i in session(x.numpy()).argmax(-1).tolist()]

            runtimes["onnxruntime"] = ort_label
        rows = []
        for name in ("pytorch", "onnxruntime"):
            common = dict(variant=variant, runtime=name, frames=128)
            fn = runtimes.get(name)
            if fn is None:
                rows.append(
                    result_row(
                        "latency", device, None, "ms", note=onnx_note, threads=1, batch=1, **common
                    )
                )
                rows.append(
                    result_row(
                        "throughput", device, None, "clips/s", note=onnx_note, batch=batch, **common
                    )
                )
                continue
            with torch_threads(1):
                times = _timings(lambda fn=fn: fn(clip), runs=runs, warmup=max(5, runs // 10))
            rows.append(
                result_row(
                    "latency",
                    device,
                    percentile(times, 50) * 1e3,
                    "ms",
                    threads=1,
                    batch=1,
                    p99_ms=percentile(times, 99) * 1e3,
                    runs=runs,
                    note="1 s clip -> label: MFCC + model + argmax",
                    **common,
                )
            )
            if name == "onnxruntime":

                def fn(x, session=session_n):
                    return [labels[i] for i in session(x.numpy()).argmax(-1).tolist()]

            with torch_threads(threads):
                times = _timings(lambda fn=fn: fn(clips), runs=batch_runs, warmup=2)
            rows.append(
                result_row(
                    "throughput",
                    device,
                    batch / statistics.median(times),
                    "clips/s",
                    threads=threads,
                    batch=batch,
                    runs=batch_runs,
                    **common,
                )
            )
    return rows


# --- the run -----------------------------------------------------------------------------


def _goals(rows: list[dict]) -> list[dict]:
    goals = []
    for row in rows:
        if (
            row["benchmark"] == "train_vs_nemo"
            and row["variant"] == "quartznet-3x1"
            and row["precision"] == "32"
            and row["batch"] == 128
            and row.get("ours", "package") == "package"
        ):
            goals.append(
                {
                    "goal": "quartznet-3x1 training step >= 1.5x NeMo's (batch 128, fp32, "
                    "same cores)",
                    "target": GOALS["train_vs_nemo"],
                    "measured": row["value"],
                    "met": None if row["value"] is None else row["value"] >= GOALS["train_vs_nemo"],
                }
            )
        if row["benchmark"] == "latency" and row["runtime"] == "pytorch":
            goals.append(
                {
                    "goal": "1 s clip classified (MFCC + model) in <= 3 ms p50, one CPU thread",
                    "target": GOALS["latency_ms"],
                    "measured": row["value"],
                    "met": row["value"] <= GOALS["latency_ms"],
                }
            )
    return goals


def run(args: argparse.Namespace) -> dict:
    """Run every benchmark the arguments ask for; return the JSON document."""
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    doc = {
        "schema": SCHEMA,
        "kind": "cpu" if device.type == "cpu" else "gpu",
        "mode": "quick" if args.quick else "full",
        "date": now(),
        "hardware": hardware(device),
        "versions": versions(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "rows": [],
    }
    rows = doc["rows"]

    def log(row: dict) -> None:
        rows.append(row)
        print(_format_row(row), flush=True)

    if "inference" in args.only:
        for row in bench_inference(
            variant="quartznet-3x1", runs=args.latency_runs, batch=64, batch_runs=args.batch_runs
        ):
            log(row)
    if "nemo" in args.only:
        for variant in args.nemo_variants:
            for row in bench_vs_nemo(
                variant=variant,
                batch=args.nemo_batch,
                precisions=args.precisions,
                steps=args.nemo_steps,
                warmup=2 if not args.quick else 1,
                repeats=args.nemo_repeats,
                device=device,
                ours_candidates=("package",) if args.quick else ("package", "eager"),
            ):
                log(row)
    if "train" in args.only:
        largest = (args.warmup + args.steps) * args.batch
        dataset = SyntheticClips(largest, device=device)
        for variant in args.variants:
            for precision in args.precisions:
                for kind in args.pipelines:
                    log(
                        bench_train(
                            dataset,
                            variant=variant,
                            precision=precision,
                            kind=kind,
                            batch=args.batch,
                            steps=args.steps,
                            warmup=args.warmup,
                            device=device,
                            num_workers=args.num_workers,
                        )
                    )
        del dataset
    if "epoch" in args.only:
        for row in bench_epoch(
            args.epoch_sizes,
            variant="quartznet-3x1",
            batch=args.batch,
            device=device,
            precision="32",
        ):
            log(row)
    if "dispatch" in args.only:
        from dispatch import OPTIMIZERS, bench_dispatch

        nemo = import_nemo()[0] is not None
        for row in bench_dispatch(
            SyntheticClips(64, seed=4),
            variants=args.variants,
            precisions=list(PRECISIONS),  # counting needs no GPU: float16 included
            optimizers=[o for o in OPTIMIZERS if o != "nemo" or nemo],
        ):
            log(row)
    doc["goals"] = _goals(rows)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    doc["hardware"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return doc


def _format_row(row: dict) -> str:
    what = " ".join(
        str(row[k])
        for k in ("benchmark", "variant", "precision", "pipeline", "runtime", "optimizer", "stage")
        if row.get(k) is not None
    )
    if row["value"] is None:
        return f"{what:<55} {'-':>10}  {row.get('note', '')}"
    extra = f"  p99 {row['p99_ms']:.2f} ms" if "p99_ms" in row else ""
    if row["benchmark"] == "train_vs_nemo":
        extra = f"  (ours {row['ours_ms']:.1f} ms, NeMo {row['nemo_ms']:.1f} ms per step)"
    return f"{what:<55} {row['value']:>10.2f} {row['unit']}{extra}"


def table(doc: dict) -> str:
    """A short Markdown table of a results document (what ``bench.py`` prints at the end)."""
    hw = doc["hardware"]
    where = hw["gpu"]["name"] if hw.get("gpu") else f"{hw['cpu']}, {hw['cores']} cores"
    lines = [
        f"{where}; {doc['date']}; load average {hw['load_average']}",
        "",
        "| benchmark | variant | precision | pipeline/runtime | batch | threads | value |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        value = "not measured" if r["value"] is None else f"{r['value']:.2f} {r['unit']}"
        if r.get("p99_ms") is not None:
            value += f" (p99 {r['p99_ms']:.2f} ms)"
        if r["benchmark"] == "dispatch":
            value = f"{r['stage']}, {r['optimizer']} Novograd: {value}"
        lines.append(
            f"| {r['benchmark']} | {r.get('variant', '')} | {r.get('precision') or ''} | "
            f"{r.get('pipeline') or r.get('runtime') or ''} | {r.get('batch', '')} | "
            f"{r.get('threads', '')} | {value} |"
        )
    for g in doc.get("goals", []):
        met = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        lines.append(f"\nGoal: {g['goal']}: {met} (measured {g['measured']})")
    return "\n".join(lines)


SECTIONS = ("inference", "nemo", "train", "epoch", "dispatch")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (seconds)")
    parser.add_argument("--out", type=Path, help="JSON file to write (full: results/cpu-DATE)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None)
    parser.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), default=None)
    parser.add_argument(
        "--pipelines", nargs="+", choices=("device", "dataloader"), default=["device", "dataloader"]
    )
    parser.add_argument(
        "--nemo-variants",
        nargs="+",
        choices=list(VARIANTS),
        default=None,
        help="variants timed against NeMo (full: quartznet-3x1, se-quartznet-3x1, "
        "quartznet-5x1-480k)",
    )
    parser.add_argument("--batch", type=int, default=None, help="training batch (128)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per training row")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    parser.add_argument("--num-workers", type=int, default=None, help="DataLoader workers")
    args = parser.parse_args(argv)
    quick = args.quick
    cpu = torch.device(args.device).type == "cpu"
    defaults = dict(
        variants=["quartznet-3x1"] if quick else list(VARIANTS),
        nemo_variants=["quartznet-3x1"]
        if quick
        else ["quartznet-3x1", "se-quartznet-3x1", "quartznet-5x1-480k"],
        precisions=["32"]
        if quick
        else (["32", "bf16-mixed"] if cpu else ["bf16-mixed", "16-mixed"]),
        batch=8 if quick else 128,
        steps=1 if quick else 5,
        warmup=1 if quick else 2,
        num_workers=0 if quick else min(4, os.cpu_count() or 1),
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.latency_runs = 10 if quick else 200
    args.batch_runs = 2 if quick else 10
    args.nemo_batch = 8 if quick else 128
    args.nemo_steps = 1 if quick else 3
    args.nemo_repeats = 1 if quick else 5
    args.epoch_sizes = [16] if quick else [1024, 2048, 4096]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    doc = run(args)
    out = args.out
    if out is None:
        out = RESULTS / f"{doc['kind']}-{doc['date'][:10]}.json"
        if args.quick:
            out = Path(tempfile.gettempdir()) / "quartznet-bench-quick.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print()
    print(table(doc))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
