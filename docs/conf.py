"""Sphinx configuration: MyST-NB notebooks executed at build time, cached, warnings are errors.

Built by ``nox -s docs`` (``sphinx-build -n -T -W --keep-going``) and by Read the Docs
(``.readthedocs.yaml``). Notebooks run under the profile named by ``QUARTZNET_PROFILE``
(``smoke`` unless set; see :mod:`quartznet_tutorial.tutorial.profiles`).
"""

from __future__ import annotations

import os
from pathlib import Path

import quartznet_tutorial

project = "quartznet-tutorial"
author = "quartznet-tutorial contributors"
copyright = "2026, quartznet-tutorial contributors"
release = version = quartznet_tutorial.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax copied into the site: equations render offline too
    "sphinx.ext.viewcode",
    "sphinxcontrib.bibtex",
]

exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "README.md"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# Every unresolved reference is a warning, and warnings fail the build. There is no
# intersphinx: the build must pass offline, so links into other projects' docs cannot be
# checked. Their names are ignored here instead.
nitpicky = True
_EXTERNAL = (
    "torch|torchaudio|nn|np|numpy|matplotlib|onnx|onnxruntime|argparse|ctypes|pathlib|os|tqdm|"
    "contextlib"
)
nitpick_ignore_regex = [
    # Other projects' objects (torch, numpy, matplotlib, the standard library).
    (r"py:.*", rf"({_EXTERNAL}|collections|dataclasses|typing|types)(\..*)?"),
    (r"py:class", r"Tensor|Path|Figure|Axes|Module|Generator|Optimizer|Mapping|Sequence"),
    (r"py:class", r"Iterable|Iterator"),
    # Inherited from torch's LRScheduler and documented there.
    (r"py:meth", r"step|get_last_lr"),
    # napoleon turns "(int, optional)" and "sequence of X" into references.
    (r"py:class", r"optional|sequence|iterable|list of .*|tuple of .*|dict|callable"),
]

# tqdm.auto warns in a Jupyter kernel without ipywidgets. The package's progress bars are off
# in the notebooks, so the warning says nothing about the pages; keep it off them. The kernels
# inherit this environment.
os.environ["PYTHONWARNINGS"] = "ignore:IProgress not found"

# -- MyST / MyST-NB ---------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath", "deflist", "substitution"]
myst_heading_anchors = 3
# "cache": a notebook runs again only when its code cells change; the cache lives in _build,
# so `nox -s docs -- --fresh` (CI) starts from nothing and the pages tell the truth. Each
# profile has its own cache, and `quartznet_profile` below makes Sphinx re-read every page
# when the profile changes, so a full build never shows smoke outputs or the reverse.
PROFILE = os.environ.get("QUARTZNET_PROFILE") or "smoke"
quartznet_profile = PROFILE
nb_execution_mode = "cache"
nb_execution_cache_path = os.path.join(
    os.path.dirname(__file__), "_build", f".jupyter_cache-{PROFILE}"
)
nb_execution_raise_on_error = True  # a broken notebook fails the build
nb_execution_show_tb = True
# Seconds per cell: a smoke training cell on 2 slow CPU cores; the full profile's cells train
# for an hour or more each, so they get no limit.
nb_execution_timeout = -1 if PROFILE == "full" else 1200
nb_render_markdown_format = "myst"  # text/markdown outputs (our tables) may use pipe tables
nb_merge_streams = True

# -- autodoc / napoleon -----------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True}
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -- bibliography -----------------------------------------------------------------------------
bibtex_bibfiles = ["references.bib"]
bibtex_default_style = "unsrt"
bibtex_reference_style = "author_year"

# -- HTML -------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "QuartzNet tutorial"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "home_page_in_toc": True,
}
html_static_path: list[str] = []


# -- the results table ------------------------------------------------------------------------
# results.md includes a table generated here from ../results/*.json. A notebook would keep
# serving its cached table after a new result file lands; an included file is a dependency
# Sphinx tracks, so the page is rebuilt exactly when the table changes.
GENERATED = os.path.join(os.path.dirname(__file__), "_build", "generated")


def _write_results_table(app) -> None:
    from quartznet_tutorial.tutorial.ablation import load_rows, markdown_table
    from quartznet_tutorial.tutorial.results import (
        load_results,
        results_markdown,
        results_rows,
        shipped_markdown,
    )

    # The checkout's results/, also where the package is installed, not linked (Read the Docs).
    results = Path(__file__).resolve().parent.parent / "results"
    text = results_markdown(results_rows(load_results(results))) + "\n"
    _write_if_changed(Path(GENERATED) / "results_table.md", text)
    _write_if_changed(Path(GENERATED) / "shipped_table.md", shipped_markdown() + "\n")
    ablation = results / "real-gap-ablation.json"
    if ablation.is_file():
        rows = load_rows(ablation)
        loads = [x[0] for r in rows for x in (r["loadavg_before"], r["loadavg_after"])]
        caption = (
            f"*{rows[0]['cpu']}, {rows[0]['isa']} kernels, {rows[0]['threads']} thread per run, "
            f"{rows[0]['date']}, load {min(loads):.1f}-{max(loads):.1f} (other runs beside "
            "each: the seconds compare poorly); `results/real-gap-ablation.json`*"
        )
        _write_if_changed(
            Path(GENERATED) / "ablation_table.md", caption + "\n\n" + markdown_table(rows) + "\n"
        )


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # else keep the mtime
        path.write_text(text, encoding="utf-8")


# -- the package's top-level names ------------------------------------------------------------
def _resolve_package_alias(app, env, node, contnode):
    """Link ``quartznet_tutorial.X`` (or a bare ``X``) that the package re-exports at the top
    level to where ``X`` is defined and documented, e.g. ``quartznet_tutorial.AudioError`` to
    ``quartznet_tutorial.audio.file_io.AudioError``."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].removeprefix("~")
    obj = quartznet_tutorial
    for part in target.removeprefix("quartznet_tutorial.").split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    module, qualname = getattr(obj, "__module__", ""), getattr(obj, "__qualname__", "")
    if not module.startswith("quartznet_tutorial.") or not qualname:
        return None
    real = f"{module}.{qualname}"
    if real == target:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], real, node, contnode
    )


def _reread_performance(app, env, added, changed, removed) -> list[str]:
    """performance.md renders ../benchmarks/results/*.json, which Sphinx does not track: read
    it on every build, so a new results file shows up (its cells run with ``force``)."""
    return ["performance"]


def setup(app) -> None:
    app.add_config_value("quartznet_profile", PROFILE, "env")
    app.connect("env-get-outdated", _reread_performance)
    app.connect("builder-inited", _write_results_table)
    app.connect("missing-reference", _resolve_package_alias)
