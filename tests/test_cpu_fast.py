"""The (C, B, T)-layout forward equals the model: logits, gradients, BatchNorm statistics."""

from __future__ import annotations

import pytest
import torch

from quartznet_tutorial import VARIANTS, build_model
from quartznet_tutorial.audio.features import crop_or_pad
from quartznet_tutorial.checkpoints.checkpoint import load_checkpoint
from quartznet_tutorial.models import cpu_fast as cpu_fast_module
from quartznet_tutorial.models.cpu_fast import CBTQuartzNet, resolve_layout, training_module
from quartznet_tutorial.models.quartznet import QuartzNet
from quartznet_tutorial.models.variants import BlockConfig, QuartzNetConfig
from quartznet_tutorial.ops import cpu_kernels
from quartznet_tutorial.training.config import TrainConfig
from quartznet_tutorial.training.loop import train


def _features(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 64, frames, generator=torch.Generator().manual_seed(seed))


def _step(fn, model: QuartzNet, features: torch.Tensor) -> list[torch.Tensor]:
    """Logits, then every parameter gradient, of a non-trivial loss."""
    model.zero_grad(set_to_none=True)
    logits = fn(features)
    (logits.square().sum() + logits[:, 0].sum()).backward()
    return [logits.detach()] + [p.grad.clone() for p in model.parameters()]


def _assert_close(actual, expected, rtol: float, what: str) -> None:
    """Each tensor within ``rtol`` of its own largest magnitude (sums run in another order)."""
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        scale = float(e.abs().max())
        error = float((a.float() - e.float()).abs().max())
        assert error <= rtol * max(scale, 1e-12), f"{what}: tensor {i}: {error:.2e} vs {scale:.2e}"


@pytest.fixture
def aten_only():
    """The ``(C, B, T)`` layout with ATen operations only, as without a C compiler."""
    with cpu_kernels.off():
        yield


@pytest.fixture(params=["kernels", "toeplitz", "banded", "grouped"])
def depthwise(request, monkeypatch) -> str:
    """Run a test with each way of computing the depthwise convolutions and BatchNorm: the
    compiled kernels (:mod:`~quartznet_tutorial.ops.cpu_kernels`), or ATen operations with
    block-Toeplitz products wherever they apply (any length, dilated ones in phases), the full
    band everywhere, or the grouped convolution (small batches)."""
    if request.param == "kernels":
        if cpu_kernels.library() is None:
            pytest.skip(f"CPU kernels: {cpu_kernels.status()}")
        return request.param
    request.getfixturevalue("aten_only")
    if request.param == "toeplitz":
        monkeypatch.setattr(cpu_fast_module, "_MIN_BANDED_BATCH", 1)
        monkeypatch.setattr(cpu_fast_module, "_TOEPLITZ_MIN_RATIO", 0)
    elif request.param == "banded":
        monkeypatch.setattr(cpu_fast_module, "_MIN_BANDED_BATCH", 1)
        monkeypatch.setattr(cpu_fast_module, "_TOEPLITZ_MIN_RATIO", float("inf"))
    else:
        monkeypatch.setattr(cpu_fast_module, "_TOEPLITZ_MIN_RATIO", float("inf"))
        monkeypatch.setattr(cpu_fast_module, "_MAX_BANDED_FRAMES", 0)
    return request.param


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("frames", [128, 37])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_logits_and_gradients_equal_the_model(name, frames, depthwise, float64):
    """In float64: two float32 computations that sum in another order can land a
    pre-activation on either side of a ReLU's kink, and then a gradient parts by 1-6% (seen:
    quartznet-5x1-480k, one ReLU input -1.9e-6 against +3.5e-8 in float64, with MKL's AVX2
    kernels on an Intel Xeon). The float32 forward is checked below."""
    torch.manual_seed(0)
    model = build_model(name).train()
    fast = CBTQuartzNet(model)
    features = _features(3, frames)
    expected = _step(model, model, features)
    actual = _step(fast, model, features)
    _assert_close(actual, expected, 1e-9, name)


