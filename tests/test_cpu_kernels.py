"""The compiled CPU kernels equal ATen's depthwise convolution and BatchNorm, and training
falls back to ATen wherever they cannot be built."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from quartznet_tutorial.ops import cpu_kernels


@pytest.fixture
def kernels():
    if cpu_kernels.library() is None:
        pytest.skip(f"CPU kernels: {cpu_kernels.status()}")


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """:func:`cpu_kernels.library` forgotten, with an empty cache: it builds (or not) anew."""
    monkeypatch.setenv("QUARTZNET_CACHE", str(tmp_path))
    cpu_kernels.library.cache_clear()
    yield tmp_path / "kernels"
    cpu_kernels.library.cache_clear()  # the next caller loads the real cache again


def _reference_depthwise(x, weight, padding, dilation):
    """``x`` (C, B, T) through ``F.conv1d`` with ``padding`` zeros on the left and the first
    ``T`` output frames kept."""
    c, t, k = x.shape[0], x.shape[2], weight.shape[1]
    right = max(0, (k - 1) * dilation - padding)
    y = F.conv1d(
        F.pad(x.transpose(0, 1), (padding, right)), weight[:, None], dilation=dilation, groups=c
    )
    return y[..., :t].transpose(0, 1)


@pytest.mark.parametrize(
    "k,dilation,padding,frames",
    [(13, 1, 6, 128), (29, 2, 28, 64), (5, 3, 6, 7), (11, 1, 5, 4), (3, 1, 0, 9), (4, 2, 6, 10)],
)
def test_depthwise_equals_conv1d_with_gradients(kernels, k, dilation, padding, frames):
    """'Same' padding, dilations, inputs shorter than the kernel, one-sided padding; float64
    outputs and both gradients to ~1e-15, then ``gradcheck``."""
    generator = torch.Generator().manual_seed(k * frames)
    x = torch.randn(3, 5, frames, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, k, generator=generator, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(3, 5, frames, generator=generator, dtype=torch.float64)
    results = []
    for fn in (_reference_depthwise, cpu_kernels.depthwise):
        x.grad = weight.grad = None
        y = fn(x, weight, padding, dilation)
        y.backward(grad)
        results.append((y.detach(), x.grad, weight.grad))
    for actual, expected in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    small = (x[:, :2].detach().requires_grad_(), weight.detach().requires_grad_())
    assert torch.autograd.gradcheck(
        lambda a, w: cpu_kernels.depthwise(a, w, padding, dilation), small
    )


def test_depthwise_float32_and_a_clear_error_past_the_longest_kernel(kernels):
    x, weight = torch.randn(4, 8, 128), torch.randn(4, 15)
    torch.testing.assert_close(
        cpu_kernels.depthwise(x, weight, 7, 1), _reference_depthwise(x, weight, 7, 1)
    )
    with pytest.raises(ValueError, match="up to 128 taps, got 129"):
        cpu_kernels.depthwise(x, torch.randn(4, 129), 64, 1)


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batch_norm_equals_the_module(kernels, relu, dtype):
    """Output, all three gradients, running statistics after two steps and
    ``num_batches_tracked``, against :class:`torch.nn.BatchNorm1d` (then a ReLU)."""
    generator = torch.Generator().manual_seed(3)
    modules = [torch.nn.BatchNorm1d(6, eps=1e-3, momentum=0.1).to(dtype) for _ in range(2)]
    for module in modules:
        module.weight.data = torch.linspace(0.5, 1.5, 6, dtype=dtype)
        module.bias.data = torch.linspace(-0.2, 0.3, 6, dtype=dtype)
    rtol = 1e-12 if dtype == torch.float64 else 2e-5
    for _ in range(2):  # two momentum updates
        x = (3 * torch.randn(6, 500, generator=generator, dtype=dtype) + 1).requires_grad_()
        grad = torch.randn(6, 500, generator=generator, dtype=dtype)
        results = []
        for module, fn in zip(
            modules,
            (
                lambda m, a: (F.relu if relu else torch.nn.Identity())(m(a[None])[0]),
                lambda m, a: cpu_kernels.batch_norm(m, a, relu),
            ),
            strict=True,
        ):
            x.grad = module.weight.grad = module.bias.grad = None
            y = fn(module, x)
            y.backward(grad)
            results.append((y.detach(), x.grad, module.weight.grad, module.bias.grad))
        for actual, expected in zip(results[1], results[0], strict=True):
            torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol)
    assert (results[1][0] == 0).any() == relu
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(modules[1], name), getattr(modules[0], name))
    assert int(modules[1].num_batches_tracked) == int(modules[0].num_batches_tracked) == 2


def test_batch_norm_gradcheck(kernels):
    bn = torch.nn.BatchNorm1d(3).double()
    bn.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(3, 40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, w, b: cpu_kernels._BatchNorm.apply(
            a, w, b, bn.running_mean.clone(), bn.running_var.clone(), 0.1, 1e-3, False
        ),
        (x, bn.weight, bn.bias),
    )


def test_results_do_not_depend_on_the_thread_count(kernels):
    """Each channel is one thread's, summed in one order: bit-identical for 1 and 2 threads."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, 128, generator=generator, requires_grad=True)
    weight = torch.randn(64, 13, generator=generator, requires_grad=True)
    bn = torch.nn.BatchNorm1d(64)
    before, results = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            x.grad = weight.grad = bn.weight.grad = None
            y = cpu_kernels.batch_norm(
                bn, cpu_kernels.depthwise(x, weight, 6, 1).view(64, -1), True
            )
            y.square().sum().backward()
            results.append([y, x.grad, weight.grad, bn.weight.grad])
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_switched_off_by_the_environment(fresh_build, monkeypatch):
    monkeypatch.setenv(cpu_kernels.ENV, "0")
    assert cpu_kernels.library() is None
    assert cpu_kernels.status() == f"off ({cpu_kernels.ENV}=0)"
    assert not cpu_kernels.usable(torch.ones(2))


