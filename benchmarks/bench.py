"""Measure training and inference speed on this machine; write one JSON file and a table.

Run it through ``nox -s bench`` (installs NeMo too, for the side-by-side rows) or directly::

    python benchmarks/bench.py            # full run -> benchmarks/results/cpu-<date>.json
    python benchmarks/bench.py --quick    # seconds: CI-sized, same schema

What is measured (every row names its variant, precision, pipeline, batch, threads):

* ``train``: training clips/s, the whole step as ``train.py`` runs it (batch from
  :func:`~quartznet_tutorial.pipeline.make_pipeline` with NeMo's augmentation, forward,
  cross-entropy, backward, Novograd), for the fast ``"device"`` pipeline and the conventional
  ``"dataloader"`` one in the same run, per variant and precision.
* ``train_vs_nemo``: forward + backward + optimizer step of our ``quartznet-3x1`` and of NeMo's
  own ``ConvASREncoder`` + ``ConvASRDecoderClassification`` built from the same config, same
  batch of features, same threads, same process, alternating; the ratio is NeMo's time / ours.
* ``latency``: one 1 s clip -> label on one thread (MFCC + model + argmax), p50 and p99, for
  PyTorch and for onnxruntime running the file :func:`~quartznet_tutorial.export.export_onnx`
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
import datetime
import importlib.metadata
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from quartznet_tutorial import VARIANTS, build_model
from quartznet_tutorial.checkpoint import cpu_name
from quartznet_tutorial.classifier import Classifier
from quartznet_tutorial.cpu_fast import resolve_layout, training_module
from quartznet_tutorial.data import labels_for
from quartznet_tutorial.features import SAMPLE_RATE

RESULTS = Path(__file__).resolve().parent / "results"
SCHEMA = 1  # bump when the JSON layout changes; docs/performance.md reads it
PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
GOALS = {
    # The CPU goals, checked against the rows of the same run.
    "train_vs_nemo": 1.5,  # our quartznet-3x1 step >= 1.5x NeMo's at batch 128, same cores
    "latency_ms": 3.0,  # 1 s clip -> label, p50, one CPU thread
}

__all__ = ["SyntheticClips", "hardware", "make_train_step", "run", "versions"]


# --- the machine ---------------------------------------------------------------------------


# Environment variables that lower the ISA level of PyTorch's and oneDNN's kernels.
_ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def _cpu_features() -> list[str]:
    """The vector extensions that set CPU speed (AMX and AVX-512 BF16 make bf16 fast)."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "asimd", "sve")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return [f for f in wanted if f in flags]


def hardware(device: torch.device) -> dict:
    """CPU, cores, memory, GPU (or ``None``) and the load average when called."""
    memory = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    gpu = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        gpu = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "count": torch.cuda.device_count(),
        }
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "cpu_features": _cpu_features(),
        # The ISA level PyTorch's kernels use here: AVX2 on an AVX2-only CPU, or where
        # ATEN_CPU_CAPABILITY=avx2 makes a newer one compute like one.
        "kernels": torch.backends.cpu.get_cpu_capability(),
        "env": {k: os.environ[k] for k in _ISA_ENV if k in os.environ},
        "memory_gib": memory,
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "gpu": gpu,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    """Versions of everything that sets the speed, and the git commit measured."""
    commit = None
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        commit = out.stdout.strip() or None
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchaudio": _version("torchaudio"),
        "numpy": _version("numpy"),
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
        "nemo_toolkit": _version("nemo_toolkit"),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "quartznet_tutorial": commit,
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# --- data ----------------------------------------------------------------------------------


