"""Profiles: smoke by default, full on request with clear errors, synthetic data cached."""

from __future__ import annotations

import datetime
import sys
import types

import pytest

from quartznet_tutorial import VARIANTS
from quartznet_tutorial.checkpoint import cpu_name
from quartznet_tutorial.profiles import cache_dir, get_profile


@pytest.fixture
def fake_synthetic(monkeypatch, tmp_path):
    """Stand in for the eSpeak generator (tested in test_synthetic); record its calls."""
    calls = []

    def make_synthetic(out, version=1, per_word=100, seed=0, *, progress=True):
        calls.append((out, version, per_word, seed))
        return out

    module = types.ModuleType("quartznet_tutorial.synthetic")
    module.make_synthetic = make_synthetic
    module.GENERATOR_VERSION = 7
    monkeypatch.setitem(sys.modules, "quartznet_tutorial.synthetic", module)
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
    assert profile.name == "full" and profile.epochs == 200 and profile.batch_size == 128
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
    assert fake_synthetic == [(root, 1, profile.per_word, 0)]
    # The generator's version is part of the folder: a new generator never meets an old set.
    assert root == tmp_path / "cache" / f"synthetic-v1-{profile.per_word}-seed0-gen7"


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("QUARTZNET_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "quartznet-tutorial"


def test_train_config_follows_the_profile(fake_synthetic, tmp_path):
    profile = get_profile("smoke")
    config = profile.train_config("se-quartznet-3x1", tmp_path / "run")
    assert config.model == "se-quartznet-3x1"
    assert config.data_root == str(profile.data_root())
    assert (config.epochs, config.batch_size) == (profile.epochs, profile.batch_size)
    assert (config.precision, config.device, config.seed) == ("32", "cpu", 0)
    assert config.out_dir == str(tmp_path / "run") and not config.resume
    # Everything else is NeMo's recipe, untouched.
    assert (config.lr, config.weight_decay, config.augment) == (0.05, 0.001, True)


def test_full_profile_without_gpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    profile = get_profile("full")
    assert (profile.device, profile.precision, profile.nproc) == ("cpu", "32", 1)


def test_smoke_profile_trains_end_to_end(monkeypatch, tmp_path):
    """The notebooks' one call, on a tiny real synthetic set: history, test result, a record
    the results table accepts, and a classifier that predicts."""
    import dataclasses
    import tempfile

    import torch

    from quartznet_tutorial.results import validate_record

    monkeypatch.setenv("QUARTZNET_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    profile = dataclasses.replace(get_profile("smoke"), epochs=2, per_word=4, batch_size=16)
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
