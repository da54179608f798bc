"""The benchmark scripts: their JSON schema, the synthetic clips, the NeMo config mapping.

The scripts themselves run as subprocesses in their CI-sized modes (``--quick``, ``--tiny``),
so a typo in a code path the full and GPU runs take fails here first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# The scripts import each other by name: pytest puts benchmarks/ on the path (pyproject.toml).
import bench
import gpu_evidence
import pytest
import torch

from quartznet_tutorial.ops import cpu_kernels
from quartznet_tutorial.tutorial import performance as report

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def _check_document(doc: dict) -> None:
    assert doc["schema"] == bench.SCHEMA
    assert {"cpu", "cores", "gpu", "load_average"} <= set(doc["hardware"])
    assert {"python", "torch", "torchaudio", "onnxruntime", "nemo_toolkit"} <= set(doc["versions"])
    assert doc["date"][:4].isdigit()
    for row in doc["rows"]:
        assert {"benchmark", "device", "value", "unit"} <= set(row)
        if row["value"] is None:
            assert row["note"].startswith("not measured: ")
        else:
            assert row["value"] > 0


@pytest.fixture(scope="module")
def quick_doc(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "cpu.json"
    _run("bench.py", "--quick", "--out", str(out))
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def tiny_gpu_doc(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu")
    _run("gpu_evidence.py", "--tiny", "--out", str(out))
    (path,) = out.glob("gpu-*.json")
    return json.loads(path.read_text())


def test_quick_run_writes_every_benchmark(quick_doc) -> None:
    doc = quick_doc
    _check_document(doc)
    rows = doc["rows"]
    kinds = {(r["benchmark"], r.get("pipeline") or r.get("runtime")) for r in rows}
    assert {
        ("train", "device"),
        ("train", "dataloader"),
        ("latency", "pytorch"),
        ("latency", "onnxruntime"),
        ("throughput", "pytorch"),
        ("throughput", "onnxruntime"),
        ("train_vs_nemo", None),
        ("epoch", "device"),
        ("dispatch", "device"),
    } <= kinds
    for row in rows:
        if row["benchmark"] == "latency":
            assert row["p99_ms"] >= row["value"]
    goals = {g["goal"][:20] for g in doc["goals"]}
    assert any(g.startswith("1 s clip") for g in goals)


def test_foreach_novograd_dispatches_a_fixed_number_of_ops() -> None:
    """The multi-tensor update issues the same few ops for 34 tensors as for 62; the loop over
    tensors (NeMo's form) issues 14 per tensor, more than the rest of a step together."""
    import dispatch

    clips = bench.SyntheticClips(24, seed=5)
    counts = {}
    for variant in ("quartznet-3x1", "se-quartznet-5x1-1m"):
        tensors = len(list(bench.build_model(variant).parameters()))
        for optimizer in ("foreach", "per-tensor"):
            stages = dispatch.step_ops(
                clips, variant=variant, precision="32", optimizer=optimizer, batch=8
            )
            counts[variant, optimizer] = {k: sum(v.values()) for k, v in stages.items()}
        assert counts[variant, "per-tensor"]["optimizer"] == 14 * tensors
        assert counts[variant, "foreach"]["optimizer"] <= 20
        assert counts[variant, "foreach"]["forward"] == counts[variant, "per-tensor"]["forward"]
    small, large = (
        counts[v, "foreach"]["optimizer"] for v in ("quartznet-3x1", "se-quartznet-5x1-1m")
    )
    assert small == large
    rest = sum(counts["quartznet-3x1", "foreach"][s] for s in ("pipeline", "forward", "backward"))
    assert counts["quartznet-3x1", "per-tensor"]["optimizer"] > rest


@pytest.mark.nemo
def test_nemos_novograd_waits_for_the_device_once_per_tensor() -> None:
    """NeMo 3.0's ``if exp_avg_sq == 0`` reads a GPU scalar per tensor; ours never does."""
    pytest.importorskip("nemo.core.optim.novograd")
    import dispatch

    clips = bench.SyntheticClips(24, seed=5)
    tensors = len(list(bench.build_model("quartznet-3x1").parameters()))
    for optimizer, syncs in (("nemo", tensors), ("foreach", 0), ("per-tensor", 0)):
        stages = dispatch.step_ops(
            clips, variant="quartznet-3x1", precision="32", optimizer=optimizer, batch=8
        )
        assert stages["optimizer"][dispatch.SYNC] == syncs, optimizer


@pytest.mark.parametrize(("precision", "syncs"), [("32", 0), ("bf16-mixed", 0), ("16-mixed", 1)])
def test_a_training_step_waits_for_the_device_only_for_float16(precision, syncs) -> None:
    """No ``.item()`` in the pipeline, model or optimizer; float16's GradScaler reads its inf
    check once per step."""
    import dispatch

    stages = dispatch.step_ops(
        bench.SyntheticClips(24, seed=5),
        variant="se-quartznet-3x1",
        precision=precision,
        optimizer="foreach",
        batch=8,
    )
    assert sum(ops[dispatch.SYNC] for ops in stages.values()) == syncs
    assert stages["optimizer"][dispatch.SYNC] == syncs


def test_gpu_script_runs_tiny_on_cpu(tiny_gpu_doc) -> None:
    doc = tiny_gpu_doc
    _check_document(doc)
    assert {(r["variant"], r["precision"], r["pipeline"]) for r in doc["rows"]} == {
        (v, p, k)
        for v in ("quartznet-3x1", "se-quartznet-3x1")
        for p in ("32", "bf16-mixed")
        for k in ("device", "dataloader")
    }
    sweep = [r for r in doc["rows"] if r["benchmark"] == "batch_sweep"]
    assert [r["batch"] for r in sweep] == [4, 8] and all(r["value"] > 0 for r in sweep)
    kernels = {
        (r["precision"], r["optimizer"], r["stage"]): r["value"]
        for r in doc["rows"]
        if r["benchmark"] == "kernels"
    }
    for precision in ("32", "bf16-mixed"):
        for optimizer in ("foreach", "per-tensor"):
            stages = [kernels[precision, optimizer, s] for s in ("pipeline", "forward")]
            stages += [kernels[precision, optimizer, s] for s in ("backward", "optimizer")]
            assert kernels[precision, optimizer, "total"] == sum(stages)
        # On the CPU of --tiny these are dispatched ops: the multi-tensor update issues fewer.
        assert (
            kernels[precision, "foreach", "optimizer"]
            < kernels[precision, "per-tensor", "optimizer"]
        )
    schedule = doc["schedule"]
    assert schedule["epochs_done"] == schedule["epochs_planned"] == 2
    assert len(schedule["epoch_seconds"]) == 2
    assert 0.0 <= schedule["val_accuracy"] <= 1.0


def test_synthetic_clips_are_labelled_and_reproducible() -> None:
    a = bench.SyntheticClips(90, seed=5)
    b = bench.SyntheticClips(90, seed=5)
    assert a.waveforms().dtype == torch.int16 and a.waveforms().shape == (90, 16_000)
    assert torch.equal(a.waveforms(), b.waveforms())
    assert torch.equal(a.targets_tensor(), b.targets_tensor())
    assert torch.bincount(a.targets_tensor(), minlength=30).tolist() == [3] * 30
    waveform, label = a[7]
    assert waveform.dtype == torch.float32 and label == int(a.targets_tensor()[7])
    assert not torch.equal(a.waveforms(), bench.SyntheticClips(90, seed=6).waveforms())


def test_nemo_config_is_the_reference_table() -> None:
    jasper = bench.nemo_jasper_config("quartznet-3x1")
    assert [(b["filters"], b["kernel"][0], b["dilation"][0], b["residual"]) for b in jasper] == [
        (128, 11, 1, False),
        (64, 13, 1, True),
        (64, 15, 1, True),
        (64, 17, 1, True),
        (128, 29, 2, False),
        (128, 1, 1, False),
    ]
    assert [b["separable"] for b in jasper] == [True] * 5 + [False]


def test_percentile_is_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert bench.percentile(values, 50) == 3.0
    assert bench.percentile(values, 99) == 5.0
    assert bench.percentile(values, 0) == 1.0


@pytest.mark.nemo
def test_nemo_side_by_side_is_measured() -> None:
    pytest.importorskip("nemo.collections.asr")
    (row,) = bench.bench_vs_nemo(
        variant="quartznet-3x1",
        batch=4,
        precisions=["32"],
        steps=1,
        warmup=1,
        repeats=1,
        device=torch.device("cpu"),
    )
    assert row["value"] > 0 and row["nemo_ms"] > 0 and row["ours_ms"] > 0


def test_report_renders_measured_and_missing_rows(quick_doc, tiny_gpu_doc, tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    quick_doc["file"] = "cpu-test.json"
    assert "Intel" in report.where(quick_doc) or quick_doc["hardware"]["cpu"] in report.where(
        quick_doc
    )
    train = report.train_table(quick_doc)
    assert "quartznet-3x1" in train and "×" in train  # fast / conventional ratio
    assert "onnxruntime" in report.inference_table(quick_doc)
    assert "| quartznet-3x1 | 18.4 | 32 |" in report.dispatch_table(quick_doc)
    nemo = report.nemo_table(quick_doc)
    assert "×" in nemo or "not measured" in nemo
    missing = report.gpu_section(None, ["quartznet-3x1"])
    assert report.NOT_YET in missing and "|" not in missing  # a sentence, not an empty table
    measured = report.gpu_section(tiny_gpu_doc, ["quartznet-3x1"])
    assert report.NOT_YET not in measured and "2/2" in measured
    assert "Batch sweep (quartznet-3x1" in measured and "batch 8:" in measured
    assert "| bf16-mixed | per-tensor |" in measured  # the kernel (here: op) counts
    first = next(r for r in tiny_gpu_doc["rows"] if r["benchmark"] == "train")
    compiled = {
        **tiny_gpu_doc,
        "rows": [*tiny_gpu_doc["rows"], {**first, "compile": "reduce-overhead", "value": 9.0}],
        "schedule": {**tiny_gpu_doc["schedule"], "compile": "reduce-overhead"},
    }
    compiled = report.gpu_tables(compiled, ["quartznet-3x1"])
    assert "mode `reduce-overhead`" in compiled and ", compiled (reduce-overhead)" in compiled
    report.plot_throughput(quick_doc)
    report.plot_epoch_time(quick_doc, tiny_gpu_doc)
    report.plot_dispatch(quick_doc, precision="32")
    assert report.dispatch_table({"rows": []}) == report.NOT_MEASURED
    # Quick and tiny runs never reach the docs; full runs do, oldest first.
    (tmp_path / "a.json").write_text(json.dumps({**quick_doc, "mode": "full"}))
    (tmp_path / "b.json").write_text(json.dumps(quick_doc))
    loaded = report.load(tmp_path)
    assert [d["file"] for d in loaded] == ["a.json"]
    assert report.latest(loaded, "cpu")["file"] == "a.json" and report.latest(loaded, "gpu") is None


def _train_row(precision: str, compile: str | None, value: float) -> dict:
    return dict(
        benchmark="train",
        variant="quartznet-3x1",
        pipeline="device",
        precision=precision,
        compile=compile,
        value=value,
    )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], ("bf16-mixed", "reduce-overhead")),
        (["--precision", "16-mixed"], ("16-mixed", None)),
        (["--compile", "off"], ("bf16-mixed", None)),
        (["--precision", "16-mixed", "--compile", "default"], ("16-mixed", "default")),
    ],
)
def test_gpu_schedule_takes_the_fastest_measured_setting(flags, expected) -> None:
    doc = {
        "rows": [
            _train_row("bf16-mixed", None, 50_000.0),
            _train_row("16-mixed", None, 48_000.0),
            _train_row("bf16-mixed", "default", 60_000.0),
            _train_row("bf16-mixed", "reduce-overhead", 90_000.0),
            _train_row("bf16-mixed", "default", None),  # a failed compile
        ]
    }
    assert gpu_evidence._choose(gpu_evidence.parse_args(flags), doc) == expected


