"""The quartznet command and predict_files: output, per-file errors, exit statuses."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import quartznet_tutorial
from quartznet_tutorial import VARIANTS, build_model, count_parameters, load_audio
from quartznet_tutorial.cli.main import COMMANDS, build_parser, command_module, main
from quartznet_tutorial.cli.options import add_dataclass_options, dataclass_from_args
from quartznet_tutorial.datasets.speech_commands import labels_for
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.models.predict import predict_files

SUBCOMMANDS = list(COMMANDS)


def _has(module: str) -> bool:
    return importlib.util.find_spec(f"quartznet_tutorial.{module}") is not None


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    torch.manual_seed(0)
    model = build_model("quartznet-3x1", num_classes=30)
    for m in model.modules():  # non-trivial BN statistics, so predictions are not uniform
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return Classifier(model, labels_for(1)).eval()


@pytest.fixture
def checkpoint(tmp_path, classifier) -> Path:
    from quartznet_tutorial.checkpoints.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path / "model.pt", {"classifier": classifier.to_dict()})


@pytest.fixture
def clips(tmp_path) -> Path:
    """A folder: two good clips (1 s and 0.4 s), one broken file, one non-wav file."""
    folder = tmp_path / "clips"
    folder.mkdir()
    rng = np.random.default_rng(0)
    sf.write(folder / "a.wav", 0.3 * rng.standard_normal(16_000), 16_000, subtype="PCM_16")
    sf.write(folder / "b.wav", 0.3 * rng.standard_normal(6_400), 16_000, subtype="PCM_16")
    (folder / "c.wav").write_bytes(b"RIFF but not really")
    (folder / "notes.txt").write_text("ignored")
    return folder


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_models_lists_every_variant_with_its_measured_count(capsys):
    code, out, _ = _run(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == list(VARIANTS)
    for r in rows:
        assert r["params"] == count_parameters(build_model(r["name"]))
        assert r["reported_params"] == VARIANTS[r["name"]].reported.params
        assert r["SE"] == r["name"].startswith("se-")
    code, out, _ = _run(capsys, "models")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 1 + len(VARIANTS)
    for r, line in zip(rows, lines[1:], strict=True):
        assert line.split()[0] == r["name"] and f"{r['params']:,}" in line.split()


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(capsys, command):
    code, out, _ = _run(capsys, command, "--help")
    assert code == 0 and out.startswith(f"usage: quartznet {command}")


def test_predict_folder_with_a_broken_file(capsys, checkpoint, clips, classifier):
    code, out, err = _run(
        capsys, "predict", clips, "--checkpoint", checkpoint, "--top-k", 2, "--json"
    )
    results = {Path(r["path"]).name: r for r in json.loads(out)}
    assert code == 2  # one file failed
    assert sorted(results) == ["a.wav", "b.wav", "c.wav"]  # notes.txt is not audio
    assert results["c.wav"]["predictions"] == []
    assert results["c.wav"]["error"].startswith(f"{clips / 'c.wav'}: not a readable audio file")
    assert err.strip() == f"quartznet: error: {results['c.wav']['error']}"
    for name in ("a.wav", "b.wav"):
        # The same answer as the classifier on the clip the dataset would give: padded to 1 s.
        x = load_audio(clips / name)
        x = torch.nn.functional.pad(x, (0, 16_000 - x.shape[0]))
        expected = classifier.predict(x[None], top_k=2)[0]
        got = [(p["label"], p["probability"]) for p in results[name]["predictions"]]
        assert [w for w, _ in got] == [w for w, _ in expected] and results[name]["error"] is None
        np.testing.assert_allclose([p for _, p in got], [p for _, p in expected], rtol=1e-5)


def test_predict_text_output(capsys, checkpoint, clips):
    code, out, err = _run(capsys, "predict", clips / "a.wav", "--checkpoint", checkpoint)
    (line,) = out.splitlines()
    path, *pairs = line.split()
    assert code == 0 and err == "" and path == str(clips / "a.wav")
    assert len(pairs) == 6 and all(w in labels_for(1) for w in pairs[::2])
    probabilities = [float(p) for p in pairs[1::2]]
    assert probabilities == sorted(probabilities, reverse=True)


def test_predict_files_is_batch_invariant_and_in_order(classifier, clips, tmp_path):
    for i in range(5):  # same-length clips share batches
        noise = np.random.default_rng(i).standard_normal(16_000) * 0.2
        sf.write(clips / f"d{i}.wav", noise, 16_000, subtype="PCM_16")
    paths = [clips, clips / "a.wav", tmp_path / "missing.wav"]
    one = predict_files(classifier, paths, top_k=3, batch_size=1)
    many = predict_files(classifier, paths, top_k=3, batch_size=4)
    names = [r.path.name for r in many]
    assert names == ["a.wav", "b.wav", "c.wav", "d0.wav", "d1.wav", "d2.wav", "d3.wav",
                     "d4.wav", "a.wav", "missing.wav"]  # fmt: skip
    assert [r.ok for r in many] == [True, True, False, True, True, True, True, True, True, False]
    assert "no such file" in many[-1].error
    for a, b in zip(one, many, strict=True):
        assert [w for w, _ in a.predictions] == [w for w, _ in b.predictions]
        np.testing.assert_allclose([p for _, p in a.predictions], [p for _, p in b.predictions],
                                   rtol=1e-4, atol=1e-6)  # fmt: skip


def test_predict_files_rates_and_empty_folders(classifier, tmp_path):
    t = np.arange(8_000) / 8_000
    sf.write(tmp_path / "slow.wav", np.sin(2 * np.pi * 300 * t), 8_000, subtype="PCM_16")
    (tmp_path / "empty").mkdir()
    strict, converted = (
        predict_files(classifier, [tmp_path / "slow.wav"], resample=r)[0] for r in (False, True)
    )
    assert "pass --resample" in strict.error and converted.ok
    (empty,) = predict_files(classifier, [tmp_path / "empty"])
    assert empty.error == f"{tmp_path / 'empty'}: no .wav files in this folder"
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        predict_files(classifier, [tmp_path / "slow.wav"], top_k=0)


def test_user_mistakes_exit_2_with_one_line(capsys, tmp_path, clips):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    cases = [
        (["predict", clips, "--checkpoint", tmp_path / "none.pt"], "none.pt: no such"),
        (["predict", clips, "--checkpoint", garbage], "garbage.pt"),
        (["predict", clips, "--checkpoint", garbage, "--top-k", "0"], "must be at least 1"),
        (["fly"], "invalid choice: 'fly'"),
        (["predict", clips, "--checkpoint", garbage, "--device", "gpu0"], "unknown device 'gpu0'"),
    ]
    for argv, expected in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 2 and expected in err, (argv, err)
        assert err.splitlines()[-1].startswith(("quartznet: error:", "quartznet predict: error:"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_predict_on_cuda_matches_cpu(capsys, checkpoint, clips):
    answers = []
    for device in ("cpu", "cuda"):
        argv = ["predict", clips, "--checkpoint", checkpoint, "--device", device, "--json"]
        answers.append(json.loads(_run(capsys, *argv)[1]))
    for a, b in zip(*answers, strict=True):
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        probabilities = [[p["probability"] for p in r["predictions"]] for r in (a, b)]
        np.testing.assert_allclose(*probabilities, atol=1e-4)


def test_ctrl_c_exits_130(capsys, monkeypatch, checkpoint, clips):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("quartznet_tutorial.models.predict.predict_files", interrupted)
    code, _, err = _run(capsys, "predict", clips, "--checkpoint", checkpoint)
    assert code == 130 and err == "quartznet: interrupted\n"


def test_console_script_entry_point(tmp_path):
    """As a user runs it: a separate process, exit status 2, one line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "quartznet_tutorial.cli.main", "predict", tmp_path / "x.wav",
         "--checkpoint", tmp_path / "missing.nemo"],
        capture_output=True, text=True, cwd=Path(__file__).parents[1],
        env={"PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == f"quartznet: error: {tmp_path / 'missing.nemo'}: no such file\n"


# --- options generated from a dataclass ----------------------------------------------------


@dataclass
class _Config:
    data_root: str = field(metadata={"help": "where the data is"})
    model: str = field(default="quartznet-3x1", metadata={"choices": ["quartznet-3x1", "b"]})
    epochs: int = 200
    lr: float = 0.05
    precision: str = field(default="32", metadata={"choices": ["32", "16-mixed", "bf16-mixed"]})
    max_steps: int | None = None
    out_dir: str = "runs"
    augment: bool = True
    resume: bool = False
    cache: list = field(default_factory=list, init=False)


def _parse(*argv):
    parser = argparse.ArgumentParser(prog="t")
    add_dataclass_options(parser, _Config)
    return dataclass_from_args(_Config, parser.parse_args(argv))


def test_dataclass_options_round_trip():
    assert _parse("--data-root", "d") == _Config(data_root="d")
    config = _parse(
        "--data-root", "d", "--model", "b", "--epochs", "3", "--lr", "0.1",
        "--precision", "bf16-mixed", "--max-steps", "7", "--out-dir", "o",
        "--no-augment", "--resume",
    )  # fmt: skip
    assert config == _Config("d", "b", 3, 0.1, "bf16-mixed", 7, "o", False, True)
    assert _parse("--data-root", "d", "--max-steps", "none").max_steps is None


@pytest.mark.parametrize(
    "argv",
    [
        [],  # the required option is missing
        ["--data-root", "d", "--epochs", "x"],
        ["--data-root", "d", "--precision", "64"],
        ["--data-root", "d", "--model", "c"],
    ],
)
def test_dataclass_options_reject_bad_values(argv, capsys):
    with pytest.raises(SystemExit) as info:
        _parse(*argv)
    assert info.value.code == 2 and "error:" in capsys.readouterr().err


def test_unsupported_field_type_is_caught_when_building():
    @dataclass
    class Bad:
        weights: dict = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match="unsupported option type"):
        add_dataclass_options(argparse.ArgumentParser(), Bad)


