"""``aquatope-config``: Aquatope's resource manager run online, safely, re-tuned on drift.

The policy cannot run trials of its own, so it tunes on live traffic, *in place* (the
default) or on *canary* replicas (``trials="canary"``, see "Bounded exposure" below): it
applies a configuration for up to ``trial_ticks`` ticks, turns what the daemon observed
meanwhile into one :class:`~scheduler.configure.base.ConfigSample`, asks the configurator
(safe constrained BO by default) for the next configuration, and after ``budget`` trials or
when the configurator stops it keeps the cheapest configuration that met the QoS. From then
on it watches the workflow's request rate and latency with two change detectors; when
either fires, the old samples no longer describe the system and a new tuning episode starts
(not a timer). Both watch windows of ``drift_window_ticks`` ticks (a trial's length by
default), not single ticks. The rate's reference is every window of the tuning episode, as
a mixture of the rates it showed (:class:`~scheduler.configure.drift.LoadShiftDetector`: a
load doubled or halved against that mixture), so a workload with a burst every few minutes
has bursts in its reference and a burst is not a change, while a lasting change of the rate
is, within a few windows; the latency's is the kept configuration's first windows (their
tails as a kernel density, :class:`~scheduler.configure.drift.LatencyShiftDetector`: 1.5
times slower or faster), where one slow window (a burst those windows missed) is no change
either.

Safety rules (hard, whatever the configurator proposes):

* **Known-safe start.** The limits the functions were deployed with (the stack's declared
  limits) are the *safe configuration*: the first trial of an episode observes it, and the
  search space is bounded around it (``space_headroom`` × the declared CPU and memory), so
  the search never starts at 6 cores / 10 GiB.
* **Memory floor.** A function's memory is never set below its floor: its peak RSS plus
  ``memory_margin`` when the platform reports it, otherwise the memory the stack *requests*
  (its statement of need; the declared limit when no request was declared; the
  ``memory_floor_mb`` parameter only when neither was declared). An OOM kill at a memory
  limit raises that function's floor above it for good.
* **Rollback within one tick.** A trial tick with an OOM kill (or a memory limit the
  platform refused because the replica already uses more), an error burst (errors and
  timeouts above ``error_burst`` of the completions) or a QoS breach (the tick's end-to-end
  tail above ``rollback_factor`` × target, or more than ``violation_budget`` of the trial's
  requests over the target; of its ticks, at least two, when only the per-tick estimate is
  available) ends the trial in that same tick: the safe incumbent (the
  cheapest feasible configuration seen, the declared one at first) goes back out, the trial
  is recorded infeasible, and its region is excluded (an OOM excludes every memory at or
  below the killed one for that function; any other failure excludes every configuration
  that gives every function no more CPU and memory than the failed one). Proposals in an
  excluded region are never applied: the configurator gets them back as failed samples.
* **A breach is judged at its load.** A QoS breach of a trial with at least the incumbent's
  CPU and memory everywhere is the load's: not rolled back, nothing excluded. One in a
  *surge* (the last :data:`SURGE_TICKS` ticks above :data:`SURGE_FACTOR` x the episode's
  usual rate: its reference rate, or its windows' median when lower) is rolled back and
  judged against the incumbent: held through the same surge (its first
  :data:`DRAIN_TICKS` ticks left out), the incumbent met the QoS, so the breach is the
  trial's; it broke it too (or the surge ended first), so the same trial runs once more
  when the surge is over. No failure but an OOM excludes a region that holds a
  configuration the episode saw meet the QoS.
* **Bounded exposure.** In place (``trials="in-place"``, the default) a trial's limits go
  to every replica of its functions: a harmful trial is exposed to at most one tick of
  traffic plus what is in flight (detection happens on the first tick that shows the
  harm), and any trial lasts at most ``trial_ticks`` ticks. On *canaries*
  (``trials="canary"``, where the platform runs them: ``testbed.core.canary``) the
  functions' own replicas keep the incumbent, and each function the trial changes gets one
  canary replica at the trial's limits that takes at most ``canary_share`` of its calls
  (never a call that would wait for it): a harmful trial reaches at most that share of one
  tick's calls (and a bad one is ended in the tick that shows it, as above). The trial is
  then judged from what its canaries measured: its OOM kills and errors are the canaries';
  its end-to-end latencies are the workflow's measured ones shifted by how much the
  canaries' mean service times lengthen (or shorten) the critical path against the
  incumbent's (its ticks without a cold start or queue); its cost prices the functions'
  replica-seconds at the trial's limits; it lasts until every canary has served
  ``min_canary_calls`` calls (at most ``4 x trial_ticks`` ticks). A kept configuration
  goes to the functions' own replicas, and the canaries end.

What a trial's latency is: the ``percentile`` of the end-to-end latencies of the workflow's
requests (queueing and cold starts included) when the observation carries them
(``Observation.workflow_latency_s``); otherwise the critical path of the per-function mean
latencies of each tick (gateway-measured, so queueing and cold starts included, but a mean,
not a tail) and the ``percentile`` of those per-tick values. Per-stage tails (the same
percentile of per-function latencies) go to the configurator's per-stage model and are
persisted in ``state_dict``.

Cost: DESIGN.md §8 decoupled price of every replica alive (ready or starting) × tick, per
invocation (idle included) at the episode's *reference load*: the rate of its first trial.
Dividing by each trial's own invocations would make a trial that ran during a burst look
cheap and keep it; within an episode the load is steady (a change starts a new one), so the
reference rate leaves only what the configuration changes. Limits go out in
``FunctionDecision.limits``; replica counts are left alone (``None``), so a pre-warm policy
can own them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scheduler.configure.base import ConfigSample, Measurement
from scheduler.configure.drift import LatencyShiftDetector, LoadShiftDetector, TickWindows, Window
from scheduler.configure.methods import make_configurator
from scheduler.configure.objectives import best_feasible, is_feasible, qos_constraint
from scheduler.configure.space import (
    CPU_MIN_CORES,
    CPU_STEP_CORES,
    MEMORY_MIN_MB,
    MEMORY_STEP_MB,
    Configuration,
    FunctionConfig,
    FunctionSpace,
    SearchSpace,
)
from scheduler.policy import Decision, FunctionDecision, FunctionObservation, Observation, Policy
from scheduler.registry import register_policy
from testbed.core.platform import Workflow
from testbed.core.prices import decoupled_usd_per_s

__all__ = ["AquatopeConfigPolicy", "Exclusion"]

MAX_SKIPPED_PROPOSALS = 25  # excluded proposals answered in one tick before giving up
DRIFT_REFERENCE_WINDOWS = 4  # windows a drift detector needs before it watches
MAX_LOAD_REFERENCE = 240  # most recent tuning windows kept as the load's reference
MAX_RETUNES_KEPT = 100  # re-tuning starts remembered (time, reason)
SURGE_TICKS = 5  # ticks whose rate says whether the load surges now
SURGE_FACTOR = 2.0  # a rate above this multiple of the episode's reference is a surge
DRAIN_TICKS = 2  # held ticks not judged: the rolled-back trial's queue drains in them
_FAILED_X = 3.0  # a failed trial or request counts as this many times the QoS target
TRIAL_MODES = ("in-place", "canary")


def _calls(observation: Observation, function: str, what: str) -> int:
    """The function's ``arrivals`` (or other count) with its canary's."""
    canary = observation.canaries.get(function)
    return int(getattr(observation.functions[function], what)) + (
        int(getattr(canary, what)) if canary else 0
    )


def _memory_up(memory_mb: float) -> int:
    """The smallest memory lattice value >= ``memory_mb``."""
    k = max(0, math.ceil((memory_mb - MEMORY_MIN_MB) / MEMORY_STEP_MB - 1e-9))
    return MEMORY_MIN_MB + MEMORY_STEP_MB * k


def _cpu_up(cpu_cores: float) -> float:
    k = max(1, math.ceil(cpu_cores / CPU_STEP_CORES - 1e-9))
    return round(max(CPU_MIN_CORES, k * CPU_STEP_CORES), 6)


@dataclass(frozen=True)
class Exclusion:
    """A region no trial may enter again.

    Args:
        config: the configuration that failed.
        function: with a name, an OOM of that function: every configuration giving it no
            more memory than ``config`` did is excluded. Empty: every configuration that
            gives every function no more CPU and no more memory than ``config``.
        why: what failed (for decisions and logs).
    """

    config: Configuration
    function: str = ""
    why: str = ""

    def covers(self, config: Configuration) -> bool:
        """Whether ``config`` lies in the excluded region."""
        if self.function:
            return config[self.function].memory_mb <= self.config[self.function].memory_mb
        return all(
            cfg.cpu_cores <= self.config[f].cpu_cores + 1e-9
            and cfg.memory_mb <= self.config[f].memory_mb
            for f, cfg in config.items()
        )

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config.to_json(), "function": self.function, "why": self.why}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Exclusion:
        return cls(
            Configuration.from_json(data["config"]),
            str(data.get("function", "")),
            str(data.get("why", "")),
        )


@dataclass
class _Tick:
    latency_s: float  # the tick's end-to-end tail (or critical-path estimate), nan if none
    cost_usd: float
    arrivals: int
    stage_s: dict[str, float]
    e2e_s: tuple[float, ...] = ()
    replica_s: dict[str, float] = field(default_factory=dict)  # per function, this tick
    errors: int = 0
    completions: int = 0
    duration_s: float = 1.0
    # canary trials: per function, (mean service s, calls) of its canary, and of its own
    # replicas in a tick without a cold start or queue
    canary_s: dict[str, tuple[float, int]] = field(default_factory=dict)
    own_s: dict[str, tuple[float, int]] = field(default_factory=dict)


def _pooled(ticks: Sequence[_Tick], attr: str) -> dict[str, tuple[float, int]]:
    """Per function, the call-weighted mean of the ticks' ``attr`` means and their calls."""
    sums: dict[str, list[float]] = {}
    for t in ticks:
        for f, (mean, calls) in getattr(t, attr).items():
            acc = sums.setdefault(f, [0.0, 0.0])
            acc[0] += mean * calls
            acc[1] += calls
    return {f: (total / calls, int(calls)) for f, (total, calls) in sums.items() if calls > 0}


