"""Tables and plots of the benchmark files, ``benchmarks/results/*.json``, for the Performance
page.

Nothing here holds a number: every value comes from a results file, and every table says
which machine, date and load it was measured on. Missing measurements (no GPU run yet, NeMo
not installed) render as "not yet measured" / "not measured" with the reason. The scripts of
``benchmarks/`` write the files (``benchmarks/report.py`` re-exports this module for them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

#: The checkout's ``benchmarks/results/`` folder (an editable install or a checkout).
# Training-split sizes: V1 51,094 (REFERENCE); V2 105,829 - 9,981 validation - 11,005 test.
V1_TRAIN, V2_TRAIN = 51_094, 84_843
NOT_YET = "not yet measured"
NOT_MEASURED = "not measured in this run"

__all__ = [
    "INT8_MODELS",
    "NOT_MEASURED",
    "NOT_YET",
    "caption",
    "cli_pipeline_table",
    "detect_speed_table",
    "dispatch_table",
    "epoch_table",
    "goals_table",
    "gpu_section",
    "gpu_tables",
    "inference_table",
    "int8_table",
    "isa_level",
    "isa_table",
    "kernel_table",
    "latest",
    "load",
    "nemo_table",
    "plot_dispatch",
    "plot_epoch_time",
    "plot_throughput",
    "step_table",
    "train_table",
    "where",
]


def load(folder: str | Path) -> list[dict]:
    """Every results document in ``folder``, oldest first, each with its file name."""
    docs = []
    for path in sorted(Path(folder).glob("*.json")):
        doc = json.loads(path.read_text())
        if doc.get("schema") != 1 or doc.get("mode") in {"quick", "tiny"}:
            continue
        doc["file"] = path.name
        docs.append(doc)
    return sorted(docs, key=lambda d: d["date"])


def latest(docs: Sequence[dict], kind: str) -> dict | None:
    """The newest document of ``kind`` (``"cpu"``, ``"gpu"``, ``"cpu-step"``,
    ``"cpu-pipeline"``, ``"cpu-isa"``), or ``None``."""
    found = [d for d in docs if d.get("kind") == kind]
    return found[-1] if found else None


def where(doc: dict) -> str:
    """One line: the machine, the date and the load it was measured under."""
    hw = doc["hardware"]
    if hw.get("gpu"):
        machine = f"{hw['gpu']['name']} ({hw['gpu']['memory_gib']} GiB), {hw['cores']} CPU cores"
    else:
        features = ", ".join(hw.get("cpu_features", [])) or "no AVX-512"
        machine = f"{hw['cpu']} ({hw['cores']} cores; {features}; computing at {isa_level(hw)})"
    return (
        f"Measured on {machine}, {doc['date'][:10]}, {_load(hw, 'load average')}; torch "
        f"{doc['versions']['torch']}, commit {doc['versions'].get('quartznet_tutorial')} "
        f"(`benchmarks/results/{doc.get('file', '?')}`)."
    )


def _load(hw: dict, name: str) -> str:
    """The 1-minute load average at the start, and at the end where recorded."""
    end = hw.get("load_average_end", [None])[0]
    return f"{name} {hw.get('load_average', ['?'])[0]}" + (f" → {end}" if end is not None else "")


def isa_level(hw: dict) -> str:
    """The ISA level a CPU run computed at: the kernels PyTorch used where recorded (an
    emulated level says so), else the CPU's own from its feature flags."""
    features = set(hw.get("cpu_features", []))
    native = "AVX-512" if "avx512f" in features else "AVX2" if "avx2" in features else "SSE"
    if "amx_bf16" in features:
        native += " + AMX"
    kernels = hw.get("kernels")
    if kernels is None or kernels.replace("AVX512", "AVX-512") == native.split(" +")[0]:
        return native
    if hw.get("env", {}).get("ATEN_CPU_CAPABILITY"):
        return f"{kernels.replace('AVX512', 'AVX-512')} (emulated on an {native} CPU)"
    return kernels.replace("AVX512", "AVX-512")


def _machine(doc: dict) -> str:
    """The machine in a few words: the GPU's name, or the CPU's with its core count and the
    ISA level it computed at."""
    hw = doc.get("hardware") or {}
    if hw.get("gpu"):
        return hw["gpu"]["name"]
    return f"{hw.get('cpu', 'unknown CPU')} ({hw.get('cores', '?')} cores, {isa_level(hw)})"


