"""DDP: 2 gloo processes on the CPU (``torchrun``) against one process with the combined batch.

What is equal, and why:

- With BatchNorm frozen (eval mode, running statistics fixed), every clip's gradient is
  independent of the others in its batch, so 2 ranks x batch 16 (gradients averaged by DDP)
  equals 1 process x batch 32 up to float summation order. Compared in float64 (float32 runs
  part by ~1e-2 after a few steps, see ``conftest.float64``): weights agree to ~1e-15.
- With BatchNorm training, each rank normalises its own 16 clips: not the statistics of the
  32-clip batch, so DDP is *not* the single-process run (NeMo's 2020 multi-GPU runs trained
  this way). ``sync_batchnorm=True`` computes them over all ranks, but ``SyncBatchNorm`` runs on
  CUDA only, so no CPU test can check it.
- Across ranks everything is identical (DDP broadcasts the initial weights and averages
  gradients; rank 0's BatchNorm buffers are broadcast each forward), and an interrupted DDP run
  resumes bit for bit: all ranks agree on SIGTERM, every rank's RNG state is saved.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from test_train import assert_same_weights, fake_build_data, small_config, strip_timing, weights
from torch import nn

from quartznet_tutorial.models.quartznet import build_model
from quartznet_tutorial.training.loop import train

# The package exports the function `train`, which hides the module of that name.
train_module = importlib.import_module("quartznet_tutorial.training.loop")

TESTS = Path(__file__).resolve().parent
EPOCHS = 2


def frozen_bn_build_model(*args, **kwargs):
    """``build_model`` whose BatchNorm layers stay in eval mode while the model trains (the
    training loop builds its model with ``families.build``, whose place it takes)."""
    model = build_model(*args, **kwargs)

    def train_mode(self, mode=True):
        nn.Module.train(self, mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.eval()
        return self

    model.train = types.MethodType(train_mode, model)
    return model


_CHILD = """
import hashlib, json, os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import torch
import torch.distributed as dist
torch.set_num_threads(1)
from test_ddp import frozen_bn_build_model
from test_train import FakePipeline, install_fakes, small_config
import importlib
T = importlib.import_module("quartznet_tutorial.training.loop")

install_fakes()
out = Path(sys.argv[1])
# Our own process group, so that train() reuses it for several runs.
dist.init_process_group("gloo")
rank = dist.get_rank()


# Each rank's own weights at the end of training (train() then loads rank 0's best.pt into
# every rank, which would make them equal by construction).
built, trained = [], {{}}
load_checkpoint = T.load_checkpoint


def record_weights(path, *args, **kwargs):
    if Path(path).name == "best.pt" and built:
        state = built[-1].state_dict()
        trained["sha256"] = hashlib.sha256(
            b"".join(state[k].cpu().numpy().tobytes() for k in sorted(state))
        ).hexdigest()
    return load_checkpoint(path, *args, **kwargs)


T.load_checkpoint = record_weights


def recording(build):
    def build_and_record(*args, **kwargs):
        built.append(build(*args, **kwargs))
        return built[-1]
    return build_and_record


def run(name, **overrides):
    trained.clear()
    # Free the last run's model as a training script would: no run's tensors should live on
    # until interpreter shutdown, when gloo may still be tearing down its threads.
    built.clear()
    result = T.train(small_config(out / name, epochs={epochs}, batch_size=16, **overrides))
    record = {{"history": result.history, "test": result.test_accuracy,
              "val": result.val_accuracy, "world_size": result.world_size,
              "weights_sha256": trained.get("sha256")}}
    (out / name / f"rank{{rank}}.json").write_text(json.dumps(record))


build = T.build
T.build = recording(frozen_bn_build_model)
torch.set_default_dtype(torch.float64)  # compared with one process: see conftest's float64
run("frozen_bn")
torch.set_default_dtype(torch.float32)
T.build = recording(build)
run("ddp")

