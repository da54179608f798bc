"""int8 against float32 in ONNX Runtime: accuracy, file size and one-clip latency, one run.

For each variant: a trained model (``--checkpoint FILE``, or a short training run on a small
synthetic Speech Commands set, recorded in the JSON), exported as float32
(:func:`~quartznet_tutorial.export.onnx_export.export_onnx`), as int8 the way ``quartznet export
--int8`` writes it (encoder and decoder int8, MFCC front end float32) and as int8 with the front end
quantised too (the choice ``--int8`` does not make, measured here to show why). All three are
run by ONNX Runtime on the same test clips (accuracy, top-1 agreement with float32, largest
logit difference) and timed on one 1 s clip, one thread, interleaved, so a busy machine slows
all three alike.

ONNX Runtime picks its kernels (MLAS) from CPUID at start-up; ``ATEN_CPU_CAPABILITY`` and
``ONEDNN_MAX_CPU_ISA`` steer PyTorch only. The JSON records PyTorch's ISA level, the CPU
flags MLAS dispatches on, and a digest of each model's logits, so two runs (native and under
those variables) show whether ONNX Runtime computed anything differently.

    python benchmarks/int8.py [--variants quartznet-3x1 se-quartznet-3x1] [--checkpoint FILE]

writes ``benchmarks/results/int8-DATE-ISA.json``;
:func:`quartznet_tutorial.tutorial.performance.int8_table` renders it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, cpu_features, hardware, now, percentile, versions

from quartznet_tutorial.checkpoints.loading import load_classifier
from quartznet_tutorial.datasets.speech_commands import SpeechCommands
from quartznet_tutorial.export.onnx_export import export_onnx
from quartznet_tutorial.export.quantize import compare_onnx, quantize_onnx, speech_commands_clips
from quartznet_tutorial.export.session import OnnxClassifier
from quartznet_tutorial.synthetic.espeak import GENERATOR_VERSION, make_synthetic
from quartznet_tutorial.tutorial.performance import int8_table

ROOT = Path(__file__).resolve().parents[1]
# The CPU flags ONNX Runtime's MLAS chooses its int8 and float kernels by.
MLAS_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")

__all__ = ["int8_table", "main", "run"]


def _digest(logits: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(logits, dtype=np.float32).tobytes()).hexdigest()[:16]


def _latency(sessions: dict[str, OnnxClassifier], runs: int, warmup: int = 20) -> dict:
    """p50/p99 ms of one 1 s clip per model, the models taking turns."""
    clip = 0.1 * np.random.default_rng(0).standard_normal((1, 16_000)).astype(np.float32)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for i in range(warmup + runs):
        for name, session in sessions.items():
            begin = time.perf_counter()
            session(clip)
            if i >= warmup:
                times[name].append(1e3 * (time.perf_counter() - begin))
    return {
        name: {"p50_ms": percentile(t, 50), "p99_ms": percentile(t, 99), "runs": runs}
        for name, t in times.items()
    }


def _trained(variant: str, data: Path, args: argparse.Namespace, out: Path) -> tuple:
    from quartznet_tutorial.training.config import TrainConfig
    from quartznet_tutorial.training.loop import train

    config = TrainConfig(
        model=variant,
        data_root=str(data),
        epochs=args.epochs,
        batch_size=64,
        augment=False,  # short runs learn faster without it (examples/train_synthetic_3x1.py)
        device="cpu",
        out_dir=str(out / variant),
        progress=False,
    )
    begin = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - begin
    return load_classifier(out / variant / "best.pt"), {
        "trained_here": True,
        "epochs": args.epochs,
        "batch_size": 64,
        "augment": False,
        "train_seconds": round(seconds, 1),
    }


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    spk = "" if args.speakers is None else f"x{args.speakers}"
    name = f"synthetic-v1-{args.per_word}{spk}-seed0-gen{GENERATOR_VERSION}"
    data = args.data or ROOT / "data" / name
    make_synthetic(data, per_word=args.per_word, seed=0, speakers=args.speakers, progress=False)
    test = SpeechCommands(data, "testing", cache=False)
    calibration = speech_commands_clips(data, "training", args.calibration_clips)
    doc = {
        "schema": 1,
        "kind": "int8",
        "date": now(),
        "hardware": {
            **hardware(torch.device("cpu")),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onnxruntime_dispatch": "CPUID at start-up (MLAS); env variables do not steer it",
            "mlas_cpu_flags": cpu_features(MLAS_FLAGS),
        },
        "env": {
            k: os.environ.get(k)
            for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
        },
        "versions": versions(),
        "data": {
            "root": str(data),
            "synthetic": {
                "version": 1,
                "per_word": args.per_word,
                "speakers": args.speakers,
                "seed": 0,
            },
            "test_clips": len(test),
            "calibration_clips": len(calibration),
            "calibration_split": "training",
        },
        "threads": {"torch": args.threads, "onnxruntime_intra_op": 1},
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for variant in args.checkpoint or args.variants:
            if args.checkpoint:
                classifier = load_classifier(variant)
                training = {"trained_here": False, "checkpoint": str(variant)}
            else:
                classifier, training = _trained(variant, data, args, args.out_dir or tmp)
            variant = classifier.model.config.name
            files = {"fp32": export_onnx(classifier, tmp / f"{variant}-fp32.onnx")}
            for name, front_end in (("int8", False), ("int8-all", True)):
                files[name] = tmp / f"{variant}-{name}.onnx"
                quantize_onnx(files["fp32"], files[name], calibration, include_front_end=front_end)
            row = {"variant": variant, "training": training, "models": {}}
            sessions = {name: OnnxClassifier(path) for name, path in files.items()}
            waveforms = np.stack([test[i][0].numpy() for i in range(len(test))])
            for name, path in files.items():
                check = compare_onnx(files["fp32"], path, test)
                logits = np.concatenate(
                    [sessions[name](waveforms[i : i + 16]) for i in range(0, len(waveforms), 16)]
                )
                row["models"][name] = {
                    "bytes": path.stat().st_size,
                    "accuracy": check.int8_accuracy,
                    "agreement_with_fp32": check.agreement,
                    "max_logit_diff_vs_fp32": check.max_logit_diff,
                    "logits_sha256_16": _digest(logits),
                }
            for name, timing in _latency(sessions, args.runs).items():
                row["models"][name].update(timing)
            doc["rows"].append(row)
            print(_line(row), flush=True)
    doc["hardware"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return doc


def _line(row: dict) -> str:
    return f"{row['variant']}: " + "; ".join(
        f"{name} {100 * m['accuracy']:.1f} % {m['bytes'] / 1e3:.0f} kB "
        f"p50 {m['p50_ms']:.2f} ms p99 {m['p99_ms']:.2f} ms"
        for name, m in row["models"].items()
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", nargs="+", default=["quartznet-3x1", "se-quartznet-3x1"])
    p.add_argument(
        "--checkpoint",
        nargs="+",
        help="trained models: files or shipped names (default: train each variant)",
    )
    p.add_argument("--out-dir", type=Path, help="keep the trained models here (VARIANT/best.pt)")
    p.add_argument("--data", type=Path, help="synthetic set folder (default: data/synthetic-...)")
    p.add_argument("--per-word", type=int, default=100, help="synthetic clips per word")
    p.add_argument("--speakers", type=int, help="synthetic speakers (default: make_synthetic's)")
    p.add_argument("--epochs", type=int, default=4, help="training epochs per variant")
    p.add_argument("--calibration-clips", type=int, default=256)
    p.add_argument("--runs", type=int, default=300, help="timed runs per model")
    p.add_argument("--threads", type=int, default=1, help="torch threads (training)")
    p.add_argument("--json", type=Path, help="default: results/int8-DATE-ISA.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parse_args(argv)
    doc = run(args)
    isa = doc["hardware"]["torch_cpu_capability"].lower()
    path = args.json or RESULTS / f"int8-{doc['date'][:10]}-{isa}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(int8_table(doc))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
