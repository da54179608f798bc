"""The training pages' shared sections: the runs' table, the plots, the real-clip tables."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from quartznet_tutorial import VARIANTS, build_model, count_parameters
from quartznet_tutorial.datasets.real_clips import real_clips
from quartznet_tutorial.datasets.speech_commands import V1_WORDS, labels_for
from quartznet_tutorial.evaluation.accuracy import EvalResult
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.models.variants import SE_TWINS
from quartznet_tutorial.tutorial.profiles import Run
from quartznet_tutorial.tutorial.training_pages import (
    RealSpeech,
    confusion_matrices,
    learning_curves,
    per_class_accuracy,
    runs_table,
    seed_spread,
)

pytest.importorskip("IPython")


def _result(correct: int, total: int, labels=tuple(V1_WORDS)) -> EvalResult:
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    confusion[0, 0], confusion[0, 1] = correct, total - correct
    return EvalResult(list(labels), confusion, 0.5)


def _run(model: str, test_accuracy: float, hardware: str = "CPU X") -> Run:
    labels = labels_for(1)
    record = {
        "epochs": 2, "val_accuracy": 0.5, "test_accuracy": test_accuracy, "train_seconds": 90.0,
        "clips_per_second": 1234.4, "data": "synthetic-v1", "hardware": hardware,
        "precision": "32", "date": "2026-12-01T10:00:00",
    }  # fmt: skip
    history = [
        {"epoch": 1, "train_loss": 2.0, "val_accuracy": 0.3},
        {"epoch": 2, "train_loss": 1.0, "val_accuracy": 0.5},
    ]
    classifier = Classifier(build_model(model, num_classes=len(labels)), labels)
    return Run(model, history, _result(8, 10), record, classifier)


def test_runs_table_rows_alignment_and_caption():
    runs = {"quartznet-3x1": _run("quartznet-3x1", 0.8)}
    text = runs_table(runs).data
    lines = text.splitlines()
    assert lines[0] == (
        "| model | params | epochs | best validation | test | train time | clips/s | data |"
    )
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---:|---|"
    params = count_parameters(runs["quartznet-3x1"].classifier.model)
    assert lines[2] == (
        f"| `quartznet-3x1` | {params:,} | 2 | 50.00% | 80.00% | 1.5 min | 1,234 | synthetic-v1 |"
    )
    assert text.endswith("\n\n*Trained on CPU X, fp32, 2026-12-01.*")


def test_runs_table_says_what_se_adds():
    model = "se-quartznet-3x1"
    text = runs_table({model: _run(model, 0.8)}, se_twins=SE_TWINS).data
    header, align, row = text.splitlines()[:3]
    assert header.startswith("| model | params | SE adds | epochs |")
    assert align == "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    params = count_parameters(build_model(VARIANTS[model], num_classes=30))
    twin = count_parameters(build_model(SE_TWINS[model], num_classes=30))
    assert f"| {100 * (params - twin) / twin:+.1f}% |" in row


def test_plots_one_per_run_titled_by_model():
    import matplotlib.pyplot as plt

    runs = {"quartznet-3x1": _run("quartznet-3x1", 0.8)}
    (fig,) = learning_curves(runs)
    assert fig._suptitle.get_text() == "quartznet-3x1"
    (ax,) = confusion_matrices(runs)
    assert ax.get_title().startswith("quartznet-3x1: accuracy 80.00%")
    (ax,) = per_class_accuracy(runs)
    assert ax.get_title() == "quartznet-3x1"
    plt.close("all")


def test_real_speech_tables():
    clips = real_clips(1)
    runs = {"quartznet-3x1": _run("quartznet-3x1", 0.8)}
    real = RealSpeech(runs, {"quartznet-3x1": _result(3, 12)}, clips, "synthetic-v1")
    text = real.table().data
    lines = text.splitlines()
    assert lines[0] == (
        f"| model | test (synthetic-v1) | real clips ({len(clips)}) | real, 95% interval |"
    )
    assert lines[2].startswith("| `quartznet-3x1` | 80.0% | 25.0% | ")
    assert "`quartznet-3x1` classifies 80.0% of the 10 test clips of synthetic-v1" in text
    assert text.endswith("Speech Commands' hashing rule puts in its training split.*")
    per_word = real.per_word().data
    assert per_word.startswith("**quartznet-3x1**\n\n| word said | clips | right |")


def test_seed_spread_aggregates_committed_runs_of_the_same_recipe(tmp_path):
    import json

    run = _run("quartznet-3x1", 0.97)
    recipe = {"model": "quartznet-3x1", "profile": "smoke", "batch_size": 64, "lr": 0.05,
              "augment": False, "data_args": {"per_word": 1750, "seed": 0}}  # fmt: skip
    run.record.update(recipe)
    base = {**run.record, "kind": "training", "train_seconds": 100.0, "versions": {},
            "device": "cpu", "command": "x"}  # fmt: skip
    for seed, (test, real) in enumerate([(0.96, 0.40), (0.98, 0.30), (0.97, 0.35)]):
        record = {**base, "seed": seed, "test_accuracy": test, "real_accuracy": real}
        (tmp_path / f"r{seed}.json").write_text(json.dumps(record))
    other = {**base, "seed": 9, "test_accuracy": 0.5, "lr": 0.1}  # another recipe: left out
    (tmp_path / "other.json").write_text(json.dumps(other))
    more_data = {**base, "seed": 8, "test_accuracy": 0.5, "data_args": {"per_word": 3000}}
    (tmp_path / "more_data.json").write_text(json.dumps(more_data))  # other data: left out
    shorter = {**base, "seed": 7, "test_accuracy": 0.5, "frames": 101}  # the run has NeMo's 128
    (tmp_path / "shorter.json").write_text(json.dumps(shorter))  # other example length: out
    text = seed_spread({"quartznet-3x1": run}, tmp_path).data
    row = text.splitlines()[2]
    assert row.startswith("| `quartznet-3x1` | 3 | 97.00 ± 1.00% | 35.00 ± 5.00% | 97.00% |")
    assert "not told apart" in text
    for seed in (1, 2):
        (tmp_path / f"r{seed}.json").unlink()
    assert "spread between seeds is not known" in seed_spread({"m": run}, tmp_path).data
