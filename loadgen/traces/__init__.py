"""Trace readers and generators; all of them produce :class:`loadgen.trace.Trace`."""

from __future__ import annotations

from pathlib import Path

from loadgen.trace import Trace
from loadgen.traces.azure2019 import (
    read_azure2019,
    read_azure2019_counts,
    write_azure2019,
    write_azure2019_durations,
)
from loadgen.traces.azure2021 import read_azure2021
from loadgen.traces.counts import MinuteCounts, Spread
from loadgen.traces.synthetic import KINDS, synthesize
from testbed.core.errors import ConfigError

__all__ = [
    "KINDS",
    "MinuteCounts",
    "Spread",
    "detect_format",
    "read_azure2019",
    "read_azure2019_counts",
    "read_azure2021",
    "read_trace",
    "synthesize",
    "write_azure2019",
    "write_azure2019_durations",
]


def detect_format(path: str | Path) -> str:
    """``"azure2019"`` or ``"azure2021"``, from the file's header line.

    Raises:
        ConfigError: the file is missing or its header matches neither format.
    """
    path = Path(path)
    try:
        with path.open() as fh:
            head = fh.readline().strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head.startswith("HashOwner,HashApp,HashFunction,Trigger"):
        return "azure2019"
    if head.replace(" ", "").startswith("app,func,end_timestamp,duration"):
        return "azure2021"
    raise ConfigError(
        f"{path}: line 1, column 1: unknown trace format (expected an Azure 2019 "
        "'HashOwner,HashApp,HashFunction,Trigger,1,...' or Azure 2021 "
        "'app,func,end_timestamp,duration' header)"
    )


def read_trace(path: str | Path | list[str | Path], *, seed: int = 0, **options: object) -> Trace:
    """Read an Azure 2019 (one or several day files) or Azure 2021 trace.

    Args:
        path: file or files; the format is taken from the first file's header.
        seed: seeds sampling and in-minute placement.
        **options: passed to :func:`read_azure2019` or :func:`read_azure2021`.

    Raises:
        ConfigError: unknown format or malformed file.
    """
    paths = path if isinstance(path, list) else [path]
    fmt = detect_format(paths[0])
    if fmt == "azure2019":
        return read_azure2019(paths, seed=seed, **options)  # type: ignore[arg-type]
    if len(paths) != 1:
        raise ConfigError("Azure 2021 traces are one file")
    return read_azure2021(paths[0], seed=seed, **options)  # type: ignore[arg-type]
