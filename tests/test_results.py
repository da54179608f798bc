"""The results tables are built from result files: reported beside measured on real data only,
synthetic runs apart, gaps said plainly."""

from __future__ import annotations

import json

import pytest

from quartznet_tutorial import VARIANTS
from quartznet_tutorial.tutorial.results import (
    NOT_MEASURED,
    OTHER_DATA_TITLE,
    checkout,
    load_results,
    mean_std,
    results_markdown,
    results_rows,
    validate_record,
)


def _record(**changes):
    record = {
        "kind": "training",
        "model": "quartznet-3x1",
        "data": "synthetic-v1",
        "profile": "smoke",
        "epochs": 30,
        "test_accuracy": 0.9712,
        "val_accuracy": 0.97,
        "train_seconds": 754.0,
        "hardware": "2-core CPU VM",
        "device": "cpu",
        "precision": "32",
        "date": "2026-01-02T03:04:05",
        "versions": {"torch": "2.11.0"},
        "seed": 0,
        "command": "quartznet train --model quartznet-3x1",
    }
    return record | changes


def test_no_results_says_not_yet_measured():
    rows = results_rows([])
    v1 = [r for r in rows if r.data == "speech-commands-v1"]
    assert [r.model for r in v1] == list(VARIANTS)
    assert all(r.measured == NOT_MEASURED for r in rows)
    three = next(r for r in v1 if r.model == "quartznet-3x1")
    assert "97.46%" in three.reported and "97.32%" in three.reported
    assert three.config == "NeMo"
    v2 = {r.model for r in rows if r.data == "speech-commands-v2"}
    assert v2 == {"quartznet-3x1", "quartznet-3x2"}  # NVIDIA reported V2 only for these


def test_measured_rows_come_from_records():
    rows = results_rows(
        [
            _record(),
            _record(
                data="speech-commands-v1",
                test_accuracy=0.95,
                train_seconds=3725,
                profile="full",
                epochs=200,
            ),
        ]
    )
    mine = [r for r in rows if r.model == "quartznet-3x1"]
    real, v2, synthetic = mine
    assert (synthetic.data, synthetic.measured, synthetic.reported) == (
        "synthetic-v1",
        "97.12%",
        "—",
    )
    assert synthetic.time == "13 min" and synthetic.date == "2026-01-02"
    assert (real.measured, real.time, real.epochs) == ("95.00%", "1 h 02 min", "200")
    assert "97.46%" in real.reported
    assert v2.measured == NOT_MEASURED
    table = results_markdown(rows)
    real, synthetic_table = table.split(OTHER_DATA_TITLE)
    # Synthetic results never share a table with NVIDIA's reported accuracy.
    assert "synthetic" not in real and "smoke profile" not in real
    assert "| `quartznet-3x1` | synthetic V1 | 97.12% | (2) |" in synthetic_table
    assert "(2) smoke profile, 30 epochs, 2-core CPU VM, fp32, 13 min," in synthetic_table
    assert "reported" not in synthetic_table
    # NVIDIA's network, its reported size and whether its config was published, then ours.
    assert (
        "| SE-QuartzNet5x1 0.51M (config unpublished) | `se-quartznet-5x1-510k` † | real V1 "
        "| 97.53% (Feb 2020, withdrawn) |" in real
    )
    assert "| QuartzNet3x1 0.077M | `quartznet-3x1` | real V1 | 97.46% (Feb 2020); 97.32%" in real
    assert "| 95.00% | (1) |" in real and "(1) full profile, 200 epochs," in real
    assert table.count(NOT_MEASURED) == len(rows) - 2
    # The final weights' accuracy stands beside the best checkpoint's where it was recorded.
    final = results_rows([_record(final_test_accuracy=0.9601)])
    assert next(r for r in final if r.data == "synthetic-v1").measured == "97.12% (final 96.01%)"
    # Without synthetic runs the second table says so instead of standing empty.
    assert "No such run committed." in results_markdown(results_rows([]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"test_accuracy": 97.1}, "fraction"),
        ({"model": "quartznet-9x9"}, "unknown model"),
        ({"epochs": "30"}, "'epochs' has type str"),
        ({"kind": "benchmark"}, "not 'training'"),
    ],
)
def test_bad_records_name_the_problem(change, message):
    with pytest.raises(ValueError, match=message):
        validate_record(_record(**change), "x.json")


