"""Interrupted runs resume bit for bit: SIGTERM mid-epoch, SIGKILL at random moments.

Equality is exact (``torch.equal``) on the CPU with one thread: the final weights, ``best.pt``
and every metric except the time measurements match a run that was never interrupted.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_train import (
    FakePipeline,
    assert_same_weights,
    fake_build_data,
    small_config,
    strip_timing,
    weights,
)

from quartznet_tutorial.checkpoints.checkpoint import load_checkpoint
from quartznet_tutorial.training.config import TrainingInterrupted
from quartznet_tutorial.training.loop import train

# The package exports the function `train`, which hides the module of that name.
train_module = importlib.import_module("quartznet_tutorial.training.loop")
TESTS = Path(__file__).resolve().parent
EPOCHS = 3


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr(train_module, "build_data", fake_build_data)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(train_module, "build_data", fake_build_data)
    torch.set_num_threads(1)
    try:
        return train(small_config(tmp_path_factory.mktemp("reference"), epochs=EPOCHS))
    finally:
        mp.undo()


def _signal_after(
    monkeypatch, epoch: int, batches: int, signum: int = signal.SIGTERM, times: int = 1
) -> None:
    """Deliver a real ``signum`` (``times`` times) to this process after ``batches`` batches
    of ``epoch``."""

    class Terminating(FakePipeline):
        def batches(self, e, start=0):
            for i, batch in enumerate(super().batches(e, start), start=start):
                if (e, i) == (epoch, batches):
                    for _ in range(times):
                        os.kill(os.getpid(), signum)
                yield batch

    def build(config, env):
        data = fake_build_data(config, env)
        data.train.__class__ = Terminating
        return data

    monkeypatch.setattr(train_module, "build_data", build)


def _assert_same_run(result, reference):
    assert_same_weights(weights(result.last_checkpoint), weights(reference.last_checkpoint))
    assert_same_weights(weights(result.best_checkpoint), weights(reference.best_checkpoint))
    assert strip_timing(result.history) == strip_timing(reference.history)
    assert result.test_accuracy == reference.test_accuracy


# 12 steps per epoch: the first step, mid-epoch, after the last step of an epoch. Ctrl-C
# (SIGINT) saves the position as SIGTERM does.
@pytest.mark.parametrize(
    ("epoch", "batches", "signum"),
    [
        (0, 0, signal.SIGTERM),
        (1, 5, signal.SIGTERM),
        (1, 11, signal.SIGTERM),
        (1, 5, signal.SIGINT),
    ],
)
def test_signal_mid_epoch_then_resume_is_bitwise(
    fakes, monkeypatch, tmp_path, reference, epoch, batches, signum, interruptible
):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    _signal_after(monkeypatch, epoch, batches, signum)
    with pytest.raises(TrainingInterrupted, match="--resume") as info:
        train(small_config(tmp_path, epochs=EPOCHS))
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored
    assert info.value.exit_code == 128 + signum
    saved = load_checkpoint(tmp_path / "last.pt")
    # The flag is seen at the end of the step during which the signal arrived.
    assert (saved["epoch"], saved["step_in_epoch"]) == (epoch, batches + 1)
    assert (info.value.epoch, info.value.step) == (epoch, batches + 1)

    monkeypatch.setattr(train_module, "build_data", fake_build_data)
    resumed = train(small_config(tmp_path, epochs=EPOCHS, resume=True))
    _assert_same_run(resumed, reference)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert strip_timing([json.loads(line) for line in lines]) == strip_timing(reference.history)


def test_fp16_mixed_run_resumes_bitwise(fakes, monkeypatch, tmp_path):
    """The GradScaler's scale and growth counter are part of the saved position."""
    config = dict(epochs=2, precision="16-mixed")
    whole = train(small_config(tmp_path / "whole", **config))
    _signal_after(monkeypatch, 1, 5)
    with pytest.raises(TrainingInterrupted):
        train(small_config(tmp_path / "cut", **config))
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["scaler"]["_growth_tracker"] > 0
    monkeypatch.setattr(train_module, "build_data", fake_build_data)
    resumed = train(small_config(tmp_path / "cut", resume=True, **config))
    _assert_same_run(resumed, whole)


def test_second_ctrl_c_stops_at_once_without_saving(fakes, monkeypatch, tmp_path, interruptible):
    _signal_after(monkeypatch, 1, 5, signal.SIGINT, times=2)
    with pytest.raises(KeyboardInterrupt):
        train(small_config(tmp_path, epochs=EPOCHS))
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # the end of epoch 1 only


def test_ctrl_c_during_setup_stops_at_once(fakes, monkeypatch, tmp_path, interruptible):
    def build(config, env):
        os.kill(os.getpid(), signal.SIGINT)  # e.g. while the clips are being read
        return fake_build_data(config, env)

    monkeypatch.setattr(train_module, "build_data", build)
    with pytest.raises(KeyboardInterrupt):
        train(small_config(tmp_path))
    assert not (tmp_path / "last.pt").exists()


def test_sigterm_during_setup_stops_before_training(fakes, monkeypatch, tmp_path):
    def build(config, env):
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. while the clips are being read
        return fake_build_data(config, env)

    monkeypatch.setattr(train_module, "build_data", build)
    with pytest.raises(TrainingInterrupted, match="before the first step") as info:
        train(small_config(tmp_path))
    assert info.value.checkpoint is None and not (tmp_path / "last.pt").exists()


