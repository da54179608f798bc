"""Progress bars that suit both a terminal and a log file.

On a terminal (or as a Jupyter widget) a bar redraws ten times a second; written to a file or
a pipe (a batch job's log, ``| tee``) every redraw is more text, so there it redraws every 30
seconds.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

__all__ = ["progress_bar"]

#: Seconds between redraws when stderr is not a terminal.
LOG_INTERVAL = 30.0


def progress_bar(*args, **kwargs) -> tqdm:
    """``tqdm(*args, **kwargs)``, redrawn every ``LOG_INTERVAL`` (30) seconds off a terminal."""
    if "notebook" not in tqdm.__module__ and not _is_terminal(sys.stderr):
        kwargs.setdefault("mininterval", LOG_INTERVAL)
    return tqdm(*args, **kwargs)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False
