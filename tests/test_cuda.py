"""CUDA end to end: what ``quartznet train``, ``evaluate`` and ``export`` do on a GPU.

CI has no GPU, so every test here is skipped there. The device run of
``benchmarks/README.md`` runs them (``pytest -m gpu``) on an H100/H200 before the benchmark,
and keeps the report beside the benchmark's JSON.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import signal

import pytest
import torch

from quartznet_tutorial import Classifier, build_model
from quartznet_tutorial.evaluation.accuracy import evaluate_checkpoint
from quartznet_tutorial.training.config import TrainConfig, TrainingInterrupted
from quartznet_tutorial.training.loop import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

train_module = importlib.import_module("quartznet_tutorial.training.loop")


def _config(root, out, **overrides) -> TrainConfig:
    settings = dict(
        data_root=str(root), out_dir=str(out), epochs=3, batch_size=4, progress=False, seed=0
    )
    return TrainConfig(**{**settings, **overrides})


def _finite(result) -> bool:
    return all(math.isfinite(h["train_loss"]) for h in result.history)


# "cuda" and "auto" without an index, each pipeline, each precision.
@pytest.mark.parametrize(
    ("device", "pipeline", "precision"),
    [
        ("cuda", "auto", "bf16-mixed"),
        ("auto", "dataloader", "16-mixed"),
        ("cuda:0", "device", "32"),
    ],
)
def test_train_on_cuda(speech_commands, tmp_path, device, pipeline, precision):
    workers = 2 if pipeline == "dataloader" else 0
    config = _config(
        speech_commands,
        tmp_path / "run",
        device=device,
        pipeline=pipeline,
        precision=precision,
        num_workers=workers,
    )
    benchmark = torch.backends.cudnn.benchmark
    r = train(config)
    assert r.device == "cuda" and len(r.history) == 3 and _finite(r)
    assert r.test is not None and r.test.num_clips == 4
    assert torch.backends.cudnn.benchmark == benchmark  # train() sets it for itself only


def test_sigterm_then_resume_on_cuda(speech_commands, tmp_path, monkeypatch):
    """The checkpoint's RNG states go back into the CPU and CUDA generators."""
    real_build = train_module.build_data

    class SigtermAfterOneStep:
        def __init__(self, pipe):
            self.pipe = pipe

        def __len__(self):
            return len(self.pipe)

        def batches(self, epoch, start=0):
            for i, batch in enumerate(self.pipe.batches(epoch, start), start=start):
                if (epoch, i) == (1, 1):
                    os.kill(os.getpid(), signal.SIGTERM)
                yield batch

    def build(config, env):
        data = real_build(config, env)
        return data._replace(train=SigtermAfterOneStep(data.train))

    monkeypatch.setattr(train_module, "build_data", build)
    config = _config(speech_commands, tmp_path / "run", device="cuda", precision="16-mixed")
    with pytest.raises(TrainingInterrupted, match="in epoch 2 after 2 steps"):
        train(config)
    monkeypatch.setattr(train_module, "build_data", real_build)
    resumed = train(dataclasses.replace(config, resume=True))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3] and _finite(resumed)
    assert resumed.history[-1]["step"] == 9  # 12 clips / batch 4, 3 epochs


def test_compile_on_cuda(speech_commands, tmp_path):
    r = train(_config(speech_commands, tmp_path / "run", device="cuda", compile=True, epochs=2))
    assert _finite(r) and r.history[-1]["train_loss"] < r.history[0]["train_loss"] * 1.5


def test_evaluate_checkpoint_on_cuda_matches_cpu(speech_commands, tmp_path):
    r = train(_config(speech_commands, tmp_path / "run", device="cuda", epochs=1))
    results = [
        evaluate_checkpoint(
            r.best_checkpoint, speech_commands, device=device, batch_size=3, progress=False
        )
        for device in ("cpu", "cuda")
    ]
    assert results[0].accuracy == results[1].accuracy
    assert math.isclose(results[0].loss, results[1].loss, rel_tol=1e-4)


def test_classifier_on_cuda_takes_lengths_from_anywhere():
    classifier = Classifier(build_model("quartznet-3x1"), [str(i) for i in range(30)]).eval()
    waveforms = torch.randn(3, 16_000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([16_000, 12_000, 8_000])
    expected = classifier(waveforms, lengths)
    classifier.cuda()
    for where in ("cpu", "cuda"):
        logits = classifier(waveforms.cuda(), lengths.to(where))
        torch.testing.assert_close(logits.cpu(), expected, atol=1e-4, rtol=1e-4)


def test_export_a_classifier_that_sits_on_cuda(tmp_path):
    pytest.importorskip("onnxruntime")
    from quartznet_tutorial.export.onnx_export import export_onnx

    classifier = Classifier(build_model("quartznet-3x1"), [str(i) for i in range(30)]).cuda()
    path = export_onnx(classifier, tmp_path / "qn.onnx")  # checks onnxruntime against torch
    assert path.is_file() and next(classifier.parameters()).is_cuda  # left where it was
