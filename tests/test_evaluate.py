"""Evaluation: confusion matrix and accuracies against hand counts, each input pairing, plots."""

from __future__ import annotations

import importlib
from collections import Counter

import matplotlib
import numpy as np
import pytest
import torch

from quartznet_tutorial import build_model
from quartznet_tutorial.audio.features import FeatureConfig
from quartznet_tutorial.checkpoints.checkpoint import save_checkpoint
from quartznet_tutorial.datasets.speech_commands import SpeechCommands, labels_for
from quartznet_tutorial.evaluation.accuracy import (
    EvalResult,
    confusion_totals,
    eval_batch_size,
    evaluate,
    evaluate_checkpoint,
)
from quartznet_tutorial.evaluation.plots import plot_confusion, plot_per_class
from quartznet_tutorial.models.classifier import Classifier

matplotlib.use("Agg")


class _Fixed(torch.nn.Module):
    """Returns the logits it was given, one batch after another."""

    def __init__(self, logits):
        super().__init__()
        self.logits = iter(logits)
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return next(self.logits)


def test_confusion_and_accuracies_match_hand_counts():
    targets = [torch.tensor([0, 0, 1]), torch.tensor([1, 2, 0])]
    predicted = [torch.tensor([0, 1, 1]), torch.tensor([1, 1, 0])]
    logits = [torch.nn.functional.one_hot(p, 4).float() * 5 for p in predicted]
    model = _Fixed(logits)
    confusion, loss_sum = confusion_totals(
        model, [(torch.zeros(3, 1), t) for t in targets], 4, "cpu"
    )
    expected = np.zeros((4, 4), dtype=np.int64)
    for t, p in zip(torch.cat(targets), torch.cat(predicted), strict=True):
        expected[t, p] += 1
    result = EvalResult.from_totals(confusion, loss_sum, ["a", "b", "c", "d"])
    np.testing.assert_array_equal(result.confusion, expected)
    assert result.num_clips == 6
    assert result.accuracy == pytest.approx(4 / 6)
    per_class = result.per_class_accuracy
    assert per_class[:3].tolist() == [2 / 3, 1.0, 0.0] and np.isnan(per_class[3])
    ref = torch.nn.functional.cross_entropy(torch.cat(logits), torch.cat(targets))
    assert result.loss == pytest.approx(ref.item())
    d = result.to_dict()
    assert d["per_class_accuracy"]["d"] is None and d["confusion"][0] == [2, 1, 0, 0]


@pytest.fixture
def v1_data(speech_commands):
    return SpeechCommands(speech_commands, subset="training", version=1)


@pytest.fixture
def classifier():
    torch.manual_seed(0)
    return Classifier(build_model("quartznet-3x1", num_classes=30), labels_for(1)).eval()


def _reference(classifier, dataset):
    """One clip at a time, labels compared by name."""
    hits = 0
    for i in range(len(dataset)):
        waveform, target = dataset[i]
        top = classifier.predict(waveform[None])[0][0][0]
        hits += top == dataset.labels[target]
    return hits / len(dataset)


def test_classifier_on_dataset_equals_clip_by_clip(classifier, v1_data):
    result = evaluate(classifier, v1_data)
    assert result.num_clips == len(v1_data) == 12
    assert result.accuracy == _reference(classifier, v1_data)
    assert result.labels == labels_for(1)


def test_cpu_evaluates_in_batches_of_64_and_any_batch_gives_the_same(classifier, monkeypatch):
    module = importlib.import_module("quartznet_tutorial.evaluation.accuracy")  # not the function

    assert (eval_batch_size("cpu"), eval_batch_size(torch.device("cuda", 0))) == (64, 256)
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(
        0.1 * torch.randn(70, 16_000, generator=g), torch.arange(70) % 30
    )
    data.labels = labels_for(1)
    sizes = []
    totals = module.confusion_totals
    monkeypatch.setattr(
        module,
        "confusion_totals",
        lambda m, batches, *a: totals(m, (sizes.append(len(y)) or (x, y) for x, y in batches), *a),
    )
    default = evaluate(classifier, data)
    assert sizes == [64, 6]
    np.testing.assert_array_equal(
        evaluate(classifier, data, batch_size=7).confusion, default.confusion
    )


def test_bare_model_through_pipeline_equals_classifier(classifier, v1_data):
    pytest.importorskip("quartznet_tutorial.datasets.pipeline")
    by_waveform = evaluate(classifier, v1_data)
    by_features = evaluate(classifier.model, v1_data, batch_size=5)
    np.testing.assert_array_equal(by_features.confusion, by_waveform.confusion)
    assert by_features.loss == pytest.approx(by_waveform.loss, rel=1e-5)


