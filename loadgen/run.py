"""Build a Locust ``Environment`` and drive it: open-loop replay (headless) or the web UI.

Both modes share :func:`_environment`: the same event hooks, recorder and Locust statistics.
Locust is imported inside the functions here (it gevent-patches the standard library), so
``import loadgen`` stays free of it; call these in a process of their own.
"""

from __future__ import annotations

import gc
import logging
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from loadgen.options import DEFAULT_REPLAY_OPTIONS, ReplayOptions
from loadgen.payloads import PayloadPool
from loadgen.plan import Plan
from loadgen.record import Recorder
from loadgen.schedule import Schedule
from testbed.core.atomic import atomic_write_json
from testbed.core.errors import ConfigError

if TYPE_CHECKING:
    pass

__all__ = ["Progress", "ReplayResult", "replay", "serve_web"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running replay, handed to ``on_progress`` about twice a second.

    Attributes:
        elapsed_s: seconds since ``t0``.
        duration_s: schedule length.
        scheduled: requests in the schedule.
        dispatched: requests whose send time has come (sent or dropped).
        completed: requests with a response or an error.
        errors: failed requests (non-2xx, transport errors, cancelled).
        dropped: requests not sent because the in-flight cap was reached.
        late: requests sent more than ``late_after_s`` after their intended time.
        rate_per_s: dispatch rate over the last interval.
        p95_latency_s: p95 end-to-end latency of successful requests so far.
        p99_lateness_s: p99 send lateness so far.
    """

    elapsed_s: float
    duration_s: float
    scheduled: int
    dispatched: int
    completed: int
    errors: int
    dropped: int
    late: int
    rate_per_s: float
    p95_latency_s: float
    p99_lateness_s: float


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did; also written to ``loadgen.json`` in the results directory.

    Attributes:
        t0_unix_s: the run's time origin (Unix seconds).
        duration_s: wall time from ``t0`` until the last response (or the drain timeout).
        scheduled, sent, ok, errors, dropped, late, cancelled: request counts.
        intended_rate_per_s: scheduled requests over the schedule's window.
        achieved_rate_per_s: requests sent over the span from first to last intended time.
        lateness_p50_s, lateness_p99_s, lateness_max_s: send lateness percentiles.
    """

    t0_unix_s: float
    duration_s: float
    scheduled: int
    sent: int
    ok: int
    errors: int
    dropped: int
    late: int
    cancelled: int
    intended_rate_per_s: float
    achieved_rate_per_s: float
    lateness_p50_s: float
    lateness_p99_s: float
    lateness_max_s: float


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _environment(user_classes: list[Any], shape_class: Any = None) -> Any:
    from locust.env import Environment

    env = Environment(user_classes=user_classes, shape_class=shape_class, catch_exceptions=True)
    env.create_local_runner()
    return env


def _locust_csv(env: Any, base: Path) -> tuple[Any, Any]:
    import gevent
    from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter

    writer = StatsCSVFileWriter(env, PERCENTILES_TO_REPORT, str(base), full_history=False)
    return writer, gevent.spawn(writer.stats_writer)


def _close_locust_csv(writer: Any, greenlet: Any) -> None:
    greenlet.kill(block=True)
    fh = writer.requests_csv_filehandle
    fh.seek(0)
    fh.truncate()
    writer.requests_csv_writer.writerow(writer.requests_csv_columns)
    writer._requests_data_rows(writer.requests_csv_writer)
    writer.close_files()


def _dispatch(
    schedule: Schedule,
    plan_: Plan,
    sender: Any,
    pool: Any,
    clock: Callable[[], float],
    counter: list[int],
    spin_s: float = 0.0,
) -> None:
    """Spawn one greenlet per request at its intended time; drop when the pool is full.

    Timers wake up to ~1 ms late (epoll rounds timeouts up to whole milliseconds); with
    ``spin_s > 0`` the dispatcher sleeps until ``spin_s`` before the send time and then
    yields in a busy loop, trading CPU (taken from the system under test on a small host)
    for punctuality.
    """
    import gevent

    intended = schedule.intended_s
    target = schedule.target
    names = schedule.targets
    kinds = schedule.kinds
    qos = [plan_.qos_s.get(n, math.nan) for n in names]
    n = len(schedule)
    i = 0
    while i < n:
        wait = intended[i] - clock()
        if wait > spin_s:
            gevent.sleep(wait - spin_s)
            continue
        if wait > 0:
            gevent.sleep(0)
            continue
        now = clock()
        while i < n and intended[i] <= now:
            t = int(target[i])
            if pool.full():
                sender.drop(
                    i, names[t], kinds[t], float(intended[i]), qos[t], "in-flight limit reached"
                )
            else:
                pool.spawn(sender.send, i, names[t], kinds[t], float(intended[i]), qos[t])
            i += 1
            counter[0] = i
        gevent.sleep(0)


def replay(
    plan_: Plan,
    target_url: str,
    results_dir: str | Path,
    options: ReplayOptions = DEFAULT_REPLAY_OPTIONS,
    *,
    on_progress: Callable[[Progress], None] | None = None,
) -> ReplayResult:
    """Replay a planned trace open-loop against a gateway and write the results directory.

    Requests leave at their intended times whatever the responses do (no coordinated
    omission): a dispatcher greenlet spawns one greenlet per request at its time. Writes
    ``requests.csv`` and ``stages.csv`` (docs/results.md), ``loadgen.json`` (the
    :class:`ReplayResult`) and, with ``options.locust_csv``, Locust's ``locust_stats.csv`` etc.

    Args:
        plan_: what to send and when (:func:`loadgen.plan.plan` of a trace).
        target_url: gateway base URL, e.g. ``http://127.0.0.1:8080``.
        results_dir: output directory (created).
        options: how to send (:class:`ReplayOptions`).
        on_progress: called about twice a second with a :class:`Progress`.

    Returns:
        A :class:`ReplayResult`.

    Raises:
        ConfigError: an unwritable results directory.
    """
    import gevent
    from gevent.pool import Pool

    from loadgen.users import OpenLoopSender

    schedule = plan_.schedule
    max_in_flight, timeout_s, spin_s = options.max_in_flight, options.timeout_s, options.spin_s
    late_after_s, drain_s = options.late_after_s, options.drain_s
    out = Path(results_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create results directory: {exc}") from None
    _raise_fd_limit(max_in_flight + 256)

    env = _environment([])
    payloads = PayloadPool(schedule.targets, seed=options.seed)
    # everything loaded so far lives for the whole run: keep it out of the collector's
    # full scans, which otherwise stall the dispatcher for milliseconds
    gc.collect()
    gc.freeze()
    if options.start_at_unix_s is not None:
        delay = options.start_at_unix_s - time.time()
        if delay > 0:
            gevent.sleep(delay)
    t0_unix = time.time()
    perf0 = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - perf0

    recorder = Recorder(out, t0_unix_s=t0_unix, late_after_s=late_after_s)
    env.events.request.add_listener(recorder.on_request)
    sender = OpenLoopSender(
        env, target_url, payloads, clock=clock, max_in_flight=max_in_flight, timeout_s=timeout_s
    )
    pool = Pool(max_in_flight)
    counter = [0]
    csv_writer = _locust_csv(env, out / "locust") if options.locust_csv else None

    helpers = [gevent.spawn(_flush_forever, recorder, options.flush_every_s)]
    if on_progress is not None:
        helpers.append(
            gevent.spawn(_report_forever, recorder, schedule, clock, counter, on_progress)
        )
    cancelled = 0
    try:
        dispatcher = gevent.spawn(_dispatch, schedule, plan_, sender, pool, clock, counter, spin_s)
        dispatcher.get()  # re-raises a dispatcher failure
        pool.join(timeout=timeout_s if drain_s is None else drain_s)
        cancelled = len(pool)
        pool.kill(block=True, timeout=5)
    finally:
        gevent.killall(helpers, block=True)
        end = clock()
        if csv_writer is not None:
            _close_locust_csv(*csv_writer)
        recorder.finalize()
    result = _summarize(recorder, schedule, t0_unix, end, cancelled, late_after_s)
    _write_json(out / "loadgen.json", asdict(result))
    return result


def _flush_forever(recorder: Recorder, every_s: float) -> None:
    """Greenlet: write recorded rows every ``every_s``, in small chunks between sends."""
    import gevent

    while True:
        gevent.sleep(every_s)
        while recorder.pending:
            recorder.flush(max_rows=200)
            gevent.sleep(0)


def _report_forever(
    recorder: Recorder,
    schedule: Schedule,
    clock: Callable[[], float],
    counter: list[int],
    on_progress: Callable[[Progress], None],
) -> None:
    """Greenlet: call ``on_progress`` twice a second; a failing callback is logged, not fatal."""
    import gevent

    last_n, last_t = 0, clock()
    while True:
        gevent.sleep(0.5)
        now = clock()
        live = recorder.live()
        rate = (counter[0] - last_n) / max(now - last_t, 1e-9)
        last_n, last_t = counter[0], now
        try:
            on_progress(
                Progress(
                    now,
                    schedule.duration_s,
                    len(schedule),
                    counter[0],
                    live.completed,
                    live.errors,
                    live.dropped,
                    live.late,
                    rate,
                    live.p95_latency_s,
                    live.p99_lateness_s,
                )
            )
        except Exception:
            log.exception("progress callback failed")


def _summarize(
    recorder: Recorder,
    schedule: Schedule,
    t0: float,
    end_s: float,
    cancelled: int,
    late_after_s: float,
) -> ReplayResult:
    recs = recorder.records
    sent = [r for r in recs if not math.isnan(r.sent_s)]
    lateness = np.asarray([r.sent_s - r.intended_s for r in sent])
    ok = sum(1 for r in recs if r.ok)
    dropped = sum(1 for r in recs if r.error.startswith("dropped"))
    span = float(schedule.intended_s[-1] - schedule.intended_s[0]) if len(schedule) > 1 else 0.0
    achieved = math.nan
    if sent and span > 0:
        times = np.sort(np.asarray([r.sent_s for r in sent]))
        # rate over the same number of intervals as the schedule, first send to last send
        achieved = (
            float((len(sent) - 1) / max(times[-1] - times[0], 1e-9)) if len(sent) > 1 else 0.0
        )

    def pct(q: float) -> float:
        return float(np.percentile(lateness, q)) if lateness.size else math.nan

    return ReplayResult(
        t0_unix_s=t0,
        duration_s=end_s,
        scheduled=len(schedule),
        sent=len(sent),
        ok=ok,
        errors=len(recs) - ok - dropped,
        dropped=dropped,
        late=int((lateness > late_after_s).sum()),
        cancelled=cancelled,
        intended_rate_per_s=(len(schedule) - 1) / span if span > 0 else math.nan,
        achieved_rate_per_s=achieved,
        lateness_p50_s=pct(50),
        lateness_p99_s=pct(99),
        lateness_max_s=float(lateness.max()) if lateness.size else math.nan,
    )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}
    atomic_write_json(path, clean)


def serve_web(
    plan_: Plan,
    target_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8089,
    results_dir: str | Path | None = None,
    seed: int = 0,
    shape_bin_s: float = 10.0,
    ready: Callable[[str], None] | None = None,
    stop_after_s: float | None = None,
    follow_trace: bool = True,
) -> None:
    """Serve Locust's web UI with a user class per workflow/mix and the trace as load shape.

    Blocks until interrupted (or ``stop_after_s``). With ``results_dir`` the users' requests
    are recorded there too (``requests.csv``/``stages.csv``, intended = sent).

    Args:
        plan_: from :func:`loadgen.plan.plan`; its groups become user classes.
        target_url: gateway base URL (the UI's host field, editable there).
        host, port: where the web UI listens.
        results_dir: optional directory for request records.
        seed: seeds request bodies.
        shape_bin_s: window over which the shape averages the trace's rate.
        ready: called with the UI's URL once it listens.
        stop_after_s: stop serving after this long (tests).
        follow_trace: offer the trace as the load shape (else users are set by hand).
    """
    import gevent

    from loadgen.shape import make_shape_class
    from loadgen.users import make_user_classes

    perf0 = time.perf_counter()
    t0_unix = time.time()

    def clock() -> float:
        return time.perf_counter() - perf0

    payloads = PayloadPool(plan_.schedule.targets, seed=seed)
    classes = make_user_classes(
        plan_.groups, kinds=plan_.kinds, qos=plan_.qos_s, payloads=payloads, clock=clock
    )
    shape = make_shape_class(plan_.schedule, bin_s=shape_bin_s)() if follow_trace else None
    from locust.env import Environment

    env = Environment(
        user_classes=list(classes),
        shape_class=shape,
        host=target_url,
        available_user_classes={c.__name__: cast(Any, c) for c in classes},
        available_shape_classes={"TraceShape": shape} if shape is not None else None,
        catch_exceptions=True,
    )
    env.create_local_runner()
    recorder = None
    if results_dir is not None:
        recorder = Recorder(results_dir, t0_unix_s=t0_unix)
        env.events.request.add_listener(recorder.on_request)  # type: ignore[no-untyped-call]
    # the web UI re-parses sys.argv with Locust's own parser on every page load; our
    # command line is not Locust's, so hide it while serving
    saved_argv = sys.argv[:]
    sys.argv[1:] = []
    try:
        try:
            web_ui = env.create_web_ui(host=host, port=port, userclass_picker_is_active=True)
        except OSError as exc:
            raise ConfigError(f"cannot serve the web UI on {host}:{port}: {exc}") from None
        try:
            if ready is not None:
                ready(f"http://{host}:{port}")
            if stop_after_s is None:
                assert web_ui.greenlet is not None
                web_ui.greenlet.join()
            else:
                gevent.sleep(stop_after_s)
        finally:
            if env.runner is not None:
                env.runner.quit()
            web_ui.stop()  # type: ignore[no-untyped-call]
            if recorder is not None:
                recorder.finalize()
    finally:
        sys.argv[:] = saved_argv