def caption(doc: dict) -> str:
    """The one line above each table: machine, date, load average and the file it comes from."""
    return (
        f"*{_machine(doc)}, {doc['date'][:10]}, {_load(doc.get('hardware') or {}, 'load')}; "
        f"`benchmarks/results/{doc.get('file', '?')}`*"
    )


def _title(doc: dict) -> str:
    """Machine and date, for a plot's title."""
    return f"{_machine(doc)}, {doc['date'][:10]}"


def _fmt(value: float | None, digits: int = 0) -> str:
    return "not measured" if value is None else f"{value:,.{digits}f}"


def _rows(doc: dict, benchmark: str) -> list[dict]:
    return [r for r in doc["rows"] if r["benchmark"] == benchmark]


def _side_by_side(fast: dict | None, slow: dict | None) -> str:
    """Table cells: fast clips/s | conventional clips/s | their ratio (rows may be missing)."""
    fv, sv = (fast or {}).get("value"), (slow or {}).get("value")
    ratio = f"{fv / sv:.2f}×" if fv and sv else "–"
    return f"{_fmt(fv)} | {_fmt(sv)} | {ratio}"


def train_table(doc: dict) -> str:
    """Training clips/s per variant and precision, fast and conventional pipeline side by side."""
    rows = _rows(doc, "train")
    cells: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["variant"], r["precision"]), {})[r["pipeline"]] = r
    lines = [
        "| variant | precision | fast (`device`) clips/s | conventional (`dataloader`) clips/s "
        "| fast / conventional |",
        "|---|---|--:|--:|--:|",
    ]
    for (variant, precision), by_kind in cells.items():
        fast, slow = by_kind.get("device"), by_kind.get("dataloader")
        lines.append(f"| {variant} | {precision} | {_side_by_side(fast, slow)} |")
    if rows:
        r = rows[0]
        workers = next((x["num_workers"] for x in rows if x["pipeline"] == "dataloader"), 0)
        lines.append(
            f"\nBatch {r['batch']}, {r['threads']} thread(s), {r.get('steps')} timed steps after "
            f"warm-up, NeMo's augmentation; the conventional path uses {workers} DataLoader "
            "workers."
        )
    return "\n".join(lines)


_OURS = {
    "package": "ours (what train runs: (C, B, T) layout on CPU)",
    "eager": "ours, eager models/quartznet.py forward (baseline)",
    "cbt": "ours, (C, B, T) layout",
}


def nemo_table(doc: dict) -> str:
    """Our training step vs NeMo's modules, same process."""
    lines = [
        "| variant | precision | batch | threads | ours | ours ms/step | NeMo ms/step "
        "| NeMo / ours |",
        "|---|---|--:|--:|---|--:|--:|--:|",
    ]
    notes = []
    for r in _rows(doc, "train_vs_nemo"):
        ours = _OURS.get(r.get("ours", "package"), r.get("ours"))
        head = f"| {r['variant']} | {r['precision']} | {r['batch']} | {r['threads']} | {ours} "
        if r["value"] is None:
            lines.append(head + "| – | – | not measured |")
            notes.append(r["note"])
            continue
        lines.append(head + f"| {r['ours_ms']:.1f} | {r['nemo_ms']:.1f} | {r['value']:.2f}× |")
    return "\n".join(lines + [f"\n{n}" for n in dict.fromkeys(notes)])


def inference_table(doc: dict) -> str:
    """Single-clip latency (one thread) and batch-64 throughput, PyTorch vs onnxruntime."""
    lines = [
        "| runtime | 1 s clip → label, p50 ms (1 thread) | p99 ms | batch-64 clips/s "
        "| threads (batch) |",
        "|---|--:|--:|--:|--:|",
    ]
    latency = {r["runtime"]: r for r in _rows(doc, "latency")}
    throughput = {r["runtime"]: r for r in _rows(doc, "throughput")}
    for runtime in ("pytorch", "onnxruntime"):
        lat, thr = latency.get(runtime, {}), throughput.get(runtime, {})
        lines.append(
            f"| {runtime} | {_fmt(lat.get('value'), 2)} | {_fmt(lat.get('p99_ms'), 2)} | "
            f"{_fmt(thr.get('value'))} | {thr.get('threads', '–')} |"
        )
    return "\n".join(lines)


