"""Novograd and the warmup-hold-poly-decay schedule against hand computations."""

from __future__ import annotations

import io
import itertools
import math

import pytest
import torch

from quartznet_tutorial.optim import Novograd, WarmupHoldPolyDecay, warmup_hold_poly_decay


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


@pytest.mark.parametrize("grad_averaging", [False, True])
def test_novograd_matches_hand_computation(grad_averaging):
    w0 = [1.0, -2.0, 0.25]
    param = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = Novograd(
        [param], lr=0.05, betas=(0.95, 0.5), weight_decay=0.001, grad_averaging=grad_averaging
    )
    for g in GRADS:
        param.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    expected = _novograd_by_hand(w0, GRADS, 0.05, 0.95, 0.5, 1e-8, 0.001, grad_averaging)
    torch.testing.assert_close(param.detach(), torch.tensor(expected, dtype=torch.float64))


def test_novograd_second_moment_is_per_tensor():
    """Two tensors get their own scalar ``v``: scaling one gradient leaves the other's step."""
    a = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = Novograd([a, b], weight_decay=0.0)
    a.grad = torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)  # norm 5
    b.grad = torch.tensor([1000.0, 0.0], dtype=torch.float64)
    opt.step()
    assert opt.state[a]["exp_avg_sq"].shape == ()
    torch.testing.assert_close(a.detach(), -0.05 * a.grad / (5 + 1e-8))
    torch.testing.assert_close(b.detach(), -0.05 * b.grad / (1000 + 1e-8))


def test_novograd_starts_average_at_first_nonzero_norm():
    """NeMo's ``if exp_avg_sq == 0: exp_avg_sq = norm``: a zero first gradient changes nothing."""
    w0 = [1.0, 2.0]
    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = Novograd([p], weight_decay=0.0)
    p.grad = torch.zeros(2, dtype=torch.float64)
    opt.step()
    p.grad = torch.tensor([0.3, -0.4], dtype=torch.float64)
    opt.step()
    assert opt.state[p]["exp_avg_sq"].item() == pytest.approx(0.25)
    expected = _novograd_by_hand(w0, [[0.3, -0.4]], 0.05, 0.95, 0.5, 1e-8, 0.0)
    torch.testing.assert_close(p.detach(), torch.tensor(expected, dtype=torch.float64))


def test_novograd_leaves_grad_and_skips_params_without_grad():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = Novograd([p, q])
    p.grad = torch.tensor([1.0, 2.0])
    opt.step()
    torch.testing.assert_close(p.grad, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(q.detach(), torch.ones(2))
    assert q not in opt.state


def test_novograd_amsgrad_uses_running_max():
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = Novograd([p], weight_decay=0.0, amsgrad=True)
    for g in (4.0, 1.0):
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
    assert opt.state[p]["max_exp_avg_sq"].item() == 16.0
    assert opt.state[p]["exp_avg_sq"].item() == 0.5 * 16 + 0.5 * 1


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
