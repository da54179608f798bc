"""ONNX export: the exported graph computes what the PyTorch classifier computes."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from quartznet_tutorial import build_model
from quartznet_tutorial.classifier import Classifier
from quartznet_tutorial.export import (
    ATOL,
    ConvMFCC,
    OnnxClassifier,
    check_onnx,
    export_onnx,
)
from quartznet_tutorial.features import MFCC, FeatureConfig

LABELS = [f"word{i}" for i in range(30)]


def _classifier(name: str = "quartznet-3x1", frames: int | None = 128) -> Classifier:
    """A classifier whose logits depend strongly on the input.

    A freshly initialised model with BN running stats 0/1 gives nearly constant logits, so a
    broken front end could pass a tolerance check; random BN statistics and scales fix that.
    """
    torch.manual_seed(0)
    model = build_model(name)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0.0, 1.0, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.normal_(1.0, 0.3, generator=generator)
    return Classifier(model, LABELS, FeatureConfig(frames=frames)).eval()


@pytest.mark.parametrize("samples", [16_000, 15_702, 15_999, 4_001])
def test_conv_mfcc_matches_torchaudio_mfcc(samples: int) -> None:
    mfcc = MFCC()
    audio = 0.1 * torch.randn(2, samples, generator=torch.Generator().manual_seed(samples))
    expected, _ = mfcc(audio)
    actual = ConvMFCC(mfcc)(audio)
    assert actual.shape == expected.shape == (2, 64, samples // 160 + 1)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-5)


def test_conv_mfcc_rejects_other_spectrograms() -> None:
    mfcc = MFCC()
    mfcc.featurizer.MelSpectrogram.spectrogram.center = False
    with pytest.raises(ValueError, match="centred"):
        ConvMFCC(mfcc)


@pytest.mark.parametrize(
    ("name", "frames"),
    [("quartznet-3x1", 128), ("se-quartznet-3x1", 128), ("quartznet-3x1", None)],
)
def test_onnxruntime_matches_pytorch(tmp_path, name: str, frames: int | None) -> None:
    classifier = _classifier(name, frames)
    path = export_onnx(classifier, tmp_path / "model.onnx")
    assert path.is_file()
    # Shorter (padded), exact and longer (cropped) clips, at a batch size never traced.
    for samples in (16_000, 12_345, 24_000):
        assert check_onnx(classifier, path, samples=samples) <= ATOL
    assert not classifier.training


def test_metadata_and_predict(tmp_path) -> None:
    classifier = _classifier()
    session = OnnxClassifier(export_onnx(classifier, tmp_path / "m.onnx"))
    assert session.labels == LABELS
    assert session.batch_size is None
    audio = 0.1 * torch.randn(4, 16_000, generator=torch.Generator().manual_seed(3))
    ours = session.predict(audio, top_k=3)
    reference = classifier.predict(audio, top_k=3)
    assert [[label for label, _ in row] for row in ours] == [
        [label for label, _ in row] for row in reference
    ]
    for row, ref in zip(ours, reference, strict=True):
        assert [p for _, p in row] == pytest.approx([p for _, p in ref], abs=1e-5)


def test_fixed_batch(tmp_path) -> None:
    session = OnnxClassifier(export_onnx(_classifier(), tmp_path / "b1.onnx", dynamic_batch=False))
    assert session.batch_size == 1
    assert session(torch.zeros(1, 16_000)).shape == (1, 30)


def test_failed_check_raises(tmp_path, monkeypatch) -> None:
    import quartznet_tutorial.export as export

    monkeypatch.setattr(export, "check_onnx", lambda *args, **kwargs: 1.0)
    with pytest.raises(RuntimeError, match="differ from PyTorch"):
        export_onnx(_classifier(), tmp_path / "bad.onnx")


def test_bad_input(tmp_path) -> None:
    for opset in (13, 21, 24, 99):  # 21-23 only warn in torch 2.11, newer ones fail deep inside
        with pytest.raises(ValueError, match=f"opset {opset} is not supported; choose 17 to 20"):
            export_onnx(_classifier(), tmp_path / "x.onnx", opset=opset)
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        OnnxClassifier(tmp_path / "missing.onnx")
    session = OnnxClassifier(export_onnx(_classifier(), tmp_path / "m.onnx", check=False))
    with pytest.raises(ValueError, match="batch, samples"):
        session(torch.zeros(16_000))