def goals_table(doc: dict) -> str:
    """The project's CPU goals against this run."""
    lines = ["| goal | target | measured | met |", "|---|--:|--:|---|"]
    for g in doc.get("goals", []):
        met = {True: "yes", False: "**no**", None: "not measured"}[g["met"]]
        lines.append(f"| {g['goal']} | {g['target']} | {_fmt(g['measured'], 2)} | {met} |")
    return "\n".join(lines)


def epoch_table(doc: dict) -> str:
    lines = ["| dataset clips | clips trained | seconds per epoch |", "|--:|--:|--:|"]
    for r in _rows(doc, "epoch"):
        lines.append(f"| {r['dataset_clips']:,} | {r['clips']:,} | {r['value']:.2f} |")
    return "\n".join(lines)


def cli_pipeline_table(doc: dict) -> str:
    """``quartznet train`` on a CPU with each pipeline (``cpu_pipeline.py``)."""
    s = doc["settings"]
    by = {(r["precision"], r["pipeline"]): r for r in _rows(doc, "train_cli")}
    lines = [
        "| precision | fast (`device`) clips/s | conventional (`dataloader`) clips/s "
        "| fast / conventional |",
        "|---|--:|--:|--:|",
    ]
    for precision in dict.fromkeys(p for p, _ in by):
        fast, slow = by.get((precision, "device")), by.get((precision, "dataloader"))
        lines.append(f"| {precision} | {_side_by_side(fast, slow)} |")
    lines.append(
        f"\n`{s['model']}` on {s['data']}, batch {s['batch']}, {s['threads']} threads (PyTorch's "
        f"default), {s['num_workers']} DataLoader workers (the default), augmentation "
        f"{'on' if s['augment'] else 'off'}; the last of {s['epochs']} epochs, median of "
        f"{s['repeats']} alternating runs."
    )
    return "\n".join(lines)


