"""Azure Functions 2021 trace reader: one line per invocation.

The file (``AzureFunctionsInvocationTraceForTwoWeeksJan2021.txt``) has the header
``app,func,end_timestamp,duration``: seconds since the trace start at which the invocation
ended, and its duration in seconds. The arrival time is ``end_timestamp - duration``.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np

from loadgen.trace import FunctionInfo, Trace
from testbed.core.errors import ConfigError

__all__ = ["read_azure2021"]

_HEADER = ("app", "func", "end_timestamp", "duration")


def read_azure2021(
    path: str | Path,
    *,
    top: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    duration_s: float | None = None,
) -> Trace:
    """Read an Azure 2021 per-invocation file.

    Args:
        path: the CSV file.
        top: keep the ``top`` busiest functions.
        sample: then keep a seeded random sample of this many functions.
        seed: seeds the sample.
        duration_s: window length; default: just past the last arrival, in whole minutes.

    Returns:
        A :class:`Trace` whose time 0 is the earliest arrival rounded down to a minute
        (or 0 when every arrival is at or after 0). Each function's ``avg_duration_s`` is
        its mean duration in the file.

    Raises:
        ConfigError: the file is missing or malformed (file, line and column named).
    """
    path = Path(path)
    apps: list[str] = []
    funcs: list[str] = []
    starts: list[float] = []
    durs: list[float] = []
    try:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader, None)
                if header is None:
                    raise ConfigError(f"{path}: line 1, column 1: empty file, expected a header")
                for col, want in enumerate(_HEADER, start=1):
                    got = header[col - 1].strip() if col <= len(header) else "<missing>"
                    if got != want:
                        raise ConfigError(
                            f"{path}: line 1, column {col}: expected header {want!r}, got {got!r}"
                        )
                for row in reader:
                    line = reader.line_num
                    if not row:
                        continue
                    if len(row) != 4:
                        raise ConfigError(
                            f"{path}: line {line}, column {min(len(row), 4) + 1}: "
                            f"expected 4 fields, got {len(row)}"
                        )
                    for col in (1, 2):
                        if not row[col - 1].strip():
                            raise ConfigError(
                                f"{path}: line {line}, column {col}: empty {_HEADER[col - 1]}"
                            )
                    values = []
                    for col in (3, 4):
                        try:
                            v = float(row[col - 1])
                        except ValueError:
                            v = math.nan
                        if not math.isfinite(v) or (col == 4 and v < 0):
                            raise ConfigError(
                                f"{path}: line {line}, column {col}: {_HEADER[col - 1]} must "
                                f"be a {'non-negative ' if col == 4 else ''}number, "
                                f"got {row[col - 1]!r}"
                            )
                        values.append(v)
                    apps.append(row[0].strip())
                    funcs.append(row[1].strip())
                    starts.append(values[0] - values[1])
                    durs.append(values[1])
            except csv.Error as exc:
                raise ConfigError(f"{path}: line {reader.line_num}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not starts:
        raise ConfigError(f"{path}: no invocations")
    begin = min(0.0, math.floor(min(starts) / 60.0) * 60.0)
    t = np.asarray(starts) - begin
    end = duration_s if duration_s is not None else (math.floor(float(t.max()) / 60.0) + 1) * 60
    func_counts = Counter(f for _, f in set(zip(apps, funcs, strict=True)))
    keys = [f"{a}/{f}" if func_counts[f] > 1 else f for a, f in zip(apps, funcs, strict=True)]
    key_arr = np.asarray(keys)
    dur_arr = np.asarray(durs)
    names, inverse = np.unique(key_arr, return_inverse=True)
    keep = t < end
    arrivals: dict[str, np.ndarray] = {}
    info: dict[str, FunctionInfo] = {}
    app_of = dict(zip(keys, apps, strict=True))
    for i, name in enumerate(names.tolist()):
        sel = inverse == i
        arrivals[name] = np.sort(t[sel & keep])
        info[name] = FunctionInfo(app=app_of[name], avg_duration_s=float(dur_arr[sel].mean()))
    trace = Trace(arrivals, float(end), info, path.name)
    if top is not None:
        trace = trace.top(top)
    if sample is not None:
        trace = trace.sample(sample, seed=seed)
    return trace
