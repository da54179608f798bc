"""The training loop on tiny fake batches: it learns, records, checkpoints and refuses clearly.

``FakePipeline`` follows the pipeline contract (``len()``, ``batches(epoch, start)``, batches a
pure function of ``(seed, epoch, step, rank)``, one shared shuffle sliced by rank) with
separable class prototypes + noise, 32 frames instead of 128 so that a step takes ~30 ms.
``install_fakes`` swaps it in for the real data; test_resume.py and test_ddp.py import both.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import math
import sys
from dataclasses import replace

import pytest
import torch

from quartznet_tutorial.checkpoints.checkpoint import CheckpointError, load_checkpoint
from quartznet_tutorial.checkpoints.loading import load_classifier
from quartznet_tutorial.datasets.speech_commands import SpeechCommands
from quartznet_tutorial.evaluation.accuracy import evaluate
from quartznet_tutorial.models.quartznet import build_model
from quartznet_tutorial.training import resume as resume_module
from quartznet_tutorial.training.config import TrainConfig, TrainResult
from quartznet_tutorial.training.loop import train, train_seeds, train_step
from quartznet_tutorial.training.optim import Novograd
from quartznet_tutorial.utils import precision, runtime
from quartznet_tutorial.utils.precision import precision_warning

# The package exports the function `train`, which hides the module of that name.
train_module = importlib.import_module("quartznet_tutorial.training.loop")

LABELS = ["yes", "no", "up", "down"]
FRAMES = 32
CLIPS = {"training": 192, "validation": 48, "testing": 48}


class FakePipeline:
    """Noisy class prototypes; the same clips for every epoch, shuffled per (seed, epoch)."""

    def __init__(self, subset, *, batch_size, train, seed=0, rank=0, world_size=1, device="cpu"):
        n = CLIPS[subset]
        g = torch.Generator().manual_seed(1234)  # the data itself never depends on the run
        prototypes = torch.randn(len(LABELS), 64, FRAMES, generator=g)
        offset = {"training": 0, "validation": 1, "testing": 2}[subset]
        g.manual_seed(100 + offset)
        self.targets = torch.randint(0, len(LABELS), (n,), generator=g)
        self.features = prototypes[self.targets] + 2.0 * torch.randn(n, 64, FRAMES, generator=g)
        self.labels = list(LABELS)
        self.batch_size, self.train = batch_size, train
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.device = torch.device(device)

    def _plan(self, epoch):
        n, per_step = len(self.targets), self.batch_size * self.world_size
        if self.train:
            order = torch.randperm(
                n, generator=torch.Generator().manual_seed(self.seed * 997 + epoch)
            )
            steps = n // per_step
        else:
            order, steps = torch.arange(n), math.ceil(n / per_step)
        plan = []
        for step in range(steps):
            chunk = order[step * per_step : (step + 1) * per_step]
            mine = chunk.tensor_split(self.world_size)[self.rank]
            if len(mine):
                plan.append((step, mine))
        return plan

    def __len__(self):
        return len(self._plan(0))

    def batches(self, epoch, start=0):
        for _, index in self._plan(epoch)[start:]:
            yield self.features[index].to(self.device), self.targets[index].to(self.device)


def fake_build_data(config, env):
    def make(subset, train):
        return FakePipeline(
            subset,
            batch_size=config.batch_size,
            train=train,
            seed=config.seed,
            rank=env.rank,
            world_size=env.world_size,
            device=env.device,
        )

    return train_module.TrainData(
        list(LABELS),
        make("training", True),
        make("validation", False),
        make("testing", False),
        dict(CLIPS),
    )


def install_fakes(monkeypatch=None):
    """Train on FakePipeline instead of Speech Commands (in this process)."""
    if monkeypatch is None:
        train_module.build_data = fake_build_data
    else:
        monkeypatch.setattr(train_module, "build_data", fake_build_data)


def small_config(out_dir, **overrides) -> TrainConfig:
    settings = dict(
        model="quartznet-3x1",
        data_root="fake",
        epochs=3,
        batch_size=16,
        out_dir=str(out_dir),
        device="cpu",
        progress=False,
        seed=0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def strip_timing(history):
    """Metrics that must repeat exactly (time measurements never do)."""
    timing = {"seconds", "train_seconds", "clips_per_second"}
    return [{k: v for k, v in r.items() if k not in timing} for r in history]


def weights(path):
    return load_checkpoint(path)["classifier"]["state_dict"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture
def fakes(monkeypatch):
    install_fakes(monkeypatch)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory) -> TrainResult:
    """One short run shared by the read-only tests below."""
    mp = pytest.MonkeyPatch()
    install_fakes(mp)
    torch.set_num_threads(1)  # as `fakes` sets it: runs compared bit for bit share the order
    try:
        return train(small_config(tmp_path_factory.mktemp("run")))
    finally:
        mp.undo()


def test_a_few_epochs_lower_the_loss_and_learn(three_epochs):
    losses = [r["train_loss"] for r in three_epochs.history]
    assert losses[-1] < 0.7 * losses[0]
    assert three_epochs.val_accuracy > 1 / len(LABELS) + 0.2
    assert three_epochs.test_accuracy is not None


def test_history_metrics_file_and_summary(three_epochs):
    r = three_epochs
    out = r.last_checkpoint.parent
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines == json.loads(json.dumps(r.history))
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert [line["step"] for line in lines] == [12, 24, 36]  # 192 clips / 16 per step
    assert all(line["clips"] == 192 for line in lines)
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "kind", "model", "data", "epochs", "test_accuracy", "val_accuracy", "train_seconds",
        "hardware", "device", "precision", "date", "versions", "seed", "clips_per_second",
    ):  # fmt: skip
        assert key in summary, key
    assert summary["kind"] == "training" and summary["epochs"] == 3
    assert 0 <= summary["test_accuracy"] <= 1 and summary["val_accuracy"] == r.val_accuracy
    assert summary["data"] == "speech-commands-v1"
    assert r.summary(profile="smoke")["profile"] == "smoke"


def test_schedule_reaches_min_lr_at_the_end(three_epochs):
    assert three_epochs.history[-1]["lr"] == pytest.approx(0.001)
    assert three_epochs.history[0]["lr"] == pytest.approx(0.05)  # still in the hold phase


def test_best_checkpoint_round_trip_reproduces_its_val_accuracy(three_epochs):
    r = three_epochs
    classifier = load_classifier(r.best_checkpoint)
    assert classifier.labels == LABELS
    val = FakePipeline("validation", batch_size=16, train=False)
    assert evaluate(classifier.model, val).accuracy == r.val_accuracy
    best_epochs = [h for h in r.history if h["val_accuracy"] == r.val_accuracy]
    assert load_checkpoint(r.best_checkpoint)["epoch"] == best_epochs[0]["epoch"]


def test_same_seed_same_weights_other_seed_other(fakes, tmp_path, three_epochs):
    again = train(small_config(tmp_path / "again"))
    assert_same_weights(weights(again.last_checkpoint), weights(three_epochs.last_checkpoint))
    assert strip_timing(again.history) == strip_timing(three_epochs.history)
    other = train(small_config(tmp_path / "other", seed=1, epochs=1))
    assert not torch.equal(
        weights(other.last_checkpoint)["decoder.weight"],
        load_checkpoint(three_epochs.last_checkpoint)["classifier"]["state_dict"]["decoder.weight"],
    )


def test_max_steps_stops_mid_epoch(fakes, tmp_path):
    r = train(small_config(tmp_path, epochs=5, max_steps=7, eval_every=2))
    assert [h["step"] for h in r.history] == [7]
    assert r.history[0]["clips"] == 7 * 16
    assert r.history[0]["val_accuracy"] is not None  # the last epoch is always validated


def test_eval_every_skips_validation(fakes, tmp_path):
    r = train(small_config(tmp_path, epochs=3, eval_every=2))
    assert [h["val_accuracy"] is None for h in r.history] == [True, False, False]


def test_bf16_mixed_runs_on_cpu(fakes, tmp_path):
    r = train(small_config(tmp_path, epochs=1, max_steps=3, precision="bf16-mixed"))
    assert math.isfinite(r.history[0]["train_loss"])
    state = load_checkpoint(r.last_checkpoint)
    assert state["classifier"]["state_dict"]["decoder.weight"].dtype == torch.float32
    assert state["scaler"] == {}  # no loss scaling for bf16


def test_fp16_mixed_trains_on_cpu_with_loss_scaling(fakes, tmp_path, caplog):
    """NVIDIA's precision (float16 autocast and a GradScaler) runs its code path on the CPU."""
    with caplog.at_level(logging.WARNING, logger="quartznet_tutorial"):
        r = train(small_config(tmp_path, epochs=1, max_steps=4, precision="16-mixed"))
    assert "'16-mixed' on the CPU" in caplog.text  # slow there: said once, not refused
    assert all(math.isfinite(h["train_loss"]) for h in r.history)
    state = load_checkpoint(r.last_checkpoint)
    assert state["classifier"]["state_dict"]["decoder.weight"].dtype == torch.float32
    # GradScaler's state is saved for resuming: its scale and the steps since it last changed.
    assert state["scaler"]["scale"] == 2.0**16 and state["scaler"]["_growth_tracker"] == 4


