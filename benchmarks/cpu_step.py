"""Where a CPU training step of ``quartznet-3x1`` goes, and two ways to shorten it.

A measurement behind the proposals in ``docs/performance.md``, not part of the package:

* ``banded``: each depthwise convolution as one batched matrix product with a banded
  (Toeplitz) ``(T, T)`` matrix per channel. oneDNN's depthwise kernels run at ~1 GMAC/s on
  this model's shapes (the dilated ``k=29`` epilog worst); the matrix product does 5-10x the
  multiply-adds but at BLAS speed, and handles any kernel size and dilation alike. Checked
  against ``F.conv1d`` (outputs and gradients) before timing.
* ``compile``: ``torch.compile`` of the model (inductor fuses BatchNorm, ReLU and the residual
  add into the neighbouring kernels; convolutions stay oneDNN calls).
* ``cbt``: :class:`~quartznet_tutorial.models.cpu_fast.CBTQuartzNet`, the ``(C, B, T)`` layout that
  :func:`~quartznet_tutorial.training.loop.train` runs on the CPU (``cpu_layout="auto"``);
  ``cbt-band``: the same with its depthwise convolutions on the full ``(T, T)`` band (or the
  grouped convolution) instead of block-Toeplitz products, the A/B of that choice.

Every candidate trains the same model from the same weights on the same batch; steps are
timed alternately (A, B, C, A, B, C, ...) so a change in machine load hits all alike, and the
median is reported. ``python benchmarks/cpu_step.py --threads 1 --json out.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import hardware, make_train_step, now, versions

from quartznet_tutorial import build_model
from quartznet_tutorial.models import cpu_fast
from quartznet_tutorial.models.cpu_fast import CBTQuartzNet
from quartznet_tutorial.models.quartznet import MaskedConv1d


def _band(conv: torch.nn.Conv1d, t: int) -> torch.Tensor:
    """The ``(C, T, T)`` banded matrices of a depthwise, bias-free, 'same'-padded ``conv``.

    ``M[c, s, t] = w[c, j]`` where ``s = t + j * dilation - padding``, zero elsewhere: the
    zero padding is part of ``M``.
    """
    (k,), (d,), (p,) = conv.kernel_size, conv.dilation, conv.padding
    device = conv.weight.device
    offset = torch.arange(t, device=device)[:, None] - torch.arange(t, device=device) + p
    tap = torch.div(offset, d, rounding_mode="floor")
    inside = (offset % d == 0) & (tap >= 0) & (tap < k)  # (T, T)
    return conv.weight[:, 0, :][:, tap.clamp(0, k - 1)] * inside  # (C, T, T)


def banded_depthwise(x: torch.Tensor, conv: torch.nn.Conv1d) -> torch.Tensor:
    """``conv(x)`` for a depthwise ``conv``, ``x`` (B, C, T), as one batched matmul."""
    band = _band(conv, x.shape[-1])
    return torch.matmul(x.transpose(0, 1), band).transpose(0, 1)  # (C, B, T) -> (B, C, T)


def use_banded(model: torch.nn.Module, min_span: int = 1) -> int:
    """Route the depthwise ``MaskedConv1d`` of ``model`` through :func:`banded_depthwise`.

    Only those whose receptive field ``dilation * (k - 1) + 1`` is at least ``min_span``.
    """
    count = 0
    for module in model.modules():
        conv = getattr(module, "conv", None)
        if not isinstance(module, MaskedConv1d) or not conv.groups == conv.in_channels > 1:
            continue
        if conv.dilation[0] * (conv.kernel_size[0] - 1) + 1 >= min_span:

            def forward(x, mask=None, conv=conv):
                return banded_depthwise(x if mask is None else x * mask, conv)

            module.forward = forward
            count += 1
    return count


def check_banded(threads: int) -> float:
    """Max abs difference (output and input/weight gradients) vs ``F.conv1d``, all 3x1 shapes."""
    worst = 0.0
    generator = torch.Generator().manual_seed(0)
    for channels, k, d in ((64, 11, 1), (128, 13, 1), (64, 15, 1), (64, 17, 1), (64, 29, 2)):
        conv = torch.nn.Conv1d(
            channels, channels, k, padding=d * (k - 1) // 2, dilation=d, groups=channels, bias=False
        )
        x = torch.randn(4, channels, 128, generator=generator, requires_grad=True)
        grad = torch.randn(4, channels, 128, generator=generator)
        results = []
        for fn in (conv, lambda x, conv=conv: banded_depthwise(x, conv)):
            x.grad, conv.weight.grad = None, None
            y = fn(x)
            y.backward(grad)
            results.append((y.detach(), x.grad.clone(), conv.weight.grad.clone()))
        for a, b in zip(*results, strict=True):
            worst = max(worst, float((a - b).abs().max() / b.abs().max()))
    return worst


def check_cbt() -> float:
    """Max relative difference of logits and gradients, :class:`CBTQuartzNet` vs the model."""
    torch.manual_seed(0)
    model = build_model("quartznet-3x1").train()
    features = torch.randn(8, 64, 128, generator=torch.Generator().manual_seed(1))
    results = []
    for fn in (model, CBTQuartzNet(model)):
        model.zero_grad()
        logits = fn(features)
        logits.square().sum().backward()
        results.append([logits.detach()] + [p.grad.clone() for p in model.parameters()])
    return max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(*results, strict=True))


def profile_eager(step, features, target, steps: int = 3) -> dict:
    """Milliseconds per step in depthwise and pointwise convolutions (forward + backward).

    From ``torch.profiler`` (self CPU time of oneDNN convolution and convolution-backward
    calls, told apart by their weight shape ``(C, 1, k)`` vs ``(C_out, C_in, 1)``).
    """
    from torch.profiler import profile

    with profile(record_shapes=True) as prof:
        for _ in range(steps):
            step(features, target)
    totals = {"depthwise_ms": 0.0, "pointwise_ms": 0.0, "step_ms": 0.0}
    for event in prof.key_averages(group_by_input_shape=True):
        totals["step_ms"] += event.self_cpu_time_total
        if event.key not in ("aten::mkldnn_convolution", "aten::convolution_backward"):
            continue
        weight = event.input_shapes[2 if event.key == "aten::convolution_backward" else 1]
        if len(weight) >= 3 and weight[1] == 1 and weight[-1] > 1:
            totals["depthwise_ms"] += event.self_cpu_time_total
        elif weight and weight[-1] == 1:
            totals["pointwise_ms"] += event.self_cpu_time_total
    return {k: round(v / steps / 1e3, 1) for k, v in totals.items()}


def _without_blocks(step: Callable) -> Callable:
    """``step`` with :class:`~quartznet_tutorial.models.cpu_fast.CBTQuartzNet` kept off its
    block-Toeplitz depthwise products while it runs."""

    def run(*args):
        before = cpu_fast._TOEPLITZ_MIN_RATIO
        cpu_fast._TOEPLITZ_MIN_RATIO = float("inf")
        try:
            return step(*args)
        finally:
            cpu_fast._TOEPLITZ_MIN_RATIO = before

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--candidates",
        nargs="+",
        default=[
            "eager",
            "banded",
            "banded15",
            "compile",
            "banded15+compile",
            "cbt-band",
            "cbt",
            "cbt+compile",
        ],
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    error = check_banded(args.threads)
    print(f"banded vs F.conv1d: max relative difference {error:.1e}")
    cbt_error = check_cbt()
    print(f"(C, B, T) layout vs the model: max relative difference {cbt_error:.1e}")
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(args.batch, 64, 128, generator=generator)
    target = torch.randint(0, 30, (args.batch,), generator=generator)
    steps: dict[str, Callable] = {}
    for name in args.candidates:
        torch.manual_seed(0)
        model = build_model("quartznet-3x1").train()
        if name.startswith("cbt"):
            model = CBTQuartzNet(model)
        elif name.startswith("banded15"):
            use_banded(model, min_span=15)
        elif name.startswith("banded"):
            use_banded(model)
        runner = torch.compile(model) if "compile" in name else model
        steps[name] = make_train_step(runner, "32", device)
        if name == "cbt-band":
            steps[name] = _without_blocks(steps[name])
        begin = time.perf_counter()
        for _ in range(2):  # warm-up; compiles
            steps[name](features, target)
        print(f"{name}: warm-up {time.perf_counter() - begin:.1f} s", flush=True)
    breakdown = profile_eager(steps[args.candidates[0]], features, target)
    print(f"{args.candidates[0]} under the profiler: {breakdown}")
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            begin = time.perf_counter()
            step(features, target)
            times[name].append(time.perf_counter() - begin)
    base = statistics.median(times[args.candidates[0]])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "candidate": name,
                "median_ms": round(median * 1e3, 1),
                "min_ms": round(min(values) * 1e3, 1),
                "speedup": round(base / median, 2),
            }
        )
        print(
            f"{name:<16} median {median * 1e3:7.1f} ms  min {min(values) * 1e3:7.1f} ms  "
            f"x{base / median:.2f}"
        )
    if args.json:
        doc = {
            "schema": 1,
            "kind": "cpu-step",
            "date": now(),
            "hardware": hardware(device),
            "versions": versions(),
            "threads": args.threads,
            "batch": args.batch,
            "repeats": args.repeats,
            "banded_max_relative_difference": error,
            "cbt_max_relative_difference": cbt_error,
            "profile": {"candidate": args.candidates[0], **breakdown},
            "rows": rows,
        }
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