def test_a_failing_gpu_row_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch) -> None:
    """The GPU run is one shot: a row that raises is written as not measured, with the error."""
    real = gpu_evidence.bench_train

    def flaky(dataset, **kwargs):
        if kwargs["precision"] == "bf16-mixed" and kwargs["kind"] == "dataloader":
            raise RuntimeError("CUDA error: out of memory")
        return real(dataset, **kwargs)

    monkeypatch.setattr(gpu_evidence, "bench_train", flaky)
    args = gpu_evidence.parse_args(["--tiny", "--out", str(tmp_path)])
    args.variants = ["quartznet-3x1"]
    doc = {"rows": []}
    gpu_evidence.stage_throughput(args, torch.device("cpu"), doc, lambda: None)
    train = [r for r in doc["rows"] if r["benchmark"] == "train"]
    failed = [r for r in doc["rows"] if r["value"] is None]
    assert len(train) == 4 and len(failed) == 1
    (row,) = failed
    assert (row["precision"], row["pipeline"], row["variant"]) == (
        "bf16-mixed",
        "dataloader",
        "quartznet-3x1",
    )
    assert "RuntimeError: CUDA error: out of memory" in row["note"] and "kind" not in row
    assert "not measured" in report.gpu_tables({**doc, "hardware": {}}, ["quartznet-3x1"])


