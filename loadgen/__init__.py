"""Load generation: traces (Azure 2019/2021 readers, synthetic generators) and open-loop replay.

``import loadgen`` does not import Locust (which gevent-patches the standard library);
:func:`replay` and :func:`serve_web` import it when called, so call them in a process of
their own.
"""

from __future__ import annotations

from loadgen.child import replay_in_child
from loadgen.options import ReplayOptions
from loadgen.plan import Plan, plan
from loadgen.run import Progress, ReplayResult, replay, serve_web
from loadgen.schedule import Schedule, build_schedule, map_functions
from loadgen.trace import FunctionInfo, FunctionSummary, Trace
from loadgen.traces import (
    MinuteCounts,
    read_azure2019,
    read_azure2019_counts,
    read_azure2021,
    read_trace,
    synthesize,
    write_azure2019,
)

__all__ = [
    "FunctionInfo",
    "FunctionSummary",
    "MinuteCounts",
    "Plan",
    "Progress",
    "ReplayOptions",
    "ReplayResult",
    "Schedule",
    "Trace",
    "build_schedule",
    "map_functions",
    "plan",
    "read_azure2019",
    "read_azure2019_counts",
    "read_azure2021",
    "read_trace",
    "replay",
    "replay_in_child",
    "serve_web",
    "synthesize",
    "write_azure2019",
]
