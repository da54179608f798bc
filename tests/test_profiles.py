"""Profiles: smoke by default, full on request with clear errors, synthetic data cached."""

from __future__ import annotations

import dataclasses
import datetime
import sys
import types
from pathlib import Path

import pytest
import torch

from quartznet_tutorial import VARIANTS
from quartznet_tutorial.training.config import TrainConfig
from quartznet_tutorial.tutorial.profiles import get_profile
from quartznet_tutorial.utils.files import default_cache_dir
from quartznet_tutorial.utils.runtime import cpu_name


@pytest.fixture
def fake_synthetic(monkeypatch, tmp_path):
    """Stand in for the eSpeak generator (tested in test_synthetic); record its calls."""
    calls = []

    def make_synthetic(out, version=1, per_word=100, seed=0, *, speakers=None, progress=True):
        calls.append((out, version, per_word, seed, speakers))
        return out

    module = types.ModuleType("quartznet_tutorial.synthetic.espeak")
    module.make_synthetic = make_synthetic
    module.GENERATOR_VERSION = 7
    monkeypatch.setitem(sys.modules, "quartznet_tutorial.synthetic.espeak", module)
    monkeypatch.setenv("QUARTZNET_CACHE", str(tmp_path / "cache"))
    return calls


def test_smoke_is_the_default(monkeypatch):
    monkeypatch.delenv("QUARTZNET_PROFILE", raising=False)
    profile = get_profile()
    assert profile.name == "smoke" and profile.data == "synthetic-v1"
    assert profile.device == "cpu" and profile.precision == "32"
    text = profile.describe()
    assert "profile 'smoke'" in text
    # What produced the page, and when: the CPU's model and today's date.
    assert f"CPU {cpu_name()} (" in text and cpu_name()
    assert text.endswith(datetime.date.today().isoformat())


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("QUARTZNET_PROFILE", "full")
    profile = get_profile()
    assert profile.name == "full" and profile.epochs == 200 and profile.batch_size == 256
    assert set(profile.quartznet_models + profile.se_models) == set(VARIANTS)


def test_models_exist():
    for name in ("smoke", "full"):
        for model in get_profile(name).quartznet_models + get_profile(name).se_models:
            assert model in VARIANTS


def test_unknown_profile(monkeypatch):
    monkeypatch.setenv("QUARTZNET_PROFILE", "quick")
    with pytest.raises(ValueError, match=r"QUARTZNET_PROFILE='quick'.*smoke, full"):
        get_profile()


def test_full_needs_the_dataset(monkeypatch, tmp_path):
    monkeypatch.delenv("SPEECH_COMMANDS_ROOT", raising=False)
    with pytest.raises(ValueError, match="set SPEECH_COMMANDS_ROOT"):
        get_profile("full").data_root()
    monkeypatch.setenv("SPEECH_COMMANDS_ROOT", str(tmp_path))
    with pytest.raises(ValueError, match=r"no testing_list\.txt"):
        get_profile("full").data_root()
    (tmp_path / "testing_list.txt").write_text("")
    assert get_profile("full").data_root() == tmp_path


