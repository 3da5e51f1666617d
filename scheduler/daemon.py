"""The scheduler daemon: every tick, observe → decide → actuate → log, and persist state.

One :class:`Daemon` drives one :class:`~scheduler.policy.Policy` against one
:class:`~testbed.core.platform.Platform`. Time comes only from the injected clock, so the same
loop runs live (``WallClock``, ``aquatope scheduler run``) and inside the simulator, which
calls :meth:`Daemon.tick` directly under a ``SimClock`` (``tick`` never sleeps).

Robustness:

* **restart**: the policy's ``state_dict()`` and the observer's counters are written
  atomically to ``state_path`` (every ``save_every`` ticks) and loaded back on start;
* **platform errors**: a tick whose observation fails is logged as an invalid decision and
  the run loop backs off exponentially (``tick_s · 2^(k-1)``, at most ``max_backoff_s``)
  before the next try; a failed scale or limit call is recorded on its action and retried
  by the next tick's diff;
* **promised replicas**: the actuator re-asserts each tick's targets, so a replica that died
  is asked for again.

Every tick appends one line to ``decisions_path`` (``docs/results.md``)::

    {"t_s", "policy", "valid", "reason", "decide_s",
     "functions": {name: {"replicas", "cpu_cores", "memory_mb", "reason"}}, "actions": [...]}

``functions`` lists the functions whose decision changed since the previous line (every
function on the first line after a start; every function on every line with
``log_every_decision``, whose reasons then say what the policy saw at each tick); ``t_s``
is relative to ``t0_s``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scheduler.actuate import Action, actuate
from scheduler.clock import Clock
from scheduler.observe import Observer
from scheduler.policy import Decision, FunctionDecision, Policy
from testbed.core.atomic import atomic_write_json
from testbed.core.errors import ConfigError, PlatformError
from testbed.core.platform import Platform, Workflow

__all__ = ["Daemon"]

log = logging.getLogger(__name__)

STATE_VERSION = 1


def _fd_json(fd: FunctionDecision) -> dict[str, Any]:
    limits = fd.limits
    return {
        "replicas": fd.replicas,
        "cpu_cores": None if limits is None else limits.cpu_cores,
        "memory_mb": None if limits is None else limits.memory_mb,
        "reason": fd.reason,
    }


class Daemon:
    """Runs a policy against a platform, one tick at a time.

    Args:
        platform: the platform to observe and actuate.
        policy: the decision logic.
        clock: time source (``WallClock`` live, ``SimClock`` in the simulator and tests).
        tick_s: seconds between ticks.
        workflows: workflow DAGs handed to the policy in every observation.
        state_path: JSON file for the policy's and observer's state; loaded when it exists.
        decisions_path: JSON-lines decision log (appended to).
        policy_name: name written into the log and the state (default ``policy.name``).
        t0_s: clock time that ``t_s`` in the log is relative to (default: the first start's
            time, kept across restarts through the state file).
        save_every: persist the state every this many ticks.
        max_backoff_s: longest wait between retries after platform errors.

    Raises:
        ConfigError: ``state_path`` is unreadable, or holds another policy's state.
    """

    def __init__(
        self,
        platform: Platform,
        policy: Policy,
        *,
        clock: Clock,
        tick_s: float = 1.0,
        workflows: Mapping[str, Workflow] | None = None,
        state_path: str | Path | None = None,
        decisions_path: str | Path | None = None,
        policy_name: str | None = None,
        t0_s: float | None = None,
        save_every: int = 1,
        max_backoff_s: float = 30.0,
        log_every_decision: bool = False,
    ) -> None:
        if not tick_s > 0:
            raise ValueError(f"tick_s must be positive, got {tick_s}")
        if save_every < 1:
            raise ValueError(f"save_every must be >= 1, got {save_every}")
        self.platform = platform
        self.policy = policy
        self.clock = clock
        self.tick_s = float(tick_s)
        self.policy_name = policy_name or policy.name or type(policy).__name__
        self.state_path = Path(state_path) if state_path else None
        self.decisions_path = Path(decisions_path) if decisions_path else None
        self.save_every = save_every
        self.log_every_decision = log_every_decision
        self.max_backoff_s = float(max_backoff_s)
        self.observer = Observer(tick_s=tick_s, workflows=workflows)
        self.ticks = 0
        self.failures = 0  # consecutive ticks whose observation failed
        self.resumed = False
        self._last_logged: dict[str, dict[str, Any]] = {}
        self.t0_s = t0_s
        if self.state_path is not None and self.state_path.exists():
            self._load_state(self.state_path)
        if self.t0_s is None:
            self.t0_s = clock.now()

    # -- state -----------------------------------------------------------------------------

    def _load_state(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable scheduler state: {exc}") from None
        saved = state.get("policy")
        if saved != self.policy_name:
            raise ConfigError(
                f"{path}: field 'policy' is {saved!r}, but this daemon runs "
                f"{self.policy_name!r}; use another --state file"
            )
        try:
            self.policy.load_state_dict(state.get("policy_state", {}))
            self.observer.load_state_dict(state.get("observer", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: field 'policy_state' does not load: {exc!r}") from None
        self.ticks = int(state.get("ticks", 0))
        if self.t0_s is None and state.get("t0_s") is not None:
            self.t0_s = float(state["t0_s"])
        self.resumed = True
        log.info("resumed %s from %s after %d ticks", self.policy_name, path, self.ticks)

    def save_state(self) -> None:
        """Write the policy's and observer's state to ``state_path`` (atomically)."""
        if self.state_path is None:
            return
        atomic_write_json(
            self.state_path,
            {
                "version": STATE_VERSION,
                "policy": self.policy_name,
                "t0_s": self.t0_s,
                "ticks": self.ticks,
                "saved_s": self.clock.now(),
                "policy_state": self.policy.state_dict(),
                "observer": self.observer.state_dict(),
            },
        )

    # -- one tick --------------------------------------------------------------------------

    @property
    def backoff_s(self) -> float:
        """Delay before the next tick: ``tick_s``, or the exponential back-off after failures."""
        if self.failures == 0:
            return self.tick_s
        return min(self.max_backoff_s, self.tick_s * float(2 ** (self.failures - 1)))

    def tick(self) -> Decision:
        """Observe, decide, actuate and log once. Never sleeps; never raises PlatformError.

        Returns:
            The policy's decision (an invalid one when observing or deciding failed).
        """
        now_s = self.clock.now()
        try:
            snapshot = self.platform.metrics()
            listed = self.platform.list()
        except PlatformError as exc:
            self.failures += 1
            log.warning(
                "observe failed (%d in a row), retrying in %.1fs: %s",
                self.failures,
                self.backoff_s,
                exc,
            )
            decision = Decision.decline(f"observe failed: {exc}")
            self._log(now_s, decision, 0.0, [])
            return decision
        self.failures = 0
        observation = self.observer.update(snapshot, listed, now_s)
        statuses = {status.name: status for status in listed}
        started = time.perf_counter()  # measures the policy; not used for any decision
        try:
            decision = self.policy.decide(observation)
        except Exception as exc:  # a policy bug must not kill the daemon: log it, decline
            log.exception("policy %s failed at t=%.1f", self.policy_name, now_s)
            decision = Decision.decline(f"policy error: {exc!r}")
        decide_s = time.perf_counter() - started
        actions = actuate(self.platform, decision, statuses)
        self._log(now_s, decision, decide_s, actions)
        self.ticks += 1
        if self.ticks % self.save_every == 0:
            self.save_state()
        return decision

    def _log(
        self, now_s: float, decision: Decision, decide_s: float, actions: list[Action]
    ) -> None:
        if self.decisions_path is None:
            return
        changed: dict[str, dict[str, Any]] = {}
        for name, fd in decision.functions.items():
            entry = _fd_json(fd)
            key = {k: v for k, v in entry.items() if k != "reason"}
            if self.log_every_decision or self._last_logged.get(name) != key:
                changed[name] = entry
                self._last_logged[name] = key
        line = {
            "t_s": round(now_s - (self.t0_s or 0.0), 6),
            "policy": self.policy_name,
            "valid": decision.valid,
            "reason": decision.reason,
            "decide_s": decide_s,
            "functions": changed,
            "actions": [a.to_json() for a in actions],
        }
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        try:
            handle = os.open(self.decisions_path, flags, 0o644)
        except FileNotFoundError:  # the first line, or its directory was removed meanwhile
            self.decisions_path.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(self.decisions_path, flags, 0o644)
        try:
            os.write(handle, data)  # one write per line: a kill never interleaves half lines
        finally:
            os.close(handle)

    # -- loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event, until_s: float | None = None) -> int:
        """Tick every ``tick_s`` (backing off after failures) until ``stop`` is set.

        Args:
            stop: set it (e.g. from a signal handler) to end the loop after the current tick.
            until_s: optional clock time at which to stop.

        Returns:
            The number of ticks run.
        """
        count = 0
        next_s = self.clock.now()
        while not stop.is_set():
            if until_s is not None and next_s > until_s:
                break
            if not self.clock.sleep_until(next_s, stop):
                break
            try:
                self.tick()
            except Exception:  # one bad tick (e.g. a full disk) is logged, the loop goes on
                self.failures += 1
                log.exception("tick failed at %.1f", self.clock.now())
            count += 1
            next_s += self.backoff_s
            now_s = self.clock.now()
            if next_s < now_s:  # fell behind: skip the missed ticks instead of bunching them
                next_s = now_s
        self.save_state()
        return count