def test_fp16_step_whose_gradients_overflow_is_skipped_and_the_scale_lowered():
    torch.manual_seed(0)
    model = build_model("quartznet-3x1").train()
    optimizer = Novograd(model.parameters(), lr=0.05)
    features, target = torch.randn(8, 64, 128), torch.randint(0, 30, (8,))
    before = [p.detach().clone() for p in model.parameters()]
    # A loss scaled by 2**40 overflows float16 (largest finite value 65504) in the backward.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    _, loss = train_step(model, optimizer, scaler, torch.float16, features, target)
    assert math.isfinite(loss.item())
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before, strict=True))
    assert scaler.get_scale() == 2.0**39  # backoff_factor 0.5
    # At a scale that fits, the same step updates every parameter and keeps the scale.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    train_step(model, optimizer, scaler, torch.float16, features, target)
    assert all(not torch.equal(a, b) for a, b in zip(model.parameters(), before, strict=True))
    assert scaler.get_scale() == 2.0**8


def test_precision_warnings_on_the_cpu(monkeypatch):
    cpu = torch.device("cpu")
    assert precision_warning("32", cpu) is None
    assert "'16-mixed' on the CPU" in precision_warning("16-mixed", cpu)
    for capability in ("AVX2", "AVX512"):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        native = precision.cpu_has_native_bf16()  # AVX-512 kernels and this CPU's bf16 flags
        has_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        assert native == (capability == "AVX512" and has_bf16)
        warning = precision_warning("bf16-mixed", cpu)
        assert (warning is None) == native, capability
        assert native or "no bfloat16 in hardware" in warning


