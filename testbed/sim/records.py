"""Compact, append-only row stores for what a simulation produces, and the results writer.

Rows follow docs/results.md exactly (``requests.csv``, ``stages.csv``, ``timeline.csv``).
Columns are kept in ``array.array`` buffers (8 bytes or less per value, no Python object per
row) so a million-request day fits in tens of megabytes; strings are interned as codes.
"""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.core.atomic import atomic_path
from testbed.core.schema import REQUESTS_COLUMNS, STAGES_COLUMNS
from testbed.core.schema import TIMELINE_COLUMNS as _TIMELINE

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "REQUEST_COLUMNS",
    "STAGE_COLUMNS",
    "TIMELINE_COLUMNS",
    "Interner",
    "Recorder",
    "write_csv_atomic",
]

REQUEST_COLUMNS = list(REQUESTS_COLUMNS)
STAGE_COLUMNS = list(STAGES_COLUMNS)
TIMELINE_COLUMNS = list(_TIMELINE)


class Interner:
    """Maps strings to small integer codes and back."""

    __slots__ = ("codes", "names")

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.names: list[str] = []

    def code(self, name: str) -> int:
        c = self.codes.get(name)
        if c is None:
            c = self.codes[name] = len(self.names)
            self.names.append(name)
        return c


class Recorder:
    """Column buffers for request, stage and timeline rows."""

    def __init__(self) -> None:
        self.names = Interner()
        self.errors = Interner()
        self.errors.code("")
        # requests
        self.r_id = array("q")
        self.r_name = array("i")
        self.r_workflow = array("b")
        self.r_arrive = array("d")
        self.r_end = array("d")
        self.r_status = array("h")
        self.r_cold_stages = array("h")
        self.r_qos = array("d")
        self.r_error = array("h")
        # stages
        self.s_id = array("q")
        self.s_stage = array("i")
        self.s_function = array("i")
        self.s_start = array("d")
        self.s_end = array("d")
        self.s_cold = array("b")
        self.s_status = array("h")
        # timeline: rows only when a function changed; ``t_ticks`` holds every sample time
        self.t_ticks = array("d")
        self.t_t = array("d")
        self.t_function = array("i")
        self.t_ready = array("i")
        self.t_starting = array("i")
        self.t_busy = array("i")
        self.t_queued = array("i")
        self.t_cpu = array("d")
        self.t_mem = array("d")

    def add_request(
        self,
        rid: int,
        name_code: int,
        workflow: bool,
        arrive_s: float,
        end_s: float,
        status: int,
        cold_stages: int,
        qos_target_s: float,
        error_code: int,
    ) -> None:
        """Append one requests.csv row (intended and sent times are the arrival time)."""
        self.r_id.append(rid)
        self.r_name.append(name_code)
        self.r_workflow.append(1 if workflow else 0)
        self.r_arrive.append(arrive_s)
        self.r_end.append(end_s)
        self.r_status.append(status)
        self.r_cold_stages.append(cold_stages)
        self.r_qos.append(qos_target_s)
        self.r_error.append(error_code)

    def add_timeline(
        self,
        t: float,
        code: int,
        ready: int,
        starting: int,
        busy: int,
        queued: int,
        cpu_cores: float,
        memory_mb: float,
    ) -> None:
        """Append one changed-state timeline row."""
        self.t_t.append(t)
        self.t_function.append(code)
        self.t_ready.append(ready)
        self.t_starting.append(starting)
        self.t_busy.append(busy)
        self.t_queued.append(queued)
        self.t_cpu.append(cpu_cores)
        self.t_mem.append(memory_mb)

    @property
    def n_requests(self) -> int:
        return len(self.r_id)

    def drop_stages_of(self, request_ids: set[int]) -> None:
        """Remove the stage rows of these requests (a cancelled request reports none)."""
        keep = [i for i, rid in enumerate(self.s_id) if rid not in request_ids]
        if len(keep) == len(self.s_id):
            return
        columns: tuple[array[Any], ...] = (
            self.s_id,
            self.s_stage,
            self.s_function,
            self.s_start,
            self.s_end,
            self.s_cold,
            self.s_status,
        )
        for column in columns:
            kept = array(column.typecode, (column[i] for i in keep))
            del column[:]
            column.extend(kept)

    def requests_frame(self) -> pd.DataFrame:
        """requests.csv as a DataFrame (columns in docs/results.md order)."""
        import numpy as np
        import pandas as pd

        names = np.array([*self.names.names, ""], dtype=object)
        errors = np.array(self.errors.names, dtype=object)
        arrive = np.frombuffer(self.r_arrive, dtype=float) if self.r_arrive else np.zeros(0)
        end = np.frombuffer(self.r_end, dtype=float) if self.r_end else np.zeros(0)
        status = np.asarray(self.r_status, dtype=np.int64)
        cold_stages = np.asarray(self.r_cold_stages, dtype=np.int64)
        wf = np.asarray(self.r_workflow, dtype=bool)
        frame = pd.DataFrame(
            {
                "request_id": np.asarray(self.r_id, dtype=np.int64),
                "workflow": names[np.asarray(self.r_name, dtype=np.int64)],
                "kind": np.where(wf, "workflow", "function"),
                "intended_s": arrive,
                "sent_s": arrive,
                "end_s": end,
                "latency_s": end - arrive,
                "status": status,
                "ok": (status >= 200) & (status < 300),
                "cold_start": cold_stages > 0,
                "cold_stages": cold_stages,
                "qos_target_s": np.asarray(self.r_qos, dtype=float),
                "error": errors[np.asarray(self.r_error, dtype=np.int64)],
            },
            columns=REQUEST_COLUMNS,
        )
        return frame.sort_values(["end_s", "request_id"], kind="stable").reset_index(drop=True)

    def stages_frame(self) -> pd.DataFrame:
        """stages.csv as a DataFrame."""
        import numpy as np
        import pandas as pd

        names = np.array([*self.names.names, ""], dtype=object)
        start = np.asarray(self.s_start, dtype=float)
        end = np.asarray(self.s_end, dtype=float)
        return pd.DataFrame(
            {
                "request_id": np.asarray(self.s_id, dtype=np.int64),
                "stage": names[np.asarray(self.s_stage, dtype=np.int64)],
                "function": names[np.asarray(self.s_function, dtype=np.int64)],
                "start_s": start,
                "end_s": end,
                "duration_s": end - start,
                "cold_start": np.asarray(self.s_cold, dtype=bool),
                "status": np.asarray(self.s_status, dtype=np.int64),
                "handler_s": np.full(len(start), np.nan),  # not split out by the simulator
            },
            columns=STAGE_COLUMNS,
        )

    def timeline_frame(self, *, full: bool = True) -> pd.DataFrame:
        """timeline.csv as a DataFrame.

        Args:
            full: one row per (sample time, function) from the function's first sample on,
                forward-filled between changes (docs/results.md); False gives only the rows
                where something changed (same step function, far fewer rows).
        """
        import numpy as np
        import pandas as pd

        names = np.array([*self.names.names, ""], dtype=object)
        t = np.asarray(self.t_t, dtype=float)
        code = np.asarray(self.t_function, dtype=np.int64)
        cols = {
            "replicas_ready": np.asarray(self.t_ready, dtype=np.int64),
            "replicas_starting": np.asarray(self.t_starting, dtype=np.int64),
            "busy": np.asarray(self.t_busy, dtype=np.int64),
            "queued": np.asarray(self.t_queued, dtype=np.int64),
            "cpu_cores": np.asarray(self.t_cpu, dtype=float),
            "memory_mb": np.asarray(self.t_mem, dtype=float),
        }
        if full and len(t):
            ticks = np.unique(np.asarray(self.t_ticks, dtype=float))
            order = np.lexsort((np.arange(len(t)), t, code))  # by function, then time, stable
            parts_t, parts_idx, parts_code = [], [], []
            bounds = np.flatnonzero(np.diff(code[order])) + 1
            for group in np.split(order, bounds):
                gt = t[group]
                grid = ticks[ticks >= gt[0]]
                pos = np.searchsorted(gt, grid, side="right") - 1
                parts_t.append(grid)
                parts_idx.append(group[pos])
                parts_code.append(np.full(len(grid), code[group[0]]))
            t = np.concatenate(parts_t)
            idx = np.concatenate(parts_idx)
            code = np.concatenate(parts_code)
            cols = {k: v[idx] for k, v in cols.items()}
        order = np.lexsort((code, t))
        return pd.DataFrame(
            {
                "t_s": t[order],
                "function": names[code[order]],
                **{k: v[order] for k, v in cols.items()},
            },
            columns=TIMELINE_COLUMNS,
        )


def write_csv_atomic(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV (no index, booleans as 0/1) through a temp file and ``os.replace``."""
    path = Path(path)
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == bool:
            frame[column] = frame[column].astype(int)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")
    return path