@pytest.mark.skipif(
    not _has("training.loop"), reason="quartznet_tutorial.training.loop not written yet"
)
def test_train_options_are_the_train_config_fields(capsys):
    from quartznet_tutorial.training.config import TrainConfig

    _, out, _ = _run(capsys, "train", "--help")
    for f in dataclasses.fields(TrainConfig):
        if f.init:
            option = "dataset-version" if f.name == "version" else f.name.replace("_", "-")
            assert f"--{option}" in out


# --- the subcommands backed by other modules ------------------------------------------------


def test_export_writes_an_onnx_file(capsys, checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx" / "model.onnx"
    code, stdout, _ = _run(capsys, "export", "--checkpoint", checkpoint, "--onnx", out)
    assert code == 0 and stdout.strip() == str(out) and out.stat().st_size > 0


@pytest.mark.skipif(
    not _has("synthetic"), reason="quartznet_tutorial.synthetic.espeak not written yet"
)
def test_make_synthetic_writes_a_loadable_tree(capsys, tmp_path):
    from quartznet_tutorial import SpeechCommands

    out = tmp_path / "synthetic"
    argv = ["-q", "make-synthetic", "--out", out, "--words", "yes", "no", "--per-word", 3,
            "--workers", 0]  # fmt: skip
    code, stdout, _ = _run(capsys, *argv)
    assert code == 0 and stdout.strip() == str(out)
    clips = sum(len(SpeechCommands(out, s)) for s in ("training", "validation", "testing"))
    assert clips == 6
    code, _, err = _run(capsys, "make-synthetic", "--out", out, "--words", "nope")
    assert code == 2 and err.startswith("quartznet: error:")


@pytest.mark.skipif(
    not _has("training.loop"), reason="quartznet_tutorial.training.loop not written yet"
)
def test_train_passes_the_options_as_a_train_config(capsys, monkeypatch, tmp_path):
    train_module = importlib.import_module("quartznet_tutorial.training.loop")

    seen = []

    class Result:
        def summary(self, **extra):
            return {"kind": "training", **extra}

    def fake_train(config):
        seen.append(config)
        return Result()

    monkeypatch.setattr(train_module, "train", fake_train)
    results = tmp_path / "r" / "run.json"
    argv = ["train", "--data-root", "d", "--epochs", 3, "--no-augment", "--results", results]
    code, out, _ = _run(capsys, *argv)
    (config,) = seen
    defaults = train_module.TrainConfig()
    assert code == 0
    assert config == dataclasses.replace(defaults, data_root="d", epochs=3, augment=False)
    record = json.loads(results.read_text())
    assert json.loads(out) == record
    assert (
        record["command"]
        == f"quartznet train --data-root d --epochs 3 --no-augment --results {results}"
    )
    assert record["profile"] == "custom"


@pytest.mark.skipif(
    not _has("training.loop"), reason="quartznet_tutorial.training.loop not written yet"
)
def test_train_user_mistakes_and_sigterm(capsys, monkeypatch, tmp_path):
    train_module = importlib.import_module("quartznet_tutorial.training.loop")

    code, _, err = _run(capsys, "train", "--data-root", tmp_path / "none", "--model", "qn-9x9")
    assert code == 2 and err.startswith("quartznet: error:") and len(err.splitlines()) == 1

    def stopped(config):
        raise train_module.TrainingInterrupted(tmp_path / "last.pt", epoch=2, step=5)

    monkeypatch.setattr(train_module, "train", stopped)
    code, _, err = _run(capsys, "train", "--data-root", tmp_path)
    assert code == 143 and "rerun with --resume" in err


@pytest.mark.skipif(
    not _has("evaluation.accuracy"), reason="quartznet_tutorial.evaluation.accuracy not written yet"
)
def test_evaluate_a_checkpoint_on_a_dataset(capsys, checkpoint, speech_commands, tmp_path):
    plot = tmp_path / "confusion.png"
    argv = ["evaluate", "--checkpoint", checkpoint, "--data-root", speech_commands,
            "--subset", "validation", "--plot", plot, "--json"]  # fmt: skip
    code, out, _ = _run(capsys, *argv)
    result = json.loads(out)
    assert code == 0 and 0.0 <= result["accuracy"] <= 1.0 and plot.stat().st_size > 0
    code, _, err = _run(
        capsys, "evaluate", "--checkpoint", checkpoint, "--data-root", tmp_path / "x"
    )
    assert code == 2 and "no such folder" in err


@pytest.mark.slow
@pytest.mark.skipif(
    not (_has("training.loop") and _has("evaluation.accuracy")), reason="train/evaluate not written"
)
def test_train_evaluate_predict_end_to_end(capsys, speech_commands, tmp_path):
    """A user's session on a tiny tree: train one epoch, evaluate the best checkpoint, predict."""
    run = tmp_path / "run"
    argv = ["-q", "train", "--data-root", speech_commands, "--epochs", 1, "--batch-size", 4,
            "--device", "cpu", "--no-progress", "--out-dir", run, "--pipeline", "dataloader",
            "--num-workers", 0]  # fmt: skip
    code, out, _ = _run(capsys, *argv)
    summary = json.loads(out)
    assert code == 0 and summary["epochs"] == 1 and (run / "best.pt").is_file()
    code, out, _ = _run(capsys, "-q", "evaluate", "--checkpoint", run / "best.pt",
                        "--data-root", speech_commands, "--device", "cpu", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["accuracy"] == pytest.approx(summary["test_accuracy"])
    code, out, _ = _run(capsys, "predict", speech_commands / "yes", "--checkpoint", run / "best.pt")
    assert code == 0 and len(out.splitlines()) == 5


# --- robustness: bad options fail first, in one line ----------------------------------------

ROOT = Path(__file__).parents[1]
_ENV = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": os.environ.get("PATH", "")}


def _module(name: str):
    return importlib.import_module(f"quartznet_tutorial.{name}")  # not the function of that name


def _must_not_run(*args, **kwargs):
    raise AssertionError("the work started before the options were checked")


@pytest.mark.parametrize("command", ["evaluate", "predict", "train"])
@pytest.mark.parametrize("device", ["tpu", "gpu", "mps", "cuda", "cuda:7"])
def test_devices_are_checked_first(capsys, monkeypatch, checkpoint, tmp_path, command, device):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has the device")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has the device")
    monkeypatch.setattr(_module("training.loop"), "train", _must_not_run)
    monkeypatch.setattr(_module("evaluation.accuracy"), "evaluate_checkpoint", _must_not_run)
    argv = {
        "evaluate": ["evaluate", "--checkpoint", checkpoint, "--data-root", tmp_path],
        "predict": ["predict", tmp_path, "--checkpoint", checkpoint],
        "train": ["train", "--data-root", tmp_path],
    }[command]
    code, _, err = _run(capsys, *argv, "--device", device)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "corrupt" not in err and f"quartznet {command} --help" in err
    if device in ("tpu", "gpu"):
        assert f"unknown device '{device}'" in err
    elif not torch.cuda.is_available():  # cuda, cuda:7; mps
        assert err.split(": ", 3)[-1].startswith("no ") and "use --device cpu" in err


@pytest.mark.parametrize("opset", [13, 21, 24, 99])
def test_export_refuses_opsets_the_exporter_cannot_write(capsys, monkeypatch, checkpoint, opset):
    monkeypatch.setattr(_module("export.onnx_export"), "export_onnx", _must_not_run)
    out = checkpoint.parent / "m.onnx"
    code, _, err = _run(
        capsys, "export", "--checkpoint", checkpoint, "--onnx", out, "--opset", opset
    )
    assert code == 2 and err.splitlines() == [
        f"quartznet: error: argument --opset: opset {opset} is not supported; choose 17 to 20 "
        "(see 'quartznet export --help')"
    ]


def test_output_paths_are_checked_before_the_work(capsys, monkeypatch, checkpoint, tmp_path):
    monkeypatch.setattr(_module("training.loop"), "train", _must_not_run)
    monkeypatch.setattr(_module("evaluation.accuracy"), "evaluate_checkpoint", _must_not_run)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    evaluate = ["evaluate", "--checkpoint", checkpoint, "--data-root", tmp_path]
    cases = [
        (["train", "--data-root", tmp_path, "--results", a_file / "s.json"], "cannot write there"),
        (["train", "--data-root", tmp_path, "--results", tmp_path], "is a folder"),
        (["train", "--data-root", tmp_path, "--out-dir", a_file], "is a file, not a folder"),
        ([*evaluate, "--plot", tmp_path / "cm.xyz"], "unknown image format 'xyz'"),
        ([*evaluate, "--plot", tmp_path / "cm"], "no file extension"),
        ([*evaluate, "--plot", a_file / "cm.png"], "cannot write there"),
    ]
    for argv, expected in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, (argv, err)


def test_plot_folder_is_created(capsys, checkpoint, speech_commands, tmp_path):
    plot = tmp_path / "new" / "folder" / "cm.pdf"
    argv = ["-q", "evaluate", "--checkpoint", checkpoint, "--data-root", speech_commands, "--plot",
            plot, "--device", "cpu"]  # fmt: skip
    code, _, _ = _run(capsys, *argv)
    assert code == 0 and plot.read_bytes().startswith(b"%PDF")


def test_path_mistakes_say_what_to_pass(capsys, tmp_path, checkpoint, clips):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(checkpoint.read_bytes())
    cases = [
        (["evaluate", "--checkpoint", run, "--data-root", tmp_path],
         f"{run} is a folder; pass {run / 'best.pt'}"),
        (["predict", clips, "--checkpoint", clips], f"{clips} is a folder; pass a .pt checkpoint"),
        (["evaluate", "--checkpoint", checkpoint, "--data-root", clips / "a.wav"],
         f"{clips / 'a.wav'}: is a file, not a folder"),
        (["make-synthetic", "--out", tmp_path / "s", "--seed", 2**64],
         "must be at most 2**63 - 1"),
        (["train", "--data-root", tmp_path, "--seed", -1], "must be at least 0"),
        (["train", "--data-root", tmp_path, "--dataset-version", 3], "invalid choice: 3"),
        (["train", "--epochs", 2], "required: --data-root"),
    ]  # fmt: skip
    for argv, expected in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, (argv, err)


def test_help_shows_defaults_and_required_options(capsys):
    help_text = {c: " ".join(_run(capsys, c, "--help")[1].split()) for c in SUBCOMMANDS}
    assert "clips per word (default: 100)" in help_text["make-synthetic"]
    assert "(default: testing)" in help_text["evaluate"]
    assert "{32,16-mixed,bf16-mixed} autocast precision (default: 32)" in help_text["evaluate"]
    assert "usage: quartznet train" in help_text["train"]
    usage = help_text["train"].split("options:")[0]
    assert "--data-root DATA_ROOT" in usage and "[--data-root" not in usage
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out == f"quartznet {quartznet_tutorial.__version__}\n"


def test_quiet_after_the_subcommand_and_no_progress_bars(capsys, monkeypatch, tmp_path):
    seen = []

    class Result:
        def summary(self, **extra):
            return {}

    monkeypatch.setattr(_module("training.loop"), "train", lambda c: seen.append(c) or Result())
    for argv in (
        ["-q", "train", "--data-root", tmp_path],
        ["train", "--data-root", tmp_path, "-q"],
    ):
        assert _run(capsys, *argv)[0] == 0
    assert _run(capsys, "train", "--data-root", tmp_path)[0] == 0
    assert [c.progress for c in seen] == [False, False, True]
    code, _, err = _run(capsys, "train", "--data-root", tmp_path, "--bogus")
    assert code == 2 and "unrecognized arguments: --bogus (see 'quartznet train --help')" in err


def test_a_value_error_from_torch_is_a_bug_not_a_user_mistake(capsys, monkeypatch, tmp_path):
    def broken(*args, **kwargs):  # an internal mistake: shapes that do not match
        torch.nn.functional.cross_entropy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))

    monkeypatch.setattr(_module("evaluation.accuracy"), "evaluate_checkpoint", broken)
    argv = ["evaluate", "--checkpoint", tmp_path / "x.pt", "--data-root", tmp_path]
    with pytest.raises(ValueError, match="batch_size"):
        main([str(a) for a in argv])
    assert "internal error, a bug" in capsys.readouterr().err

    def ours(*args, **kwargs):
        from quartznet_tutorial.datasets.speech_commands import labels_for

        labels_for(3)

    monkeypatch.setattr(_module("evaluation.accuracy"), "evaluate_checkpoint", ours)
    code, _, err = _run(capsys, *argv)
    assert (
        code == 2 and err == "quartznet: error: unknown Speech Commands version 3; choose 1 or 2\n"
    )


