"""This package's version, as installed: ``pyproject.toml`` is its one source.

Torch-free, so the package face and ``quartznet --version`` read it without loading torch.
"""

from __future__ import annotations

import importlib.metadata

__all__ = ["package_version"]


def package_version() -> str:
    """``quartznet-tutorial``'s installed version; ``"0+unknown"`` for a checkout on
    ``sys.path`` that was never installed."""
    try:
        return importlib.metadata.version("quartznet-tutorial")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
