"""The results-directory schema (docs/results.md), defined once.

Every writer (the load generator's recorder, the simulator, the experiment runner) and
every reader (reports) takes its file names and columns from here. Stdlib only, so the load
generator can import it cheaply.
"""

from __future__ import annotations

__all__ = [
    "CANCELLED_AT_END",
    "DECISIONS_FILE",
    "META_FILE",
    "REQUESTS_COLUMNS",
    "REQUESTS_FILE",
    "STAGES_COLUMNS",
    "STAGES_FILE",
    "TIMELINE_COLUMNS",
    "TIMELINE_FILE",
]

META_FILE = "meta.json"
REQUESTS_FILE = "requests.csv"
STAGES_FILE = "stages.csv"
DECISIONS_FILE = "decisions.jsonl"
TIMELINE_FILE = "timeline.csv"

# requests.csv ``error`` of a request still without a response when the replay's drain ran out
CANCELLED_AT_END = "cancelled: run ended before the response"

# column -> dtype kind: "i" int, "f" float, "s" str, "b" bool (column order is file order)
REQUESTS_COLUMNS: dict[str, str] = {
    "request_id": "i",
    "workflow": "s",
    "kind": "s",
    "intended_s": "f",
    "sent_s": "f",
    "end_s": "f",
    "latency_s": "f",
    "status": "i",
    "ok": "b",
    "cold_start": "b",
    "cold_stages": "i",
    "qos_target_s": "f",
    "error": "s",
}
STAGES_COLUMNS: dict[str, str] = {
    "request_id": "i",
    "stage": "s",
    "function": "s",
    "start_s": "f",
    "end_s": "f",
    "duration_s": "f",
    "cold_start": "b",
    "status": "i",
    "handler_s": "f",
}
TIMELINE_COLUMNS: dict[str, str] = {
    "t_s": "f",
    "function": "s",
    "replicas_ready": "i",
    "replicas_starting": "i",
    "busy": "i",
    "queued": "i",
    "cpu_cores": "f",
    "memory_mb": "f",
}