def test_a_closed_pipe_ends_quietly():
    """`quartznet models --json | head -0`: the reader is gone before anything is written."""
    process = subprocess.Popen(
        [sys.executable, "-m", "quartznet_tutorial.cli.main", "models", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=_ENV,
    )  # fmt: skip
    process.stdout.close()
    err = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=60) == 141 and err == b""


@pytest.mark.skipif(
    not _has("synthetic"), reason="quartznet_tutorial.synthetic.espeak not written yet"
)
def test_ctrl_c_stops_make_synthetic_and_its_workers(tmp_path, interruptible):
    """Ctrl-C in a terminal (SIGINT to the whole process group) while the workers write clips:
    exit 130 with one line; no worker prints a KeyboardInterrupt or outlives the command."""
    pytest.importorskip("espeakng_loader")
    out = tmp_path / "synthetic"
    process = subprocess.Popen(
        [sys.executable, "-m", "quartznet_tutorial.cli.main", "-q", "make-synthetic", "--out", out,
         "--words", "yes", "--per-word", "2000", "--workers", "2"],
        stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_ENV, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not any((out / "yes").glob("*.wav")):  # the pool is at work
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130 and err == "quartznet: interrupted\n"
    with pytest.raises(ProcessLookupError):  # the workers are gone too
        os.killpg(process.pid, 0)


def test_one_name_per_concept_and_no_old_spellings(capsys, checkpoint, clips, tmp_path):
    """--checkpoint: a file or a shipped model, everywhere; --dataset-version: the data's. The
    old spellings (--model for --checkpoint, --version for --dataset-version) are gone."""
    argv = ["predict", clips / "a.wav", "--checkpoint", checkpoint, "--model", checkpoint]
    code, _, err = _run(capsys, *argv)
    assert code == 2 and f"unrecognized arguments: --model {checkpoint}" in err
    code, _, err = _run(capsys, "predict", clips)
    assert code == 2 and "required: --checkpoint" in err
    parser = build_parser()
    for command in ("train", "evaluate", "make-synthetic"):
        extra = {
            "train": ["--data-root", "d"],
            "evaluate": ["--checkpoint", checkpoint, "--data-root", "d"],
            "make-synthetic": ["--out", tmp_path / "o"],
        }[command]
        extra = [str(x) for x in extra]
        assert parser.parse_args([command, *extra, "--dataset-version", "2"]).version == 2
        assert parser.parse_args([command, *extra]).version == 1
        code, _, err = _run(capsys, command, *extra, "--version", "2")
        assert code == 2 and "unrecognized arguments: --version 2" in err, err
    help_text = {c: _run(capsys, c, "--help")[1] for c in ("predict", "evaluate", "export")}
    assert all(("--checkpoint" in h and "--device" in h) or c == "export"
               for c, h in help_text.items())  # fmt: skip
    assert "default: auto" in " ".join(help_text["predict"].split())


def test_every_command_module_has_the_same_shape():
    """HELP, add_arguments(parser), run(args); importing one loads no torch (that waits for
    add_arguments or run), so `quartznet --help` can list them all."""
    for name in COMMANDS:
        module = command_module(name)
        assert isinstance(module.HELP, str) and module.HELP, name
        assert callable(module.add_arguments) and callable(module.run), name
    script = (
        "import sys\n"
        "from quartznet_tutorial.cli.main import COMMANDS, command_module\n"
        "for name in COMMANDS:\n"
        "    command_module(name)\n"
        "print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=_ENV
    ).stdout
    assert out == "[]\n"


def test_detect_options_are_the_detect_config_fields(capsys):
    """Generated from DetectConfig: its defaults, its help text; the CLI only adds checks."""
    from quartznet_tutorial.kws.detector import DetectConfig

    parser = build_parser(["detect"])
    args = parser.parse_args(["detect", "long.wav", "--checkpoint", "x.pt"])
    assert dataclass_from_args(DetectConfig, args) == DetectConfig()
    argv = ["detect", "long.wav", "--checkpoint", "x.pt", "--hop-ms", "50", "--mode", "one-pass",
            "--threshold", "0.5", "--keywords", "yes", "no", "--minimum-count", "2"]  # fmt: skip
    config = dataclass_from_args(DetectConfig, parser.parse_args(argv))
    assert config == DetectConfig(
        hop_ms=50, mode="one-pass", threshold=0.5, keywords=("yes", "no"), minimum_count=2
    )
    help_text = " ".join(_run(capsys, "detect", "--help")[1].split())
    for f in dataclasses.fields(DetectConfig):
        assert f"--{f.name.replace('_', '-')}" in help_text
    assert "window step in ms, a multiple of 10 (the MFCC hop) (default: 100)" in help_text
    for bad, expected in [
        (["--hop-ms", "15"], "multiple of 10 ms"),
        (["--threshold", "1.5"], "between 0 and 1"),
        (["--minimum-count", "0"], "must be at least 1"),
        (["--mode", "fast"], "invalid choice: 'fast'"),
    ]:
        code, _, err = _run(capsys, "detect", "long.wav", "--checkpoint", "x.pt", *bad)
        assert code == 2 and expected in err and len(err.splitlines()) == 1, err


def test_a_name_that_is_no_file_lists_the_shipped_models(capsys, clips):
    code, _, err = _run(capsys, "predict", clips, "--checkpoint", "synthetic-v9-nothing")
    assert code == 2
    assert err.startswith("quartznet: error: 'synthetic-v9-nothing' is neither a file nor a ")
    assert "synthetic-v1-quartznet-3x1" in err


def test_help_and_other_commands_build_without_torch():
    """Only the command that runs gets its options: `quartznet --help` needs no torch, while
    `train` (TrainConfig's fields) and a build of every command do."""
    script = (
        "import contextlib, io, sys\n"
        "from quartznet_tutorial.cli.main import build_parser, main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    codes = [main(['--help']), main(['predict', '--help']), main(['evaluate', '-h'])]\n"
        "print(codes, 'torch' in sys.modules)\n"
        "build_parser().parse_args(['train', '--data-root', 'd', '--epochs', '3'])\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=_ENV
    ).stdout
    assert out.split("\n")[:2] == ["[0, 0, 0] False", "True"]
