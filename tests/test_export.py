"""ONNX export: the exported graph computes what the PyTorch classifier computes."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from quartznet_tutorial import build_model
from quartznet_tutorial.audio.features import MFCC, FeatureConfig
from quartznet_tutorial.datasets.speech_commands import SpeechCommands, labels_for
from quartznet_tutorial.export.onnx_export import ATOL, ConvMFCC, check_onnx, export_onnx
from quartznet_tutorial.export.quantize import quantize_onnx, speech_commands_clips
from quartznet_tutorial.export.session import OnnxClassifier
from quartznet_tutorial.models.classifier import Classifier

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
    import quartznet_tutorial.export.onnx_export as export

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


# --- int8 -------------------------------------------------------------------------------------


def _tones(n: int, seed: int, samples: int = 16_000) -> torch.Tensor:
    """Tones of random pitch and loudness in noise: clips the test model's logits tell apart."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16_000
    pitch = 100 + 3_000 * torch.rand(n, 1, generator=generator)
    loudness = 0.02 + 0.4 * torch.rand(n, 1, generator=generator)
    noise = 0.01 * torch.randn(n, samples, generator=generator)
    return loudness * torch.sin(2 * torch.pi * pitch * t) + noise


@pytest.fixture(scope="module")
def fp32_file(tmp_path_factory):
    return export_onnx(_classifier(), tmp_path_factory.mktemp("fp32") / "model.onnx")


def test_int8_is_smaller_and_agrees_with_fp32(tmp_path, fp32_file, make_speech_commands) -> None:
    import onnx

    words = ("yes", "no", "up", "down", "left", "right", "on", "off")
    calibration = SpeechCommands(make_speech_commands(words=words, per_word=8), "training")
    int8_file = tmp_path / "int8.onnx"
    held_out = _tones(96, seed=7)
    result = quantize_onnx(fp32_file, int8_file, calibration, held_out=held_out)
    assert result.clips == 96 and result.int8_bytes == int8_file.stat().st_size
    assert result.int8_bytes < result.fp32_bytes == fp32_file.stat().st_size
    assert result.fp32_accuracy is None  # waveforms carry no labels

    fp32, int8 = OnnxClassifier(fp32_file)(held_out), OnnxClassifier(int8_file)(held_out)
    assert OnnxClassifier(int8_file).labels == LABELS
    agree = fp32.argmax(1) == int8.argmax(1)
    assert result.agreement == pytest.approx(agree.mean())
    assert result.max_logit_diff == pytest.approx(abs(fp32 - int8).max())
    # The int8 logits move by max_logit_diff at most (~0.03 here, against a spread of ~6
    # between a clip's largest and smallest logit), so top-1 can only change where float32's
    # two best classes are closer than twice that: a near-tie, not an error of quantisation.
    assert result.agreement >= 0.9
    for row in (~agree).nonzero()[0]:
        margin = fp32[row, fp32[row].argmax()] - fp32[row, int8[row].argmax()]
        assert margin <= 2 * result.max_logit_diff

    graph = onnx.load(str(int8_file)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    # Only the model is quantised: no front-end node reads a dequantised tensor.
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    front_end = [n for n in graph.node if n.name.startswith("/mfcc/")]
    assert front_end and not any(set(n.input) & dequantized for n in front_end)
    assert any(set(n.input) & dequantized for n in graph.node if n.name.startswith("/model/"))


def test_export_int8_from_a_folder_logs_the_check(tmp_path, make_speech_commands, caplog) -> None:
    import onnx

    root = make_speech_commands(words=("yes", "no", "up", "down"), per_word=6)
    classifier = _classifier()
    classifier.labels = labels_for(1)  # the folder's words, so accuracies are computed
    with caplog.at_level(logging.INFO):
        path = export_onnx(classifier, tmp_path / "out" / "int8.onnx", int8=True, calibration=root)
    assert path == tmp_path / "out" / "int8.onnx" and sorted(path.parent.iterdir()) == [path]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["calibration_clips"] == "16"  # 4 words x 4 training clips, padded to a batch
    assert meta["quantization"].startswith("int8")
    line = next(r.getMessage() for r in caplog.records if "agreement" in r.getMessage())
    assert "on 4 held-out clips" in line and "accuracy" in line  # the validation split
    assert not any("onnxruntime" in r.name for r in caplog.records)


def test_int8_bad_input(tmp_path, fp32_file, speech_commands, monkeypatch) -> None:
    classifier = _classifier()
    with pytest.raises(ValueError, match="int8 export needs calibration clips"):
        export_onnx(classifier, tmp_path / "x.onnx", int8=True)
    with pytest.raises(ValueError, match="pass int8=True"):
        export_onnx(classifier, tmp_path / "x.onnx", calibration=speech_commands)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        export_onnx(classifier, tmp_path / "x.onnx", int8=True, calibration=tmp_path / "none")
    assert not (tmp_path / "x.onnx").exists()
    clips = _tones(4, seed=0)
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx: no such file"):
        quantize_onnx(tmp_path / "missing.onnx", tmp_path / "q.onnx", clips)
    with pytest.raises(ValueError, match="must not overwrite"):
        quantize_onnx(fp32_file, fp32_file, clips)
    for bad in (torch.zeros(16_000), torch.zeros(0, 16_000), [1, 2]):
        with pytest.raises(ValueError, match=r"calibration clips must be"):
            quantize_onnx(fp32_file, tmp_path / "q.onnx", bad)
    with pytest.raises(ValueError, match="pass waveforms or a dataset"):
        quantize_onnx(fp32_file, tmp_path / "q.onnx", speech_commands)
    with pytest.raises(ValueError, match="at least 1"):
        speech_commands_clips(speech_commands, "training", 0)
    import onnx

    other = tmp_path / "other.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["waveforms"], ["logits"], name="relu")],
        "g",
        [onnx.helper.make_tensor_value_info("waveforms", onnx.TensorProto.FLOAT, [1, 400])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 400])],
    )
    onnx.save(onnx.helper.make_model(graph), str(other))
    with pytest.raises(ValueError, match="takes the files export_onnx writes"):
        quantize_onnx(other, tmp_path / "q.onnx", clips)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install quartznet-tutorial\[export\]"):
        quantize_onnx(fp32_file, tmp_path / "q.onnx", clips)
    assert not (tmp_path / "q.onnx").exists()