def dispatch_table(doc: dict) -> str:
    """ATen ops per stage of one training step (``dispatch.py``), per Novograd implementation."""
    rows = _rows(doc, "dispatch")
    if not rows:
        return NOT_MEASURED
    cells: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["variant"], r["precision"]), {})[f"{r['optimizer']}/{r['stage']}"] = r
    lines = [
        "| variant | forward MFLOP per clip | precision | pipeline | forward | backward "
        "| optimizer | step | host syncs | optimizer, per-tensor loop | NeMo's Novograd "
        "(host syncs) |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for (variant, precision), c in cells.items():

        def ops(key: str, c: dict = c) -> str:
            return f"{c[key]['value']:,}" if key in c else "–"

        mflop = c.get("foreach/forward", {}).get("mflop_per_clip")
        nemo = c.get("nemo/optimizer")
        lines.append(
            f"| {variant} | {_fmt(mflop, 1)} | {precision} | {ops('foreach/pipeline')} | "
            f"{ops('foreach/forward')} | {ops('foreach/backward')} | "
            f"{ops('foreach/optimizer')} | **{ops('foreach/total')}** | "
            f"{c.get('foreach/total', {}).get('syncs', '–')} | {ops('per-tensor/optimizer')} | "
            + ("not measured |" if nemo is None else f"{nemo['value']:,} ({nemo['syncs']}) |")
        )
    lines.append(
        "\nATen operations per stage of one training step (one `device`-pipeline batch with "
        "NeMo's augmentation; forward with the loss) with our multi-tensor Novograd; the last two "
        "columns swap in our per-tensor loop and NeMo's own Novograd (nemo_toolkit "
        f"{doc.get('versions', {}).get('nemo_toolkit') or 'not installed'}). The counts do not "
        "depend on the batch size. Host syncs: ops that make the CPU wait for the GPU "
        "(`.item()`). MFLOP per clip: `torch.utils.flop_counter` on a 128-frame clip."
    )
    return "\n".join(lines)


def step_table(doc: dict | None) -> str:
    """The CPU-step candidates of ``benchmarks/cpu_step.py``."""
    if doc is None:
        return NOT_YET
    prof = doc.get("profile")
    lines = [
        f"Batch {doc['batch']}, {doc['threads']} thread(s), median of {doc['repeats']} "
        "alternating steps. Max relative difference of outputs and gradients: banded vs "
        f"`F.conv1d` {doc['banded_max_relative_difference']:.1e}, (C, B, T) layout vs the "
        f"model {doc.get('cbt_max_relative_difference', float('nan')):.1e}.",
        "",
    ]
    if prof:
        lines += [
            f"Under `torch.profiler`, of a {prof['step_ms']:.0f} ms {prof['candidate']} step, "
            f"depthwise convolutions (forward + backward) took {prof['depthwise_ms']:.0f} ms "
            f"and pointwise ones {prof['pointwise_ms']:.0f} ms.",
            "",
        ]
    lines += [
        "| candidate | median ms/step | min ms/step | speed-up |",
        "|---|--:|--:|--:|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['candidate']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['speedup']:.2f}× |"
        )
    return "\n".join(lines)


def isa_table(doc: dict | None) -> str:
    """``benchmarks/cpu_isa.py``: before/after per ISA level, one row per measurement."""
    if doc is None:
        return NOT_YET
    lines = [
        "| ISA level (how; threads; load) | 1 s clip -> label, 1 thread, p50 | train end to end / "
        "bare step | step: package / eager / NeMo (NeMo / package) |",
        "|---|--:|--:|--:|",
    ]
    repeats = set()
    for level in doc["levels"].values():
        lat, pipe, step = level["latency_1_thread"], level["pipeline"], level["step"]
        runs = level.get("runs", [level])
        repeats.add(len(runs))
        nemo = (
            f"{_fmt(step['nemo_ms'])} ms ({step['package_vs_nemo']:.2f}×"
            f"{_spread(runs, 'step', 'package_vs_nemo', '{:.2f}×')})"
            if "nemo_ms" in step
            else "NeMo not measured"
        )
        how = "emulated" if level.get("env") else "native"
        aten = f" ({_fmt(step['package_aten_ms'])} ATen only)" if "package_aten_ms" in step else ""
        lines.append(
            f"| {level['isa'].replace('AVX512', 'AVX-512')} ({how}; {level['threads']}; "
            f"{level['load_average_start'][0]}) | "
            f"{lat['before']:.2f} -> {lat['after']:.2f} ms"
            f"{_spread(runs, 'latency_1_thread', 'after', '{:.2f}')} | "
            f"{pipe['share_before']:.0%} -> {pipe['share_after']:.0%}"
            f"{_spread(runs, 'pipeline', 'share_after', '{:.0%}')} | "
            f"{_fmt(step['package_ms'])}{aten} / {_fmt(step['eager_ms'])} / {nemo} |"
        )
    if repeats != {1}:
        lines.append(
            f"\n*Medians of {'/'.join(map(str, sorted(repeats)))} runs per level, the levels "
            "taking turns; in brackets the runs of the goal figure, lowest to highest.*"
        )
    return "\n".join(lines)


def _spread(runs: Sequence[dict], section: str, key: str, form: str) -> str:
    """`` (a, b, c)``: each run's figure, sorted; nothing for a single run."""
    values = sorted(r[section][key] for r in runs if key in r[section])
    return f" ({', '.join(form.format(v) for v in values)})" if len(values) > 1 else ""


def gpu_tables(doc: dict, variants: Sequence[str]) -> str:
    """The measured GPU rows of ``gpu_evidence.py`` (a missing one says so)."""
    table = train_table({**doc, "rows": [r for r in doc["rows"] if not r.get("compile")]})
    compiled = [r for r in doc["rows"] if r.get("compile")]
    extra = "".join(
        f"\n\n`torch.compile` mode `{_mode(r['compile'])}` ({r['variant']}, {r['precision']}, "
        f"fast pipeline): {_fmt(r['value'])} clips/s"
        + (f" ({r['note']})" if r["value"] is None and r.get("note") else "")
        for r in compiled
    )
    sweep = _rows(doc, "batch_sweep")
    if sweep:
        r = sweep[0]
        extra += (
            f"\n\nBatch sweep ({r['variant']}, {r['precision']}, fast pipeline, eager): "
            + ", ".join(f"batch {x['batch']}: {_fmt(x['value'])} clips/s" for x in sweep)
            + "."
        )
    if _rows(doc, "kernels"):
        extra += "\n\n" + kernel_table(doc)
    s = doc.get("schedule")
    if s is None:
        return table + extra + f"\n\nThe 200-epoch schedule: {NOT_YET}."
    return table + extra + "\n\n" + _schedule(s, doc.get("schedule_error"))


def kernel_table(doc: dict) -> str:
    """CUDA kernels per stage of one quartznet-3x1 step, per precision and Novograd form."""
    rows = _rows(doc, "kernels")
    cells = {(r["precision"], r["optimizer"], r["stage"]): r["value"] for r in rows}
    stages = ("pipeline", "forward", "backward", "optimizer", "total")
    unit = rows[0]["unit"]
    lines = [
        f"{unit.capitalize()} per stage of one `quartznet-3x1` training step (batch "
        f"{rows[0].get('batch')}, fast pipeline):",
        "",
        "| precision | Novograd | " + " | ".join(stages) + " |",
        "|---|---|" + "--:|" * len(stages),
    ]
    for precision, optimizer in dict.fromkeys((r["precision"], r["optimizer"]) for r in rows):
        values = [_fmt(cells.get((precision, optimizer, stage))) for stage in stages]
        lines.append(f"| {precision} | {optimizer} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def _schedule(s: dict, error: str | None = None) -> str:
    """The 200-epoch schedule row. A run that stopped at its time budget has its total
    *projected* from its steady epochs, and the table says so in every cell that depends on it."""
    planned = s["epochs_planned"]
    if "epochs_done" not in s:  # cut off mid-run: only the epochs it timed survive
        return (
            f"The {planned}-epoch schedule stopped after {len(s.get('epoch_seconds', []))} timed "
            f"epochs, before its summary was written{f' ({error})' if error else ''}: "
            f"{NOT_YET}."
        )
    done = s["epochs_done"]
    stopped = done < planned
    projected = (
        f"{s['projected_seconds']:.1f} s (projected)"
        if stopped
        else f"{s['train_seconds']:.1f} s (measured)"
    )
    met = {True: "met", False: "**not met**", None: "–"}[s.get("goal_met")]
    if stopped and s.get("goal_met") is not None:
        met += " (projected)"
    compiled_text = f", compiled ({_mode(s['compile'])})" if s.get("compile") else ""
    lines = [
        f"| run | epochs run | seconds | clips/s (steady) | total for {planned} epochs "
        "| held-out accuracy (tone bursts) | goal (≤ 180 s) |",
        "|---|--:|--:|--:|--:|--:|---|",
        f"| {s['variant']}, batch {s['batch']}, {s['precision']}{compiled_text}, "
        f"{s['train_clips']:,} synthetic tone-burst clips | {done}/{planned} | "
        f"{s['train_seconds']:.1f} | {s['steady_clips_per_second']:,.0f} | {projected} | "
        f"{s['val_accuracy']:.3f} | {met} |",
    ]
    if stopped:
        lines.append(
            f"\nThe run stopped at its time budget ({s.get('budget_seconds', '?')} s) after {done} "
            f"of {planned} epochs; the total is projected from its steady epochs, not measured."
        )
    return "\n".join(lines)


def gpu_section(doc: dict | None, variants: Sequence[str]) -> str:
    """The page's GPU section: one sentence while no GPU run exists, else caption and tables."""
    if doc is None:
        return (
            "No GPU run has been committed yet (no `benchmarks/results/gpu-*.json`): the CUDA "
            "kernels per training step, the GPU throughput of both pipelines for the "
            f"{len(variants)} variants in `bf16-mixed` and `16-mixed`, the batch sweep, "
            f"`torch.compile` and the 200-epoch schedule are all **{NOT_YET}**, and the CUDA "
            "tests (`tests/test_cuda.py`) have not run."
        )
    return caption(doc) + "\n\n" + gpu_tables(doc, variants)


#: How the int8 table names the models ``benchmarks/int8.py`` compares.
INT8_MODELS = {
    "fp32": "float32",
    "int8": "int8 (front end float32; `--int8`)",
    "int8-all": "int8, front end too",
}


def int8_table(doc: dict) -> str:
    """Markdown: per variant and model, accuracy, agreement with float32, size and latency."""
    lines = [
        "| variant | model | test accuracy | top-1 agreement with float32 | max logit diff "
        "| file kB | p50 ms | p99 ms |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for row in doc["rows"]:
        for name, m in row["models"].items():
            lines.append(
                f"| {row['variant']} | {INT8_MODELS.get(name, name)} | {100 * m['accuracy']:.1f} % "
                f"| {100 * m['agreement_with_fp32']:.1f} % | {m['max_logit_diff_vs_fp32']:.3g} "
                f"| {m['bytes'] / 1e3:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |"
            )
    hw, data = doc["hardware"], doc["data"]
    training = [row["training"] for row in doc["rows"]]
    if training and all(t.get("trained_here") for t in training):
        how = f"trained here for {training[0].get('epochs')} epochs on the synthetic set"
    else:
        how = ", ".join(f"`{t.get('checkpoint')}`" for t in training)
    lines.append(
        f"\n{data['test_clips']} test clips of a synthetic V1 set "
        f"({data['synthetic']['per_word']} clips per word); models {how}; int8 calibrated on "
        f"{data['calibration_clips']} training clips. Latency: one 1 s clip, ONNX Runtime on "
        f"one thread, the models taking turns. {hw['cpu']}, PyTorch kernels "
        f"{hw['torch_cpu_capability']}, ONNX Runtime by CPUID ({', '.join(hw['mlas_cpu_flags'])})"
        f", {doc['date'][:10]}, load {hw['load_average'][0]} → {hw['load_average_end'][0]}."
    )
    return "\n".join(lines)


def _mode(compile: str | bool) -> str:
    return compile if isinstance(compile, str) else "default"  # older files: compile=True


def plot_throughput(doc: dict, ax=None):
    """Bar chart: training clips/s per variant, one bar per (pipeline, precision)."""
    import matplotlib.pyplot as plt

    rows = [r for r in _rows(doc, "train") if r["value"] and not r.get("compile")]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    series = list(dict.fromkeys((r["pipeline"], r["precision"]) for r in rows))
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / max(1, len(series))
    for i, (kind, precision) in enumerate(series):
        values = [
            next(
                (
                    r["value"]
                    for r in rows
                    if (r["variant"], r["pipeline"], r["precision"]) == (v, kind, precision)
                ),
                0.0,
            )
            for v in variants
        ]
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(variants))]
        ax.bar(xs, values, width, label=f"{kind}, {precision}")
    ax.set_xticks(range(len(variants)), variants, rotation=20, ha="right")
    ax.set_ylabel("training clips/s")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    batch, threads = (rows[0]["batch"], rows[0]["threads"]) if rows else ("?", "?")
    ax.set_title(f"{_title(doc)}, batch {batch}, {threads} thread(s)", fontsize=10)
    ax.figure.tight_layout()
    return ax


def plot_dispatch(doc: dict, precision: str = "bf16-mixed", ax=None):
    """Stacked bars: the ops of one training step by stage, multi-tensor vs per-tensor Novograd."""
    import matplotlib.pyplot as plt

    rows = [r for r in _rows(doc, "dispatch") if r["precision"] == precision]
    # Ours against NeMo's own optimizer where it was measured, else against our per-tensor loop.
    other = "nemo" if any(r["optimizer"] == "nemo" for r in rows) else "per-tensor"
    rows = [r for r in rows if r["optimizer"] in ("foreach", other)]
    stages = [s for s in dict.fromkeys(r["stage"] for r in rows) if s != "total"]
    bars = list(dict.fromkeys((r["variant"], r["optimizer"]) for r in rows))
    ops = {(r["variant"], r["optimizer"], r["stage"]): r["value"] for r in rows}
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.32 * len(bars) + 1.8), layout="constrained")
    names = {"foreach": "ours", "per-tensor": "ours, per-tensor loop", "nemo": "NeMo's Novograd"}
    labels = [f"{variant}, {names.get(optimizer, optimizer)}" for variant, optimizer in bars]
    left = [0] * len(bars)
    for stage in stages:
        widths = [ops.get((*bar, stage), 0) for bar in bars]
        ax.barh(labels, widths, left=left, label=stage)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel(f"ATen ops per training step ({precision})")
    ax.set_title(_title(doc), fontsize=10)
    # Below the axes: inside, the legend would cover the longest bar.
    ax.figure.legend(
        *ax.get_legend_handles_labels(), fontsize=8, ncols=len(stages), loc="outside lower center"
    )
    return ax