def test_missing_key(tmp_path):
    record = _record()
    del record["seed"]
    (tmp_path / "a.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"a\.json: missing key 'seed'"):
        load_results(tmp_path)


def test_load_results(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps(_record(seed=1)))
    (tmp_path / "a.json").write_text(json.dumps(_record()))
    (tmp_path / "bench.json").write_text(json.dumps({"kind": "benchmark"}))
    (tmp_path / "notes.txt").write_text("ignored")
    records = load_results(tmp_path)
    assert [(r["file"], r["seed"]) for r in records] == [("a.json", 0), ("b.json", 1)]
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(ValueError, match=r"c\.json: not valid JSON"):
        load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_results(tmp_path / "missing")


def test_committed_results_are_valid():
    results_rows(
        load_results(checkout(__file__) / "results")
    )  # every committed file follows the schema


def test_seeds_of_one_recipe_become_one_row_with_mean_and_spread():
    runs = [
        _record(seed=s, test_accuracy=a, final_test_accuracy=f, file=f"r{s}.json")
        for s, a, f in ((0, 0.90, 0.89), (1, 0.92, 0.90), (2, 0.94, 0.91))
    ]
    other = _record(seed=0, epochs=99, test_accuracy=0.5, file="other.json")  # another recipe
    rows = [r for r in results_rows([*runs, other]) if r.data == "synthetic-v1"]
    assert len(rows) == 2
    mean, std = mean_std([0.90, 0.92, 0.94])
    assert (mean, round(std, 12)) == (pytest.approx(0.92), 0.02)
    assert rows[0].measured == "92.00 ± 2.00% (n=3) (final 90.00 ± 1.00% (n=3))"
    assert rows[0].file == "r0.json, r1.json, r2.json" and rows[0].time.endswith("per seed")
    assert rows[1].measured == "50.00%"
    assert mean_std([0.7]) == (0.7, 0.0)


def test_files_from_before_frames_were_recorded_group_with_nemos_128(tmp_path):
    """A file without ``frames`` trained on NeMo's 128; another length is another recipe,
    which the row's note names."""
    for name, extra in (("old", {}), ("new", {"frames": 128}), ("short", {"frames": 101})):
        (tmp_path / f"{name}.json").write_text(json.dumps(_record(**extra)))
    records = load_results(tmp_path)
    assert [r["frames"] for r in records] == [128, 128, 101]  # new, old, short
    rows = [r for r in results_rows(records) if r.data == "synthetic-v1"]
    assert [r.file for r in rows] == ["new.json, old.json", "short.json"]
    notes = results_markdown(rows)
    assert notes.count("of 101-frame examples") == 1 and "of 128-frame" not in notes
    # Records handed over directly, not read by load_results, group the same way.
    direct = results_rows([_record(), _record(frames=128), _record(frames=101)])
    assert len([r for r in direct if r.data == "synthetic-v1"]) == 2
    (tmp_path / "bad.json").write_text(json.dumps(_record(frames=0)))
    with pytest.raises(ValueError, match=r"bad\.json: frames must be a whole number"):
        load_results(tmp_path)


def test_stream_markdown_reads_the_long_stream_record(tmp_path):
    from quartznet_tutorial.tutorial.results import stream_markdown

    model = {
        "threshold": 0.7, "hit_rate": 0.9, "false_accepts": 23, "false_accepts_per_hour": 23.0,
        "causes": {"wrong_word": 12, "repeats": 0, "on_other_words": 11, "in_noise_alone": 0},
        "at_most_1_per_hour": None, "det_curve": [], "posteriors_seconds": 1.0,
    }  # fmt: skip
    best = {"threshold": 0.9, "hit_rate": 0.75, "false_accepts_per_hour": 1.0}
    record = {
        "kind": "kws-stream", "minutes": 60,
        "stream": {"seed": 1, "snr_db": [20, 10], "keywords": 613, "other_words": 256,
                   "data": "synthetic-v1"},
        "models": {"a": model, "b": {**model, "at_most_1_per_hour": best}},
        "hardware": "CPU X", "date": "2026-12-02",
    }  # fmt: skip
    path = tmp_path / "kws-stream-60min.json"
    path.write_text(json.dumps(record))
    lines = stream_markdown(path).splitlines()
    assert lines[2] == "| a | 0.7 | 90.0% | 23.0 | 12 / 11 / 0 / 0 | none |"
    assert lines[3].endswith("| 0.90: 75.0% hits |")
    assert "613 keywords, 256 other words, SNR 20 and 10 dB" in lines[-1]
    assert "No long-stream result" in stream_markdown(tmp_path / "missing.json")