# Interrupt a DDP run: every rank gets SIGTERM at epoch 1, batch 2; they agree and stop.
terminate_at = (1, 2)
batches = FakePipeline.batches


def terminating(self, epoch, start=0):
    for i, batch in enumerate(batches(self, epoch, start), start=start):
        if self.train and (epoch, i) == terminate_at:
            os.kill(os.getpid(), signal.SIGTERM)
        yield batch


FakePipeline.batches = terminating
try:
    run("resumed")
    raise SystemExit("SIGTERM did not stop the run")
except T.TrainingInterrupted as e:
    (out / "resumed" / f"interrupted{{rank}}.json").write_text(json.dumps([e.epoch, e.step]))
FakePipeline.batches = batches
run("resumed", resume=True)
built.clear()
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    script = tmp / "child.py"
    script.write_text(textwrap.dedent(_CHILD.format(tests=str(TESTS), epochs=EPOCHS)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), str(tmp)], env=env, capture_output=True, text=True, timeout=900
    )
    # The head too: a child that dies in Python can then abort in gloo's threads at exit, and
    # the tail shows only that abort.
    assert proc.returncode == 0, proc.stderr[:3000] + "\n[...]\n" + proc.stderr[-3000:]
    return tmp


def _ranks(run: Path) -> list[dict]:
    return [json.loads((run / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_ddp_equals_one_process_with_the_combined_batch(ddp_runs, tmp_path, monkeypatch, float64):
    monkeypatch.setattr(train_module, "build_data", fake_build_data)
    monkeypatch.setattr(train_module, "build", frozen_bn_build_model)
    torch.set_num_threads(1)
    single = train(small_config(tmp_path, epochs=EPOCHS, batch_size=32))
    ddp, one = weights(ddp_runs / "frozen_bn" / "last.pt"), weights(single.last_checkpoint)
    assert ddp.keys() == one.keys()
    assert ddp["decoder.weight"].dtype == torch.float64
    for key in ddp:
        assert ddp[key].dtype == one[key].dtype, key
        # float64: the all-reduce sums in another order, ~1e-15 apart after 12 steps.
        torch.testing.assert_close(ddp[key], one[key], rtol=1e-9, atol=1e-10, msg=key)
    ranks = _ranks(ddp_runs / "frozen_bn")
    assert ranks[0]["world_size"] == 2
    assert [h["step"] for h in ranks[0]["history"]] == [h["step"] for h in single.history]
    assert [h["clips"] for h in ranks[0]["history"]] == [192, 192]  # both ranks counted
    for got, want in zip(ranks[0]["history"], single.history, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-9)
        assert got["val_accuracy"] == pytest.approx(want["val_accuracy"], abs=1 / 48)


@pytest.mark.slow
def test_ddp_ranks_agree(ddp_runs):
    for run in ("frozen_bn", "ddp", "resumed"):
        rank0, rank1 = _ranks(ddp_runs / run)
        for r in (rank0, rank1):
            r["history"] = strip_timing(r["history"])  # each rank times itself
        assert rank0["weights_sha256"] is not None  # each rank's trained weights, hashed
        assert rank0 == rank1, run
        assert rank0["test"] is not None


@pytest.mark.slow
def test_ddp_sigterm_then_resume_is_bitwise(ddp_runs):
    stops = [
        json.loads((ddp_runs / "resumed" / f"interrupted{r}.json").read_text()) for r in (0, 1)
    ]
    # SIGTERM during step 2 of epoch 1 (global step 6 + 3 = 9); ranks agree every 10 steps.
    assert stops == [[1, 4], [1, 4]]
    assert_same_weights(
        weights(ddp_runs / "resumed" / "last.pt"), weights(ddp_runs / "ddp" / "last.pt")
    )
    resumed, uninterrupted = _ranks(ddp_runs / "resumed")[0], _ranks(ddp_runs / "ddp")[0]
    assert strip_timing(resumed["history"]) == strip_timing(uninterrupted["history"])
    assert resumed["test"] == uninterrupted["test"]
