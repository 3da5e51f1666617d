"""The experiment runner: every policy × seed on the identical trace, from a clean platform.

For each seed, the trace is built once (:func:`testbed.experiment.workload.build_trace`), then
for each policy, in config order:

1. a fresh platform from ``testbed.backends.connect(backend)`` (for ``local``/``docker`` a
   new gateway process), stale functions removed and the workflows' functions deployed from
   ``stack.yml``;
2. the scheduler daemon (``scheduler.daemon.Daemon``) in a thread, ticking every ``tick_s``
   and logging to ``decisions.jsonl``; its thread CPU time becomes ``scheduler_cpu_s``;
3. the resource-timeline sampler (:mod:`testbed.experiment.sampler`) in a thread;
4. the open-loop replay (``loadgen.replay``) in a child process (Locust patches the standard
   library, so it never runs in this one), writing ``requests.csv`` and ``stages.csv``;
5. everything stopped, ``meta.json`` completed and the run directory renamed into place
   (:class:`testbed.experiment.results.RunWriter`).

The daemon, sampler and load generator share one time origin ``t0``: the replay starts
sending at a Unix time chosen here, ``settle_s`` after the daemon starts (so a policy reaches
its initial state, e.g. always-on's warm replica, before traffic arrives). A run that fails
or is interrupted stays a hidden partial directory with ``complete: false`` and an
``error``; earlier runs are untouched.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from testbed.core.atomic import atomic_write_json, atomic_write_text
from testbed.core.errors import ConfigError, TestbedError
from testbed.core.host import usable_cores
from testbed.experiment.facts import machine_facts, package_versions
from testbed.experiment.results import (
    DECISIONS_FILE,
    REQUESTS_FILE,
    TIMELINE_FILE,
    RunWriter,
    TimelineWriter,
)
from testbed.experiment.sampler import TimelineSampler
from testbed.experiment.spec import ExperimentSpec, PolicySpec

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from loadgen.options import ReplayOptions
    from loadgen.trace import Trace
    from testbed.core.platform import FunctionSpec, Platform, Workflow

__all__ = [
    "ExperimentResult",
    "Prepared",
    "RunError",
    "RunOutcome",
    "prepare",
    "run_experiment",
    "run_one",
]

log = logging.getLogger(__name__)

START_DELAY_S = 3.0  # at least this long between starting the replay child and t0
SHUTDOWN_MARGIN_S = 60.0


class RunError(TestbedError):
    """One run of an experiment failed (its directory is left incomplete)."""


@dataclass(frozen=True)
class RunOutcome:
    """One finished run."""

    label: str
    seed: int
    path: Path
    requests: int


@dataclass(frozen=True)
class ExperimentResult:
    """Where the experiment's runs went."""

    out_dir: Path
    runs: tuple[RunOutcome, ...]


@dataclass(frozen=True)
class Prepared:
    """What every run of an experiment shares, checked before the first run starts."""

    spec: ExperimentSpec
    workflows: dict[str, Workflow]
    function_specs: tuple[FunctionSpec, ...]
    catalog: Any


def prepare(spec: ExperimentSpec) -> Prepared:
    """Resolve workflows, functions and policies up front so a bad config fails in seconds.

    Raises:
        ConfigError: an unknown workflow/mix, a function missing from the stack, or an
            unknown policy or parameter (naming ``policies.N``).
    """
    from scheduler.registry import create_policy
    from testbed.core.stack import load_stack
    from testbed.core.workflows import load_workflows

    where = str(spec.source or spec.name)
    _replay_options(spec, where=f"{where}: loadgen")
    for i, pol in enumerate(spec.policies):
        try:
            create_policy(pol.name, pol.params)
        except (KeyError, ValueError, TypeError) as exc:
            msg = exc.args[0] if exc.args else str(exc)
            raise ConfigError(f"{where}: policies.{i}: {msg}") from None
    catalog = load_workflows(spec.workflows_dir)
    workflows: dict[str, Workflow] = {}
    for i, target in enumerate(spec.workflows):
        try:
            mix = catalog.resolve(target)
        except ConfigError as exc:
            raise ConfigError(f"{where}: workflows.{i}: {exc}") from None
        for name in mix.weights:
            workflows[name] = catalog.get(name)
    needed = list(dict.fromkeys(f for wf in workflows.values() for f in wf.functions))
    if spec.backend == "sim" and not spec.stack.is_file():
        return Prepared(spec, workflows, (), catalog)  # default specs per simulated function
    stack = load_stack(spec.stack)
    missing = [f for f in needed if f not in stack.functions]
    if missing:
        raise ConfigError(f"{spec.stack}: no function(s) {', '.join(missing)} for the workflows")
    return Prepared(spec, workflows, tuple(stack[f] for f in needed), catalog)