@pytest.mark.slow
@pytest.mark.parametrize("mode", gpu_evidence.COMPILE_MODES)
def test_compile_probe_trains_on_cpu(mode) -> None:
    """The GPU run's torch.compile probe, on the CPU (where CUDA graphs do not apply)."""
    row = bench.bench_train(
        bench.SyntheticClips(64, seed=1),
        variant="quartznet-3x1",
        precision="32",
        kind="device",
        batch=8,
        steps=2,
        warmup=3,
        device=torch.device("cpu"),
        num_workers=0,
        compile=mode,
    )
    assert row["compile"] == mode and row["value"] > 0 and torch.isfinite(torch.tensor(row["loss"]))


def test_cli_pipeline_table_puts_both_pipelines_side_by_side() -> None:
    rows = [
        {"benchmark": "train_cli", "precision": "32", "pipeline": "device", "value": 900.0},
        {"benchmark": "train_cli", "precision": "32", "pipeline": "dataloader", "value": 450.0},
        {"benchmark": "train_cli", "precision": "bf16-mixed", "pipeline": "device", "value": 1.0},
    ]
    settings = dict(
        model="quartznet-3x1", data="d", batch=128, threads=2, num_workers=4, augment=True
    )
    table = report.cli_pipeline_table(
        {"rows": rows, "settings": {**settings, "epochs": 2, "repeats": 2}}
    )
    assert "| 32 | 900 | 450 | 2.00× |" in table
    assert "| bf16-mixed | 1 | not measured | – |" in table


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_the_training_loop_waits_for_the_device_per_epoch_not_per_step(
    make_speech_commands, tmp_path, precision
) -> None:
    """``train()`` on the device pipeline: 2 steps and 8 steps make the same number of host
    syncs (setup, validation, test, checkpoints), so none happens inside the step loop."""
    import dispatch

    from quartznet_tutorial.training.config import TrainConfig
    from quartznet_tutorial.training.loop import train

    root = make_speech_commands(per_word=20)  # 4 words x 18 training clips: 9 batches of 8
    syncs = []
    for steps in (2, 8):
        config = TrainConfig(
            data_root=str(root),
            epochs=1,
            max_steps=steps,
            batch_size=8,
            precision=precision,
            pipeline="device",
            device="cpu",
            progress=False,
            out_dir=str(tmp_path / f"run-{steps}"),
        )
        with dispatch.count_ops() as ops:
            result = train(config)
        assert result.history[-1]["step"] == steps
        syncs.append(ops[dispatch.SYNC])
    assert syncs[0] == syncs[1]


