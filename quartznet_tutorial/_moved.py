"""Old import paths of names that moved to another module: a module's ``__getattr__``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable


def moved_names(module: str, names: Iterable[str], home: str) -> Callable[[str], object]:
    """A ``__getattr__`` for ``module`` that answers ``names`` from ``home`` (imported on first
    use, so neither module imports the other at load time)."""
    names = frozenset(names)

    def __getattr__(name: str) -> object:
        if name in names:
            return getattr(importlib.import_module(home), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
