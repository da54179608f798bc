"""The results tables: NVIDIA's reported accuracy beside ours, built from ``results/*.json``.

Every measured number on the docs' Results page comes from a JSON file in ``results/`` that
a training run wrote (schema in ``results/README.md``); nothing is typed by hand. Each
variant of :data:`~quartznet_tutorial.models.variants.VARIANTS` gets a row per dataset it was
measured on, and a row for real Speech Commands V1 (and V2 where NVIDIA reported V2) that says
"not yet measured" until such a file exists. Only real-data rows stand beside NVIDIA's
numbers; runs on synthetic data go to a table of their own, a check that the code learns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from quartznet_tutorial.models.variants import VARIANTS, QuartzNetConfig

__all__ = [
    "NOT_MEASURED",
    "OTHER_DATA_TITLE",
    "RECONSTRUCTION_MARK",
    "REQUIRED_KEYS",
    "ResultRow",
    "checkout",
    "load_results",
    "mean_std",
    "recipe",
    "results_markdown",
    "results_rows",
    "shipped_markdown",
    "stream_markdown",
    "validate_record",
]


#: The repository's ``results/`` folder (an editable install or a checkout).
def checkout(start: str | Path | None = None) -> Path:
    """The project checkout the docs are built from: the nearest folder at or above ``start``
    (default: the working folder, a notebook's ``docs/``) that holds ``results/`` and
    ``benchmarks/``. The files the site renders are the checkout's, not the installed package's.
    """
    here = Path.cwd() if start is None else Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / "results").is_dir() and (folder / "benchmarks").is_dir():
            return folder
    raise FileNotFoundError(f"{here}: not inside a quartznet-tutorial checkout (no results/)")


#: What the table says where no result file covers a model and dataset.
NOT_MEASURED = "not yet measured"

#: Values of recipe keys newer than a result file: files written before runs recorded their
#: example length trained on NeMo's 128 frames, the only length then.
RECORD_DEFAULTS = {"frames": 128}

#: Keys every training result must have, and their types.
REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "kind": str,
    "model": str,
    "data": str,
    "profile": str,
    "epochs": int,
    "test_accuracy": (int, float),
    "val_accuracy": (int, float),
    "train_seconds": (int, float),
    "hardware": str,
    "device": str,
    "precision": str,
    "date": str,
    "versions": dict,
    "seed": int,
    "command": str,
}

# Dataset name in result files -> the dataset tag of Reported.accuracy.
_REAL = {"speech-commands-v1": "V1", "speech-commands-v2": "V2"}


def validate_record(record: Mapping, source: str = "result") -> dict:
    """Check one training result against the schema; returns it as a plain dict.

    Raises:
        ValueError: naming ``source`` and the key that is missing, mistyped or out of range.
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"{source}: expected a JSON object, got {type(record).__name__}")
    for key, types in REQUIRED_KEYS.items():
        if key not in record:
            raise ValueError(f"{source}: missing key {key!r} (see results/README.md)")
        value = record[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise ValueError(f"{source}: {key!r} has type {type(value).__name__}")
    if record["kind"] != "training":
        raise ValueError(f"{source}: kind is {record['kind']!r}, not 'training'")
    if record["model"] not in VARIANTS:
        raise ValueError(
            f"{source}: unknown model {record['model']!r}; choose one of {', '.join(VARIANTS)}"
        )
    for key in ("test_accuracy", "val_accuracy"):
        if not 0.0 <= record[key] <= 1.0:
            raise ValueError(f"{source}: {key} must be a fraction in [0, 1], got {record[key]}")
    frames = record.get("frames", RECORD_DEFAULTS["frames"])
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise ValueError(f"{source}: frames must be a whole number of frames, got {frames!r}")
    return dict(record)


def load_results(directory: str | Path) -> list[dict]:
    """Read every ``*.json`` training result in ``directory`` (sorted by file name).

    Files whose ``kind`` is not ``"training"`` (benchmarks, say) are skipped; a training
    result that breaks the schema raises ``ValueError`` naming the file, and a missing folder
    ``FileNotFoundError`` (an empty table would claim that nothing was measured).
    """
    if not Path(directory).is_dir():
        raise FileNotFoundError(
            f"{directory}: no such folder; pass the repository's results/ folder"
        )
    records = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        if isinstance(record, Mapping) and record.get("kind", "training") != "training":
            continue
        record = validate_record(record, str(path))
        records.append(RECORD_DEFAULTS | record | {"file": path.name})
    return records


@dataclass(frozen=True)
class ResultRow:
    """One line of the results table; text cells, ready to print.

    Args:
        model (str): the variant's registry name.
        config (str): ``"NeMo"`` (published config) or ``"reconstruction"``.
        params (str): NVIDIA's reported parameter count.
        data (str): the dataset of the measurement.
        reported (str): NVIDIA's reported test accuracy on that dataset, or ``"—"``.
        measured (str): our test accuracy, or :data:`NOT_MEASURED`.
        profile (str): the profile of the run, ``"smoke"`` or ``"full"``.
        epochs (str): epochs trained.
        frames (int): MFCC frames per training example (NeMo's 128).
        hardware (str): what it ran on, and the precision.
        time (str): training time.
        date (str): the day of the run.
        file (str): the result file in ``results/`` the row comes from.
        network (str): NVIDIA's network this variant stands for, with its reported size,
            e.g. ``"QuartzNet5x1 0.48M"``.
    """

    model: str
    config: str
    params: str
    data: str
    reported: str
    measured: str
    profile: str = ""
    epochs: str = ""
    frames: int = 128
    hardware: str = ""
    time: str = ""
    date: str = ""
    file: str = ""
    network: str = ""

    @property
    def real(self) -> bool:
        """Whether the row is on real Speech Commands, the data NVIDIA reported on."""
        return self.data in _REAL


def _network(config: QuartzNetConfig) -> str:
    """NVIDIA's name and reported size for a variant: ``"SE-QuartzNet5x1 0.51M"``."""
    name = f"{'SE-' if config.has_se else ''}QuartzNet{config.num_blocks}x{config.repeat}"
    return f"{name} {config.reported.params}" if config.reported else name


def _precision(precision: str) -> str:
    return "fp32" if precision == "32" else precision


def _reported(config: QuartzNetConfig, data: str) -> str:
    tag = _REAL.get(data)
    if tag is None or config.reported is None:
        return "—"
    found = [
        f"{acc:.2f}% ({_short(source)})"
        for ds, acc, source in config.reported.accuracy
        if ds == tag
    ]
    return "; ".join(found) or "—"


def _short(source: str) -> str:
    """``"NeMo docs, Feb 2020 (later withdrawn)"`` -> ``"Feb 2020, withdrawn"``."""
    return source.removeprefix("NeMo docs, ").replace(" (later withdrawn)", ", withdrawn")


#: What runs of one recipe share, beside the model and data: they differ in the seed (and the
#: machine) only. The Results page groups by it, and so do the training pages' seed tables.
RECIPE = (
    "profile", "task", "epochs", "precision", "batch_size", "data_args", "lr", "hold_ratio",
    "augment", "rebalance", "limit_clips", "frames",
)  # fmt: skip


def recipe(record: Mapping) -> dict:
    """The ``RECIPE`` keys of a result record, ``RECORD_DEFAULTS`` where it predates a key:
    what two records must share to be seeds of one recipe."""
    record = RECORD_DEFAULTS | dict(record)
    return {k: record.get(k) for k in RECIPE}


def _by_recipe(records: Iterable[Mapping]) -> list[list[Mapping]]:
    """Records grouped by recipe (seeds of one recipe together), in date order."""
    groups: dict[str, list[Mapping]] = {}
    for r in records:
        key = json.dumps(recipe(r), sort_keys=True, default=str)
        groups.setdefault(key, []).append(r)
    return list(groups.values())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``n - 1``; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


def _accuracy(values: Sequence[float]) -> str:
    """One accuracy, or mean ± standard deviation over seeds with their number."""
    if len(values) == 1:
        return f"{100 * values[0]:.2f}%"
    mean, std = mean_std(values)
    return f"{100 * mean:.2f} ± {100 * std:.2f}% (n={len(values)})"


def _measured(runs: Sequence[Mapping]) -> str:
    """The best checkpoint's test accuracy, then the final weights' where every run has it."""
    best = _accuracy([r["test_accuracy"] for r in runs])
    finals = [r.get("final_test_accuracy") for r in runs]
    if any(f is None for f in finals):
        return best
    return f"{best} (final {_accuracy(finals)})"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def results_rows(
    records: Iterable[Mapping], variants: Mapping[str, QuartzNetConfig] = VARIANTS
) -> list[ResultRow]:
    """The table: for each variant, real-data rows (measured or not), then other measured data.

    A variant gets a "not yet measured" row for real Speech Commands V1, and for V2 where
    NVIDIA reported V2, unless a result file covers it. Several results for the same model and
    data (different seeds or hardware) each get their own row.
    """
    by_model: dict[str, list[Mapping]] = {}
    for record in records:
        by_model.setdefault(record["model"], []).append(record)
    rows = []
    for name, config in variants.items():
        source = "NeMo" if config.source == "nemo" else "reconstruction"
        params = config.reported.params if config.reported else "—"
        measured = by_model.get(name, [])
        wanted = ["speech-commands-v1"]
        if config.reported and any(ds == "V2" for ds, _, _ in config.reported.accuracy):
            wanted.append("speech-commands-v2")
        # Real data first (the comparison with NVIDIA), then anything else, e.g. synthetic.
        datasets = wanted + sorted({r["data"] for r in measured} - set(wanted))
        for data in datasets:
            found = sorted((r for r in measured if r["data"] == data), key=lambda r: r["date"])
            if not found:
                rows.append(
                    ResultRow(
                        name,
                        source,
                        params,
                        data,
                        _reported(config, data),
                        NOT_MEASURED,
                        network=_network(config),
                    )
                )
            for runs in _by_recipe(found):
                r = runs[-1]
                hardware = sorted({f"{x['hardware']}, {_precision(x['precision'])}" for x in runs})
                seconds = sum(x["train_seconds"] for x in runs) / len(runs)
                rows.append(
                    ResultRow(
                        model=name,
                        config=source,
                        params=params,
                        data=data,
                        reported=_reported(config, data),
                        measured=_measured(runs),
                        profile=r["profile"],
                        epochs=str(r["epochs"]),
                        frames=recipe(r)["frames"],
                        hardware="; ".join(hardware),
                        time=_duration(seconds) + (" per seed" if len(runs) > 1 else ""),
                        date=r["date"][:10],
                        file=", ".join(x.get("file", "") for x in runs),
                        network=_network(config),
                    )
                )
    return rows


_HEADERS = (
    "NVIDIA's network (reported size)",
    "our model",
    "data",
    "test accuracy reported by NVIDIA",
    "measured by us",
    "how",
)
_OTHER_HEADERS = ("our model", "data", "test accuracy", "how")
#: Marks a model whose configuration is our reconstruction (NVIDIA never published it).
RECONSTRUCTION_MARK = "†"
_DATA = {
    "speech-commands-v1": "real V1",
    "speech-commands-v2": "real V2",
    "synthetic-v1": "synthetic V1",
    "synthetic-v2": "synthetic V2",
}
#: The heading of the second table, for runs on data NVIDIA never reported on.
OTHER_DATA_TITLE = "Code check on synthetic data (not comparable with NVIDIA's numbers)"


def results_markdown(rows: Iterable[ResultRow]) -> str:
    """The rows as two MyST/GitHub pipe tables, narrow enough for a page.

    The first sets NVIDIA's reported accuracy beside ours on real Speech Commands. Its first
    column names NVIDIA's network with its reported size, and says where NVIDIA never published
    the config; :data:`RECONSTRUCTION_MARK` after our model's name marks our reconstruction of
    it. The second, under :data:`OTHER_DATA_TITLE`, holds runs on other (synthetic) data: no
    reported number stands beside them. A measured cell gives the test accuracy of the best
    validation checkpoint, then of the final weights (what NeMo's 2020 runs logged). How each
    was measured (profile, epochs, hardware, precision, time, date, file) is a numbered note
    under its table, so that the tables fit the page.
    """
    from quartznet_tutorial.tutorial.tables import markdown_table

    rows = list(rows)
    notes: list[str] = []

    def how(r: ResultRow) -> str:
        if r.measured == NOT_MEASURED:
            return ""
        frames = "" if r.frames == 128 else f" of {r.frames}-frame examples"
        notes.append(
            f"{r.profile} profile, {r.epochs} epochs{frames}, {r.hardware}, {r.time}, {r.date}, "
            f"`results/{r.file}`"
        )
        return f"({len(notes)})"

    def noted(table: str, first: int) -> str:
        listed = "".join(f"\n({i}) {note}  " for i, note in enumerate(notes[first:], first + 1))
        return table + ("\n" + listed.rstrip() if listed else "")

    def model(r: ResultRow) -> str:
        return f"`{r.model}`" + ("" if r.config == "NeMo" else f" {RECONSTRUCTION_MARK}")

    def network(r: ResultRow) -> str:
        return r.network + ("" if r.config == "NeMo" else " (config unpublished)")

    real = markdown_table(
        _HEADERS,
        [
            (network(r), model(r), _DATA.get(r.data, r.data), r.reported, r.measured, how(r))
            for r in rows
            if r.real
        ],
    )
    real = noted(real, 0)
    first = len(notes)
    other = [(model(r), _DATA.get(r.data, r.data), r.measured, how(r)) for r in rows if not r.real]
    second = noted(markdown_table(_OTHER_HEADERS, other), first) if other else ""
    return f"{real}\n\n**{OTHER_DATA_TITLE}**\n\n{second or 'No such run committed.'}"


def shipped_markdown() -> str:
    """The models shipped with the package
    (:data:`~quartznet_tutorial.checkpoints.pretrained.PRETRAINED`)
    as a table: accuracy on the synthetic test speakers and on the bundled real clips (with its
    95 % interval), how and when each was trained, from the record its training wrote."""
    from quartznet_tutorial.checkpoints.pretrained import PRETRAINED, pretrained_record
    from quartznet_tutorial.evaluation.real import wilson_interval
    from quartznet_tutorial.tutorial.tables import markdown_table

    rows = []
    for name in PRETRAINED:
        r = pretrained_record(name)
        correct = round(r["real_accuracy"] * r["real_clips"])
        low, high = wilson_interval(correct, r["real_clips"])
        rows.append(
            (
                f"`{name}`",
                f"`{r['model']}`",
                f"{100 * r['test_accuracy']:.2f}%",
                f"{100 * r['real_accuracy']:.1f}% ({100 * low:.0f}–{100 * high:.0f}%)",
                f"{r['real_clips']}",
                f"{r['epochs']} epochs, {r['hardware']}, {_duration(r['train_seconds'])}, "
                f"{r['date'][:10]}",
            )
        )
    headers = (
        "name",
        "model",
        "synthetic test",
        "real clips (95% interval)",
        "n real",
        "trained",
    )
    return markdown_table(headers, rows, right=(2, 3, 4))


def stream_markdown(path: str | Path) -> str:
    """The detectors on a long stream (``examples/long_stream.py``): for each model, hits and
    false accepts per hour at its threshold, by cause, and the threshold that keeps them at or
    under 1 per hour; a caption with the stream, hardware and date. A sentence if the file is
    missing."""
    from quartznet_tutorial.tutorial.tables import markdown_table

    path = Path(path)
    if not path.is_file():
        return f"*No long-stream result committed ({path.name}: `examples/long_stream.py`).*"
    record = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for name, m in record["models"].items():
        causes = m["causes"]
        best = m["at_most_1_per_hour"]
        rows.append(
            (
                name,
                f"{m['threshold']:g}",
                f"{100 * m['hit_rate']:.1f}%",
                f"{m['false_accepts_per_hour']:.1f}",
                f"{causes['wrong_word']} / {causes['on_other_words']} / {causes['repeats']} / "
                f"{causes['in_noise_alone']}",
                f"{best['threshold']:.2f}: {100 * best['hit_rate']:.1f}% hits" if best else "none",
            )
        )
    headers = (
        "model",
        "threshold",
        "hit rate",
        "false accepts / h",
        "wrong word / other word / repeat / noise",
        "≤ 1 per hour from",
    )
    stream = record["stream"]
    caption = (
        f"*{record['minutes']:g} minutes of {stream['data']} test speakers (stream seed "
        f"{stream['seed']}: {stream['keywords']} keywords, {stream['other_words']} other words, "
        f"SNR {' and '.join(f'{s:g}' for s in stream['snr_db'])} dB); {record['hardware']}, "
        f"{record['date']}; `results/{path.name}`.*"
    )
    return markdown_table(headers, rows, right=(1, 2, 3)) + "\n\n" + caption