def test_resume_of_a_finished_run_only_evaluates(fakes, tmp_path, reference):
    first = train(small_config(tmp_path, epochs=EPOCHS))
    again = train(small_config(tmp_path, epochs=EPOCHS, resume=True))
    assert strip_timing(again.history) == strip_timing(first.history)
    assert again.test_accuracy == first.test_accuracy == reference.test_accuracy


# --- real processes, real signals ---------------------------------------------------------

_CHILD = """
import io, os, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_train import install_fakes, small_config
install_fakes()
from quartznet_tutorial.training.config import TrainingInterrupted
from quartznet_tutorial.training.loop import train

marker = os.environ.get("SLOW_SAVE")
if marker:
    # Checkpoint writes take ~0.3 s, so that kills often land inside one; the marker file
    # says "a write is under way".
    real_save = torch.save

    def slow_save(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        Path(marker).touch()
        for i in range(0, len(data), len(data) // 12 + 1):
            f.write(data[i : i + len(data) // 12 + 1])
            f.flush()
            time.sleep(0.025)

    torch.save = slow_save
delay = float(os.environ.get("STEP_DELAY", "0"))
if delay:
    # Slow every batch (not the results) so a signal surely lands while training runs.
    import test_train

    real_batches = test_train.FakePipeline.batches

    def slow_batches(self, *args, **kwargs):
        for batch in real_batches(self, *args, **kwargs):
            time.sleep(delay)
            yield batch

    test_train.FakePipeline.batches = slow_batches
Path(sys.argv[2]).touch()  # ready: imports done, training starts now
try:
    train(small_config(sys.argv[1], epochs={epochs}, resume=True))
except TrainingInterrupted as e:
    print(e, file=sys.stderr)
    sys.exit(e.exit_code)
"""


def _start(
    script: Path, out: Path, tmp: Path, slow_save: Path | None, step_delay: float = 0.0
) -> tuple:
    ready = tmp / "ready"
    ready.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS.parent)}
    env.pop("SLOW_SAVE", None)
    env["STEP_DELAY"] = str(step_delay)
    if slow_save is not None:
        env["SLOW_SAVE"] = str(slow_save)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), str(ready)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(ready, proc, timeout=180)
    return proc


def _wait_for(path: Path, proc, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.01)
    return True


def _check_files_whole(out: Path) -> None:
    """Every checkpoint under its final name loads; a torn write could only be a .tmp file."""
    for name in ("last.pt", "best.pt"):
        if (out / name).exists():
            load_checkpoint(out / name)


def _finish(proc) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


@pytest.fixture(scope="module")
def child_script(tmp_path_factory):
    path = tmp_path_factory.mktemp("child") / "child.py"
    path.write_text(textwrap.dedent(_CHILD.format(tests=str(TESTS), epochs=EPOCHS)))
    return path


@pytest.fixture(scope="module")
def subprocess_reference(child_script, tmp_path_factory):
    """The uninterrupted run, in a child process like the interrupted ones."""
    tmp = tmp_path_factory.mktemp("subprocess_reference")
    proc = _start(child_script, tmp / "run", tmp, None)
    code, err = _finish(proc)
    assert code == 0, err
    return tmp / "run"


def _assert_same_dir(out: Path, ref: Path) -> None:
    assert_same_weights(weights(out / "last.pt"), weights(ref / "last.pt"))
    assert_same_weights(weights(out / "best.pt"), weights(ref / "best.pt"))

    def metrics(d):
        return strip_timing([json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()])

    assert metrics(out) == metrics(ref)
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["test_accuracy"] == json.loads((ref / "summary.json").read_text())["test_accuracy"]
    )
    assert not list(out.glob(".*.tmp")), "stale temporary files were not cleaned up"


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bitwise(
    child_script, subprocess_reference, tmp_path
):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    out, saving = tmp_path / "run", tmp_path / "saving"
    kills = []
    for attempt in range(8):
        saving.unlink(missing_ok=True)
        proc = _start(child_script, out, tmp_path, slow_save=saving)
        if attempt == 0:
            # Once for certain: in the middle of writing a checkpoint.
            if _wait_for(saving, proc, timeout=120):
                time.sleep(0.1)
            where = "mid-save"
        elif attempt < 5:
            delay = rng.uniform(0.0, 4.0)
            time.sleep(delay)
            where = f"{delay:.2f}s"
        else:
            code, err = _finish(proc)
            assert code == 0, f"seed {seed}, kills {kills}: {err}"
            break
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills.append(where)
        proc.communicate(timeout=60)
        _check_files_whole(out)
    else:
        pytest.fail(f"seed {seed}: the run never finished")
    assert kills and kills[0] == "mid-save", f"seed {seed}: {kills}"
    _assert_same_dir(out, subprocess_reference)


@pytest.mark.slow
def test_sigterm_exits_143_and_resume_continues_mid_epoch(
    child_script, subprocess_reference, tmp_path
):
    out = tmp_path / "run"
    # 50 ms per batch: the run lasts seconds, so the signal lands mid-training, not after it.
    proc = _start(child_script, out, tmp_path, slow_save=None, step_delay=0.05)
    _wait_for(out / "metrics.jsonl", proc, timeout=120)  # written just before the first step
    time.sleep(random.uniform(0.2, 1.0))
    proc.send_signal(signal.SIGTERM)
    code, err = _finish(proc)
    if code == 0:
        pytest.skip("the run finished before SIGTERM arrived (machine unusually fast)")
    assert code == 143, err
    assert "--resume" in err
    saved = load_checkpoint(out / "last.pt")
    assert saved["step"] > 0
    proc = _start(child_script, out, tmp_path, slow_save=None)
    code, err = _finish(proc)
    assert code == 0, err
    _assert_same_dir(out, subprocess_reference)