@pytest.mark.parametrize("frames", [128, 37])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_float32_training_logits_equal_the_model(name, frames, depthwise):
    torch.manual_seed(0)
    model = build_model(name).train()
    features = _features(3, frames)
    with torch.no_grad():
        expected, actual = model(features), CBTQuartzNet(model)(features)
    _assert_close([actual], [expected], 1e-5, name)


@pytest.mark.parametrize("name", ["quartznet-3x2", "se-quartznet-3x1"])
def test_batchnorm_statistics_update_as_the_model(name, depthwise):
    torch.manual_seed(0)
    reference = build_model(name).train()
    model = build_model(name).train()
    model.load_state_dict(reference.state_dict())  # same weights, separate buffers
    fast = CBTQuartzNet(model)
    for seed in (1, 2):  # two momentum updates of the running statistics
        reference(_features(4, 128, seed)).sum().backward()
        fast(_features(4, 128, seed)).sum().backward()
    ref_buffers, buffers = dict(reference.named_buffers()), dict(model.named_buffers())
    assert ref_buffers.keys() == buffers.keys() and buffers
    for key, value in buffers.items():
        if key.endswith("num_batches_tracked"):
            assert torch.equal(value, ref_buffers[key]), key
        else:
            torch.testing.assert_close(value, ref_buffers[key], rtol=1e-5, atol=1e-6, msg=key)
    assert buffers["encoder.0.mconv.2.running_mean"].abs().max() > 1e-3  # they did move


@pytest.mark.parametrize("name", ["quartznet-3x1", "se-quartznet-5x1-510k"])
def test_eval_mode_equals_the_model(name, depthwise):
    torch.manual_seed(0)
    model = build_model(name, dropout=0.3)
    model.train()
    model(_features(8, 128, 5))  # running statistics away from their initial 0 / 1
    model.eval()
    fast = CBTQuartzNet(model)
    with torch.no_grad():
        expected, actual = model(_features(3, 53)), fast(_features(3, 53))
    _assert_close([actual], [expected], 1e-5, name)


