"""Listen to Locust request events and write ``requests.csv`` and ``stages.csv``.

The schema is the one in ``docs/results.md``. Rows are appended to hidden ``.partial`` files
every few seconds while the run goes (so a crash leaves evidence), and at the end the full,
``request_id``-ordered files are written to a temp file and renamed into place.

The recorder knows nothing about Locust beyond the keyword arguments of its ``request``
event: senders put a :data:`CONTEXT_KEY` entry in the event's ``context``.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from testbed.core.atomic import atomic_open
from testbed.core.schema import REQUESTS_COLUMNS, STAGES_COLUMNS

__all__ = [
    "CONTEXT_KEY",
    "REQUEST_COLUMNS",
    "STAGE_COLUMNS",
    "LiveStats",
    "Recorder",
    "RequestRecord",
]

log = logging.getLogger(__name__)

CONTEXT_KEY = "aquatope"
REQUEST_COLUMNS = tuple(REQUESTS_COLUMNS)
STAGE_COLUMNS = tuple(STAGES_COLUMNS)


@dataclass(kw_only=True)
class RequestRecord:
    """One request as the sender saw it (times in seconds from ``t0``).

    Built when the request is due; the sender fills in ``sent_s``, ``end_s``, ``status``,
    ``cold_start`` and ``stages`` as the answer comes (NaN and 0 until then: a request never
    sent keeps ``sent_s`` NaN and status 0). ``stages`` holds the gateway's stage dicts with
    Unix times, converted when written.
    """

    request_id: int
    workflow: str
    kind: str
    intended_s: float
    qos_target_s: float
    sent_s: float = math.nan
    end_s: float = math.nan
    status: int = 0
    cold_start: bool = False
    error: str = ""
    stages: tuple[dict[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def latency_s(self) -> float:
        return self.end_s - self.sent_s


@dataclass(frozen=True)
class LiveStats:
    """Running totals for progress displays."""

    completed: int
    errors: int
    dropped: int
    late: int
    p95_latency_s: float
    p99_lateness_s: float


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.6f}"


def _optional_seconds(value: object) -> str:
    """A stage's optional time (e.g. ``handler_s``) as a cell: empty when absent or bad."""
    try:
        return _fmt(float(value))  # type: ignore[arg-type]  # anything float() takes
    except (TypeError, ValueError):
        return ""


