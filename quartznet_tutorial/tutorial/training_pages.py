"""The sections the two training pages share, one call each: the runs' table, their learning
curves, confusion matrices and per-word accuracies, and their scores on the real clips.

``runs`` is what the pages train: ``{model: profile.train(model)}``, a
:class:`~quartznet_tutorial.tutorial.profiles.Run` per variant. Tables come back as IPython
``Markdown`` (a notebook shows them as tables); plots are drawn on new figures, which a
notebook shows under the cell.

Example:
    >>> runs = {model: profile.train(model) for model in profile.quartznet_models}
    >>> runs_table(runs)
    >>> learning_curves(runs);
    >>> real = real_speech(runs, profile)
    >>> real.table()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quartznet_tutorial.datasets.real_clips import hash_split, real_clips
from quartznet_tutorial.evaluation.real import evaluate_real, wilson_interval
from quartznet_tutorial.tutorial.tables import markdown_table

if TYPE_CHECKING:
    from quartznet_tutorial.datasets.real_clips import RealSpeechCommands
    from quartznet_tutorial.evaluation.accuracy import EvalResult
    from quartznet_tutorial.models.variants import QuartzNetConfig
    from quartznet_tutorial.tutorial.profiles import Profile, Run

__all__ = [
    "RealSpeech",
    "confusion_matrices",
    "gap_sentence",
    "learning_curves",
    "per_class_accuracy",
    "per_word_markdown",
    "real_speech",
    "runs_table",
    "seed_spread",
]


#: What a committed run must share with this build's run to count as the same recipe.
def _markdown(text: str):
    from IPython.display import Markdown

    return Markdown(text)


def runs_table(runs: Mapping[str, Run], *, se_twins: Mapping[str, QuartzNetConfig] | None = None):
    """One row per run: parameters, epochs, best validation and test accuracy, training time
    and speed, data; under it, the hardware, precision and date the runs were trained on.

    Args:
        runs (dict): the trained runs (:class:`~quartznet_tutorial.tutorial.profiles.Run`)
            by model name.
        se_twins (dict, optional): for SE variants, the plain variant of the same width by
            model name
            (:data:`~quartznet_tutorial.models.variants.SE_TWINS`): adds the column "SE adds", the
            parameters SE adds in %. (Default: no such column)

    Returns:
        IPython.display.Markdown: the table and its caption.
    """
    from quartznet_tutorial.models.quartznet import build_model, count_parameters

    rows = []
    for model, run in runs.items():
        r = run.record
        params = count_parameters(run.classifier.model)
        row = [f"`{model}`", params]
        if se_twins is not None:
            twin = count_parameters(build_model(se_twins[model]))
            row.append(f"{100 * (params - twin) / twin:+.1f}%")
        row += [
            r["epochs"],
            f"{100 * r['val_accuracy']:.2f}%",
            f"{100 * r['test_accuracy']:.2f}%",
            f"{r['train_seconds'] / 60:.1f} min",
            f"{r['clips_per_second']:,.0f}",
            r["data"],
        ]
        rows.append(row)
    se = se_twins is not None
    headers = ("model", "params", *(("SE adds",) if se else ()), "epochs", "best validation")
    headers += ("test", "train time", "clips/s", "data")
    right = ((2,) if se else ()) + tuple(i + se for i in (3, 4, 5, 6))
    # Where and when: the records' hardware (CPU or GPU model), precision and date.
    where = sorted(
        {
            (r.record["hardware"], r.record["precision"], r.record["date"][:10])
            for r in runs.values()
        }
    )
    caption = "; ".join(f"{hw}, {'fp32' if p == '32' else p}, {day}" for hw, p, day in where)
    return _markdown(markdown_table(headers, rows, right=right) + f"\n\n*Trained on {caption}.*")


def seed_spread(runs: Mapping[str, Run], results_dir=None):
    """How far runs of the same recipe land apart: for each run, the committed result files
    (``results/``, written by ``examples/smoke_seeds.py``) of its recipe over several seeds,
    as mean ± standard deviation and their number, beside this run.

    Returns:
        IPython.display.Markdown: the table and its caption, or a sentence saying that no
        committed runs of these recipes exist.
    """
    from quartznet_tutorial.tutorial.results import checkout, load_results, mean_std, recipe

    records = load_results(checkout() / "results" if results_dir is None else results_dir)
    rows = []
    for model, run in runs.items():
        ours = (run.record.get("model"), run.record.get("data"), recipe(run.record))
        same = [r for r in records if (r.get("model"), r.get("data"), recipe(r)) == ours]
        if len(same) < 2:
            continue
        cells = [f"`{model}`", len(same)]
        for key in ("test_accuracy", "real_accuracy"):
            values = [r[key] for r in same if r.get(key) is not None]
            if values:
                mean, std = mean_std(values)
                cells.append(f"{100 * mean:.2f} ± {100 * std:.2f}%")
            else:
                cells.append("—")
        cells.append(f"{100 * run.record['test_accuracy']:.2f}%")
        where = sorted({f"{r['hardware']}, {r['date'][:10]}" for r in same})
        cells.append("; ".join(where))
        rows.append(cells)
    if not rows:
        return _markdown(
            "*No committed runs of this recipe over several seeds (`examples/smoke_seeds.py` "
            "writes them): the spread between seeds is not known here.*"
        )
    headers = ("model", "seeds", "synthetic test", "real clips", "this build", "trained on")
    table = markdown_table(headers, rows, right=(1, 2, 3, 4))
    return _markdown(
        table + "\n\n*Mean ± standard deviation over seeds of the same recipe (committed result "
        "files); two models closer than their spread are not told apart.*"
    )


def learning_curves(runs: Mapping[str, Run]) -> list:
    """Each run's losses and accuracies per epoch
    (:func:`~quartznet_tutorial.tutorial.plots.plot_learning_curves`), titled by model.

    Returns:
        list of matplotlib.figure.Figure: one per run.
    """
    from quartznet_tutorial.tutorial.plots import plot_learning_curves

    return [plot_learning_curves(run.history, title=model) for model, run in runs.items()]


def confusion_matrices(runs: Mapping[str, Run]) -> list:
    """Each run's confusion matrix on the test split
    (:func:`~quartznet_tutorial.evaluation.plots.plot_confusion`), sized to the page's width.

    Returns:
        list of matplotlib.axes.Axes: one per run.
    """
    import matplotlib.pyplot as plt

    from quartznet_tutorial.evaluation.plots import plot_confusion

    axes = []
    for model, run in runs.items():
        _, ax = plt.subplots(figsize=(7.4, 6.4), layout="constrained")  # readable at page width
        plot_confusion(run.test, ax=ax)
        ax.set_title(f"{model}: {ax.get_title()}")
        axes.append(ax)
    return axes


def per_class_accuracy(runs: Mapping[str, Run]) -> list:
    """Each run's accuracy per word on the test split
    (:func:`~quartznet_tutorial.evaluation.plots.plot_per_class`), titled by model.

    Returns:
        list of matplotlib.axes.Axes: one per run.
    """
    from quartznet_tutorial.evaluation.plots import plot_per_class

    axes = []
    for model, run in runs.items():
        ax = plot_per_class(run.test)
        ax.set_title(model)
        axes.append(ax)
    return axes


@dataclass
class RealSpeech:
    """The runs' results on the real clips of :mod:`quartznet_tutorial.datasets.real_clips`.

    Args:
        runs (dict): the trained runs (:class:`~quartznet_tutorial.tutorial.profiles.Run`)
            by model name.
        results (dict): each run's :class:`~quartznet_tutorial.evaluation.accuracy.EvalResult` on
        the
            real clips, by model name.
        clips (quartznet_tutorial.datasets.real_clips.RealSpeechCommands): the real clips scored.
        test_data (str): what the runs' test split is, e.g. ``"synthetic-v1"``.
    """

    runs: Mapping[str, Run]
    results: dict[str, EvalResult]
    clips: RealSpeechCommands
    test_data: str

    def table(self):
        """Test against real-clip accuracy per model with the 95% interval, a sentence per
        model (:func:`gap_sentence`), and how many clips are by training-split speakers.

        Returns:
            IPython.display.Markdown: the table and its sentences.
        """
        rows = []
        for model, result in self.results.items():
            low, high = wilson_interval(int(result.confusion.trace()), result.num_clips)
            test = self.runs[model].test.accuracy
            accuracies = (test, result.accuracy)
            interval = f"{100 * low:.1f}–{100 * high:.1f}%"
            rows.append((f"`{model}`", *(f"{100 * a:.1f}%" for a in accuracies), interval))
        n = len(self.clips)
        headers = ("model", f"test ({self.test_data})", f"real clips ({n})", "real, 95% interval")
        in_training = sum(hash_split(f.name) == "training" for f in self.clips.files)
        sentences = (
            gap_sentence(m, self.runs[m].test, r, self.test_data) for m, r in self.results.items()
        )
        return _markdown(
            markdown_table(headers, rows, right=(1, 2, 3)) + "\n\n" + "\n\n".join(sentences)
            + f"\n\n*{in_training} of the {n} real clips are by speakers whom "
            "Speech Commands' hashing rule puts in its training split.*"
        )  # fmt: skip

    def per_word(self):
        """Per model, what was heard for each word said (:func:`per_word_markdown`).

        Returns:
            IPython.display.Markdown: a heading and a table per model.
        """
        return _markdown(
            "\n\n".join(
                f"**{model}**\n\n{per_word_markdown(result)}"
                for model, result in self.results.items()
            )
        )


def real_speech(runs: Mapping[str, Run], profile: Profile) -> RealSpeech:
    """Score every run's classifier on the real clips of the profile's Speech Commands version
    (:func:`~quartznet_tutorial.evaluation.real.evaluate_real`)."""
    results = {
        model: evaluate_real(run.classifier, version=profile.version) for model, run in runs.items()
    }
    return RealSpeech(runs, results, real_clips(profile.version), profile.data)


def per_word_markdown(result: EvalResult) -> str:
    """A pipe table of what was heard for each word said: clips, right, and the wrong guesses.

    Words without clips are left out.
    """
    rows = []
    for i, word in enumerate(result.labels):
        counts = result.confusion[i]
        total = int(counts.sum())
        if not total:
            continue
        wrong = sorted(
            ((int(n), result.labels[j]) for j, n in enumerate(counts) if n and j != i),
            key=lambda nw: (-nw[0], nw[1]),
        )
        heard = ", ".join(f"{w} ×{n}" if n > 1 else w for n, w in wrong) or "–"
        rows.append((word, total, int(counts[i]), heard))
    return markdown_table(("word said", "clips", "right", "heard instead"), rows)


def gap_sentence(model: str, test: EvalResult, real: EvalResult, test_data: str) -> str:
    """One Markdown sentence comparing a model's test accuracy with its accuracy on the real
    clips, worded from the numbers: whether the gap exceeds the real clips' 95% Wilson interval
    and whether the real accuracy is clearly above chance.

    Args:
        model (str): the model's name.
        test (EvalResult): its result on the test split it was trained for.
        real (EvalResult): :func:`~quartznet_tutorial.evaluation.real.evaluate_real`'s result.
        test_data (str): what the test split is, e.g. ``"synthetic-v1"``.
    """
    n = real.num_clips
    low, high = wilson_interval(int(real.confusion.trace()), n)
    chance = 1 / len(real.labels)
    if high < test.accuracy:
        gap = "clearly below its test accuracy"
    elif low > test.accuracy:
        gap = "clearly above its test accuracy"
    else:
        gap = "not clearly different from its test accuracy on so few clips"
    above = "clearly above" if low > chance else "not clearly above"
    return (
        f"`{model}` classifies {100 * test.accuracy:.1f}% of the {test.num_clips:,} test clips "
        f"of {test_data} and {100 * real.accuracy:.1f}% of the {n} real clips (95% interval "
        f"{100 * low:.1f}–{100 * high:.1f}%): {gap}, and {above} chance "
        f"({100 * chance:.1f}%, one word in {len(real.labels)})."
    )
