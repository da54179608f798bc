"""Profiles: smoke by default, full on request with clear errors, synthetic data cached."""

from __future__ import annotations

import sys
import types

import pytest

from quartznet_tutorial import VARIANTS
from quartznet_tutorial.profiles import get_profile


@pytest.fixture
def fake_synthetic(monkeypatch, tmp_path):
    """Stand in for the eSpeak generator; count its calls."""
    calls = []

    def make_synthetic(out, version=1, per_word=1, seed=0):
        calls.append((version, per_word, seed))
        (out / "yes").mkdir(parents=True, exist_ok=True)
        (out / "testing_list.txt").write_text("yes/0.wav\n")

    module = types.ModuleType("quartznet_tutorial.synthetic")
    module.make_synthetic = make_synthetic
    monkeypatch.setitem(sys.modules, "quartznet_tutorial.synthetic", module)
    monkeypatch.setenv("QUARTZNET_CACHE", str(tmp_path / "cache"))
    return calls


def test_smoke_is_the_default(monkeypatch):
    monkeypatch.delenv("QUARTZNET_PROFILE", raising=False)
    profile = get_profile()
    assert profile.name == "smoke" and profile.data == "synthetic-v1"
    assert profile.device == "cpu" and profile.precision == "32"
    assert "profile 'smoke'" in profile.describe()


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


def test_smoke_data_is_generated_once(fake_synthetic, tmp_path):
    profile = get_profile("smoke")
    root = profile.data_root()
    assert (root / "testing_list.txt").is_file()
    assert root.parent == tmp_path / "cache"
    assert profile.data_root() == root
    assert fake_synthetic == [(1, profile.per_word, 0)]
    assert [p.name for p in root.parent.iterdir()] == [root.name]  # no temporary left


def test_failed_generation_leaves_nothing(monkeypatch, fake_synthetic, tmp_path):
    def broken(out, **kwargs):
        (out / "half.wav").write_bytes(b"")
        raise RuntimeError("espeak died")

    monkeypatch.setattr(sys.modules["quartznet_tutorial.synthetic"], "make_synthetic", broken)
    with pytest.raises(RuntimeError):
        get_profile("smoke").data_root()
    assert list((tmp_path / "cache").iterdir()) == []
