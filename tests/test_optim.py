"""Novograd and the warmup-hold-poly-decay schedule against hand computations."""

from __future__ import annotations

import io
import itertools
import math
import os
import subprocess
import sys

import pytest
import torch

from quartznet_tutorial import build_model
from quartznet_tutorial.training.optim import Novograd, WarmupHoldPolyDecay, warmup_hold_poly_decay


def _novograd_by_hand(w, grads, lr, beta1, beta2, eps, wd, grad_averaging=False):
    """The paper's update for one tensor, in plain Python floats (NeMo's first-step rule)."""
    w, m, v = list(w), [0.0] * len(w), 0.0
    for g in grads:
        norm2 = sum(x * x for x in g)
        v = norm2 if v == 0 else beta2 * v + (1 - beta2) * norm2
        d = [gi / (math.sqrt(v) + eps) + wd * wi for gi, wi in zip(g, w, strict=True)]
        if grad_averaging:
            d = [(1 - beta1) * di for di in d]
        m = [beta1 * mi + di for mi, di in zip(m, d, strict=True)]
        w = [wi - lr * mi for wi, mi in zip(w, m, strict=True)]
    return w


GRADS = [[0.5, -1.0, 2.0], [0.1, 0.3, -0.2], [-1.5, 0.0, 0.7]]


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("grad_averaging", [False, True])
def test_novograd_matches_hand_computation(grad_averaging, foreach):
    w0 = [1.0, -2.0, 0.25]
    param = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = Novograd(
        [param],
        lr=0.05,
        betas=(0.95, 0.5),
        weight_decay=0.001,
        grad_averaging=grad_averaging,
        foreach=foreach,
    )
    for g in GRADS:
        param.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    expected = _novograd_by_hand(w0, GRADS, 0.05, 0.95, 0.5, 1e-8, 0.001, grad_averaging)
    torch.testing.assert_close(param.detach(), torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("foreach", [True, False])
def test_novograd_second_moment_is_per_tensor(foreach):
    """Two tensors get their own scalar ``v``: scaling one gradient leaves the other's step."""
    a = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = Novograd([a, b], weight_decay=0.0, foreach=foreach)
    a.grad = torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)  # norm 5
    b.grad = torch.tensor([1000.0, 0.0], dtype=torch.float64)
    opt.step()
    assert opt.state[a]["exp_avg_sq"].shape == ()
    torch.testing.assert_close(a.detach(), -0.05 * a.grad / (5 + 1e-8))
    torch.testing.assert_close(b.detach(), -0.05 * b.grad / (1000 + 1e-8))


