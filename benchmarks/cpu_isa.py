"""The CPU speed goals at two ISA levels, side by side: this machine's own and AVX2 only.

Each level runs in its own process (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA`` and
``MKL_ENABLE_INSTRUCTIONS`` cap PyTorch's kernels, oneDNN's and MKL's; the JSON records the
capability PyTorch reports and the oneDNN implementations a convolution ran with), then the
parent writes one file, ``results/cpu-isa-DATE.json``. Per level, every "before" beside its
"after", timed alternately in one process:

* ``latency``: one 1 s clip -> label, one thread, ``quartznet-3x1``: torchaudio's MFCC +
  the model's oneDNN convolutions (before) vs the package's :class:`Classifier` (after);
* ``pipeline``: ``quartznet train``'s batch of 128 (``"device"`` pipeline, NeMo's
  augmentation, MFCC, crop) + training step, against the bare step on a ready batch, with
  the torchaudio front end (before) and the package's (after); the share is bare / end to end;
* ``step``: forward + backward + Novograd at batch 128, the eager model, the package's
  ``cpu_layout="auto"`` module (with its compiled kernels, and again with ATen operations
  only, ``package_aten``) and, when ``nemo_toolkit`` imports, NeMo's own modules.

``--repeat N`` measures each level N times, the levels taking turns, and records every run;
each figure of a level is then the median of its runs, with the runs beside it, because one
run on a shared 2-core VM can sit 20% off the next.

More rounds per run (``--step-rounds``, ``--pipeline-batches``, ``--pipeline-rounds``; the
file records them) narrow each run's median at the cost of time.

    python benchmarks/cpu_isa.py [--threads 2] [--repeat 3] [--step-rounds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from common import (
    RESULTS,
    NemoClassifier,
    alternate,
    cpu_training_batches,
    import_nemo,
    make_train_step,
    nemo_jasper_config,
    new_doc,
    write_results,
)

from quartznet_tutorial import build_model
from quartznet_tutorial.audio.features import MFCC, crop_or_pad
from quartznet_tutorial.datasets.speech_commands import labels_for
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.models.cpu_fast import training_module
from quartznet_tutorial.ops import cpu_kernels

LEVELS = {
    "native": {},
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
}
_CONV_PROBE = (
    "import torch; c = torch.nn.Conv1d(64, 64, 11, padding=5, groups=64); "
    "c(torch.randn(2, 64, 128)); torch.nn.Conv1d(64, 64, 1)(torch.randn(2, 64, 128))"
)


def _reference_mfcc(self: MFCC, waveforms: torch.Tensor) -> torch.Tensor:
    return self.featurizer(waveforms)  # torchaudio's own forward: the "before" front end


def bench_latency(runs: int) -> dict:
    torch.manual_seed(0)
    classifier = Classifier(build_model("quartznet-3x1"), labels_for(1)).eval()
    clip = 0.1 * torch.randn(1, 16_000, generator=torch.Generator().manual_seed(0))
    labels = classifier.labels

    def before() -> list[str]:
        features = crop_or_pad(classifier.preprocessor.featurizer(clip), 128)
        return [labels[i] for i in classifier.model(features).argmax(-1).tolist()]

    def after() -> list[str]:
        return [labels[i] for i in classifier(clip).argmax(-1).tolist()]

    with torch.inference_mode():
        if before() != after():
            raise RuntimeError("the two inference paths disagree")
        seconds = alternate({"before": before, "after": after}, rounds=runs)
    return {k: round(v * 1e3, 3) for k, v in seconds.items()} | {"unit": "ms p50", "runs": runs}


def bench_pipeline(steps: int, rounds: int = 3) -> dict:
    step, pipeline, ready = cpu_training_batches(steps + 1)
    epoch = iter(range(10**6))

    def batches_and_steps() -> None:
        for features, target in pipeline.batches(next(epoch)):
            step(features, target)

    def bare() -> None:
        for _ in range(len(pipeline)):
            step(*ready)

    def before() -> None:
        original = MFCC._mfcc
        MFCC._mfcc = _reference_mfcc
        try:
            batches_and_steps()
        finally:
            MFCC._mfcc = original

    seconds = alternate({"bare": bare, "before": before, "after": batches_and_steps}, rounds)
    per_batch = {k: v / len(pipeline) for k, v in seconds.items()}
    return {
        "bare_step_ms": round(per_batch["bare"] * 1e3, 1),
        "end_to_end_before_ms": round(per_batch["before"] * 1e3, 1),
        "end_to_end_after_ms": round(per_batch["after"] * 1e3, 1),
        "share_before": round(per_batch["bare"] / per_batch["before"], 3),
        "share_after": round(per_batch["bare"] / per_batch["after"], 3),
        "batches_per_round": len(pipeline),
    }


def bench_step(rounds: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(128, 64, 128, generator=generator)
    target = torch.randint(0, 30, (128,), generator=generator)
    cpu = torch.device("cpu")
    steps = {}
    torch.manual_seed(0)
    steps["eager"] = make_train_step(build_model("quartznet-3x1").train(), "32", cpu)
    torch.manual_seed(0)
    package = training_module(build_model("quartznet-3x1").train(), layout="auto", device=cpu)
    steps["package"] = make_train_step(package, "32", cpu)
    steps["package_aten"] = _without_kernels(steps["package"])
    nemo, reason = import_nemo()
    if nemo is not None:
        encoder_cls, decoder_cls, nemo_novograd = nemo
        torch.manual_seed(0)
        theirs = NemoClassifier(
            encoder_cls(jasper=nemo_jasper_config("quartznet-3x1"), activation="relu", feat_in=64),
            decoder_cls(feat_in=128, num_classes=30),
        ).train()
        optimizer = nemo_novograd(
            theirs.parameters(), lr=0.05, betas=(0.95, 0.5), weight_decay=0.001
        )
        steps["nemo"] = make_train_step(theirs, "32", cpu, optimizer=optimizer)
    seconds = alternate({k: (lambda s=s: s(features, target)) for k, s in steps.items()}, rounds)
    out = {f"{k}_ms": round(v * 1e3, 1) for k, v in seconds.items()}
    out["layout"] = type(package).__name__
    out["kernels_speedup"] = round(seconds["package_aten"] / seconds["package"], 2)
    if nemo is not None:
        out["package_vs_nemo"] = round(seconds["nemo"] / seconds["package"], 2)
        out["eager_vs_nemo"] = round(seconds["nemo"] / seconds["eager"], 2)
    else:
        out["nemo_note"] = f"not measured: {reason}"
    return out


def _without_kernels(step):
    """``step`` with :mod:`~quartznet_tutorial.ops.cpu_kernels` off: ATen operations only, as
    where no C compiler is at hand."""

    def run(*args):
        with cpu_kernels.off():
            return step(*args)

    return run


def child(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    doc = {
        "isa": torch.backends.cpu.get_cpu_capability(),
        "threads": args.threads,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "mkldnn": torch.backends.mkldnn.is_available(),
        "mkldnn_bf16": torch.ops.mkldnn._is_mkldnn_bf16_supported(),
        "cpu_kernels": cpu_kernels.status(),
    }
    torch.set_num_threads(1)
    doc["latency_1_thread"] = bench_latency(args.latency_runs)
    print(doc["latency_1_thread"], flush=True)
    torch.set_num_threads(args.threads)
    doc["pipeline"] = bench_pipeline(args.pipeline_batches, args.pipeline_rounds)
    print(doc["pipeline"], flush=True)
    doc["step"] = bench_step(args.step_rounds)
    print(doc["step"], flush=True)
    doc["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return doc


def onednn_implementations(env: dict) -> list[str]:
    """The oneDNN implementation names a depthwise and a 1x1 convolution ran with."""
    out = subprocess.run(
        [sys.executable, "-c", _CONV_PROBE],
        env={**os.environ, **env, "ONEDNN_VERBOSE": "1"},
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    names = set()
    for line in out.splitlines():  # onednn_verbose,...,exec,cpu,<kind>,<implementation>,...
        parts = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in parts:
            i = parts.index("exec")
            if len(parts) > i + 3:
                names.add(f"{parts[i + 2]}:{parts[i + 3]}")
    return sorted(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-runs", type=int, default=300)
    parser.add_argument("--pipeline-batches", type=int, default=4)
    parser.add_argument("--pipeline-rounds", type=int, default=3)
    parser.add_argument("--step-rounds", type=int, default=5)
    parser.add_argument("--levels", nargs="+", choices=list(LEVELS), default=list(LEVELS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per level (default: 1)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return 0
    settings = ("threads", "latency_runs", "pipeline_batches", "pipeline_rounds", "step_rounds")
    doc = new_doc("cpu-isa", settings={k: getattr(args, k) for k in settings}, levels={})
    runs: dict[str, list[dict]] = {level: [] for level in args.levels}
    for _ in range(args.repeat):
        for level in args.levels:
            runs[level].append(_measure_level(level, args))
    for level, results in runs.items():
        doc["levels"][level] = _median_run(results)
        print(json.dumps(doc["levels"][level], indent=1), flush=True)
    write_results(doc, args.json or RESULTS / f"cpu-isa-{doc['date'][:10]}.json")
    return 0


def _measure_level(level: str, args: argparse.Namespace) -> dict:
    """One run of the child at ``level``, in its own process."""
    env = LEVELS[level]
    command = [
        sys.executable,
        __file__,
        "--child",
        "--threads",
        str(args.threads),
        "--latency-runs",
        str(args.latency_runs),
        "--pipeline-batches",
        str(args.pipeline_batches),
        "--pipeline-rounds",
        str(args.pipeline_rounds),
        "--step-rounds",
        str(args.step_rounds),
    ]
    print(f"== {level} {env}", flush=True)
    proc = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(
            f"{level}: the child failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    result = json.loads(lines[-1][len("RESULT ") :])
    result["env"] = env
    result["onednn_implementations"] = onednn_implementations(env)
    return result


# The figures a level reports, as (section, key); each is the median over the runs.
_FIGURES = [
    ("latency_1_thread", "before"),
    ("latency_1_thread", "after"),
    ("pipeline", "bare_step_ms"),
    ("pipeline", "end_to_end_before_ms"),
    ("pipeline", "end_to_end_after_ms"),
    ("pipeline", "share_before"),
    ("pipeline", "share_after"),
    ("step", "eager_ms"),
    ("step", "package_ms"),
    ("step", "package_aten_ms"),
    ("step", "kernels_speedup"),
    ("step", "nemo_ms"),
    ("step", "package_vs_nemo"),
    ("step", "eager_vs_nemo"),
]


def _median_run(results: list[dict]) -> dict:
    """The first run's record with each figure replaced by its median over ``results``; every
    run is kept under ``"runs"`` (one run: the record as it was)."""
    if len(results) == 1:
        return results[0]
    merged = copy.deepcopy(results[0])
    for section, key in _FIGURES:
        values = [r[section][key] for r in results if key in r[section]]
        if values:
            merged[section][key] = statistics.median(values)
    merged["load_average_end"] = results[-1]["load_average_end"]
    merged["runs"] = results
    return merged


if __name__ == "__main__":
    sys.exit(main())