class Recorder:
    """Collects request records from Locust's ``request`` event and writes the CSVs.

    Args:
        results_dir: where ``requests.csv`` and ``stages.csv`` go (created if missing).
        t0_unix_s: the run's start as a Unix time; gateway stage times are made relative to it.
        late_after_s: a request sent more than this after its intended time counts as late.
    """

    def __init__(
        self, results_dir: str | Path, *, t0_unix_s: float, late_after_s: float = 0.01
    ) -> None:
        self.dir = Path(results_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.t0_unix_s = t0_unix_s
        self.late_after_s = late_after_s
        self.records: list[RequestRecord] = []
        self._flushed = 0
        self._errors = 0
        self._dropped = 0
        self._late = 0
        self._latencies: list[float] = []
        self._lateness: list[float] = []
        self.failed_rows = 0

    # -- event listener ------------------------------------------------------------------
    def on_request(self, context: dict[str, Any] | None = None, **_: Any) -> None:
        """Locust ``request`` event handler (keyword arguments only)."""
        rec = (context or {}).get(CONTEXT_KEY)
        if not isinstance(rec, RequestRecord):
            return
        try:
            self.add(rec)
        except Exception:  # a listener must never kill the run; count and log it
            self.failed_rows += 1
            log.exception("recording request %s failed", getattr(rec, "request_id", "?"))

    def add(self, rec: RequestRecord) -> None:
        """Record one request."""
        self.records.append(rec)
        if rec.error.startswith("dropped"):
            self._dropped += 1
        elif not rec.ok:
            self._errors += 1
        if not math.isnan(rec.sent_s):
            lateness = rec.sent_s - rec.intended_s
            self._lateness.append(lateness)
            if lateness > self.late_after_s:
                self._late += 1
            if rec.ok:
                self._latencies.append(rec.latency_s)

    def live(self, *, window: int = 5000) -> LiveStats:
        """Totals so far, with p95 latency (successful requests) and p99 send lateness over
        the last ``window`` requests (bounded work, so progress never stalls sending)."""
        lat = self._latencies[-window:]
        late = self._lateness[-window:]
        p95 = float(np.percentile(lat, 95)) if lat else math.nan
        p99 = float(np.percentile(late, 99)) if late else math.nan
        return LiveStats(len(self.records), self._errors, self._dropped, self._late, p95, p99)

    def lateness_s(self) -> np.ndarray:
        """Send lateness of every sent request, shape ``(n,)``."""
        return np.asarray(self._lateness, dtype=np.float64)

    # -- rows ------------------------------------------------------------------------------
    def _request_row(self, r: RequestRecord) -> list[object]:
        cold_stages = sum(1 for s in r.stages if s.get("cold_start"))
        return [
            r.request_id,
            r.workflow,
            r.kind,
            _fmt(r.intended_s),
            _fmt(r.sent_s),
            _fmt(r.end_s),
            _fmt(r.latency_s),
            r.status,
            r.ok,
            bool(r.cold_start or cold_stages),
            cold_stages,
            _fmt(r.qos_target_s),
            r.error,
        ]

    def _stage_rows(self, r: RequestRecord) -> list[list[object]]:
        rows = []
        for s in r.stages:
            try:
                start = float(s["start_s"]) - self.t0_unix_s
                end = float(s["end_s"]) - self.t0_unix_s
                duration = float(s.get("duration_s", end - start))
            except (KeyError, TypeError, ValueError):
                continue
            rows.append(
                [
                    r.request_id,
                    s.get("stage", ""),
                    s.get("function", s.get("stage", "")),
                    _fmt(start),
                    _fmt(end),
                    _fmt(duration),
                    bool(s.get("cold_start", False)),
                    int(s.get("status", 0) or 0),
                    _optional_seconds(s.get("handler_s")),
                ]
            )
        return rows

    # -- files -----------------------------------------------------------------------------
    @property
    def requests_path(self) -> Path:
        return self.dir / "requests.csv"

    @property
    def stages_path(self) -> Path:
        return self.dir / "stages.csv"

    def _partial(self, path: Path) -> Path:
        return path.with_name(f".{path.name}.partial")

    @property
    def pending(self) -> int:
        """Records not yet flushed to the ``.partial`` files."""
        return len(self.records) - self._flushed

    def flush(self, max_rows: int | None = None) -> None:
        """Append up to ``max_rows`` records not yet flushed to the ``.partial`` files.

        Small chunks keep each call short, so a flusher can yield between them.
        """
        end = len(self.records) if max_rows is None else self._flushed + max_rows
        new = self.records[self._flushed : end]
        if not new:
            return
        for path, columns, rows in (
            (self.requests_path, REQUEST_COLUMNS, [self._request_row(r) for r in new]),
            (self.stages_path, STAGE_COLUMNS, [row for r in new for row in self._stage_rows(r)]),
        ):
            partial = self._partial(path)
            fresh = not partial.exists()
            with partial.open("a", newline="") as fh:
                writer = csv.writer(fh)
                if fresh:
                    writer.writerow(columns)
                writer.writerows(rows)
        self._flushed += len(new)

    def finalize(self) -> None:
        """Write the complete files atomically (ordered by request id); drop the partials."""
        ordered = sorted(self.records, key=lambda r: r.request_id)
        _write_csv(self.requests_path, REQUEST_COLUMNS, (self._request_row(r) for r in ordered))
        _write_csv(
            self.stages_path, STAGE_COLUMNS, (row for r in ordered for row in self._stage_rows(r))
        )
        for path in (self.requests_path, self.stages_path):
            self._partial(path).unlink(missing_ok=True)


def _write_csv(path: Path, columns: tuple[str, ...], rows: Any) -> None:
    with atomic_open(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)
