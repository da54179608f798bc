"""Writing files so that a reader, or a run killed mid-write, never sees half of one.

Every file the package writes (checkpoints, clips, result records, metrics) goes through
:func:`atomic_write`: the bytes go to a temporary file beside the target
(``.<name>.<random>.tmp``), which then replaces the target in one ``os.replace``. A crash or
``SIGKILL`` at any moment leaves the old file or the new one, and at worst a temporary that
:func:`~quartznet_tutorial.checkpoints.checkpoint.remove_stale_temporaries` deletes.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import math
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "CACHE_ENV",
    "TMP_SUFFIX",
    "append_json_line",
    "atomic_write",
    "default_cache_dir",
    "package_data",
    "write_json",
    "write_json_lines",
    "write_text_atomic",
]

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_write(path: str | Path, *, durable: bool = False) -> Iterator[IO[bytes]]:
    """A binary file to write ``path``'s new content to; it replaces ``path`` on success.

    Args:
        path (str or Path): the final file; its folder is created if needed.
        durable (bool, optional): also ``fsync`` the file and its folder, so the new content
            survives a power cut, not only a crash (checkpoints). (Default: ``False``)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are private (0600); a clip or a checkpoint gets the umask's mode.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Replace ``path``'s content with ``text`` (UTF-8) through :func:`atomic_write`."""
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))
    return Path(path)


def write_json(path: str | Path, record: dict) -> Path:
    """Replace ``path`` with ``record`` as indented JSON (non-finite floats as ``null``)."""
    return write_text_atomic(path, json.dumps(_json_safe(record), indent=1) + "\n")


def write_json_lines(path: str | Path, records: Iterable[dict]) -> Path:
    """Replace ``path`` with one JSON line per record (non-finite floats as ``null``)."""
    return write_text_atomic(path, "".join(json.dumps(_json_safe(r)) + "\n" for r in records))


def append_json_line(path: str | Path, record: dict) -> None:
    """Append ``record`` to ``path`` as one JSON line (non-finite floats as ``null``). Not
    atomic: a kill mid-append can leave a torn last line."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(_json_safe(record)) + "\n")


def _json_safe(record: dict) -> dict:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: The environment variable that moves :func:`default_cache_dir`.
CACHE_ENV = "QUARTZNET_CACHE"


def default_cache_dir() -> Path:
    """Where generated and cached data live (waveform caches, the docs' synthetic sets):
    ``$QUARTZNET_CACHE``, else ``~/.cache/quartznet-tutorial``.

    ``nox -s docs`` points it inside ``docs/_build`` so that ``--fresh`` regenerates it too.
    """
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "quartznet-tutorial"


def package_data(*parts: str) -> Path:
    """A file or folder shipped inside the package (``quartznet_tutorial/assets/...``), found
    through ``importlib.resources``, as it is in a wheel as in a checkout."""
    return Path(str(importlib.resources.files("quartznet_tutorial").joinpath(*parts)))
