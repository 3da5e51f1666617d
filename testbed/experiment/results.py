"""The one writer and reader of results directories (schema in ``docs/results.md``).

An experiment writes one directory per (policy label, seed)::

    OUT/
      experiment.yaml            the config as given
      <label>/seed-<seed>/       one run: meta.json, requests.csv, stages.csv,
                                 decisions.jsonl, timeline.csv

A run is written into a hidden sibling ``<label>/.seed-<seed>.partial`` whose ``meta.json``
says ``"complete": false``; only when the run finished is ``complete`` set and the directory
renamed into place. A killed run therefore leaves a hidden partial directory marked
incomplete, and every earlier run (including an earlier run of the same label and seed)
untouched. Readers skip incomplete runs unless asked.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.core.atomic import atomic_write_text
from testbed.core.errors import ConfigError

__all__ = [
    "DECISIONS_FILE",
    "LOCK_FILE",
    "META_FILE",
    "REQUESTS_COLUMNS",
    "REQUESTS_FILE",
    "STAGES_COLUMNS",
    "STAGES_FILE",
    "TIMELINE_COLUMNS",
    "TIMELINE_FILE",
    "ResultsLock",
    "RunData",
    "RunWriter",
    "TimelineWriter",
    "find_interrupted",
    "find_runs",
    "load_run",
    "read_meta",
    "write_csv",
]

from testbed.core.schema import (
    DECISIONS_FILE,
    META_FILE,
    REQUESTS_COLUMNS,
    REQUESTS_FILE,
    STAGES_COLUMNS,
    STAGES_FILE,
    TIMELINE_COLUMNS,
    TIMELINE_FILE,
)

PARTIAL_SUFFIX = ".partial"

_REQUIRED = {
    REQUESTS_FILE: ("request_id", "workflow", "latency_s", "ok"),
    STAGES_FILE: ("request_id", "stage", "function", "duration_s"),
    TIMELINE_FILE: ("t_s", "function", "replicas_ready"),
}
_DEFAULTS: dict[str, Any] = {"i": 0, "f": float("nan"), "s": "", "b": False}
_TRUE = {"1", "true", "yes", "t", "y"}


def write_csv(
    path: Path, frame: pd.DataFrame | Sequence[Mapping[str, Any]], columns: Mapping[str, str]
) -> None:
    """Write rows atomically as CSV with exactly the schema's columns (missing ones defaulted).

    Args:
        path: destination file.
        frame: a DataFrame or a sequence of row mappings.
        columns: the schema, e.g. :data:`REQUESTS_COLUMNS`.
    """
    df = frame.copy() if isinstance(frame, pd.DataFrame) else pd.DataFrame(list(frame))
    for name, kind in columns.items():
        if name not in df.columns:
            df[name] = _DEFAULTS[kind]
    df = df[list(columns)]
    for name, kind in columns.items():
        if kind == "b":
            df[name] = df[name].astype(bool).astype(int)
    buffer = io.StringIO()
    df.to_csv(buffer, index=False, lineterminator="\n")
    atomic_write_text(path, buffer.getvalue())


def _read_csv(path: Path, columns: Mapping[str, str]) -> pd.DataFrame:
    if not path.is_file():
        return _empty(columns)
    try:
        dtypes = {c: ("category" if k in "sb" else "float64") for c, k in columns.items()}
        df = pd.read_csv(
            path,
            dtype=dtypes,
            keep_default_na=False,
            na_values={c: ["", "nan", "NaN"] for c, k in columns.items() if k in "if"},
        )
    except pd.errors.EmptyDataError:
        return _empty(columns)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in _REQUIRED.get(path.name, ()) if c not in df.columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}")
    for name, kind in columns.items():
        if name not in df.columns:
            df[name] = _DEFAULTS[kind]
            continue
        col = df[name]
        if kind == "b":  # map the few distinct spellings, not every row
            cats = col.cat.categories
            truth = np.append([str(c).strip().lower() in _TRUE for c in cats], False)
            df[name] = truth[col.cat.codes.to_numpy()]
        elif kind == "i":
            df[name] = col.fillna(0).astype("int64")
        elif kind == "s":  # categorical strings: compact and fast to group by
            df[name] = col.cat.rename_categories([str(c) for c in col.cat.categories])
    return df


def _empty(columns: Mapping[str, str]) -> pd.DataFrame:
    kinds = {"i": "int64", "f": "float64", "s": "object", "b": "bool"}
    return pd.DataFrame({c: pd.Series(dtype=kinds[k]) for c, k in columns.items()})


def read_meta(run_dir: Path) -> dict[str, Any]:
    """The run's ``meta.json``.

    Raises:
        ConfigError: missing or malformed.
    """
    path = Path(run_dir) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no meta.json (not a results directory)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: must hold a JSON object")
    return meta


def _read_decisions(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                # a run killed mid-write may leave a torn last line; anything else is an error
                if handle.read().strip():
                    raise ConfigError(f"{path}: line {lineno}: invalid JSON: {exc.msg}") from None
    return out


@dataclass
class RunData:
    """Everything one run wrote, loaded as tables (times relative to ``t0``).

    Attributes:
        path: the run directory.
        meta: ``meta.json``.
        requests / stages / timeline: the CSV files, with schema dtypes.
        decisions: ``decisions.jsonl`` lines.
    """

    path: Path
    meta: dict[str, Any]
    requests: pd.DataFrame
    stages: pd.DataFrame
    timeline: pd.DataFrame
    decisions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The policy label (a config may run one policy twice with different parameters)."""
        return str(self.meta.get("label") or self.meta.get("policy") or self.path.parent.name)

    @property
    def seed(self) -> int:
        return int(self.meta.get("seed", 0))

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete", False))

    @property
    def warmup_s(self) -> float:
        return float(self.meta.get("warmup_s", 0.0) or 0.0)

    @property
    def duration_s(self) -> float | None:
        value = self.meta.get("duration_s")
        return float(value) if value is not None else None