def plot_epoch_time(cpu: dict, gpu: dict | None = None, ax=None):
    """Seconds per epoch vs dataset size: measured points, and the line through them.

    The line is a least-squares fit ``a + b * clips`` to the measured epochs, drawn out to
    V1's and V2's training-set sizes and labelled as an extrapolation; the GPU schedule's mean
    epoch, when measured, is a point at 51,094 clips.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6))
    title = f"CPU: {_title(cpu)}"
    rows = _rows(cpu, "epoch")
    xs, ys = [r["dataset_clips"] for r in rows], [r["value"] for r in rows]
    threads = rows[0]["threads"] if rows else "?"
    ax.plot(xs, ys, "o", label=f"CPU, measured ({threads} thread(s))")
    if len(xs) >= 2:
        n = len(xs)
        mx, my = sum(xs) / n, sum(ys) / n
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
        intercept = my - slope * mx
        grid = [min(xs), V1_TRAIN, V2_TRAIN]
        ax.plot(
            grid,
            [intercept + slope * g for g in grid],
            "--",
            color="C0",
            alpha=0.6,
            label="CPU, extrapolated (linear fit)",
        )
    if gpu is not None and gpu.get("schedule"):
        s = gpu["schedule"]
        steady = s["epoch_seconds"][1:] or s["epoch_seconds"]
        ax.plot(
            [s["train_clips"]],
            [sum(steady) / len(steady)],
            "s",
            color="C3",
            label=f"{(gpu['hardware']['gpu'] or {'name': 'no GPU'})['name']}, measured",
        )
        title += f"\nGPU: {_title(gpu)}"
    for size, name, align in ((V1_TRAIN, "V1 train ", "right"), (V2_TRAIN, " V2 train", "left")):
        ax.axvline(size, color="grey", lw=0.8, ls=":")
        ax.text(size, ax.get_ylim()[1], name, va="top", ha=align, fontsize=8, color="grey")
    ax.set_xlabel("clips per epoch")
    ax.set_ylabel("seconds per epoch (quartznet-3x1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=10)
    ax.figure.tight_layout()
    return ax


_DETECT_MODES = {
    "exact": "exact",
    "one-pass": "one-pass",
    "exact-window-by-window": "exact, each window's own MFCCs (reference)",
}


def detect_speed_table(folder: str | Path) -> str:
    """Markdown: seconds to score an hour of audio at a 100 ms hop, per mode and ISA level,
    from the newest ``detect-*.json`` of each level (``benchmarks/detect.py``)."""
    newest: dict[str, dict] = {}
    for path in sorted(Path(folder).glob("detect-*.json")):
        doc = json.loads(path.read_text())
        doc["file"] = path.name
        level = isa_level(doc["hardware"])
        if level not in newest or doc["date"] > newest[level]["date"]:
            newest[level] = doc
    if not newest:
        return f"Keyword-spotting speed: {NOT_YET} (run `benchmarks/detect.py`)."
    lines = [
        "| computing at | mode | s per hour of audio | × real time | threads | same as window "
        "by window (max posterior diff) |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for level, doc in sorted(newest.items()):
        reference = {r["mode"]: r for r in doc["speed"]}.get("exact-window-by-window", {})
        diff = reference.get("exact_max_abs_posterior_difference")
        for row in doc["speed"]:
            same = f"{diff:.1e}" if row["mode"] == "exact" and diff is not None else "–"
            lines.append(
                f"| {level} | {_DETECT_MODES.get(row['mode'], row['mode'])} "
                f"| {row['seconds_per_hour']:.1f} | {row['real_time_factor']:.0f} "
                f"| {doc['threads']} | {same} |"
            )
    lines.append("")
    lines += [caption(doc) for _, doc in sorted(newest.items())]
    return "\n\n".join(["\n".join(lines[: lines.index("")]), *lines[lines.index("") + 1 :]])