def test_no_compiler_or_a_failed_build_falls_back(fresh_build, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert cpu_kernels.library() is None
    assert "no C compiler" in cpu_kernels.status()
    cpu_kernels.library.cache_clear()
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\necho 'cc: cannot build here' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    with pytest.warns(UserWarning, match="cannot build here"):
        assert cpu_kernels.library() is None
    assert "build failed" in cpu_kernels.status()
    assert not any(fresh_build.glob("*.so"))  # nothing half-written is left to load


def test_built_once_then_loaded_from_the_cache(fresh_build, monkeypatch):
    if cpu_kernels.library() is None:
        pytest.skip(f"CPU kernels: {cpu_kernels.status()}")
    (built,) = fresh_build.glob("cbt-*.so")
    cpu_kernels.library.cache_clear()

    def no_compiler(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(cpu_kernels.subprocess, "run", no_compiler)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_kernels.library() is not None
    assert built.name in cpu_kernels.status()


def test_randn_is_standard_normal_and_repeats_with_its_seed(kernels):
    """Kolmogorov-Smirnov distance to the normal CDF below the 0.1% critical value (about
    1.95 / sqrt(n)), and the tail beyond the ziggurat's base layer (3.654) as often as it
    should be; the same generator state gives the same samples at any thread count."""
    n = 1 << 21
    generator = torch.Generator().manual_seed(0)
    x = cpu_kernels.randn((n,), generator)
    assert x.dtype == torch.float32 and x.shape == (n,)
    x = x.double()
    assert abs(float(x.mean())) < 4 / n**0.5
    assert abs(float(x.std()) - 1) < 4 / n**0.5
    cdf = torch.special.ndtr(x.sort().values)
    steps = torch.arange(1, n + 1, dtype=torch.float64) / n
    distance = float(torch.maximum(steps - cdf, cdf - (steps - 1 / n)).max())
    assert distance < 1.95 / n**0.5
    tail = float((x.abs() > 3.6541528853610088).double().mean())
    expected = float(2 * torch.special.ndtr(torch.tensor(-3.6541528853610088)))
    assert abs(tail - expected) < 5 * (expected / n) ** 0.5
    before, draws = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            draws.append(cpu_kernels.randn((3, 10_001), torch.Generator().manual_seed(7)))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(
        draws[0], cpu_kernels.randn((3, 10_001), torch.Generator().manual_seed(8))
    )


def test_randn_is_float32_whatever_the_default_dtype(kernels, float64):
    draw = cpu_kernels.randn((2, 5000), torch.Generator().manual_seed(1))
    assert draw.dtype == torch.float32 and draw.abs().max() < 7 and draw.std() > 0.9