@pytest.mark.slow
def test_isa_script_writes_both_levels(tmp_path) -> None:
    out = tmp_path / "isa.json"
    _run(
        "cpu_isa.py",
        "--threads", "1", "--latency-runs", "2", "--pipeline-batches", "1",
        "--step-rounds", "1", "--json", str(out),
    )  # fmt: skip
    doc = json.loads(out.read_text())
    assert set(doc["levels"]) == {"native", "avx2"}
    assert doc["levels"]["avx2"]["isa"] == "AVX2"
    for level in doc["levels"].values():
        assert level["latency_1_thread"]["after"] > 0
        assert 0 < level["pipeline"]["share_after"] <= 1.5
        assert level["step"]["layout"] == "CBTQuartzNet"
        assert level["onednn_implementations"]
    assert "AVX2" in report.isa_table(doc)


@pytest.mark.slow
def test_frontend_script_profiles_the_pipeline_between_steps(tmp_path) -> None:
    out = tmp_path / "frontend.json"
    _run("cpu_frontend.py", "--threads", "1", "--rounds", "2", "--batches", "1", "--json", str(out))
    doc = json.loads(out.read_text())
    assert doc["kind"] == "cpu-frontend" and doc["isa"]
    assert set(doc["pieces"]["mel_filterbank_64_clips"]) == {"dense", "bands"}
    assert set(doc["pieces"]["clip_rows_128"]) == {"indexing", "index_select"}
    stages = doc["stages"]
    assert stages["batches_timed"] == 2 and stages["batches_profiled"] == 2
    assert 0 < stages["share"] <= 1.5 and stages["bare_step_ms"] > 0
    ops = stages["profiled_ops_ms_per_batch"]  # white noise and the STFT are built per batch
    noise = "cpu_kernels::randn" if cpu_kernels.library() is not None else "aten::normal_"
    assert noise in ops and "aten::_fft_r2c" in ops