def test_labels_in_another_order_are_mapped(classifier, v1_data):
    permuted = Classifier(classifier.model, list(reversed(classifier.labels))).eval()
    # reversing the labels while keeping the weights = a classifier predicting other words
    result = evaluate(permuted, v1_data)
    assert result.labels == permuted.labels
    assert result.accuracy == _reference(permuted, v1_data)
    # Rows are true words in the model's order: each word's clips land on its own row.
    words = Counter(v1_data.labels[t] for t in v1_data.targets)
    support = dict(zip(result.labels, result.confusion.sum(axis=1).tolist(), strict=True))
    assert {w: n for w, n in support.items() if n} == dict(words)


def test_other_words_are_a_clear_error(v1_data):
    model = Classifier(build_model("quartznet-3x1", num_classes=35), labels_for(2))
    with pytest.raises(ValueError, match=r"35 classes in the model, 30 in the data.*'backward'"):
        evaluate(model, v1_data)


def test_evaluate_checkpoint(classifier, speech_commands, tmp_path):
    path = save_checkpoint(tmp_path / "best.pt", {"classifier": classifier.to_dict()})
    result = evaluate_checkpoint(path, speech_commands, "testing", version=1, progress=False)
    dataset = SpeechCommands(speech_commands, subset="testing", version=1)
    assert result.num_clips == len(dataset) == 4
    assert result.accuracy == _reference(classifier, dataset)
    assert evaluate_checkpoint(path, speech_commands, limit_clips=2, progress=False).num_clips == 2


def test_evaluate_checkpoint_of_the_other_version_names_the_file(speech_commands, tmp_path):
    v2 = Classifier(build_model("quartznet-3x1", num_classes=35), labels_for(2))
    path = save_checkpoint(tmp_path / "v2.pt", {"classifier": v2.to_dict()})
    with pytest.raises(ValueError, match=r"v2\.pt: .*V2: pass version=2 \(--dataset-version 2\)$"):
        evaluate_checkpoint(path, speech_commands, progress=False)


@pytest.mark.parametrize(
    ("device", "precision", "message"),
    [
        ("tpu", "32", "unknown device 'tpu'; use cpu, cuda or cuda:N"),
        ("cuda", "32", r"no CUDA device here; use device='cpu' \(--device cpu\)"),
        ("cuda:9", "32", "no CUDA device"),
        ("mps", "32", "no MPS device here"),
        ("cpu", "8-mixed", "precision='8-mixed': choose one of 32, 16-mixed, bf16-mixed"),
    ],
)
def test_evaluate_checkpoint_checks_device_and_precision_first(
    tmp_path, device, precision, message
):
    if device.startswith("cuda") and torch.cuda.device_count() > 9:
        pytest.skip("this machine has the device")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has the device")
    with pytest.raises(ValueError, match=message):  # before the missing file is noticed
        evaluate_checkpoint(tmp_path / "none.pt", tmp_path, device=device, precision=precision)


def _random_result(n, seed=0):
    rng = np.random.default_rng(seed)
    confusion = rng.integers(0, 3, (n, n)) + np.diag(rng.integers(150, 250, n))
    return EvalResult(labels_for(2 if n == 35 else 1)[:n], confusion.astype(np.int64), 0.1)


@pytest.mark.parametrize("n", [4, 30, 35])
def test_plots_show_every_label(n):
    result = _random_result(n)
    ax = plot_confusion(result)
    assert [t.get_text() for t in ax.get_xticklabels()] == result.labels
    assert ax.get_images()[0].get_array().shape == (n, n)
    height = ax.figure.get_size_inches()[1]
    assert height >= 0.3 * n  # about 0.3 inch per row: 7-pt labels do not overlap
    ax = plot_per_class(result)
    assert len(ax.patches) == n
    ticks = [t.get_text().split(" ")[0] for t in ax.get_yticklabels()]
    assert sorted(ticks) == sorted(result.labels)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_nemo_style_classifier_gets_each_clips_length(v1_data):
    """frames=None (a .nemo import) masks past each clip's own length, as NeMo's inference."""
    import soundfile as sf

    torch.manual_seed(0)
    nemo_like = Classifier(
        build_model("se-quartznet-3x1"), labels_for(1), FeatureConfig(frames=None)
    ).eval()
    lengths = torch.tensor([sf.info(f).frames for f in v1_data.files])
    assert lengths.min() < 16_000  # the fixture has short clips

    class Clips:
        labels = v1_data.labels
        waveforms, targets_tensor = v1_data.waveforms, v1_data.targets_tensor

        def __len__(self):
            return len(v1_data)

    class ClipsWithLengths(Clips):
        def lengths_tensor(self, progress=True):
            return lengths

    result = evaluate(nemo_like, ClipsWithLengths())
    logits = torch.cat(
        [nemo_like(v1_data[i][0][None], lengths[i : i + 1]) for i in range(len(v1_data))]
    )
    expected = torch.nn.functional.cross_entropy(logits, v1_data.targets_tensor())
    assert result.loss == pytest.approx(expected.item(), rel=1e-5)
    unmasked = evaluate(nemo_like, Clips())  # no lengths: every clip taken as one second
    assert unmasked.loss != pytest.approx(result.loss, rel=1e-5)
    assert evaluate(nemo_like, v1_data).loss == pytest.approx(result.loss, rel=1e-6)
