"""Keyword spotting speed: one hour of audio scored at a 100 ms hop, exact and one-pass.

Goal: <= 36 s for an hour on 2 CPU cores (>= 100x real time). Each mode is timed
``--repeat`` times (the machine may be shared: the fastest run is the row's ``seconds``, all
runs are kept). A reference row times the exact windows computed one by one, as
``classifier(windows)`` does (each window's own MFCCs, ``model(features)``), on
``--reference-seconds`` of the audio, and checks that the exact mode's posteriors equal
them. Also measures how closely the one-pass posteriors follow the exact windows on a
synthetic speech stream (``make_stream``): mean total-variation distance, top-1 agreement,
and the detections and scores of each mode.

    python benchmarks/detect.py                     # this CPU's own ISA level
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/detect.py

writes ``benchmarks/results/detect-DATE-ISA.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common import RESULTS, hardware, now, versions, write_results

from quartznet_tutorial.checkpoints.loading import load_classifier
from quartznet_tutorial.kws import detector as detect_module
from quartznet_tutorial.kws.detector import DetectConfig, detect, stream_posteriors
from quartznet_tutorial.kws.scoring import score_detections
from quartznet_tutorial.kws.stream import KEYWORDS, make_stream, read_truth


def _hour_of_noise(path: Path, seconds: int) -> Path:
    """Pink-ish noise (speed does not depend on what is said), written in blocks."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", 16_000, 1, "PCM_16") as f:
        for _ in range(0, seconds, 60):
            f.write((0.05 * rng.standard_normal(60 * 16_000)).astype(np.float32))
    return path


def _posteriors(classifier, path: Path, mode: str):
    if mode != "exact-window-by-window":
        return stream_posteriors(classifier, path, mode=mode)
    shareable = detect_module._frames_shareable
    detect_module._frames_shareable = lambda *args: False  # classifier(windows) per batch
    try:
        return stream_posteriors(classifier, path, mode="exact")
    finally:
        detect_module._frames_shareable = shareable


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="synthetic-v1-quartznet-3x1")
    p.add_argument("--seconds", type=int, default=3600, help="audio timed (default: one hour)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--stream-minutes", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=2, help="timed runs of each mode (default: 2)")
    p.add_argument("--reference-seconds", type=int, default=600, help="audio of the reference row")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    classifier = load_classifier(args.checkpoint)
    isa = torch.backends.cpu.get_cpu_capability()
    machine = hardware(torch.device("cpu"))  # the load before timing; write_results adds the end
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        audio = _hour_of_noise(Path(tmp) / "hour.wav", args.seconds)
        short = _hour_of_noise(Path(tmp) / "short.wav", args.reference_seconds)
        cases = [("one-pass", audio, args.seconds), ("exact", audio, args.seconds)]
        cases.append(("exact-window-by-window", short, args.reference_seconds))
        for mode, path, audio_seconds in cases:
            runs = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                post = _posteriors(classifier, path, mode)
                runs.append(time.perf_counter() - start)
            seconds = min(runs)
            rows.append(
                {
                    "mode": mode,
                    "audio_seconds": audio_seconds,
                    "windows": len(post.probs),
                    "seconds": round(seconds, 2),
                    "runs": [round(r, 2) for r in runs],
                    "real_time_factor": round(audio_seconds / seconds, 1),
                    "seconds_per_hour": round(seconds * 3600 / audio_seconds, 2),
                    "meets_goal_36s_per_hour": seconds * 3600 / audio_seconds <= 36,
                }
            )
            print(rows[-1])
        exact_short = stream_posteriors(classifier, short).probs
        rows[-1]["exact_max_abs_posterior_difference"] = float(
            np.abs(exact_short - post.probs).max()
        )
        print(rows[-1])

        truth_path = make_stream(Path(tmp) / "stream", minutes=args.stream_minutes)
        truth = read_truth(truth_path)
        wav = truth_path.parent / "stream.wav"
        post = {m: stream_posteriors(classifier, wav, mode=m) for m in ("exact", "one-pass")}
    a, b = post["exact"].probs, post["one-pass"].probs
    config = DetectConfig(keywords=KEYWORDS)
    found = {m: detect(p, config) for m, p in post.items()}
    same = sum(
        any(d.word == e.word and abs(d.time - e.time) <= 0.3 for e in found["one-pass"])
        for d in found["exact"]
    )
    agreement = {
        "stream_minutes": args.stream_minutes,
        "mean_total_variation": float(np.abs(a - b).sum(1).mean() / 2),
        "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
        "top1_agreement_where_exact_above_0.7": float(
            (a.argmax(1) == b.argmax(1))[a.max(1) > 0.7].mean()
        ),
        "exact_detections_also_in_one_pass_within_0.3s": [same, len(found["exact"])],
        "scores": {m: score_detections(d, truth).to_dict() for m, d in found.items()},
    }
    print(agreement)
    doc = {
        "benchmark": "detect",
        "date": now(),
        "checkpoint": args.checkpoint,
        "threads": args.threads,
        "hop_ms": 100,
        "hardware": machine,
        "versions": versions(),
        "speed": rows,
        "agreement": agreement,
    }
    out = args.out or RESULTS / f"detect-{now()[:10]}-{isa.lower().replace('_', '')}.json"
    write_results(doc, out)


if __name__ == "__main__":
    main()
