"""The package face is lazy: importing it, a name of it or ``quartznet --help`` loads only what
it needs, and never the docs site's subpackage. The layout rules are ``test_layout.py``'s."""

from __future__ import annotations

import importlib
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
    assert (
        "quartznet_tutorial.models.variants" in loaded
        and "quartznet_tutorial.training.loop" not in loaded
    )


def test_every_name_of_the_face_loads_from_its_home():
    import quartznet_tutorial

    for name in quartznet_tutorial.__all__:
        value = getattr(quartznet_tutorial, name)
        home = quartznet_tutorial._EXPORTS[name]
        assert getattr(importlib.import_module(f"quartznet_tutorial.{home}"), name) is value
    assert set(quartznet_tutorial.__all__) == set(quartznet_tutorial._EXPORTS)
    assert callable(quartznet_tutorial.train) and callable(quartznet_tutorial.evaluate)


def test_the_help_of_the_command_loads_no_torch():
    loaded = _loaded_after(
        "import contextlib, io\n"
        "from quartznet_tutorial.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--help']) == 0"
    )
    assert "torch" not in loaded