def test_smoke_data_is_generated_into_the_cache(fake_synthetic, tmp_path):
    profile = get_profile("smoke")
    root = profile.data_root()
    assert fake_synthetic == [(root, 1, profile.per_word, 0, profile.speakers)]
    # The sizes and the generator's version are part of the folder: a new generator, or
    # another number of clips or speakers, never meets an old set.
    spk = "" if profile.speakers is None else f"x{profile.speakers}"
    assert root == tmp_path / "cache" / f"synthetic-v1-{profile.per_word}{spk}-seed0-gen7"
    other = dataclasses.replace(profile, speakers=(profile.speakers or 10) + 1).data_root()
    fewer = dataclasses.replace(profile, per_word=profile.per_word - 1).data_root()
    assert len({root, other, fewer}) == 3


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("QUARTZNET_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "quartznet-tutorial"


def test_train_config_follows_the_profile(fake_synthetic, tmp_path):
    profile = get_profile("smoke")
    config = profile.train_config("se-quartznet-3x1", tmp_path / "run")
    assert config.model == "se-quartznet-3x1"
    assert config.data_root == str(profile.data_root())
    assert (config.epochs, config.batch_size) == (profile.epochs, profile.batch_size)
    assert (config.precision, config.device, config.seed) == ("32", "cpu", 0)
    assert config.out_dir == str(tmp_path / "run") and not config.resume
    assert (config.lr, config.hold_ratio, config.augment) == (
        profile.lr,
        profile.hold_ratio,
        profile.augment,
    )
    # One second, unpadded: the padding to NeMo's 128 is a fifth of the work.
    assert config.frames == profile.frames == 101
    assert "101-frame examples" in profile.describe()
    # Everything else is NeMo's recipe, untouched.
    assert (config.weight_decay, config.warmup_ratio, config.beta2) == (0.001, 0.05, 0.5)


def test_full_profile_is_nemos_recipe(fake_synthetic, monkeypatch, tmp_path):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setenv("SPEECH_COMMANDS_ROOT", str(tmp_path))
    (tmp_path / "testing_list.txt").write_text("")
    profile = get_profile("full")
    config = profile.train_config("quartznet-3x1", tmp_path / "run")
    nemo = TrainConfig()
    for name in ("epochs", "lr", "warmup_ratio", "hold_ratio", "augment", "frames"):
        assert getattr(config, name) == getattr(nemo, name), name
    assert config.batch_size == 2 * nemo.batch_size  # one process: NeMo's global batch, 2 x 128
    assert "NeMo's augmentation" in profile.describe()


def test_describe_names_what_differs_from_nemo():
    profile = dataclasses.replace(get_profile("smoke"), lr=0.1, hold_ratio=0.2, augment=False)
    text = profile.describe()
    assert "lr 0.1 (hold 20%)" in text and "no augmentation" in text


def test_smoke_12_class_model_is_fine_tuned_from_the_30_word_model(fake_synthetic, monkeypatch):
    """The 12-class run starts from the cached 30-word run of the same variant, trained first,
    at fine-tuning's learning rate; the full profile trains it from scratch."""
    import numpy as np

    from quartznet_tutorial.evaluation.accuracy import EvalResult
    from quartznet_tutorial.training.finetune import FINETUNE_DEFAULTS
    from quartznet_tutorial.tutorial.profiles import Profile, Run

    calls = []

    def train_here(self, model, out_dir, task="all", init=""):
        calls.append((task, init))
        (tmp := Path(out_dir)).mkdir(parents=True)
        (tmp / "best.pt").write_bytes(b"weights")
        return Run(model, [], EvalResult(["a", "b"], np.eye(2, dtype=np.int64), 0.0), {}, None)

    monkeypatch.setattr(Profile, "_train_here", train_here)
    profile = get_profile("smoke")
    profile.train("quartznet-3x1", task="12")
    assert [task for task, _ in calls] == ["all", "12"]
    base = calls[1][1]
    assert base == str(profile._cache_folder("quartznet-3x1", "all") / "best.pt")
    assert Path(base).read_bytes() == b"weights"
    config = profile.train_config("quartznet-3x1", "", "12", base)
    # The smoke profile trains the new decoder alone, at the 30-word recipe's lr.
    assert (config.lr, config.epochs, config.init_checkpoint) == (
        profile.lr,
        profile.task12_epochs,
        base,
    )
    assert config.freeze_encoder_epochs == config.epochs == 1
    assert "1 epoch of its new decoder on the 30-word model's encoder" in profile.describe("12")
    whole = dataclasses.replace(profile, task12_decoder_only=False)
    config = whole.train_config("quartznet-3x1", "", "12", base)
    assert (config.lr, config.freeze_encoder_epochs) == (FINETUNE_DEFAULTS["lr"], 0)
    assert "12-class task, 1 epoch fine-tuned from the 30-word model" in whole.describe("12")
    scratch = dataclasses.replace(profile, task12_finetune=False)
    assert "fine-tuned" not in scratch.describe("12") and "decoder" not in scratch.describe("12")
    assert scratch.train_config("quartznet-3x1", "", "12").freeze_encoder_epochs == 0
    assert profile.train_config("quartznet-3x1", "").freeze_encoder_epochs == 0  # 30 words


def test_full_profile_without_gpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    profile = get_profile("full")
    assert (profile.device, profile.precision, profile.nproc) == ("cpu", "32", 1)


def test_smoke_profile_trains_end_to_end(monkeypatch, tmp_path):
    """The notebooks' one call, on a tiny real synthetic set: history, test result, a record
    the results table accepts, and a classifier that predicts."""
    import tempfile

    import torch

    from quartznet_tutorial.tutorial.results import validate_record

    monkeypatch.setenv("QUARTZNET_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    profile = dataclasses.replace(
        get_profile("smoke"), epochs=2, per_word=4, speakers=None, batch_size=16
    )
    run = profile.train("quartznet-3x1")
    assert [h["epoch"] for h in run.history] == [1, 2]
    assert 0.0 <= run.test.accuracy <= 1.0 and run.test.confusion.shape == (30, 30)
    record = validate_record(run.record)
    assert (record["model"], record["data"], record["profile"]) == (
        "quartznet-3x1",
        "synthetic-v1",
        "smoke",
    )
    assert record["test_accuracy"] == pytest.approx(run.test.accuracy)
    guesses = run.classifier.predict(torch.zeros(1, 16000), top_k=2)
    assert len(guesses[0]) == 2
    assert not list((tmp_path / "tmp").glob("quartznet-*"))  # checkpoints cleaned up


@pytest.mark.parametrize(("gpus", "per_gpu"), [(1, 256), (2, 128), (4, 64), (8, 32), (16, 32)])
def test_full_profile_keeps_nemos_global_batch(monkeypatch, gpus, per_gpu):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "GPU")
    profile = get_profile("full")
    assert (profile.nproc, profile.batch_size) == (gpus, per_gpu)
    assert f"batch {per_gpu} per GPU (global {gpus * per_gpu})" in profile.describe()