def _base_meta(spec: ExperimentSpec, pol: PolicySpec, index: int) -> dict[str, Any]:
    return {
        "experiment": spec.name,
        "policy": pol.name,
        "policy_params": dict(pol.params),
        "policy_index": index,
        "backend": spec.backend,
        "workflows": list(spec.workflows),
        "duration_s": spec.duration_s,
        "warmup_s": spec.warmup_s,
        "tick_s": spec.tick_s,
        "sample_s": spec.sample_s,
        "settle_s": spec.settle_s,
        "config_path": str(spec.source) if spec.source else None,
        "config": dict(spec.raw),
        "versions": package_versions(),
        "machine": machine_facts(),
        "t0": None,
    }


def _clean_deploy(platform: Platform, specs: tuple[FunctionSpec, ...]) -> None:
    """Remove whatever is deployed, then deploy the experiment's functions."""
    for status in platform.list():
        platform.remove(status.name)
    for fn in specs:
        platform.deploy(fn)


def _gateway_url(platform: Platform) -> str:
    """The HTTP gateway the load generator sends to: live platforms are gateway clients."""
    from testbed.backends.openfaas import OpenFaaSPlatform

    if not isinstance(platform, OpenFaaSPlatform):
        raise RunError(f"{type(platform).__name__} is not an HTTP gateway the load can target")
    return platform.url


def _die_with_parent() -> None:
    """On Linux, have the kernel stop this child if the runner dies (even by SIGKILL)."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


PROGRESS_FILE = ".progress.json"
LOADGEN_LOG = "loadgen.log"


def _replay_child(
    trace: Trace,
    targets: tuple[str, ...],
    workflows_dir: str | None,
    url: str,
    run_dir: str,
    seed: int,
    t0_unix_s: float,
    options: Mapping[str, Any],
) -> None:
    """Child-process entry: plan the trace and replay it (Locust lives only here).

    Output goes to ``loadgen.log``; progress is published in a small JSON file that the
    parent polls (no pipes or queues shared with gevent's patched threads).
    """
    import sys

    _die_with_parent()
    out = Path(run_dir)
    log_fd = os.open(out / LOADGEN_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    from loadgen.options import ReplayOptions
    from loadgen.run import replay
    from testbed.core.workflows import load_workflows
    from testbed.experiment.policies import run_plan

    catalog = load_workflows(workflows_dir)
    the_plan = run_plan(trace, targets, catalog, seed=seed)  # what the oracle is given too

    def report(p: Any) -> None:
        data = [p.elapsed_s, p.dispatched, p.completed, p.errors, p.p95_latency_s]
        atomic_write_json(out / PROGRESS_FILE, [None if x != x else x for x in data], indent=None)

    replay(
        the_plan,
        url,
        run_dir,
        ReplayOptions.from_mapping(options).replace(seed=seed, start_at_unix_s=t0_unix_s),
        on_progress=report,
    )


def _read_progress(run_dir: Path) -> str | None:
    import json

    try:
        _elapsed, sent, done, errors, p95 = json.loads((run_dir / PROGRESS_FILE).read_text())
    except (OSError, ValueError, TypeError):
        return None
    p95_txt = f"{p95 * 1000:.0f} ms" if isinstance(p95, (int, float)) else "—"
    return f"sent {sent}, done {done}, errors {errors}, p95 {p95_txt}"


class _DaemonThread:
    """Runs ``Daemon.run`` in a thread and measures the thread's CPU seconds."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.stop_event = threading.Event()
        self.cpu_s = 0.0
        self.error: str | None = None
        self.thread = threading.Thread(target=self._main, name="scheduler-daemon", daemon=True)

    def _main(self) -> None:
        start = time.thread_time()
        try:
            self.daemon.run(self.stop_event)
        except Exception as exc:  # recorded in meta.json; the run goes on
            log.exception("scheduler daemon crashed")
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.cpu_s = time.thread_time() - start

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)


ProgressFn = Callable[[str, float, str], None]


def _await_replay(
    child: BaseProcess,
    run_dir: Path,
    *,
    label: str,
    t0_unix_s: float,
    deadline_unix_s: float,
    on_progress: ProgressFn,
) -> None:
    """Wait for the replay child, reporting progress; it is stopped if it outlives the deadline.

    Raises:
        RunError: the child ran past the deadline, failed, or wrote no requests file.
    """
    status = "replaying"
    try:
        while child.is_alive():
            child.join(0.5)
            status = _read_progress(run_dir) or status
            on_progress(label, max(0.0, time.time() - t0_unix_s), status)
            if time.time() > deadline_unix_s:
                raise RunError(
                    f"load generator still running {SHUTDOWN_MARGIN_S:g} s "
                    "after the trace and drain ended"
                )
    finally:
        if child.is_alive():
            child.terminate()
            child.join(10)
    (run_dir / PROGRESS_FILE).unlink(missing_ok=True)
    if child.exitcode != 0:
        raise RunError(
            f"load generator exited with code {child.exitcode} (see {run_dir / LOADGEN_LOG})"
        )
    if not (run_dir / REQUESTS_FILE).is_file():
        raise RunError(f"load generator wrote no {REQUESTS_FILE}")


