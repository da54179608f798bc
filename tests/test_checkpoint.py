"""Checkpoints: round trips, atomic writes, clear errors on bad or mismatched files."""

from __future__ import annotations

import os

import pytest
import torch

from quartznet_tutorial import build_model
from quartznet_tutorial.checkpoints.checkpoint import (
    CheckpointError,
    check_compatible,
    label_mismatch,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from quartznet_tutorial.checkpoints.loading import load_classifier
from quartznet_tutorial.datasets.speech_commands import labels_for
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.utils.runtime import versions

LABELS = ["yes", "no", "up", "down"]


def _state(model="quartznet-3x1", labels=LABELS, seed=0) -> dict:
    torch.manual_seed(seed)
    classifier = Classifier(build_model(model, num_classes=len(labels)), labels)
    return {"classifier": classifier.to_dict(), "epoch": 3, "versions": versions()}


def test_round_trip_gives_identical_logits(tmp_path):
    torch.manual_seed(0)
    classifier = Classifier(build_model("se-quartznet-3x1", num_classes=4), LABELS).eval()
    # Non-trivial BN statistics, so the buffers must travel too.
    for m in classifier.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    path = save_checkpoint(tmp_path / "run" / "last.pt", {"classifier": classifier.to_dict()})
    loaded = load_classifier(path)
    waves = torch.randn(3, 16_000)
    assert loaded.labels == LABELS
    torch.testing.assert_close(loaded(waves), classifier(waves), rtol=0, atol=0)


def test_save_leaves_no_temporary_and_overwrites(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(seed=0))
    save_checkpoint(path, _state(seed=1))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    expected = _state(seed=1)["classifier"]["state_dict"]
    for key, value in load_checkpoint(path)["classifier"]["state_dict"].items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


def test_failed_save_keeps_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(seed=0))
    before = path.read_bytes()

    def half_write_then_fail(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _state(seed=1))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_truncated_file_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", _state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt: not a readable checkpoint.*truncated"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"last\.pt"):
        load_classifier(path)


def test_garbage_and_empty_files_are_clear_errors(tmp_path):
    for name, data in [("empty.pt", b""), ("text.pt", b"hello, not a checkpoint\n")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
            load_checkpoint(tmp_path / name)


class _Evil:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_file_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"classifier": _Evil()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused to load"):
        load_checkpoint(path)


def test_foreign_file_is_a_clear_error(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(build_model("quartznet-3x1").state_dict(), path)
    with pytest.raises(CheckpointError, match=r"weights\.pt: not a quartznet-tutorial checkpoint"):
        load_checkpoint(path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_loading_onto_a_missing_gpu_does_not_blame_the_file(tmp_path):
    path = save_checkpoint(tmp_path / "best.pt", _state())
    with pytest.raises(ValueError, match="no CUDA device here; use 'cpu'"):
        load_checkpoint(path, map_location="cuda")
    assert load_checkpoint(path)["epoch"] == 3  # the file is fine


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_check_compatible_names_each_mismatch():
    state = _state()
    check_compatible(state, model="quartznet-3x1", labels=LABELS)
    with pytest.raises(CheckpointError, match=r"holds model 'quartznet-3x1'.*'quartznet-3x2'"):
        check_compatible(state, model="quartznet-3x2")
    with pytest.raises(CheckpointError, match="4 classes in the checkpoint, 5 in the data"):
        check_compatible(state, labels=[*LABELS, "left"])
    with pytest.raises(CheckpointError, match=r"only in the checkpoint: \['yes'\]"):
        check_compatible(state, labels=["left", "no", "up", "down"])
    with pytest.raises(CheckpointError, match=r"another order \(index 0: 'yes' vs 'no'\)"):
        check_compatible(state, labels=["no", "yes", "up", "down"])


def test_label_mismatch_names_the_version_the_model_knows():
    message = label_mismatch(labels_for(2), labels_for(1), "the checkpoint")
    assert message.startswith("the checkpoint's labels are not the data's (35 classes in the")
    assert "only in the checkpoint: ['backward', 'follow', 'forward']" in message
    assert message.endswith("knows Speech Commands V2: pass version=2 (--dataset-version 2)")
    assert label_mismatch(["a", "b"], ["a", "c"]).endswith("use data with the model's words")


def test_check_compatible_reports_wrong_shapes():
    state = _state()
    key = "decoder.weight"
    state["classifier"]["state_dict"][key] = torch.zeros(4, 64)
    with pytest.raises(CheckpointError, match=r"my\.pt: .*decoder\.weight has shape \(4, 64\)"):
        check_compatible(state, path="my.pt")


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / "last.pt").write_bytes(b"keep")
    (tmp_path / "notes.tmp").write_bytes(b"keep")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".last.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.tmp"]


def test_written_files_get_the_umasks_mode_not_a_private_one(tmp_path):
    from quartznet_tutorial.utils.files import write_text_atomic

    previous = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a.txt", "x")
        saved = save_checkpoint(tmp_path / "b.pt", {"x": 1})
    finally:
        os.umask(previous)
    assert (path.stat().st_mode & 0o777) == (saved.stat().st_mode & 0o777) == 0o644
    assert not list(tmp_path.glob(".*.tmp"))
