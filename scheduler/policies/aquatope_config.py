"""``aquatope-config``: Aquatope's resource manager run online, re-tuned when things drift.

The policy cannot run trials of its own, so it tunes *in place*: it applies a configuration
for ``trial_ticks`` ticks, turns what the daemon observed meanwhile into one
:class:`~scheduler.configure.base.ConfigSample`, asks the configurator (safe constrained BO
by default) for the next configuration, and after ``budget`` trials or when the configurator
stops it keeps the cheapest configuration that met the QoS. From then on it watches the
workflow's request rate and latency with two CUSUM change detectors; when either fires, the
old samples no longer describe the system and a new tuning episode starts (not a timer).

What it reads from each observation (the ``Observation`` carries no per-request latencies):

* latency of a tick: the critical path of the workflow's DAG over the per-function mean
  service times completed in the tick; a trial's tail latency is the ``percentile`` of
  those per-tick values (an approximation of the request tail, documented as such);
* load: arrivals at the workflow's root stages per second;
* cost: DESIGN.md §8 decoupled price of every replica alive (ready or starting) × tick,
  divided by the invocations in the trial (idle included).

Limits go out in ``FunctionDecision.limits``; replica counts are left alone (``None``), so a
pre-warm policy can own them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from scheduler.configure.base import ConfigSample, Measurement
from scheduler.configure.drift import CusumDetector
from scheduler.configure.methods import make_configurator
from scheduler.configure.objectives import best_feasible, qos_constraint
from scheduler.configure.space import Configuration, SearchSpace
from scheduler.policy import Decision, FunctionDecision, Observation, Policy
from scheduler.registry import register_policy
from testbed.core.platform import Workflow
from testbed.core.prices import decoupled_usd_per_s

__all__ = ["AquatopeConfigPolicy"]


def _critical_path_s(workflow: Workflow, service_s: Mapping[str, float]) -> float | None:
    finish: dict[str, float] = {}
    for stage in workflow.topological_order():
        own = service_s.get(stage.function)
        if own is None:
            return None
        finish[stage.name] = own + max((finish[d] for d in stage.after), default=0.0)
    return max(finish.values()) if finish else None


@register_policy("aquatope-config")
class AquatopeConfigPolicy(Policy):
    """Aquatope's configurator online: tune limits by safe BO, re-tune on detected drift.

    Args:
        workflow: the workflow to size (default: the first one observed).
        method: configurator (``aquatope``, ``cherrypick``, ``power-tuning``, ``random``).
        budget: trials per tuning episode.
        trial_ticks: ticks one configuration is observed for.
        min_invocations: a trial needs at least this many invocations to count.
        percentile: tail of per-tick latencies taken as a trial's latency (None = QoS's).
        machine_cores: CPU cap of the search space.
        memory_floor_mb: smallest memory limit ever proposed (what the functions need).
        drift_threshold: CUSUM alarm level (standard deviations).
        seed: seeds the configurator.
    """

    name = "aquatope-config"
    description = "Aquatope resource manager online: safe BO of CPU/memory, re-tuned on drift"

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
        drift_threshold: float = 8.0,
        seed: int = 0,
    ) -> None:
        if budget < 1 or trial_ticks < 1 or min_invocations < 1:
            raise ValueError("budget, trial_ticks and min_invocations must be >= 1")
        self.workflow_name = workflow
        self.method = method
        self.budget = budget
        self.trial_ticks = trial_ticks
        self.min_invocations = min_invocations
        self.percentile = percentile
        self.machine_cores = machine_cores
        self.memory_floor_mb = memory_floor_mb
        self.seed = seed
        self.rate_detector = CusumDetector(threshold=drift_threshold)
        self.latency_detector = CusumDetector(threshold=drift_threshold)
        self.phase = "tuning"
        self.episode = 0
        self.samples: list[ConfigSample] = []
        self.current: Configuration | None = None
        self.best: Configuration | None = None
        self._configurator: Any = None
        self._space: SearchSpace | None = None
        # per tick: (latency_s, cost_usd, arrivals, {function: mean service s})
        self._window: list[tuple[float, float, int, dict[str, float]]] = []
        self.last_reason = ""
        self._episode_reason = ""

    # -- helpers -------------------------------------------------------------------------
    def _workflow(self, obs: Observation) -> Workflow | None:
        if self.workflow_name:
            return obs.workflows.get(self.workflow_name)
        return next(iter(obs.workflows.values()), None)

    def _ensure_configurator(self, workflow: Workflow) -> None:
        if self._configurator is not None:
            return
        self._space = SearchSpace.for_functions(
            workflow.functions,
            machine_cores=self.machine_cores,
            memory_need_mb=dict.fromkeys(workflow.functions, self.memory_floor_mb),
        )
        self._configurator = make_configurator(
            self.method,
            self._space,
            [qos_constraint(workflow.qos.target_s, workflow.qos.percentile)],
            seed=self.seed + 7919 * self.episode,
            workflow=workflow,
        )

    def _decision(self, config: Configuration, reason: str) -> Decision:
        self.last_reason = reason
        return Decision(
            functions={
                name: FunctionDecision(limits=cfg.to_limits(), reason=reason)
                for name, cfg in config.items()
            },
            reason=reason,
        )

    def _close_trial(self, workflow: Workflow) -> ConfigSample | None:
        lat = [w[0] for w in self._window if math.isfinite(w[0])]
        invocations = sum(w[2] for w in self._window)
        if not lat or invocations < self.min_invocations or self.current is None:
            return None
        pct = self.percentile if self.percentile is not None else workflow.qos.percentile
        stage: dict[str, float] = {}
        for f in workflow.functions:
            values = [w[3][f] for w in self._window if f in w[3]]
            if values:
                stage[f] = max(float(np.percentile(values, pct)), 1e-6)
        measurement = Measurement(
            cost_usd=sum(w[1] for w in self._window) / invocations,
            latency_s=max(float(np.percentile(lat, pct)), 1e-6),
            noise_s=float(np.std(lat) / math.sqrt(len(lat))),
            requests=invocations,
            detail="online",
            stage_latency_s=stage if len(stage) == len(workflow.functions) else {},
        )
        return ConfigSample(self.current, measurement, source="online")

    def _start_episode(self, reason: str) -> str:
        self.phase = "tuning"
        self.episode += 1 if self.samples or self.best is not None else 0
        self.samples = []
        self._configurator = None
        self._window = []
        self.rate_detector.reset()
        self.latency_detector.reset()
        self.current = None
        self._episode_reason = reason
        return reason

    # -- the policy ----------------------------------------------------------------------
    def decide(self, observation: Observation) -> Decision:
        """Apply the configuration under trial (tuning) or the best one (steady)."""
        workflow = self._workflow(observation)
        if workflow is None:
            return Decision.decline("no workflow with a QoS target observed")
        missing = [f for f in workflow.functions if f not in observation.functions]
        if missing:
            return Decision.decline(f"functions not deployed: {', '.join(missing)}")
        self._ensure_configurator(workflow)
        fobs = observation.functions
        service: dict[str, float] = {}
        for f in workflow.functions:
            mean_s = fobs[f].mean_service_s
            if mean_s:
                service[f] = float(mean_s)
        latency = _critical_path_s(workflow, service)
        roots = {s.function for s in workflow.stages if not s.after}
        arrivals = max((fobs[f].arrivals for f in roots), default=0)
        cost = 0.0
        for f in workflow.functions:
            o = fobs[f]
            cpu = o.limits.cpu_cores if o.limits.cpu_cores is not None else 1.0
            mem = o.limits.memory_mb if o.limits.memory_mb is not None else 128
            cost += (
                (o.replicas_ready + o.replicas_starting)
                * decoupled_usd_per_s(cpu, mem)
                * observation.tick_s
            )

        if self.phase == "steady":
            assert self.best is not None
            rate = arrivals / observation.tick_s
            drift_rate = self.rate_detector.update(math.log1p(rate))
            drift_lat = latency is not None and self.latency_detector.update(math.log(latency))
            if drift_rate or drift_lat:
                what = "load" if drift_rate else "latency"
                self._start_episode(f"{what} drift detected: re-tuning")
                self._ensure_configurator(workflow)
            else:
                return self._decision(self.best, f"steady at the best feasible ({self.best})")

        if self.current is None:
            first = self._configurator.propose(self.samples)
            self.current = first if first is not None else self._space.all_max()  # type: ignore[union-attr]
            self._window = []
            why = f"{self._episode_reason}; " if self._episode_reason else ""
            return self._decision(self.current, f"{why}tuning episode {self.episode}: first trial")

        self._window.append(
            (latency if latency is not None else math.nan, cost, arrivals, dict(service))
        )
        if len(self._window) < self.trial_ticks:
            return self._decision(
                self.current,
                f"trial {len(self.samples) + 1}/{self.budget}: observing "
                f"({len(self._window)}/{self.trial_ticks} ticks)",
            )
        sample = self._close_trial(workflow)
        self._window = []
        if sample is None:  # too little traffic: keep observing the same configuration
            return self._decision(self.current, "trial extended: too few invocations")
        self.samples.append(sample)
        nxt = None
        if len(self.samples) < self.budget:
            nxt = self._configurator.propose(self.samples)
        if nxt is None:
            best = best_feasible(self.samples, self._configurator.constraints)
            self.best = best.config if best is not None else self._space.all_max()  # type: ignore[union-attr]
            self.current = self.best
            self.phase = "steady"
            why = getattr(self._configurator, "stop_reason", "") or "budget used"
            return self._decision(
                self.best, f"tuning done after {len(self.samples)} trials ({why}); keeping best"
            )
        self.current = nxt
        return self._decision(nxt, f"trial {len(self.samples) + 1}/{self.budget}: {nxt}")

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
                "source": s.source,
            }

        return {
            "phase": self.phase,
            "episode": self.episode,
            "samples": [sample_json(s) for s in self.samples],
            "current": self.current.to_json() if self.current else None,
            "best": self.best.to_json() if self.best else None,
            "rate_detector": self.rate_detector.state_dict(),
            "latency_detector": self.latency_detector.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.phase = str(state.get("phase", "tuning"))
        self.episode = int(state.get("episode", 0))
        self.samples = [
            ConfigSample(
                Configuration.from_json(s["config"]),
                Measurement(
                    s["cost_usd"], s["latency_s"], s["noise_s"], s["failed"], s["requests"]
                ),
                source=s.get("source", "online"),
            )
            for s in state.get("samples", [])
        ]
        cur, best = state.get("current"), state.get("best")
        self.current = Configuration.from_json(cur) if cur else None
        self.best = Configuration.from_json(best) if best else None
        self.rate_detector.load_state_dict(dict(state.get("rate_detector", {})))
        self.latency_detector.load_state_dict(dict(state.get("latency_detector", {})))
        self._configurator = None
        self._window = []