def _run_live(
    prep: Prepared,
    pol: PolicySpec,
    seed: int,
    trace: Trace,
    writer: RunWriter,
    on_progress: ProgressFn,
) -> int:
    """One live run into ``writer.path``; returns the number of requests recorded."""
    from scheduler.clock import WallClock
    from scheduler.daemon import Daemon
    from testbed.backends import connect
    from testbed.experiment.policies import (
        create_run_policy,
        planned_arrivals,
        profile_estimates,
    )
    from testbed.sim.profile import load_profile

    spec = prep.spec
    run_dir = writer.path
    on_progress(pol.label, 0.0, "starting platform")
    platform = connect(spec.backend, **dict(spec.backend_options))
    try:
        _clean_deploy(platform, prep.function_specs)
        url = _gateway_url(platform)
        ctx = mp.get_context("spawn")
        t0 = time.time() + max(START_DELAY_S, spec.settle_s)
        writer.write_meta(t0=t0, gateway_url=url)
        child = ctx.Process(
            target=_replay_child,
            args=(
                trace,
                tuple(spec.workflows),
                str(spec.workflows_dir) if spec.workflows_dir else None,
                url,
                str(run_dir),
                seed,
                t0,
                {"drain_s": spec.drain_s, **dict(spec.loadgen)},
            ),
            name=f"replay-{pol.label}-{seed}",
        )
        daemon = Daemon(
            platform,
            create_run_policy(
                pol.name,
                pol.params,
                arrivals_s=planned_arrivals(trace, spec.workflows, prep.catalog, seed=seed),
                catalog=prep.catalog,
                offset_s=t0,
                host_cores=float(usable_cores()),
                **profile_estimates(load_profile(check_conditions=False)),  # estimates
            ),
            clock=WallClock(),
            tick_s=spec.tick_s,
            workflows=prep.workflows,
            decisions_path=run_dir / DECISIONS_FILE,
            policy_name=pol.label,
            t0_s=t0,
            log_every_decision=spec.decisions == "every",
        )
        runner = _DaemonThread(daemon)
        sampler = TimelineSampler(
            platform,
            TimelineWriter(run_dir / TIMELINE_FILE),
            t0_unix_s=t0,
            interval_s=min(spec.sample_s, 1.0),
        )
        child.start()
        runner.start()
        sampler.start()
        try:
            _await_replay(
                child,
                run_dir,
                label=pol.label,
                t0_unix_s=t0,
                deadline_unix_s=t0 + spec.duration_s + spec.drain_s + SHUTDOWN_MARGIN_S,
                on_progress=on_progress,
            )
        finally:
            runner.stop()
            sampler.stop()
        with (run_dir / REQUESTS_FILE).open() as handle:
            requests = max(0, sum(1 for _ in handle) - 1)
        writer.write_meta(
            scheduler_cpu_s=runner.cpu_s,
            scheduler_error=runner.error,
            scheduler_ticks=daemon.ticks,
            timeline_samples=sampler.samples,
            timeline_failures=sampler.failures,
            timeline_max_gap_s=round(sampler.max_gap_s, 3),
            requests=requests,
        )
        return requests
    finally:
        with contextlib.suppress(Exception):
            platform.close()


def _replay_options(spec: ExperimentSpec, *, where: str = "loadgen") -> ReplayOptions:
    """The load generator's options of a live run of ``spec`` (its drain included)."""
    from loadgen.options import ReplayOptions

    return ReplayOptions.from_mapping({"drain_s": spec.drain_s, **spec.loadgen}, where=where)


