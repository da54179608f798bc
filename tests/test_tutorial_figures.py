"""Figures and the parameter arithmetic the docs show: drawn headless, counted exactly."""

from __future__ import annotations

from collections import defaultdict

import matplotlib
import pytest
from matplotlib.figure import Figure

matplotlib.use("Agg")  # no display needed

from quartznet_tutorial import VARIANTS, build_model, count_parameters
from quartznet_tutorial.models.variants import Reported
from quartznet_tutorial.tutorial.diagrams import draw_architecture, draw_squeeze_excite
from quartznet_tutorial.tutorial.plots import plot_features, plot_learning_curves, plot_waveforms
from quartznet_tutorial.tutorial.tables import (
    block_names,
    markdown_table,
    parameter_table,
    reported_params,
    reported_rounding,
    summary,
)


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_parameter_table_matches_the_model(name):
    rows = parameter_table(VARIANTS[name])
    model = build_model(name)
    assert sum(r.params for r in rows) == count_parameters(model)
    # Layer by layer: same module names, weight shapes and counts as the real model.
    per_module = defaultdict(int)
    for key, p in model.named_parameters():
        per_module[key.rsplit(".", 1)[0]] += p.numel()
    assert {r.name: r.params for r in rows} == dict(per_module)
    weights = dict(model.named_parameters())
    for r in rows:
        assert tuple(weights[r.name + ".weight"].shape) == r.shape


@pytest.mark.parametrize("name", list(VARIANTS))
def test_parameter_arithmetic_evaluates_to_the_count(name):
    for r in parameter_table(VARIANTS[name]):
        assert eval(r.arithmetic.replace("×", "*")) == r.params, r  # only digits, * and +


def test_parameter_table_follows_num_classes():
    rows = parameter_table(VARIANTS["quartznet-3x1"], num_classes=35)
    assert rows[-1].arithmetic == "35×128 + 35"
    assert sum(r.params for r in rows) == count_parameters(build_model("quartznet-3x1", 35))


def test_block_names():
    assert block_names(VARIANTS["quartznet-5x1-480k"]) == [
        "C1",
        "B1",
        "B2",
        "B3",
        "B4",
        "B5",
        "C2",
        "C3",
    ]


def test_reported_params():
    assert reported_params(Reported("0.077M", ())) == 77_000
    assert reported_params(Reported("1M", ())) == 1_000_000
    assert reported_params(Reported("480k", ())) == 480_000
    with pytest.raises(ValueError, match="about 1M"):
        reported_params(Reported("about 1M", ()))
    # Half a unit of the last printed digit: 77,214 prints as "0.077M", 77,500 would not.
    assert reported_rounding(Reported("0.077M", ())) == 500
    assert reported_rounding(Reported("0.48M", ())) == 5_000
    assert reported_rounding(Reported("1M", ())) == 500_000


@pytest.mark.parametrize("name", list(VARIANTS))
def test_draw_architecture_reads_the_config(name):
    config = VARIANTS[name]
    fig = draw_architecture(config)
    assert isinstance(fig, Figure)
    texts = "\n".join(_texts(fig))
    for block in config.blocks:
        assert f"k={block.kernel}" in texts
    for b in range(1, config.num_blocks + 1):
        assert f"B{b}\n" in texts
    assert ("SE" in texts.split()) == config.has_se
    # One "+" per residual block, one residual branch box per residual block.
    assert texts.split("\n").count("+") == config.num_blocks
    assert texts.count("residual\n1×1 conv + BN") == config.num_blocks
    fig.savefig(__import__("io").BytesIO(), format="png")  # renders without a display
    matplotlib.pyplot.close(fig)


def test_draw_architecture_on_given_axes():
    fig, ax = matplotlib.pyplot.subplots()
    assert draw_architecture(VARIANTS["quartznet-3x2"], ax=ax) is fig
    matplotlib.pyplot.close(fig)


def test_draw_squeeze_excite():
    fig = draw_squeeze_excite(channels=64, reduction_ratio=16)
    texts = "\n".join(_texts(fig))
    assert "linear\n64→4" in texts and "linear\n4→64" in texts and "sigmoid" in texts
    matplotlib.pyplot.close(fig)


def test_plot_learning_curves():
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_accuracy": 0.5 + e / 10}
        for e in range(1, 4)
    ]
    fig = plot_learning_curves(history, title="t")
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.lines) == 2 and len(acc_ax.lines) == 1
    # Legends in words, not the history's keys.
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == [
        "train loss",
        "validation loss",
    ]
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == ["validation accuracy"]
    assert list(acc_ax.lines[0].get_ydata()) == pytest.approx([60.0, 70.0, 80.0])
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="empty"):
        plot_learning_curves([])


def test_markdown_table():
    table = markdown_table(["a", "n"], [["x|y", 1234], ["z", 5]])
    assert table.splitlines() == ["| a | n |", "|---|---:|", "| x\\|y | 1,234 |", "| z | 5 |"]


def test_plot_waveforms_and_features():
    import torch

    fig = plot_waveforms(torch.randn(5, 160), list("abcde"), ncols=4)
    panels = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in panels] == list("abcde")
    assert panels[0].lines[0].get_xdata()[-1] == pytest.approx(159 / 16_000)
    assert panels[0].get_ylabel() == "amplitude (full scale)"  # first column only
    assert panels[1].get_ylabel() == ""
    matplotlib.pyplot.close(fig)
    fig = plot_features(torch.randn(3, 64, 128), ["x", "y", "z"], ncols=3)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3 and images[0].get_array().shape == (64, 128)
    assert images[0].get_extent() == [0, 1.28, 0, 64]  # 128 frames of 10 ms
    matplotlib.pyplot.close(fig)


def test_summary_lists_every_block_and_the_total():
    config = VARIANTS["quartznet-3x2"]
    text = summary(config)
    assert "quartznet-3x2 (NeMo's config): B=3, R=2" in text
    for name in block_names(config):
        assert f"\n  {name} " in text
    assert text.splitlines()[-1].split()[-2] == f"{count_parameters(build_model(config)):,}"
