"""The ATen ops one training step dispatches, stage by stage, counted on the CPU.

A model as small as ``quartznet-3x1`` should be bound on a GPU by how many ops a step issues,
not by their arithmetic (``gpu_evidence.py``'s batch sweep tests this): in eager mode every op
is a trip through Python and the dispatcher and at least one kernel launch, and at the goal
(57,000 clips/s at batch 256) a whole step has 4.5 ms. So the GPU path is designed to issue few
ops, and this script counts them: pipeline (one ``"device"`` batch: gather, augmentation, MFCC,
crop, SpecAugment), forward and loss, backward, optimizer, for our Novograd (multi-tensor, or
one tensor at a time as NeMo writes it) and for NeMo's own. Counting needs no GPU: a GPU step
dispatches the same ops (a few reach other kernels, cuDNN's convolution and BatchNorm). The
CPU's count is the number of trips through the dispatcher; how many kernels they launch on a
GPU is another count (:func:`count_kernels`, run by ``gpu_evidence.py``): a multi-tensor
(``_foreach_``) op is one kernel when its tensor lists match in shape, and one per tensor when
they do not.

Views (``view``, ``t``, ``unbind``...) and bare allocations (``empty``) are not counted: they
launch nothing. ``aten::_local_scalar_dense`` (``.item()``, ``bool(tensor)``) is also
counted on its own: on a GPU it is a host sync, the CPU waiting for every queued kernel before it
can issue the next op (float16's ``GradScaler`` reads its inf check so, once per step).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from common import PRECISIONS
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from quartznet_tutorial import build_model
from quartznet_tutorial.audio.augment import AugmentConfig
from quartznet_tutorial.datasets.pipeline import make_pipeline
from quartznet_tutorial.training.optim import Novograd

STAGES = ("pipeline", "forward", "backward", "optimizer")
SYNC = "aten::_local_scalar_dense"
# Ours with foreach=True and foreach=False; "nemo": NeMo's own Novograd (where importable).
OPTIMIZERS = ("foreach", "per-tensor", "nemo")


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name()
        if not func.is_view and name.startswith("aten::") and not name.startswith("aten::empty"):
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def count_ops() -> Iterator[collections.Counter[str]]:
    """``with count_ops() as ops: ...`` counts the launching ATen ops run inside, by name."""
    counter = _Counter()
    with counter:
        yield counter.ops


@contextmanager
def count_kernels() -> Iterator[collections.Counter[str]]:
    """``with count_kernels() as kernels: ...`` counts the CUDA kernels (and copies) the code
    inside launches, by name (``torch.profiler``; the counter is filled on leaving)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    kernels: collections.Counter[str] = collections.Counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        yield kernels
        torch.cuda.synchronize()
    for event in prof.events():
        if event.device_type == DeviceType.CUDA:
            kernels[event.name] += 1


def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    """Novograd with the recipe's settings: ours (``foreach``, ``per-tensor``) or NeMo's."""
    recipe = dict(lr=0.05, betas=(0.95, 0.5), weight_decay=0.001)
    if name == "nemo":
        from common import import_nemo

        modules, reason = import_nemo()
        if modules is None:
            raise RuntimeError(reason)
        return modules[2](params, **recipe)
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r}: choose one of {OPTIMIZERS}")
    return Novograd(params, foreach=name == "foreach", **recipe)


def step_ops(
    dataset,
    *,
    variant: str,
    precision: str,
    optimizer: str,
    batch: int = 4,
    device: str | torch.device = "cpu",
    counter=count_ops,
) -> dict[str, collections.Counter[str]]:
    """The ops of each stage of one training step: the third of an epoch (the first two set up
    the optimizer state; the epoch's shuffle, once per epoch, is not counted). ``dataset``
    needs at least ``3 * batch`` clips. As ``training/loop.py`` steps: autocast, ``GradScaler`` for
    float16 only (its ``step`` and ``update`` count as the optimizer's). ``counter``:
    :func:`count_ops`, or :func:`count_kernels` on a CUDA ``device``."""
    dtype = PRECISIONS[precision]
    device = torch.device(device)
    pipeline = make_pipeline(
        dataset, batch_size=batch, train=True, device=device, kind="device", augment=AugmentConfig()
    )
    torch.manual_seed(0)
    model = build_model(variant, num_classes=len(dataset.labels)).to(device).train()
    novograd = make_optimizer(optimizer, model.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if len(pipeline) < 3:
        raise ValueError(f"{len(dataset)} clips make fewer than 3 batches of {batch}")
    batches = pipeline.batches(0)
    stages: dict[str, collections.Counter[str]] = {}
    for _ in range(3):
        with counter() as stages["pipeline"]:
            features, target = next(batches)
        autocast = torch.autocast(
            device.type, dtype=dtype or torch.float32, enabled=dtype is not None
        )
        with counter() as stages["forward"], autocast:
            loss = F.cross_entropy(model(features), target)
        novograd.zero_grad(set_to_none=True)
        with counter() as stages["backward"]:
            scaler.scale(loss).backward()
        with counter() as stages["optimizer"]:
            scaler.step(novograd)
            scaler.update()
    return stages


def forward_mflop(variant: str, frames: int = 128) -> float:
    """MFLOP of one clip's forward pass (convolutions and matrix products, 2 per multiply-add)."""
    model = build_model(variant).eval()
    with FlopCounterMode(display=False) as flops, torch.no_grad():
        model(torch.zeros(1, 64, frames))
    return flops.get_total_flops() / 1e6


def bench_dispatch(
    dataset, *, variants: Sequence[str], precisions: Sequence[str], optimizers: Sequence[str]
) -> list[dict]:
    """One row per (variant, precision, optimizer, stage), plus its ``total``.

    ``value`` counts the ops, ``syncs`` the host syncs among them. The ``forward`` rows also
    carry ``mflop_per_clip``, :func:`forward_mflop` of the variant.
    """
    rows = []
    for variant in variants:
        mflop = round(forward_mflop(variant), 2)
        for precision in precisions:
            for optimizer in optimizers:
                stages = step_ops(
                    dataset, variant=variant, precision=precision, optimizer=optimizer
                )
                common = dict(
                    benchmark="dispatch",
                    device="cpu",
                    unit="ops",
                    variant=variant,
                    precision=precision,
                    optimizer=optimizer,
                    pipeline="device",
                )
                for stage in STAGES:
                    ops = stages[stage]
                    rows.append(
                        dict(
                            common,
                            stage=stage,
                            value=sum(ops.values()),
                            syncs=ops[SYNC],
                            top=dict(ops.most_common(4)),
                            **({"mflop_per_clip": mflop} if stage == "forward" else {}),
                        )
                    )
                total = sum(sum(ops.values()) for ops in stages.values())
                syncs = sum(ops[SYNC] for ops in stages.values())
                rows.append(dict(common, stage="total", value=total, syncs=syncs))
    return rows
