"""What every benchmark script shares: the machine and software record of a results file, the
synthetic clips, timing helpers, the training step as ``training/loop.py`` takes it, and NeMo's
modules built from one of our configurations (for the side-by-side rows).

Each script in ``benchmarks/`` imports these from here; none imports another script.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from quartznet_tutorial import VARIANTS
from quartznet_tutorial.audio.features import SAMPLE_RATE
from quartznet_tutorial.datasets.speech_commands import labels_for
from quartznet_tutorial.utils.runtime import cpu_name

__all__ = [
    "ISA_ENV",
    "PRECISIONS",
    "RESULTS",
    "SCHEMA",
    "NemoClassifier",
    "SyntheticClips",
    "cpu_features",
    "hardware",
    "import_nemo",
    "make_train_step",
    "nemo_jasper_config",
    "now",
    "package_version",
    "percentile",
    "result_row",
    "sync",
    "torch_threads",
    "versions",
    "write_results",
]

RESULTS = Path(__file__).resolve().parent / "results"


SCHEMA = 1  # bump when the JSON layout changes; docs/performance.md reads it


PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


# Environment variables that lower the ISA level of PyTorch's and oneDNN's kernels.
ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def cpu_features(
    wanted: Sequence[str] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "asimd", "sve"),
) -> list[str]:
    """Those of ``wanted`` CPU flags this CPU has (by default the vector extensions that set
    its speed: AMX and AVX-512 BF16 make bf16 fast)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return [f for f in wanted if f in flags]


def write_results(doc: dict, path: Path) -> Path:
    """Stamp the load average at the end on ``doc`` and write it to ``path`` as JSON."""
    doc["hardware"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")
    return path


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
        "cpu_features": cpu_features(),
        # The ISA level PyTorch's kernels use here: AVX2 on an AVX2-only CPU, or where
        # ATEN_CPU_CAPABILITY=avx2 makes a newer one compute like one.
        "kernels": torch.backends.cpu.get_cpu_capability(),
        "env": {k: os.environ[k] for k in ISA_ENV if k in os.environ},
        "memory_gib": memory,
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "gpu": gpu,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def package_version(name: str) -> str | None:
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
        "torchaudio": package_version("torchaudio"),
        "numpy": package_version("numpy"),
        "onnx": package_version("onnx"),
        "onnxruntime": package_version("onnxruntime"),
        "nemo_toolkit": package_version("nemo_toolkit"),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "quartznet_tutorial": commit,
    }


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def make_train_step(
    model: torch.nn.Module, precision: str, device: torch.device, optimizer=None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``training/loop.py``'s own :func:`~quartznet_tutorial.training.loop.train_step` with Novograd
    at the recipe's settings and a ``GradScaler`` for float16 only; returns
    ``step(features, target) -> loss``."""
    from quartznet_tutorial.training.loop import train_step
    from quartznet_tutorial.training.optim import Novograd

    dtype = PRECISIONS[precision]
    optimizer = optimizer if optimizer is not None else Novograd(model.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return train_step(model, optimizer, scaler, dtype, features, target)[1].detach()

    return step


def new_doc(kind: str, device: torch.device | None = None, **fields) -> dict:
    """A results file's header: schema, kind, date, hardware and versions, then ``fields``."""
    device = device if device is not None else torch.device("cpu")
    return {
        "schema": 1,
        "kind": kind,
        "date": now(),
        "hardware": hardware(device),
        "versions": versions(),
        **fields,
    }


def cpu_training_batches(batches: int, batch: int = 128):
    """``quartznet train``'s CPU training of ``quartznet-3x1`` on ``batches`` batches of
    :class:`SyntheticClips`: the ``(C, B, T)`` step, and the ``"device"`` pipeline with NeMo's
    augmentation. Returns ``(step, pipeline, ready)``, ``ready`` a batch of epoch 0."""
    from quartznet_tutorial import build_model
    from quartznet_tutorial.audio.augment import AugmentConfig
    from quartznet_tutorial.datasets.pipeline import make_pipeline
    from quartznet_tutorial.models.cpu_fast import training_module

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = build_model("quartznet-3x1").train()
    step = make_train_step(training_module(model, layout="auto", device=cpu), "32", cpu)
    pipeline = make_pipeline(
        SyntheticClips(batch * batches),
        batch_size=batch,
        train=True,
        device=cpu,
        kind="device",
        augment=AugmentConfig(),
        progress=False,
    )
    return step, pipeline, next(iter(pipeline.batches(0)))


def alternate(fns: dict[str, Callable[[], object]], rounds: int, inner: int = 1) -> dict:
    """Median seconds per call of each function, timed A, B, A, B, ... after one warm-up
    call each, so a change in machine load hits all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            begin = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - begin) / inner)
    return {name: statistics.median(v) for name, v in times.items()}


def result_row(
    benchmark: str, device: torch.device, value: float | None, unit: str, **fields
) -> dict:
    row = {"benchmark": benchmark, "device": device.type, "value": value, "unit": unit}
    row.update(fields)
    return row


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


def import_nemo():
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


class NemoClassifier(torch.nn.Module):
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