@dataclass
class _Trial:
    ticks: list[_Tick] = field(default_factory=list)
    shift_s: float = 0.0  # canary trials: what the canaries add to the critical path
    floor_s: float = 0.0  # canary trials: the critical path of the trial's service times

    def e2e(self) -> list[float]:
        return [max(x + self.shift_s, self.floor_s) for t in self.ticks for x in t.e2e_s]

    def canary_calls(self) -> dict[str, int]:
        return {f: calls for f, (_, calls) in _pooled(self.ticks, "canary_s").items()}

    def reshift(self, workflow: Workflow) -> None:
        """Re-estimate :attr:`shift_s` from every tick so far (see the module docstring)."""
        canary = _pooled(self.ticks, "canary_s")
        own = {f: m for f, (m, _) in _pooled(self.ticks, "own_s").items()}
        trial = {**own, **{f: m for f, (m, _) in canary.items()}}
        base = {f: own.get(f, trial.get(f, 0.0)) for f in workflow.functions}
        path_trial = workflow.critical_path_s({f: trial.get(f, base[f]) for f in base})
        path_base = workflow.critical_path_s(base)
        if path_trial is None or path_base is None or not canary:
            self.shift_s, self.floor_s = 0.0, 0.0
            return
        self.shift_s, self.floor_s = path_trial - path_base, path_trial

    @property
    def duration_s(self) -> float:
        return sum(t.duration_s for t in self.ticks)

    def replica_s(self, workflow: Workflow, invocations: float) -> dict[str, float]:
        """Replica-seconds alive per invocation, per function, over the trial's ticks."""
        return {
            f: sum(t.replica_s.get(f, 0.0) for t in self.ticks) / invocations
            for f in workflow.functions
        }


@dataclass
class _Postponed:
    """A trial rolled back in a surge, and the incumbent's ticks in the same surge."""

    config: Configuration
    source: str
    harm: str
    trial: _Trial
    incumbent: _Trial = field(default_factory=_Trial)


