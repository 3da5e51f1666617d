"""Azure Functions 2019 trace: reader and writer of the per-minute invocation files.

``invocations_per_function_md.anon.dNN.csv`` has the header
``HashOwner,HashApp,HashFunction,Trigger,1,2,...,1440`` and one row per function with its
invocations in each minute of day ``NN``. Several day files are joined in day order. The
optional ``function_durations_percentiles.anon.dNN.csv`` (milliseconds) and
``app_memory_percentiles.anon.dNN.csv`` (MB) beside them add mean duration and memory.

Every problem raises :class:`~testbed.core.errors.ConfigError` naming file, line and column, and
nothing is returned half-loaded.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from loadgen.trace import FunctionInfo, Trace
from loadgen.traces.counts import DEFAULT_MAX_ARRIVALS, MinuteCounts, Spread
from testbed.core.atomic import atomic_open
from testbed.core.errors import ConfigError

__all__ = [
    "TRIGGERS",
    "read_azure2019",
    "read_azure2019_counts",
    "write_azure2019",
    "write_azure2019_durations",
]

TRIGGERS = ("http", "queue", "event", "timer", "orchestration", "storage", "others")
_KEY_COLUMNS = ("HashOwner", "HashApp", "HashFunction", "Trigger")
_DAY_RE = re.compile(r"\.d(\d+)\.csv$")
_DURATION_COLUMNS = ("HashOwner", "HashApp", "HashFunction", "Average")
_MEMORY_COLUMNS = ("HashOwner", "HashApp", "SampleCount", "AverageAllocatedMb")


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for every record of a CSV file."""
    try:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            try:
                for row in reader:
                    yield reader.line_num, row
            except csv.Error as exc:
                raise ConfigError(f"{path}: line {reader.line_num}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _check_header(path: Path, header: list[str], expected: Sequence[str]) -> None:
    for col, want in enumerate(expected, start=1):
        got = header[col - 1].strip() if col <= len(header) else "<missing>"
        if got != want:
            raise ConfigError(
                f"{path}: line 1, column {col}: expected header {want!r}, got {got!r}"
            )


def _parse_counts(path: Path, line: int, fields: list[str]) -> np.ndarray:
    values = fields[4:]
    try:
        arr = np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        for i, v in enumerate(values):
            try:
                int(v)
            except ValueError:
                raise ConfigError(
                    f"{path}: line {line}, column {i + 5} (minute {i + 1}): "
                    f"expected a non-negative integer count, got {v!r}"
                ) from None
        raise  # pragma: no cover - unreachable
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        i = int(bad[0])
        raise ConfigError(
            f"{path}: line {line}, column {i + 5} (minute {i + 1}): "
            f"count must be non-negative, got {values[i]!r}"
        )
    return arr


def _read_day(path: Path) -> tuple[int, list[tuple[str, str, str, str]], np.ndarray]:
    rows = _rows(path)
    first = next(rows, None)
    if first is None:
        raise ConfigError(f"{path}: line 1, column 1: empty file, expected a header")
    _, header = first
    _check_header(path, header, _KEY_COLUMNS)
    minutes = len(header) - 4
    if minutes < 1:
        raise ConfigError(f"{path}: line 1, column 5: no minute columns")
    for i, h in enumerate(header[4:], start=1):
        if h.strip() != str(i):
            raise ConfigError(
                f"{path}: line 1, column {i + 4}: expected minute header {str(i)!r}, got {h!r}"
            )
    keys: list[tuple[str, str, str, str]] = []
    counts: list[np.ndarray] = []
    seen: dict[tuple[str, str, str], int] = {}
    for line, fields in rows:
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != len(header):
            col = min(len(fields), len(header)) + 1
            raise ConfigError(
                f"{path}: line {line}, column {col}: expected {len(header)} fields, "
                f"got {len(fields)}"
            )
        owner, app, func, trigger = (f.strip() for f in fields[:4])
        for col, (value, name) in enumerate(
            zip((owner, app, func), _KEY_COLUMNS, strict=False), start=1
        ):
            if not value:
                raise ConfigError(f"{path}: line {line}, column {col}: empty {name}")
        trig = trigger.lower()
        if trig not in TRIGGERS:
            raise ConfigError(
                f"{path}: line {line}, column 4: unknown trigger {trigger!r} "
                f"(one of {', '.join(TRIGGERS)})"
            )
        key = (owner, app, func)
        if key in seen:
            raise ConfigError(
                f"{path}: line {line}, column 3: function {func!r} repeats line {seen[key]}"
            )
        seen[key] = line
        keys.append((owner, app, func, trig))
        counts.append(_parse_counts(path, line, fields))
    matrix = np.vstack(counts) if counts else np.zeros((0, minutes), dtype=np.int64)
    return minutes, keys, matrix


def _day_number(path: Path) -> int | None:
    match = _DAY_RE.search(path.name)
    return int(match.group(1)) if match else None


def _beside(path: Path, prefix: str) -> Path | None:
    day = _DAY_RE.search(path.name)
    if not day:
        return None
    candidate = path.with_name(f"{prefix}.anon.d{day.group(1)}.csv")
    return candidate if candidate.exists() else None


def _read_value_column(
    path: Path, columns: tuple[str, ...], key_width: int, *, nonnegative: bool
) -> dict[tuple[str, ...], float]:
    """Column 4 of a per-function/app percentile file, keyed by its first ``key_width`` fields.

    Raises:
        ConfigError: naming the file, line and column of the first bad field.
    """
    rows = _rows(path)
    first = next(rows, None)
    if first is None:
        raise ConfigError(f"{path}: line 1, column 1: empty file, expected a header")
    _check_header(path, first[1], columns)
    name = columns[3]
    out: dict[tuple[str, ...], float] = {}
    for line, fields in rows:
        if not fields:
            continue
        if len(fields) < 4:
            raise ConfigError(f"{path}: line {line}, column {len(fields) + 1}: missing fields")
        try:
            value = float(fields[3])
        except ValueError:
            raise ConfigError(
                f"{path}: line {line}, column 4: {name} must be a number, got {fields[3]!r}"
            ) from None
        if nonnegative and not value >= 0:
            raise ConfigError(f"{path}: line {line}, column 4: {name} must be >= 0")
        out[tuple(f.strip() for f in fields[:key_width])] = value
    return out


def _read_durations(path: Path) -> dict[tuple[str, str, str], float]:
    """Average duration (seconds) per (owner, app, function)."""
    ms = _read_value_column(path, _DURATION_COLUMNS, 3, nonnegative=True)
    return {key: value / 1000.0 for key, value in ms.items()}  # type: ignore[misc]


def _read_memory(path: Path) -> dict[tuple[str, str], float]:
    """Average allocated MB per (owner, app)."""
    return _read_value_column(path, _MEMORY_COLUMNS, 2, nonnegative=False)  # type: ignore[return-value]


def read_azure2019_counts(
    paths: str | Path | Sequence[str | Path],
    *,
    durations: str | Path | Sequence[str | Path] | None = None,
    memory: str | Path | Sequence[str | Path] | None = None,
) -> MinuteCounts:
    """Read and join Azure 2019 invocation day files into per-minute counts.

    Files are ordered by their ``dNN`` day number (else as given); a gap between day numbers
    becomes a stretch of zeros. A function missing from a day has zero counts that day.

    Args:
        paths: one or more ``invocations_per_function_md.anon.dNN.csv`` files.
        durations: durations percentile files; default: those beside ``paths`` if present.
        memory: app memory percentile files; default: those beside ``paths`` if present.

    Returns:
        :class:`MinuteCounts` with one row per (owner, app, function).

    Raises:
        ConfigError: a file is missing or malformed (message names file, line, column).
    """
    files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not files:
        raise ConfigError("no Azure 2019 invocation files given")
    days = [_day_number(p) for p in files]
    if all(d is not None for d in days):
        order = sorted(range(len(files)), key=lambda i: days[i])  # type: ignore[arg-type,return-value]
    else:
        order = list(range(len(files)))
    parsed = [(files[i], days[i], *_read_day(files[i])) for i in order]
    minutes = parsed[0][2]
    for path, _, m, _, _ in parsed:
        if m != minutes:
            raise ConfigError(
                f"{path}: line 1: has {m} minute columns, {files[order[0]]} has "
                f"{minutes}; cannot join"
            )
    first_day = parsed[0][1]
    slots = [
        (d - first_day) if (d is not None and first_day is not None) else k
        for k, (_, d, *_rest) in enumerate(parsed)
    ]
    if len(set(slots)) != len(slots):
        raise ConfigError(f"{files[0].parent}: the same day is given twice")
    total_minutes = (max(slots) + 1) * minutes
    index: dict[tuple[str, str, str], int] = {}
    triggers: list[str] = []
    for _, _, _, keys, _ in parsed:
        for owner, app, func, trig in keys:
            if (owner, app, func) not in index:
                index[(owner, app, func)] = len(index)
                triggers.append(trig)
    matrix = np.zeros((len(index), total_minutes), dtype=np.int64)
    for slot, (_, _, _, keys, counts) in zip(slots, parsed, strict=True):
        rows = [index[(o, a, f)] for o, a, f, _ in keys]
        matrix[rows, slot * minutes : (slot + 1) * minutes] = counts

    def _paths(given: object, prefix: str) -> list[Path]:
        if given is None:
            found = [_beside(p, prefix) for p in files]
            return [p for p in found if p is not None]
        return [Path(p) for p in ([given] if isinstance(given, (str, Path)) else given)]  # type: ignore[attr-defined]

    dur: dict[tuple[str, str, str], float] = {}
    for p in _paths(durations, "function_durations_percentiles"):
        dur.update(_read_durations(p))
    mem: dict[tuple[str, str], float] = {}
    for p in _paths(memory, "app_memory_percentiles"):
        mem.update(_read_memory(p))

    seen_funcs = Counter(k[2] for k in index)
    dupes = {f for f, c in seen_funcs.items() if c > 1}
    names: list[str] = []
    info: dict[str, FunctionInfo] = {}
    for (owner, app, func), trig in zip(index, triggers, strict=True):
        name = f"{app}/{func}" if func in dupes else func
        names.append(name)
        info[name] = FunctionInfo(
            owner=owner,
            app=app,
            trigger=trig,
            avg_duration_s=dur.get((owner, app, func)),
            memory_mb=mem.get((owner, app)),
        )
    source = files[0].name if len(files) == 1 else f"{files[0].name} (+{len(files) - 1} days)"
    return MinuteCounts(tuple(names), matrix, info, source)


def read_azure2019(
    paths: str | Path | Sequence[str | Path],
    *,
    top: int | None = None,
    sample: int | None = None,
    triggers: list[str] | None = None,
    functions: list[str] | None = None,
    spread: Spread = "poisson",
    seed: int = 0,
    max_arrivals: int = DEFAULT_MAX_ARRIVALS,
    durations: str | Path | Sequence[str | Path] | None = None,
    memory: str | Path | Sequence[str | Path] | None = None,
) -> Trace:
    """Read Azure 2019 day files, select functions, and spread arrivals inside minutes.

    Args:
        paths: invocation day files (see :func:`read_azure2019_counts`).
        top: keep the ``top`` busiest functions.
        sample: keep a seeded random sample of this many functions.
        triggers: keep functions with these trigger types.
        functions: keep these function names.
        spread: ``"poisson"`` or ``"even"`` placement inside each minute.
        seed: seeds sampling and placement.
        max_arrivals: refuse to expand more arrivals than this.
        durations, memory: percentile files (default: found beside ``paths``).

    Returns:
        A :class:`Trace` over the joined days.

    Raises:
        ConfigError: malformed files or an empty selection.
    """
    counts = read_azure2019_counts(paths, durations=durations, memory=memory)
    if any(x is not None for x in (top, sample, triggers, functions)):
        counts = counts.subset(
            functions=functions, top=top, sample=sample, triggers=triggers, seed=seed
        )
    return counts.to_trace(spread=spread, seed=seed, max_arrivals=max_arrivals)


def _write_atomic(path: Path, header: list[str], rows: Iterator[list[object]]) -> None:
    with atomic_open(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def write_azure2019(counts: MinuteCounts, path: str | Path) -> None:
    """Write counts in the Azure 2019 invocation format (atomically).

    Owner and app hashes come from ``counts.info`` (empty ones are filled with the name).
    """
    header = [*_KEY_COLUMNS, *(str(i) for i in range(1, counts.minutes + 1))]

    def rows() -> Iterator[list[object]]:
        for name, row in zip(counts.names, counts.counts, strict=True):
            info = counts.info.get(name, FunctionInfo())
            yield [
                info.owner or name,
                info.app or name,
                name,
                info.trigger or "http",
                *row.tolist(),
            ]

    _write_atomic(Path(path), header, rows())


def write_azure2019_durations(counts: MinuteCounts, path: str | Path) -> None:
    """Write mean durations (``info.avg_duration_s``) as an Azure durations percentile file."""
    header = ["HashOwner", "HashApp", "HashFunction", "Average", "Count", "Minimum", "Maximum"]

    def rows() -> Iterator[list[object]]:
        for name, total in zip(counts.names, counts.totals(), strict=True):
            info = counts.info.get(name, FunctionInfo())
            if info.avg_duration_s is None:
                continue
            ms = round(info.avg_duration_s * 1000.0, 3)
            yield [info.owner or name, info.app or name, name, ms, int(total), ms, ms]

    _write_atomic(Path(path), header, rows())
