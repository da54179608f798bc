"""Fine-tuning to your own words: the new decoder, the frozen encoder, the result, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from quartznet_tutorial.audio.features import FeatureConfig
from quartznet_tutorial.checkpoints.checkpoint import load_checkpoint, save_checkpoint
from quartznet_tutorial.checkpoints.loading import load_classifier
from quartznet_tutorial.cli.main import main
from quartznet_tutorial.datasets.speech_commands import check_words, labels_for
from quartznet_tutorial.models.classifier import Classifier
from quartznet_tutorial.models.quartznet import build_model
from quartznet_tutorial.training.finetune import finetune
from quartznet_tutorial.training.transfer import change_labels, freeze_encoder

BASE = "synthetic-v1-quartznet-3x1"
WORDS = ["computer", "lights", "music"]


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _encoder(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("encoder.")}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def own_words(make_speech_commands):
    """Three new words as tones, 8 clips each: 6 training, 1 validation, 1 test."""
    return make_speech_commands(words=WORDS, per_word=8)


def test_new_labels_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    classifier = Classifier(build_model("quartznet-3x1"), labels_for(1))
    encoder = {k: v.clone() for k, v in _encoder(classifier.model.state_dict()).items()}
    change_labels(classifier, WORDS)
    assert classifier.labels == WORDS and classifier.model.decoder.out_features == 3
    assert _same(_encoder(classifier.model.state_dict()), encoder)  # the encoder is kept
    path = save_checkpoint(tmp_path / "own.pt", {"classifier": classifier.to_dict()})
    loaded = load_classifier(path)
    assert loaded.labels == WORDS and loaded.model.num_classes == 3
    assert _same(loaded.model.state_dict(), classifier.model.state_dict())
    probs = loaded.predict(torch.randn(2, 16_000), top_k=3)
    assert {w for w, _ in probs[0]} == set(WORDS)


def test_the_same_labels_change_nothing():
    classifier = Classifier(build_model("quartznet-3x1"), labels_for(1))
    decoder = classifier.model.decoder
    assert change_labels(classifier, labels_for(1)).model.decoder is decoder


def test_freeze_encoder_turns_off_gradients_and_batchnorm_updates():
    model = build_model("quartznet-3x1").train()
    freeze_encoder(model)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    assert not model.encoder.training and model.decoder.training
    freeze_encoder(model, False)
    assert all(p.requires_grad for p in model.parameters())


def test_finetune_keeps_the_encoder_frozen_then_trains_it_and_lowers_the_loss(own_words, tmp_path):
    shipped = load_classifier(BASE).model.state_dict()
    options = {"data_root": own_words, "progress": False, "batch_size": 5, "lr": 0.02}
    frozen = finetune(
        BASE, WORDS, epochs=2, freeze_encoder_epochs=2, out_dir=str(tmp_path / "a"), **options
    )
    state = load_checkpoint(frozen.last_checkpoint)["classifier"]
    assert state["labels"] == WORDS
    # bit-identical: weights and BatchNorm statistics, after two epochs of training
    assert _same(_encoder(state["state_dict"]), _encoder(shipped))
    assert not torch.equal(state["state_dict"]["decoder.weight"][:1], shipped["decoder.weight"][:1])

    after = finetune(
        BASE, WORDS, epochs=6, freeze_encoder_epochs=2, out_dir=str(tmp_path / "b"), **options
    )
    state = load_checkpoint(after.last_checkpoint)["classifier"]["state_dict"]
    changed = [k for k in _encoder(shipped) if not torch.equal(state[k], shipped[k])]
    assert len(changed) == len(_encoder(shipped))  # every weight and statistic moved
    losses = [r["train_loss"] for r in after.history]
    assert losses[-1] < 0.5 * losses[0], losses
    assert after.summary()["words"] == WORDS
    assert after.summary()["init_checkpoint"] == BASE


@pytest.mark.parametrize(
    "checkpoint, words, error, message",
    [
        ("no-such-model", WORDS, ValueError, "neither a file nor a shipped model"),
        ("missing/model.pt", WORDS, FileNotFoundError, "no such file"),
        (BASE, ["lights", "music", "lights"], ValueError, "more than once"),
        (BASE, [], ValueError, "at least 2"),
        (BASE, ["lights"], ValueError, "at least 2"),
        (BASE, "lights", ValueError, "not one string"),
        (BASE, ["lights", "../music"], ValueError, "folder names"),
    ],
)
def test_bad_inputs_give_clear_errors(own_words, tmp_path, checkpoint, words, error, message):
    with pytest.raises(error, match=message):
        finetune(checkpoint, words, data_root=own_words, out_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_words_that_are_not_the_folders_are_refused(own_words, tmp_path):
    with pytest.raises(ValueError, match="are not among the words"):
        finetune(BASE, ["lights", "music"], data_root=own_words, out_dir=str(tmp_path / "run"))


def test_check_words_accepts_folder_names():
    assert check_words(["turn-on", "don't", "Zürich", "x2"]) == ["turn-on", "don't", "Zürich", "x2"]


def test_finetuning_keeps_the_example_length_the_encoder_learnt_on(own_words, tmp_path, capsys):
    """A model trained on 101-frame examples is fine-tuned on 101 frames unless told
    otherwise, from the CLI too."""
    trained = Classifier(build_model("quartznet-3x1"), labels_for(1), FeatureConfig(frames=101))
    path = save_checkpoint(tmp_path / "short.pt", {"classifier": trained.to_dict()})
    options = {"data_root": own_words, "progress": False, "batch_size": 6, "epochs": 1}
    kept = finetune(path, WORDS, out_dir=str(tmp_path / "kept"), freeze_encoder_epochs=0, **options)
    assert load_classifier(kept.last_checkpoint).features.frames == 101
    told = finetune(
        path, WORDS, out_dir=str(tmp_path / "told"), freeze_encoder_epochs=0, frames=128, **options
    )
    assert load_classifier(told.last_checkpoint).features.frames == 128
    code, stdout, err = _run(
        capsys, "-q", "finetune", "--checkpoint", path, "--words", *WORDS, "--data-root",
        own_words, "--epochs", 1, "--freeze-encoder-epochs", 0, "--out-dir", tmp_path / "cli",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["frames"] == 101


def test_cli_finetunes_and_the_result_is_an_ordinary_checkpoint(own_words, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = _run(
        capsys, "-q", "finetune", "--checkpoint", BASE, "--words", *WORDS,
        "--data-root", own_words, "--epochs", 2, "--freeze-encoder-epochs", 1,
        "--batch-size", 5, "--out-dir", out,
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(stdout)
    assert record["words"] == WORDS and record["freeze_encoder_epochs"] == 1
    assert record["init_checkpoint"] == BASE and record["model"] == "quartznet-3x1"
    assert record["frames"] == 128  # the shipped model's, NeMo's

    clip = next((own_words / "music").glob("*.wav"))
    code, stdout, err = _run(capsys, "predict", "--checkpoint", out / "best.pt", clip, "--top-k", 3)
    assert code == 0, err
    assert {w for w in stdout.split()[1::2]} == set(WORDS)
    code, stdout, err = _run(
        capsys, "evaluate", "--checkpoint", out / "best.pt", "--data-root", own_words, "--json"
    )
    assert code == 0, err
    assert json.loads(stdout)["labels"] == WORDS


def test_cli_bad_finetune_inputs_are_one_line_errors(own_words, tmp_path, capsys):
    for argv in (
        ["--checkpoint", "no-such-model", "--words", *WORDS],
        ["--checkpoint", BASE, "--words", "lights", "lights"],
        ["--checkpoint", BASE, "--words", "lights"],
        ["--checkpoint", BASE, "--words", *WORDS, "--per-word", 10],
    ):
        code, _, err = _run(
            capsys, "finetune", *argv, "--data-root", own_words, "--out-dir", tmp_path / "r"
        )
        assert code == 2 and err.startswith("quartznet: error:") and len(err.splitlines()) == 1
    code, _, err = _run(capsys, "finetune", "--words", *WORDS)
    assert code == 2 and "--checkpoint" in err