@pytest.mark.parametrize("foreach", [True, False])
def test_novograd_starts_average_at_first_nonzero_norm(foreach):
    """NeMo's ``if exp_avg_sq == 0: exp_avg_sq = norm``: a zero first gradient changes nothing."""
    w0 = [1.0, 2.0]
    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = Novograd([p], weight_decay=0.0, foreach=foreach)
    p.grad = torch.zeros(2, dtype=torch.float64)
    opt.step()
    p.grad = torch.tensor([0.3, -0.4], dtype=torch.float64)
    opt.step()
    assert opt.state[p]["exp_avg_sq"].item() == pytest.approx(0.25)
    expected = _novograd_by_hand(w0, [[0.3, -0.4]], 0.05, 0.95, 0.5, 1e-8, 0.0)
    torch.testing.assert_close(p.detach(), torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("foreach", [True, False])
def test_novograd_leaves_grad_and_skips_params_without_grad(foreach):
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = Novograd([p, q], foreach=foreach)
    p.grad = torch.tensor([1.0, 2.0])
    opt.step()
    torch.testing.assert_close(p.grad, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(q.detach(), torch.ones(2))
    assert q not in opt.state


@pytest.mark.parametrize("foreach", [True, False])
def test_novograd_amsgrad_uses_running_max(foreach):
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = Novograd([p], weight_decay=0.0, amsgrad=True, foreach=foreach)
    for g in (4.0, 1.0):
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
    assert opt.state[p]["max_exp_avg_sq"].item() == 16.0
    assert opt.state[p]["exp_avg_sq"].item() == 0.5 * 16 + 0.5 * 1


@pytest.mark.parametrize(
    "options",
    [{}, {"amsgrad": True}, {"grad_averaging": True}, {"weight_decay": 0.0}],
    ids=["recipe", "amsgrad", "grad_averaging", "no_decay"],
)
def test_novograd_foreach_equals_the_per_tensor_loop_on_a_quartznet(options):
    """The multi-tensor update is the per-tensor one: same weights and state after 4 steps of a
    real model, with a layer frozen at step 2 (no grad) and a first step with a zero gradient."""
    torch.manual_seed(0)
    models = [build_model("se-quartznet-3x1") for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [
        Novograd(m.parameters(), foreach=f, **options)
        for m, f in zip(models, (True, False), strict=True)
    ]
    features = torch.randn(3, 64, 40)
    for step in range(4):
        for model, opt in zip(models, opts, strict=True):
            opt.zero_grad(set_to_none=True)
            model(features).logsumexp(-1).sum().backward()
            first = next(model.parameters())
            if step == 0:
                first.grad.zero_()
            if step == 2:
                first.grad = None
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    for a, b in zip(opts[0].state.values(), opts[1].state.values(), strict=True):
        assert a["step"] == b["step"]
        for key in set(a) - {"step"}:
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-8)


def test_novograd_foreach_handles_mixed_dtypes_in_one_group():
    half = torch.nn.Parameter(torch.ones(3, dtype=torch.float32))
    double = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = Novograd([half, double], weight_decay=0.0)
    half.grad, double.grad = torch.full((3,), 2.0), torch.full((2,), 3.0, dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(half.detach(), 1 - 0.05 * half.grad / (12**0.5 + 1e-8))
    torch.testing.assert_close(double.detach(), 1 - 0.05 * double.grad / (18**0.5 + 1e-8))


def test_novograd_loads_state_saved_before_foreach_existed():
    model = torch.nn.Linear(4, 3)
    opt = Novograd(model.parameters())
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    old = opt.state_dict()
    del old["param_groups"][0]["foreach"]
    restored = Novograd(model.parameters())
    restored.load_state_dict(old)
    restored.step()  # no KeyError
    assert restored.param_groups[0]["foreach"] is True


def test_novograd_state_round_trips_through_weights_only_load():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = Novograd(model.parameters())
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    restored = Novograd(model.parameters())
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert restored.state_dict()["state"][0]["step"] == 1
    torch.testing.assert_close(
        restored.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )


@pytest.mark.parametrize(
    "kwargs", [dict(lr=-1.0), dict(betas=(1.0, 0.5)), dict(eps=-1e-8), dict(weight_decay=-0.1)]
)
def test_novograd_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError, match="Novograd"):
        Novograd([torch.nn.Parameter(torch.zeros(1))], **kwargs)


# max_steps=100: warmup int(0.05*100)=5 steps, hold int(0.45*100)=45 steps (to step 50),
# then (0.05 - 0.001) * (1 - (s - 50) / 50) ** 2 + 0.001.
HAND_LRS = {
    0: 0.05 * 1 / 6,
    3: 0.05 * 4 / 6,
    5: 0.05,
    49: 0.05,
    50: 0.05,
    60: 0.049 * 0.8**2 + 0.001,
    75: 0.049 * 0.5**2 + 0.001,
    99: 0.049 * 0.02**2 + 0.001,
    100: 0.001,
    130: 0.001,
}


def test_schedule_matches_hand_computed_rates():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = Novograd([p], lr=0.05)
    sched = WarmupHoldPolyDecay(opt, max_steps=100, warmup_ratio=0.05, hold_ratio=0.45)
    seen = {}
    for step in range(131):
        seen[step] = opt.param_groups[0]["lr"]  # the rate the update at `step` uses
        p.grad = torch.ones(1)
        opt.step()
        sched.step()
    for step, lr in HAND_LRS.items():
        assert seen[step] == pytest.approx(lr, rel=1e-12), step


def test_schedule_function_equals_scheduler_and_decays_monotonically():
    lrs = [
        warmup_hold_poly_decay(
            s, base_lr=0.05, max_steps=1000, warmup_steps=50, hold_steps=450, min_lr=0.001
        )
        for s in range(1001)
    ]
    assert max(lrs) == 0.05 and lrs[-1] == 0.001
    decay = lrs[500:]
    assert all(a >= b for a, b in itertools.pairwise(decay))


def test_schedule_state_dict_resumes_exactly():
    def make():
        p = torch.nn.Parameter(torch.zeros(1))
        opt = Novograd([p], lr=0.05)
        return opt, WarmupHoldPolyDecay(opt, max_steps=40)

    opt, sched = make()
    for _ in range(17):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2, sched2 = make()
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    for _ in range(10):
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        opt.step(), sched.step(), opt2.step(), sched2.step()


def test_schedule_rejects_bad_ratios():
    opt = Novograd([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="warmup_ratio"):
        WarmupHoldPolyDecay(opt, max_steps=10, warmup_ratio=0.6, hold_ratio=0.6)
    with pytest.raises(ValueError, match="max_steps"):
        WarmupHoldPolyDecay(opt, max_steps=0)


def test_training_does_not_load_torch_dynamo(speech_commands, tmp_path):
    """torch's optimizer methods import torch._dynamo (4-5 s on a 2-core CPU) on first call;
    a whole training run, checkpoint round trip included, does without it."""
    script = f"""
import sys
from quartznet_tutorial.checkpoints.checkpoint import load_checkpoint
from quartznet_tutorial.training.config import TrainConfig
from quartznet_tutorial.training.loop import train
result = train(TrainConfig(data_root={str(speech_commands)!r}, epochs=2, batch_size=4,
                           out_dir={str(tmp_path / "run")!r}, device="cpu", progress=False))
load_checkpoint(result.last_checkpoint)
assert "torch._dynamo" not in sys.modules, "training loaded torch._dynamo"
train(TrainConfig(data_root={str(speech_commands)!r}, epochs=2, batch_size=4, resume=True,
                  out_dir={str(tmp_path / "run")!r}, device="cpu", progress=False))
assert "torch._dynamo" not in sys.modules, "resuming loaded torch._dynamo"
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_optimizer_methods_keep_torchs_dynamo_guard_once_it_is_loaded():
    import torch._dynamo  # loaded: the wrapped methods are called

    model = torch.nn.Linear(3, 2)
    opt = Novograd(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = opt.state_dict()
    opt.zero_grad()
    assert model.weight.grad is None
    twin = Novograd(torch.nn.Linear(3, 2).parameters())
    twin.load_state_dict(state)
    assert torch.equal(twin.state_dict()["state"][0]["exp_avg"], state["state"][0]["exp_avg"])
