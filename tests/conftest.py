"""Shared fixtures. Keep this file small: one fixture per idea, cheap to build."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch


def pytest_report_header(config) -> list[str]:
    """The CPU and its kernels' ISA level: tolerances and timings are facts about a CPU."""
    from quartznet_tutorial.utils.runtime import cpu_name

    handler = signal.getsignal(signal.SIGINT)
    sigint = "ignored" if handler == signal.SIG_IGN else "handled"
    return [
        f"cpu: {cpu_name()}, kernels {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; SIGINT {sigint} at start"
    ]


def write_fake_speech_commands(
    root: Path,
    *,
    words: Sequence[str] = ("yes", "no", "up", "down"),
    per_word: int = 5,
    seed: int = 0,
    background: int = 2,
) -> Path:
    """A tiny tree in the Speech Commands layout: tones and noise, no speech.

    ``words/<word>/<speaker>_nohash_<n>.wav`` (16 kHz 16-bit mono; every third clip is shorter
    than a second, as many real ones are), ``validation_list.txt`` (clip 0 of each word),
    ``testing_list.txt`` (clip 1) and ``background`` one-second noises in
    ``_background_noise_/``. Everything else is training.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    validation, testing = [], []
    for w, word in enumerate(words):
        (root / word).mkdir(exist_ok=True)
        for n in range(per_word):
            samples = 16_000 if n % 3 else 9_000
            t = np.arange(samples) / 16_000
            tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * w) * t)
            clip = tone + 0.01 * rng.standard_normal(samples)
            rel = f"{word}/{seed:04x}{n:04x}_nohash_{n % 2}.wav"
            sf.write(root / rel, clip.astype(np.float32), 16_000, subtype="PCM_16")
            (validation if n == 0 else testing if n == 1 else []).append(rel)
    (root / "validation_list.txt").write_text("".join(f"{r}\n" for r in validation))
    (root / "testing_list.txt").write_text("".join(f"{r}\n" for r in testing))
    noise_dir = root / "_background_noise_"
    noise_dir.mkdir(exist_ok=True)
    for i in range(background):
        noise = 0.1 * rng.standard_normal(16_000).astype(np.float32)
        sf.write(noise_dir / f"noise_{i}.wav", noise, 16_000, subtype="PCM_16")
    return root


@pytest.fixture
def make_speech_commands(tmp_path) -> Callable[..., Path]:
    """Factory: ``make_speech_commands(words=..., per_word=...)`` -> root of a fake tree."""
    counter = iter(range(1_000))

    def make(**kwargs) -> Path:
        return write_fake_speech_commands(tmp_path / f"speech_commands_{next(counter)}", **kwargs)

    return make


@pytest.fixture
def speech_commands(make_speech_commands) -> Path:
    """A fake Speech Commands V1 tree: 4 words x 5 clips, 2 background noises."""
    return make_speech_commands()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Keep every test's dataset cache in its own temporary folder, never in ~/.cache."""
    monkeypatch.setenv("QUARTZNET_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def float64():
    """Build models and run training in float64 for the test (``torch.set_default_dtype``).

    Two float32 computations of one training run that differ only in the order of their sums
    (another layout, DDP's all-reduce, another CPU's kernels) agree to ~1e-6 for a step or two,
    until rounding pushes some pre-activation across a ReLU's kink or a tie in a max; Novograd
    then normalises each layer's gradient, and the runs part by ~1e-2 within a few steps (seen
    at step 3 of quartznet-3x1 at batch 4, on AVX2 and AVX-512 kernels alike). In float64 the
    rounding is 1e-16 and no such crossing happens in a short run, so weights can be compared
    tightly; float32 itself is checked one step at a time (``test_cpu_fast.py``).
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def interruptible():
    """Python's own Ctrl-C handler for the test, as in a terminal.

    A suite started in the background (``cmd &``, ``nohup``, many CI runners) inherits SIGINT
    ignored, so Python installs no KeyboardInterrupt handler. Tests of Ctrl-C use this: the
    handler is set in this process, and child processes started meanwhile get SIGINT's default
    action at exec (a caught signal is reset there), so Python installs its handler in them too.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@functools.cache
def _blas_rows_independent() -> bool:
    """Whether this CPU's BLAS gives a row of a float32 product the same bits whatever the other
    rows and the thread count. MKL's AVX2 kernels on an Intel Xeon do not (a row can move by an
    ulp with the row count); on an AMD EPYC they did."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(15_150, 257, generator=generator)  # 150 clips x 101 frames x 257 bins
    w = torch.randn(64, 257, generator=generator)  # a filterbank, applied transposed
    whole = a @ w.t()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = a[:6464] @ w.t()  # 64 clips, in one thread
    finally:
        torch.set_num_threads(threads)
    return torch.equal(alone, whole[:6464]) and torch.equal(a[:6464] @ w.t(), alone)


@pytest.fixture
def assert_same_features() -> Callable[[torch.Tensor, torch.Tensor], None]:
    """``assert_same_features(a, b)``: two computations of the same features that differ only in
    how the clips were batched or threaded are equal to the bit where the BLAS's rows do not
    depend on the batch (:func:`_blas_rows_independent`), and else to float32 rounding (1e-6 of
    the largest magnitude)."""

    def check(a: torch.Tensor, b: torch.Tensor) -> None:
        assert a.shape == b.shape and a.dtype == b.dtype
        if _blas_rows_independent():
            assert torch.equal(a, b)
        else:
            error = float((a - b).abs().max())
            assert error <= 1e-6 * float(b.abs().max()), error

    return check