def test_detect_speed_table_reads_the_newest_file_of_each_level(tmp_path) -> None:
    assert report.NOT_YET in report.detect_speed_table(tmp_path)

    def doc(date, kernels, seconds):
        speed = [
            {"mode": "exact", "seconds_per_hour": seconds, "real_time_factor": 3600 / seconds},
            {
                "mode": "exact-window-by-window",
                "seconds_per_hour": 99.0,
                "real_time_factor": 36.4,
                "exact_max_abs_posterior_difference": 2e-7,
            },
        ]
        hw = {"cpu": "AMD EPYC", "cores": 2, "cpu_features": ["avx2", "avx512f"]}
        hw |= {"kernels": kernels, "load_average": [1.5], "load_average_end": [2.5]}
        return {"date": date, "threads": 2, "hardware": hw, "speed": speed}

    for name, d in {
        "detect-a.json": doc("2026-11-30", "AVX512", 50.0),
        "detect-b.json": doc("2026-12-01", "AVX512", 20.0),
        "detect-c.json": doc("2026-12-01", "AVX2", 30.0),
    }.items():
        (tmp_path / name).write_text(json.dumps(d))
    table = report.detect_speed_table(tmp_path)
    assert "| AVX-512 | exact | 20.0 | 180 | 2 | 2.0e-07 |" in table and "50.0" not in table
    assert "| AVX2 | exact | 30.0 |" in table and "detect-c.json" in table
    assert "load 1.5 → 2.5" in table


def test_isa_repeats_report_each_figures_median_and_every_run() -> None:
    import cpu_isa

    def run(latency, share, ratio, load):
        return {
            "isa": "AVX2", "threads": 2, "env": {"ATEN_CPU_CAPABILITY": "avx2"},
            "load_average_start": [load], "load_average_end": [load],
            "latency_1_thread": {"before": 2 * latency, "after": latency},
            "pipeline": {"share_before": share - 0.1, "share_after": share},
            "step": {"package_ms": 100.0, "eager_ms": 200.0, "nemo_ms": 100.0 * ratio,
                     "package_vs_nemo": ratio},
        }  # fmt: skip

    runs = [run(1.4, 0.80, 1.9, 1.0), run(1.1, 0.86, 2.1, 1.1), run(1.2, 0.78, 1.6, 1.2)]
    merged = cpu_isa._median_run(runs)
    assert merged["latency_1_thread"]["after"] == 1.2
    assert merged["pipeline"]["share_after"] == 0.80
    assert merged["step"]["package_vs_nemo"] == 1.9
    assert merged["runs"] == runs and merged["load_average_start"] == [1.0]
    assert cpu_isa._median_run(runs[:1]) == runs[0]
    table = report.isa_table({"levels": {"avx2": merged}})
    assert "-> 1.20 ms (1.10, 1.20, 1.40)" in table
    assert "-> 80% (78%, 80%, 86%)" in table and "(1.90× (1.60×, 1.90×, 2.10×))" in table
    assert "Medians of 3 runs per level" in table
    assert "Medians" not in report.isa_table({"levels": {"avx2": runs[0]}})
