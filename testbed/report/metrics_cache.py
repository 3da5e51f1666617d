"""Each run's metrics kept beside it, so summarising a grid again does not re-read every CSV.

A summary of the headline grid reads about two thousand runs (hundreds of MB of CSV and
decision logs); their metrics take a few minutes to compute and a second to load. The cache,
``.metrics.json`` in the run directory, is used only while it matches both the run's files
(size and modification time of each) and the code that computes metrics (a hash of its
modules' source), so a changed run or a changed metric definition is computed afresh. A run
directory that cannot be written to is simply not cached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import testbed.experiment.results as results
from testbed.core.atomic import atomic_write_json
from testbed.report import cost, metrics
from testbed.report.cost import CostBreakdown
from testbed.report.metrics import RunMetrics, compute_metrics

__all__ = ["CACHE_FILE", "load_run_metrics"]

CACHE_FILE = ".metrics.json"
_RUN_FILES = (
    results.META_FILE,
    results.REQUESTS_FILE,
    results.STAGES_FILE,
    results.TIMELINE_FILE,
    results.DECISIONS_FILE,
)


@functools.cache
def _code_version() -> str:
    """A hash of the modules that turn a run's files into its metrics."""
    digest = hashlib.sha256()
    for module in (results, metrics, cost):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:16]


def _fingerprint(run_dir: Path) -> dict[str, list[int]]:
    """Size and modification time (ns) of each file the metrics are computed from."""
    found = {}
    for name in _RUN_FILES:
        try:
            stat = (run_dir / name).stat()
        except FileNotFoundError:
            continue
        found[name] = [stat.st_size, stat.st_mtime_ns]
    return found


def _to_json(m: RunMetrics) -> dict[str, Any]:
    return dataclasses.asdict(m)


def _from_json(raw: dict[str, Any], run_dir: Path) -> RunMetrics:
    fields = dict(raw)
    fields["cost"] = CostBreakdown(**fields["cost"])
    fields["path"] = str(run_dir)  # the directory may have moved since
    return RunMetrics(**fields)


def _read_cache(run_dir: Path, key: dict[str, Any]) -> RunMetrics | None:
    try:
        raw = json.loads((run_dir / CACHE_FILE).read_text())
        if raw.get("key") != key:
            return None
        return _from_json(raw["metrics"], run_dir)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # absent, half-written by a crash of another version, or malformed


def _write_cache(run_dir: Path, key: dict[str, Any], m: RunMetrics) -> None:
    """Atomically; quietly not on a directory that cannot be written to."""
    with contextlib.suppress(OSError):
        atomic_write_json(run_dir / CACHE_FILE, {"key": key, "metrics": _to_json(m)}, indent=None)


def load_run_metrics(run_dir: str | Path) -> RunMetrics:
    """The metrics of the complete run in ``run_dir``, from its cache while that is current.

    Raises:
        ConfigError: a file of the run is missing its schema's columns or is malformed.
    """
    path = Path(run_dir)
    key = {"code": _code_version(), "files": _fingerprint(path)}
    cached = _read_cache(path, key)
    if cached is not None:
        return cached
    fresh = compute_metrics(results.load_run(path))
    if key == {"code": _code_version(), "files": _fingerprint(path)}:  # not rewritten meanwhile
        _write_cache(path, key, fresh)
    return fresh
