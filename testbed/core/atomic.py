"""Atomic file writes: a temp file in the same directory, fsync, then ``os.replace``.

A crash at any point leaves either the old file or the new one, never half of either. Every
writer of results, state, profiles and traces goes through here.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_path", "atomic_write_json", "atomic_write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path`` atomically.

    For writers that want a file name (``DataFrame.to_csv``, ``Figure.savefig``).

    Args:
        path: the final path; its directory is created if missing.
        mode: permission bits of the result (default: 0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    try:
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | Path, *, newline: str | None = None, mode: int | None = None
) -> Iterator[IO[str]]:
    """Open a temp file for UTF-8 text writing; on success it replaces ``path`` atomically."""
    with (
        atomic_path(path, mode=mode) as tmp,
        tmp.open("w", encoding="utf-8", newline=newline) as fh,
    ):
        yield fh
        fh.flush()


def atomic_write_text(path: str | Path, text: str, *, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, newline="", mode=mode) as fh:
        fh.write(text)


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> None:
    """Write ``data`` as JSON (a trailing newline; ``str()`` for unknown types) atomically."""
    separators = (",", ":") if indent is None else None
    text = json.dumps(data, indent=indent, separators=separators, default=str)
    atomic_write_text(path, text + "\n")
