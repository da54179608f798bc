"""Where the CPU training pipeline's time goes, and its front end's pieces against aten's.

Two measurements at this process's ISA level (set ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`` for the AVX2 kernels):

* ``pieces``: the pipeline's gathers and the MFCC front end's steps, each beside the plain
  aten way of computing the same numbers, timed alternately on warm data: a batch's rows of
  the int16 clips and the time shift's windows (advanced indexing vs ``index_select``), the
  STFT's reflection padding (aten's ``reflection_pad1d`` vs
  :func:`~quartznet_tutorial.audio.features._reflect_pad`) and the mel filterbank (one dense
  product vs :meth:`~quartznet_tutorial.audio.features.MFCC.from_stft`'s bands). The whole front
  end, torchaudio's against the package's, inside training is ``benchmarks/cpu_isa.py``'s
  ``pipeline``;
* ``stages``: ``quartznet train``'s ``"device"`` pipeline with NeMo's augmentation, batch
  128, each batch built between two training steps of ``quartznet-3x1`` (the ``(C, B, T)``
  step ``train`` runs), so its data are as cold as in training. ``torch.profiler`` gives the
  self time of every operation while a batch is built, per batch; the bare step and the
  batch are timed without the profiler.

    python benchmarks/cpu_frontend.py [--threads 2] [--json PATH]

writes ``benchmarks/results/cpu-frontend-DATE-ISA.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from common import RESULTS, alternate, cpu_training_batches, new_doc, write_results
from torch.profiler import profile, record_function

from quartznet_tutorial.audio.features import MFCC, _reflect_pad

BATCH = 128


def _alternate(fns: dict, rounds: int) -> dict[str, float]:
    return {name: round(v * 1e3, 3) for name, v in alternate(fns, rounds).items()}  # ms


def pieces(rounds: int) -> dict:
    mfcc = MFCC()
    fb = mfcc.featurizer.MelSpectrogram.mel_scale.fb
    chunk = 0.1 * torch.randn(64, 16_000, generator=torch.Generator().manual_seed(0))  # a CPU's
    pad = mfcc.featurizer.MelSpectrogram.spectrogram.n_fft // 2
    stft = mfcc._stft(chunk)  # ... chunk of the front end
    power = stft.real.square() + stft.imag.square()
    if not torch.allclose(mfcc._mel(power), torch.matmul(power, fb), rtol=1e-5, atol=1e-6):
        raise RuntimeError("the banded filterbank disagrees with the dense product")
    clips = torch.randint(-(2**15), 2**15, (4096, 16_000), dtype=torch.int16)
    rows = torch.randperm(len(clips), generator=torch.Generator().manual_seed(1))[:BATCH]
    audio = clips.index_select(0, rows).float() / 32768
    shift = torch.randint(-80, 80, (BATCH,), generator=torch.Generator().manual_seed(2))

    def shift_by_indexing() -> torch.Tensor:  # the windows indexed by (row, shift)
        windows = torch.nn.functional.pad(audio, (81, 81)).unfold(1, audio.shape[1], 1)
        return windows[torch.arange(BATCH), shift + 81]

    def shift_by_index_select() -> torch.Tensor:  # as time_shift gathers them
        padded = torch.nn.functional.pad(audio, (81, 81))
        starts = torch.arange(BATCH) * padded.shape[1] + shift + 81
        return padded.view(-1).unfold(0, audio.shape[1], 1).index_select(0, starts)

    if not torch.equal(shift_by_indexing(), shift_by_index_select()):
        raise RuntimeError("the two time-shift gathers disagree")
    with torch.inference_mode():
        return {
            "clip_rows_128": _alternate(
                {
                    "indexing": lambda: clips[rows],
                    "index_select": lambda: clips.index_select(0, rows),
                },
                rounds,
            ),
            "time_shift_gather_128_clips": _alternate(
                {"indexing": shift_by_indexing, "index_select": shift_by_index_select}, rounds
            ),
            "reflect_pad_64_clips": _alternate(
                {
                    "aten": lambda: torch.nn.functional.pad(chunk[:, None], (pad, pad), "reflect"),
                    "package": lambda: _reflect_pad(chunk, pad),
                },
                rounds,
            ),
            "mel_filterbank_64_clips": _alternate(
                {"dense": lambda: torch.matmul(power, fb), "bands": lambda: mfcc._mel(power)},
                rounds,
            ),
        }


def stages(batches: int) -> dict:
    step, pipeline, ready = cpu_training_batches(batches, BATCH)
    for batch in pipeline.batches(1):  # warm-up epoch
        step(*batch)
    built, stepped, bare = [], [], []
    for epoch in (2, 3):  # timed, no profiler
        it = pipeline.batches(epoch)
        while True:
            begin = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            middle = time.perf_counter()
            step(*batch)
            built.append(middle - begin)
            stepped.append(time.perf_counter() - middle)
            begin = time.perf_counter()
            step(*ready)
            bare.append(time.perf_counter() - begin)
    count, self_us = 0, defaultdict(float)
    with profile() as prof:
        for epoch in (4, 5):
            it = pipeline.batches(epoch)
            while True:
                with record_function("BATCH"):
                    batch = next(it, None)
                if batch is None:
                    break
                count += 1
                step(*batch)

    def walk(event, inside: bool) -> None:
        inside = inside or event.name == "BATCH"
        if inside and event.name != "BATCH":
            self_us[event.name] += event.self_cpu_time_total
        for child in event.cpu_children:
            walk(child, inside)

    for event in prof.events():
        if event.cpu_parent is None:
            walk(event, False)
    ops = sorted(self_us.items(), key=lambda kv: -kv[1])

    def ms(seconds: list[float]) -> float:
        return round(statistics.median(seconds) * 1e3, 2)

    return {
        "batch_ms": ms(built),
        "step_after_batch_ms": ms(stepped),
        "bare_step_ms": ms(bare),
        "share": round(ms(bare) / (ms(built) + ms(stepped)), 3),
        "batches_timed": len(built),
        "profiled_ms_per_batch": round(sum(self_us.values()) / count / 1e3, 2),
        "profiled_ops_ms_per_batch": {name: round(us / count / 1e3, 3) for name, us in ops[:20]},
        "batches_profiled": count,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=100, help="alternations per piece")
    parser.add_argument("--batches", type=int, default=8, help="batches per epoch")
    parser.add_argument("--json", type=Path, help="where to write (default: results/)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    isa = torch.backends.cpu.get_cpu_capability()
    doc = new_doc("cpu-frontend", isa=isa, threads=args.threads, unit="ms")
    doc["pieces"] = pieces(args.rounds)
    print(doc["pieces"], flush=True)
    doc["stages"] = stages(args.batches)
    print(doc["stages"], flush=True)
    path = args.json or RESULTS / f"cpu-frontend-{doc['date'][:10]}-{isa.lower()}.json"
    write_results(doc, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
