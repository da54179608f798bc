"""NovoGrad :cite:`ginsburg2019stochastic` and NeMo's warmup-hold-polynomial-decay schedule.

:class:`Novograd` is NeMo's ``nemo/core/optim/novograd.py`` update: a per-tensor (layer-wise)
second moment of the *gradient norm* instead of Adam's per-element one. :class:`WarmupHoldPolyDecay`
is NeMo's ``PolynomialHoldDecayAnnealing`` (a ``WarmupHoldPolicy``): linear warmup, a hold at
the peak rate, then ``(lr - min_lr) * (1 - t / T) ** power + min_lr``.

The speech-commands recipe: ``lr=0.05, betas=(0.95, 0.5), weight_decay=0.001``, warmup 5% and
hold 45% of the steps, then power-2 decay to ``min_lr=0.001``.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["Novograd", "WarmupHoldPolyDecay", "warmup_hold_poly_decay"]


def _without_dynamo_until_loaded(name: str) -> Callable:
    """``Optimizer.<name>`` without the ``torch._disable_dynamo`` wrapper until
    ``torch._dynamo`` is loaded.

    torch wraps ``add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` so
    that a compiled region does not trace them; the wrapper's first call imports
    ``torch._dynamo`` (and sympy), 4-5 s on a 2-core AMD EPYC, every time a training
    process starts. While ``torch._dynamo`` is not loaded nothing can be compiling, so the
    wrapper has nothing to do and the method is called as written; once it is loaded, the
    wrapper is called as torch means it to be.
    """
    wrapped = getattr(Optimizer, name)
    plain = getattr(wrapped, "__wrapped__", wrapped)

    @functools.wraps(plain)
    def method(self, *args, **kwargs):
        if "torch._dynamo" in sys.modules:
            return wrapped(self, *args, **kwargs)
        return plain(self, *args, **kwargs)

    return method


class Novograd(Optimizer):
    """NovoGrad, step for step as NeMo's ``Novograd`` (``luc=False``).

    For every parameter tensor ``w`` with gradient ``g`` at step ``t``::

        v_t = ||g||^2                                  if v_{t-1} == 0 (first step)
        v_t = beta2 * v_{t-1} + (1 - beta2) * ||g||^2  otherwise
        d_t = g / (sqrt(v_t) + eps) + weight_decay * w
        m_t = beta1 * m_{t-1} + (1 - beta1 if grad_averaging else 1) * d_t
        w  <- w - lr * m_t

    Unlike NeMo, ``p.grad`` is left untouched and the first-step test is a ``torch.where``,
    so a step never waits for the GPU (NeMo's ``if exp_avg_sq == 0`` syncs once per tensor).

    Args:
        params (iterable): parameters or parameter-group dicts.
        lr (float, optional): learning rate. (Default: ``0.05``, the recipe)
        betas (tuple of float, optional): ``(beta1, beta2)``, the momentum and the decay of
            the squared-norm average. (Default: ``(0.95, 0.5)``, the recipe)
        eps (float, optional): added to ``sqrt(v)``. (Default: ``1e-8``)
        weight_decay (float, optional): added to the *normalised* gradient. (Default: ``0.001``)
        grad_averaging (bool, optional): scale ``d_t`` by ``1 - beta1``. (Default: ``False``)
        amsgrad (bool, optional): normalise by the running maximum of ``v``. (Default: ``False``)
        foreach (bool, optional): update all tensors of a device and dtype with multi-tensor
            (``torch._foreach_*``) ops: with the recipe's settings, 16 ops per step for any
            number of tensors; ``False`` loops over the tensors as NeMo does, 14 ops each
            (``tests/test_bench.py`` counts both). Same result up to rounding.
            (Default: ``True``)
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.05,
        betas: tuple[float, float] = (0.95, 0.5),
        eps: float = 1e-8,
        weight_decay: float = 0.001,
        grad_averaging: bool = False,
        amsgrad: bool = False,
        foreach: bool = True,
    ) -> None:
        if lr < 0:
            raise ValueError(f"Novograd: lr must be >= 0, got {lr}")
        if eps < 0:
            raise ValueError(f"Novograd: eps must be >= 0, got {eps}")
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"Novograd: betas must be two numbers in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"Novograd: weight_decay must be >= 0, got {weight_decay}")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            grad_averaging=grad_averaging,
            amsgrad=amsgrad,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    add_param_group = _without_dynamo_until_loaded("add_param_group")
    zero_grad = _without_dynamo_until_loaded("zero_grad")
    state_dict = _without_dynamo_until_loaded("state_dict")
    load_state_dict = _without_dynamo_until_loaded("load_state_dict")

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", True)  # state saved before the option existed

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("Novograd does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    # One scalar per tensor: the layer-wise second moment of NovoGrad.
                    state["exp_avg_sq"] = torch.zeros([], device=p.device)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros([], device=p.device)
                state["step"] += 1
            if group["foreach"]:
                # One multi-tensor op per line for all tensors of a device and dtype: on a GPU,
                # a few kernel launches per step instead of 14 per tensor.
                for same in _by_device_and_dtype(params).values():
                    self._update_foreach(same, group)
            else:
                for p in params:
                    self._update_one(p, group)
        return loss

    def _update_one(self, p: torch.Tensor, group: dict) -> None:
        """The update of one tensor, as NeMo writes it (the reference for the foreach path)."""
        beta1, beta2 = group["betas"]
        state, grad = self.state[p], p.grad
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        norm = grad.norm().pow(2)
        averaged = exp_avg_sq.mul(beta2).add_(norm, alpha=1.0 - beta2)
        # NeMo starts the average at the first non-zero squared norm.
        exp_avg_sq.copy_(torch.where(exp_avg_sq == 0, norm, averaged))
        if group["amsgrad"]:
            max_exp_avg_sq = state["max_exp_avg_sq"]
            torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
            denom = max_exp_avg_sq.sqrt().add_(group["eps"])
        else:
            denom = exp_avg_sq.sqrt().add_(group["eps"])
        update = grad.div(denom)
        if group["weight_decay"] != 0:
            update.add_(p, alpha=group["weight_decay"])
        if group["grad_averaging"]:
            update.mul_(1.0 - beta1)
        exp_avg.mul_(beta1).add_(update)
        p.add_(exp_avg, alpha=-group["lr"])

    def _update_foreach(self, params: list[torch.Tensor], group: dict) -> None:
        """:meth:`_update_one` for many tensors at once; the scalars ``v`` travel stacked."""
        beta1, beta2 = group["betas"]
        states = [self.state[p] for p in params]
        grads = [p.grad for p in params]
        exp_avgs = [s["exp_avg"] for s in states]
        norm = torch.stack(torch._foreach_norm(grads)).pow_(2)  # (n,) squared gradient norms
        exp_avg_sq = torch.stack([s["exp_avg_sq"] for s in states])
        averaged = exp_avg_sq.mul(beta2).add_(norm, alpha=1.0 - beta2)
        exp_avg_sq = torch.where(exp_avg_sq == 0, norm, averaged)
        torch._foreach_copy_([s["exp_avg_sq"] for s in states], exp_avg_sq.unbind())
        if group["amsgrad"]:
            max_sq = torch.stack([s["max_exp_avg_sq"] for s in states])
            exp_avg_sq = torch.maximum(max_sq, exp_avg_sq)
            torch._foreach_copy_([s["max_exp_avg_sq"] for s in states], exp_avg_sq.unbind())
        denom = exp_avg_sq.sqrt_().add_(group["eps"])
        updates = torch._foreach_div(grads, denom.unbind())
        if group["weight_decay"] != 0:
            torch._foreach_add_(updates, params, alpha=group["weight_decay"])
        if group["grad_averaging"]:
            torch._foreach_mul_(updates, 1.0 - beta1)
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, updates)
        torch._foreach_add_(params, exp_avgs, alpha=-group["lr"])


def _by_device_and_dtype(tensors: list[torch.Tensor]) -> dict[tuple, list[torch.Tensor]]:
    groups: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return groups


def warmup_hold_poly_decay(
    step: int,
    *,
    base_lr: float,
    max_steps: int,
    warmup_steps: int,
    hold_steps: int,
    min_lr: float = 0.001,
    power: float = 2.0,
) -> float:
    """The learning rate NeMo's ``PolynomialHoldDecayAnnealing`` gives at optimizer step ``step``.

    ``step`` counts optimizer steps from 0 (the rate used by the first update). ``hold_steps``
    is the length of the hold phase alone; NeMo's formula (``cycle=False``)::

        step <= W:          base_lr * (step + 1) / (W + 1)             (W > 0)
        W <= step < W + H:  base_lr
        step > max_steps:   min_lr
        otherwise:          (base_lr - min_lr) * (1 - t / T) ** power + min_lr,
                            t = min(step - (W + H), T),  T = max_steps - (W + H)
    """
    hold_end = warmup_steps + hold_steps
    if warmup_steps > 0 and step <= warmup_steps:
        return base_lr * (step + 1) / (warmup_steps + 1)
    if warmup_steps <= step < hold_end:
        return base_lr
    if step > max_steps:
        return min_lr
    decay_steps = max_steps - max(warmup_steps, hold_end)
    if decay_steps <= 0:
        return min_lr
    t = min(step - hold_end, decay_steps)
    return (base_lr - min_lr) * math.pow(1.0 - t / decay_steps, power) + min_lr


class WarmupHoldPolyDecay(LRScheduler):
    """Linear warmup, hold, polynomial decay: NeMo's ``PolynomialHoldDecayAnnealing``.

    Call :meth:`step` once after every ``optimizer.step()``. Phase lengths are rounded down as
    NeMo does: ``warmup = int(warmup_ratio * max_steps)``, ``hold = int(hold_ratio * max_steps)``.
    The state (``state_dict``) is builtins only, so it survives ``torch.load(weights_only=True)``.

    Args:
        optimizer (Optimizer): the optimizer; its current ``lr`` is the peak rate.
        max_steps (int): total optimizer steps of the run.
        warmup_ratio (float, optional): fraction of steps warming up. (Default: ``0.05``)
        hold_ratio (float, optional): fraction of steps held at the peak. (Default: ``0.45``)
        min_lr (float, optional): the rate decayed to and kept after ``max_steps``.
            (Default: ``0.001``)
        power (float, optional): decay exponent. (Default: ``2.0``, the recipe)
        last_epoch (int, optional): index of the last step, ``-1`` to start. (Default: ``-1``)
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        max_steps: int,
        warmup_ratio: float = 0.05,
        hold_ratio: float = 0.45,
        min_lr: float = 0.001,
        power: float = 2.0,
        last_epoch: int = -1,
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if min(warmup_ratio, hold_ratio) < 0 or warmup_ratio + hold_ratio > 1:
            raise ValueError(
                f"warmup_ratio ({warmup_ratio}) and hold_ratio ({hold_ratio}) must be >= 0 "
                "and add up to at most 1"
            )
        self.max_steps = max_steps
        self.warmup_steps = int(warmup_ratio * max_steps)
        self.hold_steps = int(hold_ratio * max_steps)
        self.min_lr = min_lr
        self.power = power
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [
            warmup_hold_poly_decay(
                self.last_epoch,
                base_lr=base_lr,
                max_steps=self.max_steps,
                warmup_steps=self.warmup_steps,
                hold_steps=self.hold_steps,
                min_lr=self.min_lr,
                power=self.power,
            )
            for base_lr in self.base_lrs
        ]