@pytest.mark.parametrize("name", ["quartznet-3x1", "se-quartznet-3x1"])
def test_bf16_autocast_is_close(name, depthwise):
    torch.manual_seed(0)
    model = build_model(name).train()
    fast = CBTQuartzNet(model)
    features = _features(4, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = _step(model, model, features)
        actual = _step(fast, model, features)
    assert actual[0].dtype == expected[0].dtype == torch.bfloat16
    # bfloat16 keeps 8 bits: both sides round at different points of their sums.
    _assert_close(actual, expected, 0.05, name)


def test_depthwise_choice_by_shape(aten_only):
    torch.manual_seed(0)
    model = build_model("quartznet-3x1").train()
    fast = CBTQuartzNet(model)
    kernels = [(11, 1), (13, 1), (15, 1), (17, 1), (29, 2)]
    fast(_features(2, 8))  # small batch, short input: grouped convolution, no patterns
    assert not fast._bands
    fast(_features(64, 48))  # short input, large batch: the full band for every kernel
    assert {key[:3] for key in fast._bands} == {("band", k, d) for k, d in kernels}
    fast._bands.clear()
    for batch, frames in ((2, 128), (128, 128), (16, 600)):  # blocks of 16 frames
        fast(_features(batch, frames))
        assert {key[:3] for key in fast._bands} == {("block", k, 16) for k, _ in kernels}
        fast._bands.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # blocks run in float32 only
        fast(_features(16, 128))
    assert {key[:3] for key in fast._bands} == {("band", k, d) for k, d in kernels}


@pytest.mark.parametrize("frames", [128, 37, 16, 5])
@pytest.mark.parametrize("kernel,dilation", [(11, 1), (17, 1), (29, 2), (5, 3)])
def test_block_toeplitz_equals_conv1d(kernel, dilation, frames, monkeypatch, aten_only):
    """Outputs and both gradients against ``F.conv1d`` in float64 (sums in another order:
    ~1e-15 relative): lengths not a multiple of the block, shorter than a block or than the
    kernel, dilations (in phases, also with a length not a multiple of the dilation)."""
    monkeypatch.setattr(cpu_fast_module, "_TOEPLITZ_MIN_RATIO", 0)
    generator = torch.Generator().manual_seed(kernel * frames)
    padding = dilation * (kernel - 1) // 2
    conv = torch.nn.Conv1d(
        6, 6, kernel, padding=padding, dilation=dilation, groups=6, bias=False
    ).double()
    conv.weight.data.normal_(generator=generator)
    x = torch.randn(6, 20, frames, generator=generator, dtype=torch.float64, requires_grad=True)
    # Not contiguous, as autograd may hand it over.
    grad = torch.randn(frames, 20, 6, generator=generator, dtype=torch.float64).permute(2, 1, 0)
    fast = CBTQuartzNet(build_model("quartznet-3x1"))
    results = []
    for fn in (
        lambda: conv(x.transpose(0, 1)).transpose(0, 1),
        lambda: fast._depthwise(conv, x),
    ):
        x.grad = conv.weight.grad = None
        y = fn()
        y.backward(grad)
        results.append([y.detach(), x.grad, conv.weight.grad])
    assert [key[:3] for key in fast._bands] == [("block", kernel, 16)]
    _assert_close(results[1], results[0], 1e-12, f"k={kernel} d={dilation} T={frames}")


def test_shares_the_models_tensors_and_names():
    model = build_model("se-quartznet-3x1")
    keys = list(model.state_dict())
    fast = CBTQuartzNet(model)
    assert list(model.state_dict()) == keys
    assert all(p is q for p, q in zip(fast.parameters(), model.parameters(), strict=True))
    assert list(fast.state_dict()) == [f"model.{k}" for k in keys]
    fast.eval()
    assert not model.training


def test_lengths_go_to_the_model():
    torch.manual_seed(0)
    model = build_model("quartznet-3x1").eval()
    features, lengths = _features(2, 40), torch.tensor([40, 25])
    with torch.no_grad():
        assert torch.equal(CBTQuartzNet(model)(features, lengths), model(features, lengths))


def test_unsupported_layers_and_inputs_are_clear_errors():
    plain_k3 = QuartzNetConfig(
        name="custom", blocks=(BlockConfig(filters=32, kernel=3, separable=False),)
    )
    with pytest.raises(ValueError, match="cpu_layout='eager'"):
        CBTQuartzNet(QuartzNet(plain_k3, num_classes=4))
    with pytest.raises(ValueError, match="wraps a QuartzNet"):
        CBTQuartzNet(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match=r"\(batch, 64, time\)"):
        CBTQuartzNet(build_model("quartznet-3x1"))(torch.randn(2, 40, 16))


def test_layout_choice():
    assert resolve_layout("auto", "cpu") == "cbt"
    assert resolve_layout("auto", "cuda") == "eager"
    assert resolve_layout("eager", "cpu") == "eager"
    model = build_model("quartznet-3x1")
    assert training_module(model, layout="eager", device="cpu") is model
    assert isinstance(training_module(model, layout="auto", device="cpu"), CBTQuartzNet)
    with pytest.raises(ValueError, match="cpu_layout='fast'"):
        resolve_layout("fast", "cpu")
    with pytest.raises(ValueError, match="cpu_layout='fast'"):
        TrainConfig(cpu_layout="fast")


def test_training_in_either_layout_gives_the_same_weights(
    make_speech_commands, tmp_path, depthwise, float64
):
    root = make_speech_commands(per_word=6)
    weights = {}
    for layout in ("cbt", "eager"):
        config = TrainConfig(
            data_root=str(root),
            epochs=2,
            batch_size=4,
            num_workers=0,
            device="cpu",
            progress=False,
            cpu_layout=layout,
            out_dir=str(tmp_path / layout),
        )
        result = train(config)
        weights[layout] = load_checkpoint(result.last_checkpoint)["classifier"]["state_dict"]
    assert weights["cbt"].keys() == weights["eager"].keys()
    assert weights["cbt"]["encoder.0.mconv.0.conv.weight"].dtype == torch.float64
    # Training ran: running means start at 0 and only training steps move them.
    assert weights["cbt"]["encoder.0.mconv.2.running_mean"].abs().max() > 1e-3
    for key, value in weights["cbt"].items():
        # 8 steps in float64 (see the float64 fixture for why not float32): the layouts differ
        # in summation order only, ~1e-14 here, while one step at lr 0.05 moves weights ~1e-2.
        torch.testing.assert_close(value, weights["eager"][key], rtol=1e-9, atol=1e-10, msg=key)


def _eval_model(name: str) -> QuartzNet:
    """A variant in eval mode with non-trivial BatchNorm running statistics."""
    torch.manual_seed(0)
    model = build_model(name).eval()
    generator = torch.Generator().manual_seed(2)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
    return model


@pytest.mark.parametrize("batch,frames", [(1, 128), (3, 37)])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_eval_logits_equal_the_model(name, batch, frames, monkeypatch):
    model = _eval_model(name)
    features = _features(batch, frames)
    with torch.inference_mode():
        expected = model(features)
        actual = cpu_fast_module.eval_logits(model, features)
        # Past the element limit the depthwise convolutions take oneDNN's path: same numbers.
        monkeypatch.setattr(cpu_fast_module, "_MAX_UNFOLD_ELEMENTS", 0)
        fallback = cpu_fast_module.eval_logits(model, features)
    _assert_close([actual, fallback], [expected, expected], 1e-5, name)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_eval_logits_prepadded_equal_the_model(name):
    model = _eval_model(name)
    features = _features(5, 128)
    with torch.inference_mode():
        expected = model(features)
        actual = cpu_fast_module.eval_logits_prepadded(model, features)
    _assert_close([actual], [expected], 1e-5, name)
    with pytest.raises(ValueError, match=r"model\.eval\(\)"):
        cpu_fast_module.eval_logits_prepadded(model.train(), features)


def test_eval_logits_refuses_a_training_model():
    with pytest.raises(ValueError, match=r"model\.eval\(\)"):
        cpu_fast_module.eval_logits(build_model("quartznet-3x1").train(), _features(1, 16))


def test_classifier_takes_the_eval_layout_for_small_batches(monkeypatch):
    from quartznet_tutorial.datasets.speech_commands import labels_for
    from quartznet_tutorial.models import classifier as classifier_module
    from quartznet_tutorial.models.classifier import Classifier

    calls, padded = [], []
    real, real_padded = classifier_module.eval_logits, classifier_module.eval_logits_prepadded
    monkeypatch.setattr(
        classifier_module, "eval_logits", lambda *a: calls.append(a[1].shape) or real(*a)
    )
    monkeypatch.setattr(
        classifier_module,
        "eval_logits_prepadded",
        lambda *a: padded.append(a[1].shape) or real_padded(*a),
    )
    classifier = Classifier(_eval_model("quartznet-3x1"), labels_for(1)).eval()
    audio = 0.1 * torch.randn(5, 16_000, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        small = classifier(audio[:1])
        large = classifier(audio)  # batch 5: the model's layout, padding added beforehand
        reference = classifier.model(crop_or_pad(classifier.preprocessor(audio)[0], 128))
    assert calls == [(1, 64, 128)] and padded == [(5, 64, 128)]
    _assert_close([small], [large[:1]], 1e-5, "batch 1 vs batch 5")
    _assert_close([large], [reference], 1e-5, "batch 5 vs the model's own convolutions")
    classifier.train()
    classifier(audio[:1])
    assert len(calls) == 1 and len(padded) == 1  # training mode: the model itself


def test_cpu_eval_forward_equals_the_model_masked_or_not(monkeypatch):
    """What training's validation runs on the CPU: the pre-padded layout for a batch of
    features, the model itself for masked inputs; the same logits either way."""
    calls = []
    real = cpu_fast_module.eval_logits_prepadded
    monkeypatch.setattr(
        cpu_fast_module, "eval_logits_prepadded", lambda *a: calls.append(1) or real(*a)
    )
    model = _eval_model("se-quartznet-3x1")
    forward = cpu_fast_module.cpu_eval_forward(model)
    features, lengths = _features(6, 128), torch.tensor([128, 100, 64, 128, 90, 1])
    with torch.no_grad():
        _assert_close([forward(features)], [model(features)], 1e-5, "fixed length")
        assert calls == [1]
        _assert_close(
            [forward(features, lengths)], [model(features, lengths)], 0, "masked: the model"
        )
        assert calls == [1]