def test_existing_run_needs_resume(fakes, tmp_path):
    train(small_config(tmp_path, epochs=1, max_steps=2))
    with pytest.raises(ValueError, match=r"already holds a run.*resume"):
        train(small_config(tmp_path, epochs=1, max_steps=2))


def test_resume_with_other_settings_names_them(fakes, tmp_path):
    train(small_config(tmp_path, epochs=1, max_steps=2))
    with pytest.raises(CheckpointError, match=r"last\.pt: .*other settings: lr=0\.05 \(now 0\.1\)"):
        train(small_config(tmp_path, epochs=1, max_steps=2, lr=0.1, resume=True))


def test_resume_of_another_model_is_refused(fakes, tmp_path):
    train(small_config(tmp_path, epochs=1, max_steps=2))
    with pytest.raises(CheckpointError, match="model='quartznet-3x1' \\(now 'quartznet-3x2'\\)"):
        train(small_config(tmp_path, epochs=1, max_steps=2, model="quartznet-3x2", resume=True))


def test_resume_of_a_corrupt_checkpoint_names_the_file(fakes, tmp_path):
    train(small_config(tmp_path, epochs=1, max_steps=2))
    (tmp_path / "last.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match=r"last\.pt: not a readable checkpoint"):
        train(small_config(tmp_path, epochs=1, max_steps=2, resume=True))


def test_resume_on_other_data_is_refused(fakes, monkeypatch, tmp_path):
    train(small_config(tmp_path, epochs=1, max_steps=2))

    def other_data(config, env):
        data = fake_build_data(config, env)
        return data._replace(clips={**data.clips, "training": data.clips["training"] + 1})

    monkeypatch.setattr(train_module, "build_data", other_data)
    with pytest.raises(CheckpointError, match=r"last\.pt: was trained on other data"):
        train(small_config(tmp_path, epochs=1, max_steps=2, resume=True))


def test_resume_loads_the_checkpoint_on_the_cpu(fakes, monkeypatch, tmp_path):
    """RNG states must reach the generators as CPU tensors, so last.pt is never mapped onto
    the training device (a CUDA ByteTensor is refused by torch.set_rng_state)."""
    train(small_config(tmp_path, epochs=1, max_steps=2))
    seen = []
    real = resume_module.load_checkpoint

    def spy(path, map_location="cpu"):
        seen.append(map_location)
        return real(path, map_location=map_location)

    monkeypatch.setattr(resume_module, "load_checkpoint", spy)  # last.pt
    monkeypatch.setattr(train_module, "load_checkpoint", spy)  # best.pt
    train(small_config(tmp_path, epochs=1, max_steps=2, resume=True))
    assert len(seen) == 2 and all(isinstance(m, str) and m == "cpu" for m in seen)


def test_diverging_run_stops_before_saving_nan(fakes, tmp_path):
    with pytest.raises(train_module.TrainingDiverged, match=r"diverged in epoch 1.*lr=1e\+30"):
        train(small_config(tmp_path, epochs=2, lr=1e30, min_lr=0.0))
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()


def test_setup_gives_a_bare_cuda_device_its_index(monkeypatch):
    """``device="cuda"`` with one process must become ``cuda:N`` before set_device (which
    refuses a device without an index) and DDP."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(torch.device(d)))
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    for device in ("auto", "cuda"):
        env = runtime.setup(device)
        assert env.device == torch.device("cuda", 3)
    env = runtime.setup("cuda:1")
    assert env.device == torch.device("cuda", 1)
    assert chosen == [torch.device("cuda", 3)] * 2 + [torch.device("cuda", 1)]


def test_resume_without_checkpoint_starts_afresh(fakes, tmp_path):
    r = train(small_config(tmp_path, epochs=1, max_steps=2, resume=True))
    assert r.history[0]["step"] == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(precision="fp8"), "precision='fp8'"),
        (dict(pipeline="gpu"), "pipeline='gpu'"),
        (dict(epochs=0), "epochs=0"),
        (dict(frames=0), "frames=0"),
        (dict(max_steps=0), "max_steps=0"),
        (dict(min_lr=1.0), "min_lr=1.0"),
        (dict(lr=float("nan")), "lr=nan: must be a finite number"),
        (dict(weight_decay=float("inf")), "weight_decay=inf: must be a finite number"),
    ],
)
def test_bad_settings_are_clear_errors(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        small_config(tmp_path, **overrides)


def test_default_out_dir_names_the_run():
    assert TrainConfig(model="se-quartznet-3x1", version=2, seed=3).out_dir == (
        "runs/se-quartznet-3x1-v2-seed3"
    )


def test_missing_data_root_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="data_root is not set"):
        train(small_config(tmp_path, data_root=None))


def test_trains_on_a_speech_commands_folder(speech_commands, tmp_path):
    """The real data path (SpeechCommands + make_pipeline) on the fake 4-word tree."""
    pytest.importorskip("quartznet_tutorial.datasets.pipeline")
    torch.set_num_threads(1)
    r = train(
        small_config(tmp_path / "run", data_root=str(speech_commands), epochs=2, batch_size=4)
    )
    assert len(r.labels) == 30 and len(r.history) == 2
    assert r.history[-1]["clips"] == 12  # 4 words x 3 training clips
    assert r.test is not None and r.test.num_clips == 4


def test_frames_sets_the_example_length_and_the_models_front_end(speech_commands, tmp_path):
    """``frames`` crops or pads every split's examples, and the checkpoint's classifier
    evaluates at that length too."""
    pytest.importorskip("quartznet_tutorial.datasets.pipeline")
    torch.set_num_threads(1)
    config = small_config(
        tmp_path / "run", data_root=str(speech_commands), epochs=1, batch_size=4, frames=101
    )
    env = runtime.Env(rank=0, world_size=1, device=torch.device("cpu"), owns_group=False)
    data = train_module.build_data(config, env)
    for split in (data.train, data.val, data.test):
        features, _ = next(iter(split.batches(0)))
        assert features.shape[1:] == (64, 101)
    r = train(config)
    assert load_classifier(r.last_checkpoint).features.frames == 101
    assert r.summary()["frames"] == 101
    nemo = small_config(tmp_path / "nemo", data_root=str(speech_commands), epochs=1, batch_size=4)
    default = train(nemo)
    assert load_classifier(default.last_checkpoint).features.frames == 128


def test_limit_clips_keeps_every_word(speech_commands, tmp_path):
    pytest.importorskip("quartznet_tutorial.datasets.pipeline")
    torch.set_num_threads(1)
    r = train(
        small_config(
            tmp_path, data_root=str(speech_commands), epochs=1, batch_size=4, limit_clips=8
        )
    )
    assert r.history[-1]["clips"] == 8  # of 12 training clips
    assert r.test.num_clips == 4  # the 4 test clips, fewer than the limit
    config = small_config(tmp_path, data_root=str(speech_commands), limit_clips=8, batch_size=4)
    env = runtime.Env(rank=0, world_size=1, device=torch.device("cpu"), owns_group=False)
    limited = train_module.build_data(config, env).train.dataset
    assert len(limited) == 8 and limited.targets_tensor().unique().tolist() == [4, 14, 26, 28]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    ("precision", "compile"), [("16-mixed", False), ("bf16-mixed", False), ("32", True)]
)
def test_cuda_precisions_and_compile(fakes, tmp_path, precision, compile):
    r = train(small_config(tmp_path, device="cuda", precision=precision, compile=compile, epochs=2))
    losses = [h["train_loss"] for h in r.history]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    state = load_checkpoint(r.last_checkpoint)
    assert (state["scaler"] != {}) == (precision == "16-mixed")  # loss scaling for fp16 only
    assert r.device == "cuda" and "×" in r.hardware


def test_progress_bars_redraw_rarely_in_a_log(monkeypatch):
    """Off a terminal (a batch job's log), a bar redraws every 30 s, not 10 times a second."""
    from quartznet_tutorial.utils.progress import LOG_INTERVAL, progress_bar

    class Log(io.StringIO):
        def isatty(self):
            return False

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, interval in ((Log(), LOG_INTERVAL), (Terminal(), 0.1)):
        monkeypatch.setattr(sys, "stderr", stream)
        with progress_bar(total=3, file=stream) as bar:
            assert bar.mininterval == interval


def test_result_has_the_final_and_the_best_checkpoints_test_accuracy(speech_commands, tmp_path):
    r = train(
        small_config(tmp_path, data_root=str(speech_commands), epochs=3, batch_size=4, lr=0.5)
    )
    final = evaluate(load_classifier(r.last_checkpoint), SpeechCommands(speech_commands, "testing"))
    assert r.final_test_accuracy == pytest.approx(final.accuracy)
    assert r.summary()["final_test_accuracy"] == r.final_test_accuracy
    best = evaluate(load_classifier(r.best_checkpoint), SpeechCommands(speech_commands, "testing"))
    assert r.test_accuracy == pytest.approx(best.accuracy)


def test_rebalance_trains_on_the_repeated_clips(speech_commands, tmp_path):
    config = small_config(
        tmp_path, data_root=str(speech_commands), epochs=1, batch_size=2, limit_clips=10
    )
    plain = train(config)
    balanced = train(replace(config, out_dir=str(tmp_path / "b"), rebalance=True))
    assert plain.history[0]["clips"] == 10  # 3, 2, 2 and 3 clips of the 4 words
    assert balanced.history[0]["clips"] == 12  # 3 of each
    assert load_checkpoint(balanced.last_checkpoint)["clips"]["training"] == 12


def test_train_seeds_gives_distinct_runs_in_their_own_folders(fakes, tmp_path, capsys):
    config = small_config(tmp_path / "runs", epochs=1, max_steps=2)
    results = train_seeds(config, [0, 1])
    assert [r.config.seed for r in results] == [0, 1]
    assert [r.last_checkpoint.parent for r in results] == [
        tmp_path / "runs" / f"seed{s}" for s in (0, 1)
    ]
    a, b = (weights(r.last_checkpoint)["decoder.weight"] for r in results)
    assert not torch.equal(a, b)  # another initialisation and shuffle
    with pytest.raises(ValueError, match="distinct"):
        train_seeds(config, [3, 3])


def test_cli_trains_each_seed_and_writes_a_result_per_seed(fakes, tmp_path, capsys, monkeypatch):
    from quartznet_tutorial.cli.main import main

    monkeypatch.chdir(tmp_path)
    argv = ["train", "--data-root", "fake", "--epochs", "1", "--max-steps", "2", "--device",
            "cpu", "--no-progress", "--seeds", "4", "5", "--results", "out/r.json"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in printed] == [4, 5]
    assert json.loads((tmp_path / "out" / "r-seed5.json").read_text())["seed"] == 5
    assert (tmp_path / "runs" / "quartznet-3x1-v1-seed4" / "last.pt").is_file()
    assert (tmp_path / "runs" / "quartznet-3x1-v1-seed5" / "last.pt").is_file()