def load_run(run_dir: str | Path) -> RunData:
    """Load one run directory.

    Raises:
        ConfigError: a file is missing its schema's required columns or is malformed.
    """
    path = Path(run_dir)
    return RunData(
        path=path,
        meta=read_meta(path),
        requests=_read_csv(path / REQUESTS_FILE, REQUESTS_COLUMNS),
        stages=_read_csv(path / STAGES_FILE, STAGES_COLUMNS),
        timeline=_read_csv(path / TIMELINE_FILE, TIMELINE_COLUMNS),
        decisions=_read_decisions(path / DECISIONS_FILE),
    )


def find_runs(paths: Iterable[str | Path], *, include_incomplete: bool = False) -> list[Path]:
    """Run directories at or below each path (those holding ``meta.json``), sorted.

    Hidden directories (partial runs) and incomplete runs are skipped unless
    ``include_incomplete``.

    Raises:
        ConfigError: a path does not exist or holds no run.
    """
    found: list[Path] = []
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise ConfigError(f"{root}: no such results directory")
        candidates = (
            [root]
            if (root / META_FILE).is_file()
            else sorted(p.parent for p in root.rglob(META_FILE))
        )
        runs = []
        for cand in candidates:
            rel = cand.relative_to(root).parts if cand != root else ()
            if not include_incomplete and any(part.startswith(".") for part in rel):
                continue
            if not include_incomplete and not read_meta(cand).get("complete", False):
                continue
            runs.append(cand)
        if not runs:
            raise ConfigError(f"{root}: no complete runs (no meta.json with complete=true)")
        found.extend(runs)
    return sorted(dict.fromkeys(found))


def find_interrupted(paths: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """Runs under ``paths`` that did not finish: hidden partial directories and runs whose
    ``meta.json`` says ``complete: false``, with the recorded error (or ``"interrupted"``).

    Readers that skip them (``compare``, ``report``) list them so that a policy never
    disappears from a table silently. Paths that do not exist are ignored here.
    """
    out: list[tuple[Path, str]] = []
    for raw in paths:
        root = Path(raw)
        if not root.is_dir():
            continue
        candidates = [root] if (root / META_FILE).is_file() else root.rglob(META_FILE)
        for meta_path in sorted(candidates):
            run = meta_path if meta_path.is_dir() else meta_path.parent
            try:
                meta = read_meta(run)
            except ConfigError as exc:
                out.append((run, str(exc)))
                continue
            if not meta.get("complete", False):
                out.append((run, str(meta.get("error") or "interrupted")))
    return out


LOCK_FILE = ".lock"


class ResultsLock:
    """An exclusive hold on a results directory for one ``experiment run``.

    ``flock`` on ``OUT/.lock`` (holding the owner's pid): released when the holder exits, even
    by SIGKILL, so a crash never leaves the directory locked.

    Raises:
        ConfigError: another process holds the directory.
    """

    def __init__(self, out_dir: str | Path) -> None:
        import fcntl

        self.path = Path(out_dir) / LOCK_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise ConfigError(
                f"{out_dir}: directory in use by another experiment run (pid {holder}); "
                "wait for it or choose another -o"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def close(self) -> None:
        """Release the directory. Idempotent."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ResultsLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TimelineWriter:
    """Appends resource-timeline rows to ``timeline.csv`` (flushed per sample)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._writer.writerow(TIMELINE_COLUMNS)
        self.rows = 0

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append rows (keys as :data:`TIMELINE_COLUMNS`) and flush."""
        for row in rows:
            self._writer.writerow(
                [_fmt(row.get(c, _DEFAULTS[k])) for c, k in TIMELINE_COLUMNS.items()]
            )
            self.rows += 1
        self._handle.flush()

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value == value else "nan"
    return value


class RunWriter:
    """Writes one run: a hidden partial directory, renamed into place by :meth:`finish`.

    Args:
        root: the experiment's output directory.
        label: the policy label (a directory name).
        seed: the trace seed.
        meta: initial ``meta.json`` content; ``complete`` is forced to false until ``finish``.
    """

    def __init__(self, root: str | Path, label: str, seed: int, meta: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.final_path = self.root / label / f"seed-{seed}"
        self.path = self.root / label / f".seed-{seed}{PARTIAL_SUFFIX}"
        self.meta: dict[str, Any] = {**meta, "label": label, "seed": seed, "complete": False}

    def start(self) -> Path:
        """Create the (empty) partial directory and write ``meta.json`` with complete=false."""
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        self.meta.setdefault("started_unix_s", time.time())
        self.write_meta()
        return self.path

    def write_meta(self, **updates: Any) -> None:
        """Merge ``updates`` into the meta and rewrite ``meta.json`` atomically."""
        self.meta.update(updates)
        atomic_write_text(
            self.path / META_FILE, json.dumps(self.meta, indent=2, default=str) + "\n"
        )

    def finish(self, **updates: Any) -> Path:
        """Mark complete and move the run into place (replacing an older run of the same seed)."""
        self.write_meta(**updates, complete=True, finished_unix_s=time.time())
        old: Path | None = None
        if self.final_path.exists():
            old = self.final_path.with_name(f".{self.final_path.name}.old-{os.getpid()}")
            os.replace(self.final_path, old)
        os.replace(self.path, self.final_path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final_path

    def fail(self, error: str) -> None:
        """Record why the run stopped; it stays a hidden, incomplete partial directory."""
        with contextlib.suppress(OSError):
            self.write_meta(error=error, complete=False)
