from __future__ import annotations

import json

import pytest

from quartznet_tutorial.tutorial.ablation import KIND, load_rows, markdown_table


def _row(lever: str, correct: int, synthetic: float | None = 0.95) -> dict:
    return {
        "lever": lever,
        "seed": 0,
        "epochs": 3,
        "synthetic_test_accuracy": synthetic,
        "real_correct": correct,
        "real_n": 117,
        "train_seconds": 776.4,
    }


def test_table_has_one_line_per_run_with_the_wilson_interval():
    table = markdown_table([_row("base", 38), _row("augment", 45, None)])
    lines = table.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| base | 0 | 3 | 95.0 % |")
    assert "32.5 % (25-41 %), 38/117 | 776 |" in lines[2]  # wilson_interval(38, 117)
    assert "| augment | 0 | 3 |  | 38.5 % (30-48 %), 45/117 |" in lines[3]


def test_load_rows_checks_kind_and_keys(tmp_path):
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps({"kind": KIND, "rows": [_row("base", 38)]}))
    assert load_rows(path)[0]["lever"] == "base"
    path.write_text(json.dumps({"kind": "training", "rows": []}))
    with pytest.raises(ValueError, match="not 'real-gap-ablation'"):
        load_rows(path)
    path.write_text(json.dumps({"kind": KIND, "rows": [{"lever": "base"}]}))
    with pytest.raises(ValueError, match="row 0 lacks seed"):
        load_rows(path)