class SyntheticClips:
    """Labelled one-second clips made in memory: a pipeline's ``ClipDataset``, no files.

    Clip ``i`` of class ``c`` is a tone burst (a class-specific pitch with three harmonics,
    random onset, duration, level and phase) in white noise: cheap to make for 51,094 clips on
    a GPU in a second, and learnable, so a timing run also shows the loss falling. Made in
    chunks from a seed, so the same arguments give the same clips on any device.

    Args:
        num_clips (int): how many clips.
        labels (sequence of str, optional): class names. (Default: Speech Commands V1's 30)
        seed (int, optional): seeds the clips. (Default: ``0``)
        device (torch.device or str, optional): where the clips are made and kept: a GPU
            keeps them there, as the ``"device"`` pipeline wants. (Default: ``"cpu"``)
    """

    def __init__(
        self,
        num_clips: int,
        labels: Sequence[str] | None = None,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        if num_clips < 1:
            raise ValueError(f"num_clips={num_clips}: must be >= 1")
        self.labels = list(labels) if labels is not None else labels_for(1)
        device = torch.device(device)
        generator = torch.Generator(device=device).manual_seed(seed)
        self.targets = torch.arange(num_clips, device=device) % len(self.labels)
        self.targets = self.targets[torch.randperm(num_clips, generator=generator, device=device)]
        chunks = []
        for lo in range(0, num_clips, 4096):
            chunks.append(self._make(self.targets[lo : lo + 4096], generator))
        self.clips = torch.cat(chunks)  # (N, 16000) int16

    @staticmethod
    def _make(targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, device = len(targets), targets.device

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(n, 1, generator=generator, device=device)

        t = torch.arange(SAMPLE_RATE, device=device) / SAMPLE_RATE  # (16000,) seconds
        pitch = 150.0 * 2 ** (targets[:, None].float() / 8)  # 30 classes over ~3.7 octaves
        phase = uniform(0, 2 * math.pi)
        tone = sum(torch.sin(2 * math.pi * k * pitch * t + k * phase) / k for k in (1, 2, 3))
        onset, length = uniform(0.0, 0.4), uniform(0.3, 0.6)
        envelope = ((t >= onset) & (t < onset + length)).float()
        level = 10 ** (uniform(-30, -6) / 20)
        noise = 10 ** (uniform(-60, -35) / 20) * torch.randn(
            n, SAMPLE_RATE, generator=generator, device=device
        )
        audio = (level * envelope * tone / 1.84 + noise).clamp(-1, 1 - 2**-15)
        return (audio * 32768).round().to(torch.int16)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.clips[index].cpu().float() / 32768, int(self.targets[index])

    def waveforms(self, progress: bool = True) -> torch.Tensor:
        return self.clips

    def targets_tensor(self) -> torch.Tensor:
        return self.targets

    def background_noise(self) -> list[torch.Tensor]:
        return []  # NeMo's speech-commands recipe uses none (AugmentConfig.background_prob=0)


# --- timing --------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def make_train_step(
    model: torch.nn.Module, precision: str, device: torch.device, optimizer=None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``train.py``'s own :func:`~quartznet_tutorial.train.train_step` with Novograd at the
    recipe's settings and a ``GradScaler`` for float16 only; returns
    ``step(features, target) -> loss``."""
    from quartznet_tutorial.optim import Novograd
    from quartznet_tutorial.train import train_step

    dtype = PRECISIONS[precision]
    optimizer = optimizer if optimizer is not None else Novograd(model.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return train_step(model, optimizer, scaler, dtype, features, target)[1].detach()

    return step


def _endless(pipeline) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for epoch in itertools.count():
        yield from pipeline.batches(epoch)


def _row(benchmark: str, device: torch.device, value: float | None, unit: str, **fields) -> dict:
    row = {"benchmark": benchmark, "device": device.type, "value": value, "unit": unit}
    row.update(fields)
    return row


def _not_measured(precision: str, device: torch.device) -> str | None:
    if precision == "16-mixed" and device.type != "cuda":
        return "float16 autocast + GradScaler is the GPU recipe (train.py refuses it on CPU)"
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
    from quartznet_tutorial.augment import AugmentConfig
    from quartznet_tutorial.pipeline import make_pipeline

    common = dict(
        variant=variant,
        precision=precision,
        pipeline=kind,
        batch=batch,
        threads=torch.get_num_threads(),
        num_workers=num_workers if kind == "dataloader" else 0,
        compile=compile,
        layout=resolve_layout("auto", device),  # as train.py runs it (cpu_layout="auto")
    )
    reason = _not_measured(precision, device)
    if reason is not None:
        return _row("train", device, None, "clips/s", note=f"not measured: {reason}", **common)
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
    _sync(device)
    begin = time.perf_counter()
    for _ in range(steps):
        loss = step(*next(batches))
    _sync(device)
    seconds = time.perf_counter() - begin
    del batches  # stops DataLoader workers
    return _row(
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
    from quartznet_tutorial.augment import AugmentConfig
    from quartznet_tutorial.pipeline import make_pipeline

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
        _sync(device)
        begin = time.perf_counter()
        for features, target in pipeline.batches(0):
            step(features, target)
        _sync(device)
        seconds = time.perf_counter() - begin
        rows.append(
            _row(
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


def nemo_jasper_config(name: str) -> list[dict]:
    """Our variant as the ``jasper:`` list of a NeMo ``ConvASREncoder`` config."""
    config = VARIANTS[name]
    return [
        {
            "filters": b.filters,
            "repeat": b.repeat,
            "kernel": [b.kernel],
            "stride": [1],
            "dilation": [b.dilation],
            "dropout": config.dropout,
            "residual": b.residual,
            "separable": b.separable,
            "se": b.se,
            "se_reduction_ratio": config.se_reduction_ratio,
        }
        for b in config.blocks
    ]


def _import_nemo():
    """NeMo's modules and optimizer, or the reason they cannot be imported."""
    import logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from nemo.collections.asr.modules import (
                ConvASRDecoderClassification,
                ConvASREncoder,
            )
            from nemo.core.optim.novograd import Novograd as NemoNovograd
            from nemo.utils import logging as nemo_logging
    except Exception as e:  # NeMo missing or broken: any import error means "not measured"
        return None, f"nemo_toolkit is not importable ({type(e).__name__}: {e})"[:300]
    nemo_logging.setLevel(logging.ERROR)
    return (ConvASREncoder, ConvASRDecoderClassification, NemoNovograd), None


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

    ``ours_candidates``: ``"package"`` is what :func:`~quartznet_tutorial.train.train` runs
    on this device (``cpu_layout="auto"``: the ``(C, B, T)`` layout of
    :mod:`quartznet_tutorial.cpu_fast` on the CPU); ``"eager"`` the readable reference model
    itself, the baseline.
    """
    common = dict(variant=variant, batch=batch, threads=torch.get_num_threads(), frames=128)
    nemo, reason = _import_nemo()
    if nemo is None:
        return [
            _row(
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
                _row(
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
        nemo_model = _NemoClassifier(
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
                _sync(device)
                begin = time.perf_counter()
                for _ in range(steps):
                    step(features, target)
                _sync(device)
                times[name].append((time.perf_counter() - begin) / steps)
        nemo_s = statistics.median(times["nemo"])
        for name in ours_candidates:
            ours_s = statistics.median(times[name])
            rows.append(
                _row(
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
    # The readable model.py forward: the baseline the fast layout is measured against.
    "eager": lambda model, device: model,
}


class _NemoClassifier(torch.nn.Module):
    """NeMo's encoder + decoder as ``model(features) -> logits``, as its training step calls them.

    NeMo's recipe crops/pads every clip to 128 frames and passes those lengths, so its masked
    convolutions multiply by an all-ones mask; ours are given no lengths and skip it.
    """

    def __init__(self, encoder: torch.nn.Module, decoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        lengths = torch.full(features.shape[:1], features.shape[-1], device=features.device)
        encoded, _ = self.encoder(audio_signal=features, length=lengths)
        return self.decoder(encoder_output=encoded)


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
    from quartznet_tutorial.export import OnnxClassifier, export_onnx

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
                    _row(
                        "latency", device, None, "ms", note=onnx_note, threads=1, batch=1, **common
                    )
                )
                rows.append(
                    _row(
                        "throughput", device, None, "clips/s", note=onnx_note, batch=batch, **common
                    )
                )
                continue
            with _threads(1):
                times = _timings(lambda fn=fn: fn(clip), runs=runs, warmup=max(5, runs // 10))
            rows.append(
                _row(
                    "latency",
                    device,
                    _percentile(times, 50) * 1e3,
                    "ms",
                    threads=1,
                    batch=1,
                    p99_ms=_percentile(times, 99) * 1e3,
                    runs=runs,
                    note="1 s clip -> label: MFCC + model + argmax",
                    **common,
                )
            )
            if name == "onnxruntime":

                def fn(x, session=session_n):
                    return [labels[i] for i in session(x.numpy()).argmax(-1).tolist()]

            with _threads(threads):
                times = _timings(lambda fn=fn: fn(clips), runs=batch_runs, warmup=2)
            rows.append(
                _row(
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
        "date": _now(),
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

        nemo = _import_nemo()[0] is not None
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