@register_policy("aquatope-config")
class AquatopeConfigPolicy(Policy):
    """Aquatope's configurator online: safe trials around the declared limits, rolled back
    within one tick when they hurt, re-tuned on detected drift.

    Args:
        workflow: the workflow to size (default: the first one observed).
        method: configurator (``aquatope``, ``paper-bo``, ``cherrypick``, ``power-tuning``,
            ``random``).
        budget: trials per tuning episode (the safe configuration's observation included).
        trial_ticks: ticks one configuration is observed for (the bound on a trial's length).
        min_invocations: a trial needs at least this many invocations to count.
        percentile: tail taken as a trial's latency (None = the workflow QoS's).
        machine_cores: CPU cap of the search space.
        memory_floor_mb: memory floor of a function that declared neither limit nor request.
        memory_margin: headroom over a reported peak RSS or an OOM-killed limit (share).
        space_headroom: the search space reaches this multiple of the declared limits.
        error_burst: a trial tick with more than this share of failed requests rolls back.
        rollback_factor: a trial tick whose tail exceeds this multiple of the target rolls back.
        violation_budget: share of a trial's requests over the target that rolls it back.
        drift_threshold: alarm level of the drift detectors (nats of evidence).
        drift_window_ticks: ticks per window the drift detectors judge (None: trial_ticks).
        trials: ``in-place`` (a trial's limits on every replica) or ``canary`` (on one
            canary replica per changed function; the platform must run canaries).
        canary_share: most of a function's calls its canary takes (``trials="canary"``).
        min_canary_calls: calls every canary serves before its trial is judged.
        seed: seeds the configurator.
    """

    name = "aquatope-config"
    description = (
        "Aquatope resource manager online: safe BO of CPU/memory around the declared limits, "
        "trials (in place or on canary replicas) rolled back in one tick on OOM/errors/QoS "
        "breach, re-tuned on drift"
    )

    def __init__(
        self,
        workflow: str = "",
        method: str = "aquatope",
        budget: int = 15,
        trial_ticks: int = 30,
        min_invocations: int = 20,
        percentile: float | None = None,
        machine_cores: float = 6.0,
        memory_floor_mb: int = 128,
        memory_margin: float = 0.25,
        space_headroom: float = 2.0,
        error_burst: float = 0.05,
        rollback_factor: float = 1.5,
        violation_budget: float = 0.05,
        drift_threshold: float = 8.0,
        drift_window_ticks: int | None = None,
        trials: str = "in-place",
        canary_share: float = 0.1,
        min_canary_calls: int = 5,
        seed: int = 0,
    ) -> None:
        if budget < 1 or trial_ticks < 1 or min_invocations < 1:
            raise ValueError("budget, trial_ticks and min_invocations must be >= 1")
        if drift_window_ticks is not None and drift_window_ticks < 1:
            raise ValueError(f"drift_window_ticks must be >= 1, got {drift_window_ticks}")
        if not 0 <= memory_margin <= 2:
            raise ValueError(f"memory_margin must be in [0, 2], got {memory_margin}")
        if space_headroom < 1:
            raise ValueError(f"space_headroom must be >= 1, got {space_headroom}")
        if not 0 < error_burst < 1 or not 0 < violation_budget < 1:
            raise ValueError("error_burst and violation_budget must be in (0, 1)")
        if rollback_factor <= 1:
            raise ValueError(f"rollback_factor must be > 1, got {rollback_factor}")
        if trials not in TRIAL_MODES:
            raise ValueError(f"trials must be one of {', '.join(TRIAL_MODES)}, got {trials!r}")
        if not 0 < canary_share <= 1 or min_canary_calls < 1:
            raise ValueError("canary_share must be in (0, 1] and min_canary_calls >= 1")
        self.trials = trials
        self.canary_share = canary_share
        self.min_canary_calls = min_canary_calls
        self.workflow_name = workflow
        self.method = method
        self.budget = budget
        self.trial_ticks = trial_ticks
        self.min_invocations = min_invocations
        self.percentile = percentile
        self.machine_cores = machine_cores
        self.memory_floor_mb = memory_floor_mb
        self.memory_margin = memory_margin
        self.space_headroom = space_headroom
        self.error_burst = error_burst
        self.rollback_factor = rollback_factor
        self.violation_budget = violation_budget
        self.seed = seed
        self.drift_window_ticks = drift_window_ticks or trial_ticks
        self.rate_detector = LoadShiftDetector(
            reference=DRIFT_REFERENCE_WINDOWS, threshold=drift_threshold
        )
        self.latency_detector = LatencyShiftDetector(
            reference=DRIFT_REFERENCE_WINDOWS, threshold=drift_threshold
        )
        self._windows = TickWindows(self.drift_window_ticks)
        # (arrivals, seconds) of the tuning episode's windows: the load's reference
        self._load_reference: list[tuple[float, float]] = []
        self.phase = "tuning"
        self.episode = 0
        self.samples: list[ConfigSample] = []
        self.current: Configuration | None = None
        self.best: Configuration | None = None
        self.safe: Configuration | None = None  # the declared (known-safe) configuration
        self.oom_floor_mb: dict[str, int] = {}
        self.rss_floor_mb: dict[str, int] = {}
        self.declared_floor_mb: dict[str, int] = {}
        self.exclusions: list[Exclusion] = []
        self.rollbacks = 0
        # invocations per second of the episode's first trial: every trial's cost is per
        # invocation at this load, so a trial that ran in a burst does not look cheap
        self.reference_rate: float | None = None
        self.trials_total = 0  # trials applied over every episode (rolled back ones included)
        self.retunes: list[tuple[float, str]] = []  # when and why each later episode began
        self._source = "safe"
        self._pending: tuple[Configuration, str] | None = None  # next trial, after recovery
        self._configurator: Any = None
        self._space: SearchSpace | None = None
        self._trial = _Trial()
        self.last_reason = ""
        self._episode_reason = ""
        self._recent: deque[tuple[float, float]] = deque(maxlen=SURGE_TICKS)  # arrivals, s
        self.retried: list[Configuration] = []  # trials rolled back in a surge, this episode
        self._held = 0  # ticks held at the incumbent before a pending trial
        self._postponed: _Postponed | None = None
        self._canaries: Mapping[str, FunctionObservation] = {}  # this tick's (canary trials)

    # -- safety bookkeeping --------------------------------------------------------------
    def floor_mb(self, function: str) -> int:
        """The memory floor of ``function`` now (MiB, on the lattice)."""
        learned = self.rss_floor_mb.get(function, self.declared_floor_mb.get(function, 0))
        return max(learned, self.oom_floor_mb.get(function, 0), MEMORY_MIN_MB)

    def _learn_safe(self, workflow: Workflow, fobs: Mapping[str, FunctionObservation]) -> None:
        """The declared configuration and memory floors, from the first observation."""
        if self.safe is not None:
            return
        chosen: dict[str, FunctionConfig] = {}
        for f in workflow.functions:
            o = fobs[f]
            declared_mem = o.limits.memory_mb or o.requests.memory_mb
            need = o.requests.memory_mb or o.limits.memory_mb or self.memory_floor_mb
            self.declared_floor_mb[f] = _memory_up(need)
            cpu = o.limits.cpu_cores or o.requests.cpu_cores or 1.0
            mem = max(_memory_up(declared_mem or need), self.declared_floor_mb[f])
            chosen[f] = FunctionConfig(min(_cpu_up(cpu), self._cpu_cap()), mem)
        self.safe = Configuration.of(chosen)

    def _cpu_cap(self) -> float:
        return max(CPU_MIN_CORES, math.floor(self.machine_cores / CPU_STEP_CORES) * CPU_STEP_CORES)

    def _learn_rss(self, workflow: Workflow, fobs: Mapping[str, FunctionObservation]) -> None:
        for f in workflow.functions:
            rss = fobs[f].peak_rss_mb
            if rss is not None and rss > 0:
                floor = _memory_up(rss * (1 + self.memory_margin))
                self.rss_floor_mb[f] = max(self.rss_floor_mb.get(f, 0), floor)

    def allowed(self, config: Configuration) -> str:
        """Why ``config`` may not be applied ("" when it may)."""
        for f, cfg in config.items():
            if cfg.memory_mb < self.floor_mb(f):
                return f"{f} memory {cfg.memory_mb} MB below its floor {self.floor_mb(f)} MB"
        for ex in self.exclusions:
            if ex.covers(config):
                return f"in a region excluded after {ex.why}"
        return ""

    # -- helpers -------------------------------------------------------------------------
    def _workflow(self, obs: Observation) -> Workflow | None:
        if self.workflow_name:
            return obs.workflows.get(self.workflow_name)
        return next(iter(obs.workflows.values()), None)

    def _ensure_configurator(self, workflow: Workflow) -> None:
        if self._configurator is not None:
            return
        assert self.safe is not None
        cap = self._cpu_cap()
        spaces = []
        for f in workflow.functions:
            s = self.safe[f]
            floor = self.floor_mb(f)
            spaces.append(
                FunctionSpace(
                    f,
                    cpu_max_cores=min(cap, _cpu_up(max(s.cpu_cores * self.space_headroom, 1.0))),
                    memory_min_mb=floor,
                    memory_max_mb=max(
                        _memory_up(s.memory_mb * self.space_headroom), floor + MEMORY_STEP_MB
                    ),
                )
            )
        self._space = SearchSpace(spaces)
        self._configurator = make_configurator(
            self.method,
            self._space,
            [qos_constraint(workflow.qos.target_s, workflow.qos.percentile)],
            seed=self.seed + 7919 * self.episode,
            workflow=workflow,
        )

    def _base(self) -> Configuration | None:
        """What the functions' own replicas run while ``self.current`` is tried on canaries
        (None: trials run in place, or nothing is tried on canaries now)."""
        if self.trials != "canary" or self.phase != "tuning" or self._configurator is None:
            return None
        if self.current is None:
            return None
        incumbent = self._incumbent()
        return incumbent if self.current != incumbent else None

    def _decision(self, config: Configuration, reason: str) -> Decision:
        self.last_reason = reason
        base = self._base() if config == self.current else None
        functions = {}
        for name, cfg in config.items():
            if self.trials != "canary":
                functions[name] = FunctionDecision(limits=cfg.to_limits(), reason=reason)
                continue
            own = base[name] if base is not None else cfg
            functions[name] = FunctionDecision(
                limits=own.to_limits(),
                reason=reason,
                canary=cfg.to_limits() if cfg != own else None,
                end_canary=cfg == own,
                canary_share=self.canary_share,
            )
        return Decision(functions=functions, reason=reason)

    def _pct(self, workflow: Workflow) -> float:
        return self.percentile if self.percentile is not None else workflow.qos.percentile

    def _per_invocation(self) -> float:
        """What the trial's costs are divided by: its seconds times the episode's reference
        rate (its own invocations until the first trial sets the reference)."""
        ticks = self._trial.ticks
        invocations = sum(t.arrivals for t in ticks)
        if self.reference_rate is None:
            return float(max(invocations, 1))
        return max(self.reference_rate * self._trial.duration_s, 1e-9)

    def _close_trial(self, workflow: Workflow) -> ConfigSample | None:
        ticks = self._trial.ticks
        invocations = sum(t.arrivals for t in ticks)
        e2e = self._trial.e2e()
        lat = [t.latency_s for t in ticks if math.isfinite(t.latency_s)]
        if (not lat and not e2e) or invocations < self.min_invocations or self.current is None:
            return None
        if self._canaries_short():
            return None
        pct = self._pct(workflow)
        if e2e:
            latency = float(np.percentile(e2e, pct))
            noise = float(np.std(e2e) / math.sqrt(len(e2e)))
        else:
            latency = float(np.percentile(lat, pct))
            noise = float(np.std(lat) / math.sqrt(len(lat)))
        stage: dict[str, float] = {}
        for f in workflow.functions:
            values = [t.stage_s[f] for t in ticks if f in t.stage_s]
            if values:
                stage[f] = max(float(np.percentile(values, pct)), 1e-6)
        errors = sum(t.errors for t in ticks)
        done = sum(t.completions for t in ticks)
        if self.reference_rate is None and self._trial.duration_s > 0:
            self.reference_rate = invocations / self._trial.duration_s
        per = self._per_invocation()
        measurement = Measurement(
            cost_usd=sum(t.cost_usd for t in ticks) / per,
            latency_s=max(latency, 1e-6),
            noise_s=noise,
            requests=invocations,
            error_rate=errors / done if done else 0.0,
            detail="online e2e" if e2e else "online estimate",
            stage_latency_s=stage if len(stage) == len(workflow.functions) else {},
            stage_replica_s=self._trial.replica_s(workflow, per),
        )
        return ConfigSample(self.current, measurement, source=self._source)

    def _canaries_short(self) -> bool:
        """Whether a canary of the trial under way has served too few calls to judge it."""
        base = self._base()
        if base is None or self.current is None:
            return False
        calls = self._trial.canary_calls()
        changed = [f for f, cfg in self.current.items() if cfg != base[f]]
        return any(calls.get(f, 0) < self.min_canary_calls for f in changed)

    def _failed_sample(self, config: Configuration, workflow: Workflow, why: str) -> ConfigSample:
        ticks = self._trial.ticks
        per = self._per_invocation()
        done = sum(t.completions for t in ticks)
        measurement = Measurement(
            cost_usd=sum(t.cost_usd for t in ticks) / per if ticks else 0.0,
            latency_s=_FAILED_X * workflow.qos.target_s,
            failed=True,
            requests=sum(t.arrivals for t in ticks),
            error_rate=sum(t.errors for t in ticks) / done if done else 1.0,
            detail=why,
            stage_replica_s=self._trial.replica_s(workflow, per) if ticks else {},
        )
        return ConfigSample(config, measurement, source=self._source)

    def _harm(
        self, workflow: Workflow, tick: _Tick, fobs: Mapping[str, Any]
    ) -> tuple[str, str, bool]:
        """(what went wrong in this tick, the OOM-killed function, whether it is a QoS
        breach) or ("", "", False)."""
        on_canaries = self._base() is not None
        for f in workflow.functions:
            canary = self._canaries.get(f)
            if on_canaries and canary is not None and canary.oom_kills > 0:
                return f"OOM kill of {f}'s canary", f, False
            if fobs[f].oom_kills > 0 and not on_canaries:
                return f"OOM kill of {f}", f, False
        finished = tick.completions + tick.errors
        if tick.errors >= 2 and tick.errors > self.error_burst * max(finished, 1):
            return f"error burst ({tick.errors} of {finished} calls failed)", "", False
        why = self._qos_breach(
            workflow,
            self._trial,
            tails=(tick,),
            min_requests=self.min_invocations,
            tick_budget=self.trial_ticks,
        )
        return (why, "", True) if why else ("", "", False)

    def _qos_breach(
        self,
        workflow: Workflow,
        trial: _Trial,
        *,
        tails: Sequence[_Tick],
        min_requests: int,
        tick_budget: int,
    ) -> str:
        """What breaks the QoS by the rollback rules ("" when nothing): a tick of ``tails``
        whose tail is over ``rollback_factor`` x the target; more than ``violation_budget``
        of ``trial``'s requests over the target, once it has ``min_requests`` (>= 1); or,
        with per-tick estimates only, more than ``max(1, violation_budget x tick_budget)``
        of its ticks over the target."""
        target = workflow.qos.target_s
        for t in tails:
            if t.latency_s > self.rollback_factor * target:  # NaN (no latency) is not over
                return f"tail {t.latency_s:.3g} s over {self.rollback_factor:g}x the target"
        e2e = trial.e2e()
        if len(e2e) >= min_requests:
            over = sum(x > target for x in e2e) / len(e2e)
            if over > self.violation_budget:
                return f"{over:.1%} of the trial's requests over the QoS target"
        elif not e2e:  # only the per-tick estimate: budget the ticks over the target instead
            over_ticks = sum(t.latency_s > target for t in trial.ticks)
            if over_ticks > max(1.0, self.violation_budget * tick_budget):
                return f"{over_ticks} ticks over the QoS target"
        return ""

    def _calm_rate(self) -> float | None:
        """The episode's usual rate: its reference rate, or the median rate of its windows
        when lower (a first trial that caught a burst set a reference above the usual)."""
        if self.reference_rate is None:
            return None
        if not self._load_reference:
            return self.reference_rate
        rates = [n / seconds if seconds > 0 else 0.0 for n, seconds in self._load_reference]
        median = float(np.expm1(np.median(np.log1p(rates))))
        return min(self.reference_rate, median)

    def _surge(self) -> float | None:
        """The rate of the last :data:`SURGE_TICKS` ticks when it is above
        :data:`SURGE_FACTOR` x the episode's usual rate (None otherwise)."""
        seconds = sum(d for _, d in self._recent)
        calm = self._calm_rate()
        if calm is None or seconds <= 0:
            return None
        rate = sum(a for a, _ in self._recent) / seconds
        return rate if rate > SURGE_FACTOR * calm else None

    def _known_feasible(self) -> list[Configuration]:
        """Configurations this episode saw meet the QoS, and the incumbent."""
        seen = [
            s.config
            for s in self.samples
            if s.source != "excluded" and is_feasible(s, self._configurator.constraints)
        ]
        return [*seen, self._incumbent()]

    def _memory_refused(
        self, workflow: Workflow, fobs: Mapping[str, FunctionObservation]
    ) -> tuple[str, str] | None:
        """The function whose memory the platform kept above the one applied, if any.

        A kernel refuses a memory limit below what the replica already uses (cgroup v1,
        Docker): the old limit stays and the tick ran at it, not at ``self.current``. That is
        the OOM kill's warning, and is treated as one: the memory asked for is below the
        need. On canaries, the canaries' limits are read (a canary kept from the previous
        trial is re-limited live, and may be refused the same way).
        """
        if self.current is None:
            return None
        base = self._base()
        for f in workflow.functions:
            on_canaries = base is not None and base[f] != self.current[f]
            if base is not None and not on_canaries:
                continue  # its own replicas run the incumbent: nothing was asked of them
            o = self._canaries.get(f) if on_canaries else fobs[f]
            kept = o.limits.memory_mb if o is not None else None
            wanted = self.current[f].memory_mb
            if kept is not None and kept > wanted + 0.5:
                whose = f"{f}'s canary" if on_canaries else f
                return f"memory of {whose} refused at {wanted} MB (kept at {kept:.0f} MB)", f
        return None

    def _start_episode(self, reason: str, now_s: float) -> str:
        self.retunes = [*self.retunes, (now_s, reason)][-MAX_RETUNES_KEPT:]
        self.phase = "tuning"
        self.episode += 1 if self.samples or self.best is not None else 0
        self.samples = []
        self.reference_rate = None
        self._configurator = None
        self._trial = _Trial()
        self.rate_detector.reset()
        self.latency_detector.reset()
        self._windows = TickWindows(self.drift_window_ticks)
        self._load_reference = []
        self.retried = []
        self._postponed = None
        self.current = None
        self._pending = None
        self.exclusions = [e for e in self.exclusions if e.function]  # OOMs stay excluded
        self._episode_reason = reason
        return reason

    def _incumbent(self) -> Configuration:
        best = best_feasible(self.samples, self._configurator.constraints)
        if best is not None and not self.allowed(best.config):
            return best.config
        if self.best is not None and not self.allowed(self.best):
            return self.best
        assert self.safe is not None
        # the known-safe start, with every memory raised to its floor: an OOM kill at the kept
        # configuration raised a floor that the declared memory may be below
        self.safe = Configuration.of(
            {
                f: c
                if c.memory_mb >= self.floor_mb(f)
                else FunctionConfig(c.cpu_cores, self.floor_mb(f))
                for f, c in self.safe.items()
            }
        )
        return self.safe

    def trials_run(self) -> int:
        return sum(1 for s in self.samples if s.source != "excluded")

    def _next_trial(self) -> Configuration | None:
        """The configurator's next proposal that is allowed; excluded ones go back to it as
        failed samples (never applied)."""
        if self.trials_run() >= self.budget:
            return None
        for _ in range(MAX_SKIPPED_PROPOSALS):
            nxt: Configuration | None = self._configurator.propose(self.samples)
            if nxt is None:
                return None
            why = self.allowed(nxt)
            if not why:
                self._source = str(getattr(self._configurator, "source", "online"))
                return nxt
            target = self._configurator.constraints[0].target_s
            self.samples.append(
                ConfigSample(
                    nxt,
                    Measurement(
                        cost_usd=0.0, latency_s=3 * target, failed=True, detail=f"excluded: {why}"
                    ),
                    source="excluded",
                )
            )
        return None

    def _finish_tuning(self) -> Decision:
        self.best = self._incumbent()
        self.current = self.best
        self.phase = "steady"
        # the load the episode saw is the reference; the latency's is the kept configuration's
        self.rate_detector.prime(self._load_reference)
        self.latency_detector.reset()
        self._windows = TickWindows(self.drift_window_ticks)
        why = getattr(self._configurator, "stop_reason", "") or "budget used"
        return self._decision(
            self.best,
            f"tuning done after {self.trials_run()} trials ({why}); keeping {self.best}",
        )

    # -- the policy ----------------------------------------------------------------------
    def decide(self, observation: Observation) -> Decision:
        """Apply the configuration under trial (tuning) or the best one (steady)."""
        workflow = self._workflow(observation)
        if workflow is None:
            return Decision.decline("no workflow with a QoS target observed")
        missing = [f for f in workflow.functions if f not in observation.functions]
        if missing:
            return Decision.decline(f"functions not deployed: {', '.join(missing)}")
        fobs = observation.functions
        self._canaries = observation.canaries
        tick_now = observation.now_s
        self._learn_safe(workflow, fobs)
        self._learn_rss(workflow, fobs)
        self._ensure_configurator(workflow)
        tick = self._tick(workflow, observation)
        self._recent.append((tick.arrivals, tick.duration_s))
        window = self._windows.add(
            arrivals=tick.arrivals,
            duration_s=tick.duration_s,
            e2e_s=tick.e2e_s,
            estimate_s=tick.latency_s,
        )
        if window is not None and self.phase == "tuning":
            self._load_reference = [
                *self._load_reference,
                (window.arrivals, window.duration_s),
            ][-MAX_LOAD_REFERENCE:]

        if self.phase == "steady":
            assert self.best is not None
            harm, oom_fn, _ = self._harm(workflow, tick, fobs)
            if oom_fn:  # the kept configuration itself is unsafe now: learn, go back to safe
                self._exclude(self.best, oom_fn, harm)
                self._start_episode(f"{harm} at the kept configuration: re-tuning", tick_now)
                self.best = None
            elif window is not None and (what := self._drift(window, workflow)):
                self._start_episode(f"{what} drift detected: re-tuning", tick_now)
            else:
                return self._decision(self.best, f"steady at the best feasible ({self.best})")
            self._ensure_configurator(workflow)

        if self.current is None:
            self.current = self._incumbent()
            self._source = "safe"
            self._trial = _Trial()
            why = f"{self._episode_reason}; " if self._episode_reason else ""
            return self._decision(
                self.current, f"{why}tuning episode {self.episode}: observing the safe incumbent"
            )

        if self._pending is not None:  # at the incumbent after a rollback: go on when calm
            surge = self._surge()
            if surge is not None and self._held < 4 * self.trial_ticks:
                self._held += 1
                if self._postponed is not None and self._held > DRAIN_TICKS:
                    self._postponed.incumbent.ticks.append(tick)
                return self._decision(
                    self.current,
                    f"holding the incumbent while the load surges ({surge:.3g}/s against "
                    f"{self._calm_rate():.3g}/s)",
                )
            post, self._postponed = self._postponed, None
            if (
                post is not None
                and post.incumbent.ticks
                and not self._qos_breach(
                    workflow,
                    post.incumbent,
                    tails=post.incumbent.ticks,
                    min_requests=1,
                    tick_budget=len(post.incumbent.ticks),
                )
            ):
                return self._judge_postponed(workflow, post)
            self.current, self._source = self._pending
            self._pending = None
            self._held = 0
            self._trial = _Trial()
            return self._decision(
                self.current, f"trial {self.trials_run() + 1}/{self.budget}: {self.current}"
            )
        self._trial.ticks.append(tick)
        if self._base() is not None:
            self._judge_on_canaries(workflow, tick)
            own_oom = next((f for f in workflow.functions if fobs[f].oom_kills > 0), "")
            if own_oom:  # the incumbent's replicas were killed, not the trial's
                return self._incumbent_oom(f"OOM kill of {own_oom}", own_oom)
        harm, oom_fn, qos = self._harm(workflow, tick, fobs)
        if not harm:
            harm, oom_fn = self._memory_refused(workflow, fobs) or ("", "")
        if harm and self.current != (incumbent := self._incumbent()):
            if qos and Exclusion(self.current).covers(incumbent):
                harm = ""  # it has all of the incumbent's resources: the load did this
            elif qos and self.current not in self.retried and (surge := self._surge()):
                return self._postpone(harm, surge)
            else:
                return self._roll_back(workflow, harm, oom_fn)
        if oom_fn:  # the incumbent itself was OOM-killed: raise that floor, observe again
            return self._incumbent_oom(harm, oom_fn)

        if len(self._trial.ticks) < self.trial_ticks:
            return self._decision(
                self.current,
                f"trial {self.trials_run() + 1}/{self.budget}: observing "
                f"({len(self._trial.ticks)}/{self.trial_ticks} ticks)",
            )
        sample = self._close_trial(workflow)
        if sample is None:  # too little traffic: keep observing the same configuration
            if len(self._trial.ticks) < 4 * self.trial_ticks:
                return self._decision(self.current, "trial extended: too few invocations")
            sample = self._failed_sample(self.current, workflow, "too little traffic")
            sample = ConfigSample(sample.config, sample.measurement, source="excluded")
        self._trial = _Trial()
        self.samples.append(sample)
        self.trials_total += 1
        if sample.config != self._incumbent() and not is_feasible(
            sample, self._configurator.constraints
        ):
            self._exclude(sample.config, "", f"QoS missed ({sample.latency_s:.3g} s)")
        nxt = self._next_trial()
        if nxt is None:
            return self._finish_tuning()
        self.current = nxt
        return self._decision(nxt, f"trial {self.trials_run() + 1}/{self.budget}: {nxt}")

    def _drift(self, window: Window, workflow: Workflow) -> str:
        """What drifted ("load", "latency") by this window, or ""."""
        drift_rate = self.rate_detector.update(window.arrivals, window.duration_s)
        drift_lat = self.latency_detector.update(window.latency(self._pct(workflow)))
        return "load" if drift_rate else "latency" if drift_lat else ""

    def _tick(self, workflow: Workflow, observation: Observation) -> _Tick:
        fobs = observation.functions
        base = self._base()  # not None: self.current runs on canaries
        service: dict[str, float] = {}
        canary_s: dict[str, tuple[float, int]] = {}
        own_s: dict[str, tuple[float, int]] = {}
        for f in workflow.functions:
            o = fobs[f]
            mean_s = o.mean_service_s
            if mean_s:
                service[f] = float(mean_s)
                if base is not None and o.cold_starts == 0 and o.queued == 0:
                    own_s[f] = (float(mean_s), o.completions)
            canary = observation.canaries.get(f)
            if base is not None and canary is not None and canary.mean_service_s:
                canary_s[f] = (float(canary.mean_service_s), canary.completions)
                service[f] = float(canary.mean_service_s)  # the stage's model learns the trial's
        # a failed request (read back as infinitely slow) counts as far over the target
        worst = _FAILED_X * workflow.qos.target_s
        e2e = tuple(
            min(float(x), worst) for x in observation.workflow_latency_s.get(workflow.name, ())
        )
        if e2e:
            latency: float | None = float(np.percentile(e2e, self._pct(workflow)))
        else:
            latency = workflow.critical_path_s(service)
        roots = {s.function for s in workflow.stages if not s.after}
        arrivals = max((_calls(observation, f, "arrivals") for f in roots), default=0)
        cost = 0.0
        replica_s: dict[str, float] = {}
        for f in workflow.functions:
            o = fobs[f]
            limits = (
                o.limits if base is None or self.current is None else self.current[f].to_limits()
            )
            cpu = limits.cpu_cores if limits.cpu_cores is not None else 1.0
            mem = limits.memory_mb if limits.memory_mb is not None else 128
            replica_s[f] = (o.replicas_ready + o.replicas_starting) * observation.tick_s
            cost += replica_s[f] * decoupled_usd_per_s(cpu, mem)
        # a trial's failures: its canaries' when it runs on them, else the functions'
        judged = observation.canaries if base is not None else fobs
        counted = [judged[f] for f in workflow.functions if f in judged]
        return _Tick(
            latency_s=latency if latency is not None else math.nan,
            cost_usd=cost,
            arrivals=arrivals,
            stage_s=service,
            e2e_s=e2e,
            errors=sum(o.errors for o in counted),
            completions=sum(o.completions for o in counted),
            replica_s=replica_s,
            duration_s=observation.tick_s,
            canary_s=canary_s,
            own_s=own_s,
        )

    def _incumbent_oom(self, harm: str, function: str) -> Decision:
        """The incumbent's replicas of ``function`` were OOM-killed: exclude it, raise that
        floor and observe the safe configuration (raised) again."""
        self._exclude(self._incumbent(), function, harm)
        self.safe = self._raise_memory(self.safe, function)  # type: ignore[arg-type]
        self.current = self.safe
        self._trial = _Trial()
        return self._decision(self.current, f"{harm} at the incumbent: memory raised")

    def _judge_on_canaries(self, workflow: Workflow, tick: _Tick) -> None:
        """A canary trial's tick: the trial's latencies are the measured ones shifted by
        what its canaries add to the critical path (re-estimated over the trial so far)."""
        self._trial.reshift(workflow)
        if tick.e2e_s:
            shifted = [max(x + self._trial.shift_s, self._trial.floor_s) for x in tick.e2e_s]
            tick.latency_s = float(np.percentile(shifted, self._pct(workflow)))
        elif math.isfinite(tick.latency_s):
            tick.latency_s = max(tick.latency_s + self._trial.shift_s, self._trial.floor_s)

    def _raise_memory(self, config: Configuration, function: str) -> Configuration:
        mem = config[function].memory_mb
        self.oom_floor_mb[function] = max(
            self.oom_floor_mb.get(function, 0),
            _memory_up(max(mem * (1 + self.memory_margin), mem + MEMORY_STEP_MB)),
        )
        fixed = dict(config.items())
        fixed[function] = FunctionConfig(config[function].cpu_cores, self.floor_mb(function))
        return Configuration.of(fixed)

    def _exclude(self, config: Configuration, function: str, why: str) -> None:
        """Fence off the region ``config`` failed in (an OOM: its function's memory at or
        below). A failure that is not an OOM fences off nothing that this episode saw meet
        the QoS: with at least those resources the configuration cannot be what failed."""
        if function:
            self._raise_memory(config, function)
        region = Exclusion(config, function, why)
        if not function and any(region.covers(c) for c in self._known_feasible()):
            return
        self.exclusions.append(region)

    def _postpone(self, harm: str, surge: float) -> Decision:
        """Roll back a QoS breach that came with a load surge without judging it yet: the
        incumbent holds while the surge lasts, and is watched. If it carries the same
        surge within the QoS, the breach was the trial's (judged then, as a rollback);
        otherwise the same trial runs again once the surge is over (once: a breach on the
        retry is its verdict)."""
        assert self.current is not None
        failed = self.current
        self.retried.append(failed)
        self.rollbacks += 1
        self.trials_total += 1
        self._postponed = _Postponed(failed, self._source, harm, self._trial)
        self._trial = _Trial()
        self._pending = (failed, self._source)
        self.current = self._incumbent()
        return self._decision(
            self.current,
            f"trial rolled back ({harm}) in a load surge ({surge:.3g}/s against "
            f"{self._calm_rate():.3g}/s): judged against the incumbent in the same surge; "
            f"back to {self.current}",
        )

    def _judge_postponed(self, workflow: Workflow, post: _Postponed) -> Decision:
        """The incumbent met the QoS through the surge the postponed trial broke it in: the
        breach was the trial's, recorded and fenced off as any rollback's."""
        self._pending = None
        self._held = 0
        self.current, self._source, self._trial = post.config, post.source, post.trial
        why = f"{post.harm}, where the incumbent met the QoS in the same surge"
        return self._roll_back(workflow, why, "", counted=True)

    def _roll_back(
        self, workflow: Workflow, harm: str, oom_fn: str, *, counted: bool = False
    ) -> Decision:
        """Record the trial under way as failed, fence off its region and put the incumbent
        back out (``counted``: the trial's rollback was counted when it happened)."""
        assert self.current is not None
        failed = self.current
        self.samples.append(self._failed_sample(failed, workflow, harm))
        self._exclude(failed, oom_fn, harm)
        if not counted:
            self.rollbacks += 1
            self.trials_total += 1
        self._trial = _Trial()
        incumbent = self._incumbent()
        nxt = self._next_trial()
        if nxt is None:
            return self._finish_tuning()
        # the next trial starts after one tick at the incumbent (the harmed replicas recover)
        self._pending = (nxt, self._source)
        self.current = incumbent
        self._source = "safe"
        return self._decision(
            incumbent, f"trial rolled back ({harm}); {failed} excluded; back to {incumbent}"
        )

    # -- persistence ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def sample_json(s: ConfigSample) -> dict[str, Any]:
            m = s.measurement
            return {
                "config": s.config.to_json(),
                "cost_usd": m.cost_usd,
                "latency_s": m.latency_s,
                "noise_s": m.noise_s,
                "failed": m.failed,
                "requests": m.requests,
                "error_rate": m.error_rate,
                "detail": m.detail,
                "stage_latency_s": dict(m.stage_latency_s),
                "stage_replica_s": dict(m.stage_replica_s),
                "source": s.source,
            }

        return {
            "phase": self.phase,
            "episode": self.episode,
            "samples": [sample_json(s) for s in self.samples],
            "current": self.current.to_json() if self.current else None,
            "best": self.best.to_json() if self.best else None,
            "safe": self.safe.to_json() if self.safe else None,
            "oom_floor_mb": dict(self.oom_floor_mb),
            "rss_floor_mb": dict(self.rss_floor_mb),
            "declared_floor_mb": dict(self.declared_floor_mb),
            "exclusions": [e.to_json() for e in self.exclusions],
            "rollbacks": self.rollbacks,
            "reference_rate": self.reference_rate,
            "trials_total": self.trials_total,
            "rate_detector": self.rate_detector.state_dict(),
            "latency_detector": self.latency_detector.state_dict(),
            "drift_windows": self._windows.state_dict(),
            "load_reference": [list(w) for w in self._load_reference],
            "retried": [c.to_json() for c in self.retried],
            "retunes": [[t, why] for t, why in self.retunes],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.phase = str(state.get("phase", "tuning"))
        self.episode = int(state.get("episode", 0))
        self.samples = [
            ConfigSample(
                Configuration.from_json(s["config"]),
                Measurement(
                    s["cost_usd"],
                    s["latency_s"],
                    s["noise_s"],
                    s["failed"],
                    s["requests"],
                    error_rate=float(s.get("error_rate", 0.0)),
                    detail=str(s.get("detail", "")),
                    stage_latency_s={
                        str(k): float(v) for k, v in dict(s.get("stage_latency_s", {})).items()
                    },
                    stage_replica_s={
                        str(k): float(v) for k, v in dict(s.get("stage_replica_s", {})).items()
                    },
                ),
                source=s.get("source", "online"),
            )
            for s in state.get("samples", [])
        ]
        cur, best, safe = state.get("current"), state.get("best"), state.get("safe")
        self.current = Configuration.from_json(cur) if cur else None
        self.best = Configuration.from_json(best) if best else None
        self.safe = Configuration.from_json(safe) if safe else None
        self.oom_floor_mb = {str(k): int(v) for k, v in dict(state.get("oom_floor_mb", {})).items()}
        self.rss_floor_mb = {str(k): int(v) for k, v in dict(state.get("rss_floor_mb", {})).items()}
        self.declared_floor_mb = {
            str(k): int(v) for k, v in dict(state.get("declared_floor_mb", {})).items()
        }
        self.exclusions = [Exclusion.from_json(e) for e in state.get("exclusions", [])]
        self.rollbacks = int(state.get("rollbacks", 0))
        rate = state.get("reference_rate")
        self.reference_rate = None if rate is None else float(rate)
        self.trials_total = int(state.get("trials_total", 0))
        self.rate_detector.load_state_dict(dict(state.get("rate_detector", {})))
        self.latency_detector.load_state_dict(dict(state.get("latency_detector", {})))
        self._windows.load_state_dict(dict(state.get("drift_windows", {})))
        self._load_reference = [  # a state from before the pairs (rates alone) is dropped
            (float(w[0]), float(w[1]))
            for w in state.get("load_reference", [])
            if isinstance(w, list | tuple) and len(w) == 2
        ]
        self.retried = [Configuration.from_json(c) for c in state.get("retried", [])]
        self.retunes = [(float(t), str(why)) for t, why in state.get("retunes", [])]
        self._configurator = None
        self._trial = _Trial()
