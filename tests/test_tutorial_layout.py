"""The library and the docs site's subpackage stay apart, and the old import paths still work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    return set(out.split())


def test_importing_the_library_loads_nothing_of_the_site():
    loaded = _loaded_after("import quartznet_tutorial")
    assert not {m for m in loaded if m.startswith(("matplotlib", "IPython"))}
    assert not {m for m in loaded if m.startswith("quartznet_tutorial.tutorial")}
    assert "torch" not in loaded  # the names are imported on first use


def test_a_name_loads_its_module_only():
    loaded = _loaded_after("from quartznet_tutorial import VARIANTS")
    assert "quartznet_tutorial.models.variants" in loaded and "quartznet_tutorial.training.loop" not in loaded


def test_train_and_evaluate_are_the_functions_after_their_modules_load():
    import quartznet_tutorial.evaluation.accuracy
    import quartznet_tutorial.training.loop
    from quartznet_tutorial.evaluation import accuracy as evaluate
    from quartznet_tutorial.training import loop as train

    assert callable(train) and train.__module__ == "quartznet_tutorial.training.loop"
    assert callable(evaluate) and evaluate.__module__ == "quartznet_tutorial.evaluation.accuracy"
    assert set(quartznet_tutorial.__all__) <= set(dir(quartznet_tutorial))


def test_the_old_paths_name_the_same_objects():
    from quartznet_tutorial import ablation, figures, profiles, results
    from quartznet_tutorial.evaluation import accuracy as evaluate
    from quartznet_tutorial.datasets import real_clips as samples
    from quartznet_tutorial.tutorial import ablation as new_ablation
    from quartznet_tutorial.tutorial import diagrams, plots, tables, training_pages
    from quartznet_tutorial.tutorial import profiles as new_profiles
    from quartznet_tutorial.tutorial import results as new_results

    assert figures.parameter_table is tables.parameter_table
    assert figures.draw_architecture is diagrams.draw_architecture
    assert figures.plot_learning_curves is plots.plot_learning_curves
    assert profiles.get_profile is new_profiles.get_profile
    assert results.validate_record is new_results.validate_record
    assert ablation.load_rows is new_ablation.load_rows
    assert sys.modules["quartznet_tutorial.evaluation.accuracy"].plot_confusion is plots.plot_confusion
    assert sys.modules["quartznet_tutorial.evaluation.accuracy"].plot_per_class is plots.plot_per_class
    assert samples.gap_sentence is training_pages.gap_sentence
    assert samples.per_word_markdown is training_pages.per_word_markdown
    assert callable(evaluate)  # the package's name is the function, as before


def test_benchmarks_report_reexports_the_performance_tables():
    import report  # benchmarks/, on the path for the tests (pyproject.toml)

    from quartznet_tutorial.tutorial import performance

    assert report.train_table is performance.train_table
    assert report.NOT_YET == performance.NOT_YET