def test_cli_int8(tmp_path, capsys, caplog, speech_commands, monkeypatch) -> None:
    from quartznet_tutorial.checkpoints.checkpoint import save_checkpoint
    from quartznet_tutorial.cli.main import main

    classifier = _classifier()
    classifier.labels = labels_for(1)
    checkpoint = save_checkpoint(tmp_path / "m.pt", {"classifier": classifier.to_dict()})
    out = tmp_path / "int8.onnx"
    argv = ["export", "--checkpoint", checkpoint, "--onnx", out]

    def run(*extra) -> tuple[int, str, str]:
        code = main([str(a) for a in (*argv, *extra)])
        stdout, stderr = capsys.readouterr()
        assert "Traceback" not in stderr
        return code, stdout, stderr

    with caplog.at_level(logging.INFO):
        code, stdout, _ = run("--int8", "--calibration-data", speech_commands)
    assert code == 0 and stdout.strip() == str(out) and out.is_file()
    assert any("top-1 agreement" in r.getMessage() for r in caplog.records)
    assert OnnxClassifier(out).labels == labels_for(1)

    for extra, message in [
        (["--int8"], "--int8 needs --calibration-data DIR"),
        (["--calibration-data", speech_commands], "--calibration-data is for --int8 only"),
        (["--int8", "--calibration-data", tmp_path / "none"], "none: no such folder"),
        (["--int8", "--calibration-data", speech_commands, "--calibration-clips", "0"], "0"),
    ]:
        code, _, stderr = run(*extra)
        assert code == 2 and stderr.startswith("quartznet: error:") and message in stderr
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, _, stderr = run("--int8", "--calibration-data", speech_commands)
    assert code == 2 and "needs onnxruntime; install it with `pip install" in stderr
