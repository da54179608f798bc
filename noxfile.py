"""Sessions: `nox -l` lists them. Environments are reused (uv backend and its cache)."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the fast test suite on CPU (slow, GPU and NeMo tests are separate sessions)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "not slow and not nemo", *session.posargs)


@nox.session(python=PYTHON)
def slow(session: nox.Session) -> None:
    """Run the tests that take minutes (multi-process DDP, kill/resume, short trainings)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install("ruff")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the HTML docs, executing every notebook (smoke profile on CPU by default).

    `nox -s docs -- --fresh` clears the notebook cache first, as CI does: the cache notices
    edits to a notebook's own cells, not to the package it imports. Generated data (the smoke
    profile's synthetic set) lives in docs/_build/cache, so --fresh regenerates it too.
    `QUARTZNET_PROFILE=full` runs the notebooks on real data (docs/reproduce.md).
    """
    session.install("-e", ".[docs]")
    args = list(session.posargs)
    if "--fresh" in args:
        args.remove("--fresh")
        session.run("rm", "-rf", "docs/_build", external=True)
    env = {
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        "QUARTZNET_CACHE": os.environ.get("QUARTZNET_CACHE", os.path.abspath("docs/_build/cache")),
    }
    session.run(
        "sphinx-build", "-b", "html", "-n", "-T", "-W", "--keep-going",
        "docs", "docs/_build/html", *args, env=env,
    )  # fmt: skip


# The version whose source is our ground truth for `.nemo` parity; it resolves with torch 2.11.0.
NEMO_VERSION = "3.0.0"


@nox.session(python=PYTHON)
def nemo(session: nox.Session) -> None:
    """Prove parity with NVIDIA NeMo (logits, MFCCs, parameter counts, Novograd); installs NeMo."""
    session.install(
        "-e",
        ".[test]",
        f"nemo_toolkit[asr]=={NEMO_VERSION}",
        "torch==2.11.0",
        "torchaudio==2.11.0",
    )
    session.run(
        "pytest",
        "-m",
        "nemo",
        *session.posargs,
        # Models are built from configs with random weights: nothing is downloaded.
        env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")},
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmark training and inference (with NeMo side by side); writes benchmarks/results/.

    `nox -s bench -- --quick` is the CI-sized run. Run the full one on a quiet machine: every
    row records the load average.
    """
    session.install(
        "-e",
        ".[export]",
        f"nemo_toolkit[asr]=={NEMO_VERSION}",
        "torch==2.11.0",
        "torchaudio==2.11.0",
    )
    session.run("python", "benchmarks/bench.py", *session.posargs, env={"HF_HUB_OFFLINE": "1"})