def _run_sim(prep: Prepared, pol: PolicySpec, seed: int, trace: Trace, writer: RunWriter) -> int:
    """One simulated run into ``writer.path``; returns the number of requests recorded."""
    from testbed.experiment.policies import (
        create_run_policy,
        planned_arrivals,
        profile_estimates,
    )
    from testbed.experiment.simulate import build_sim, default_specs, sim_facts, simulate

    spec = prep.spec
    replay = _replay_options(spec)
    # As live (_run_live): the daemon runs on the deployed functions max(START_DELAY_S,
    # settle_s) before the traffic's t0 = 0, so policies warm up the same way.
    lead_s = max(START_DELAY_S, spec.settle_s)
    options = {**dict(spec.backend_options), "start_s": -lead_s}
    sim = build_sim(options, seed=seed, workflows=prep.catalog)
    # each mix request's workflow is drawn as the load generator draws it in a live run
    arrivals = planned_arrivals(trace, spec.workflows, prep.catalog, seed=seed)
    specs = prep.function_specs or tuple(default_specs(sim, arrivals))
    for function in specs:
        sim.deploy(function)
    started, cpu_started = time.perf_counter(), time.process_time()
    results = simulate(
        sim,
        arrivals,
        create_run_policy(
            pol.name,
            pol.params,
            arrivals_s=arrivals,
            catalog=prep.catalog,
            host_cores=sim.host_cores,
            **profile_estimates(sim.profile),
        ),
        tick_s=spec.tick_s,
        until_s=spec.duration_s or None,
        decisions_path=writer.path / DECISIONS_FILE,
        policy_name=pol.label,
        t0_s=0.0,
        workflows=prep.workflows,  # what the policy hears of, as live: the run's workflows
        log_every_decision=spec.decisions == "every",
        # the run ends as the live replay's drain does (requests still open are cancelled)
        drain_s=replay.timeout_s if replay.drain_s is None else replay.drain_s,
    )
    results.write(writer.path)
    requests = len(results.requests)
    writer.write_meta(
        t0=0.0,
        clock="simulated",
        requests=requests,
        sim={
            **sim_facts(
                sim,
                results,
                wall_s=time.perf_counter() - started,
                cpu_s=time.process_time() - cpu_started,
            ),
            "seed": seed,
        },
    )
    return requests


def run_experiment(
    spec: ExperimentSpec,
    out_dir: str | Path,
    *,
    on_progress: ProgressFn | None = None,
    on_run_done: Callable[[RunOutcome], None] | None = None,
) -> ExperimentResult:
    """Run every policy × seed of ``spec`` into ``out_dir``.

    Args:
        spec: the validated experiment.
        out_dir: results root; each run lands in ``<label>/seed-<seed>``.
        on_progress: ``(label, elapsed_s, status)`` callback, about twice a second.
        on_run_done: called after each run is complete and in place.

    Returns:
        The runs written.

    Raises:
        ConfigError: a bad config (before anything runs).
        RunError: a run failed; earlier runs stay complete, the failed one incomplete.
    """
    from testbed.experiment.workload import build_trace

    prep = prepare(spec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "experiment.yaml", yaml.safe_dump(dict(spec.raw), sort_keys=False))
    outcomes: list[RunOutcome] = []
    for seed in spec.seeds:
        trace = build_trace(spec.trace, spec.workflows, seed=seed, duration_s=spec.duration_s)
        for index in range(len(spec.policies)):
            outcome = run_one(prep, out, index, seed, trace=trace, on_progress=on_progress)
            outcomes.append(outcome)
            if on_run_done is not None:
                on_run_done(outcome)
    return ExperimentResult(out, tuple(outcomes))


def run_one(
    prep: Prepared,
    out_dir: Path,
    policy_index: int,
    seed: int,
    *,
    trace: Trace | None = None,
    on_progress: ProgressFn | None = None,
) -> RunOutcome:
    """One run (policy ``policy_index`` of the spec, one seed) into ``out_dir/<label>/seed-<seed>``.

    Args:
        prep: the prepared experiment (:func:`prepare`).
        out_dir: the experiment's results root.
        policy_index: which of ``prep.spec.policies``.
        seed: the trace seed.
        trace: the seed's arrivals when the caller built them already (else built here).
        on_progress: ``(label, elapsed_s, status)`` callback, about twice a second.

    Raises:
        RunError: the run failed (its directory is left incomplete).
    """
    from testbed.experiment.workload import build_trace

    spec = prep.spec
    pol = spec.policies[policy_index]
    if trace is None:
        trace = build_trace(spec.trace, spec.workflows, seed=seed, duration_s=spec.duration_s)
    writer = RunWriter(out_dir, pol.label, seed, _base_meta(spec, pol, policy_index))
    writer.start()
    writer.write_meta(
        trace={"source": trace.source, "requests": trace.total, "by_target": trace.counts()}
    )
    try:
        if spec.backend == "sim":
            requests = _run_sim(prep, pol, seed, trace, writer)
        else:
            progress = on_progress or (lambda label, elapsed, status: None)
            requests = _run_live(prep, pol, seed, trace, writer, progress)
    except BaseException as exc:
        writer.fail(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, (TestbedError, OSError)) and not isinstance(exc, ConfigError):
            raise RunError(f"run {pol.label} seed {seed} failed: {exc}") from exc
        raise
    return RunOutcome(pol.label, seed, writer.finish(), requests)
