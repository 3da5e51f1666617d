"""Hybrid Histogram policy of Shahrad et al., "Serverless in the Wild" (USENIX ATC'20, §4.2).

Per function, the policy learns the distribution of *idle times* (IT: from the end of one
period of activity to the next request) and derives two windows, both measured from the end
of the last execution:

* **range-limited histogram** (default): 1-minute bins over a 4-hour range (240 bins).
  Pre-warm window = the 5th-percentile bin (its lower edge) minus a 10 % margin; the
  replica is unloaded right after an execution and loaded again when the pre-warm window
  ends. Keep-alive window ends at the 99th-percentile bin (its upper edge) plus a 10 %
  margin. A 5th percentile in the first bin means "no pre-warm": the replica stays loaded
  after the execution until the keep-alive window ends.
* **standard keep-alive** when the histogram is not representative: fewer than
  ``min_idle_times`` in-range ITs, or a coefficient of variation of the bin counts below
  ``cv_threshold`` (2, as in the paper's implementation): no pre-warm, keep alive for the
  whole range (4 h).
* **ARIMA** when out-of-bound ITs (longer than the range) make up at least ``oob_threshold``
  (0.5) of all ITs: an ARIMA model of the IT series predicts the next IT; pre-warm at the
  prediction minus 15 %, keep alive until the prediction plus 15 %. Fitted with statsmodels
  (imported only when needed) once per new IT.

Idle times are measured at tick resolution: a function is active in a tick when requests
arrived, completed or are in flight; the IT is the time from the end of its last active tick
to the end of the tick where it becomes active again.

**Per application**, as published: the paper's unit is the application (all its functions
are loaded and unloaded together). Here a workflow is an application: its functions share one
histogram, the application is active when any of them is, and every function's first replica
follows the application's windows. A function in no workflow is its own application
(``per_application=false`` makes every function its own).

**Per replica**: further replicas (started for concurrent requests) follow the same windows
measured from their *own* last use (:mod:`scheduler.policies.slots`), instead of holding the
peak pool for the whole keep-alive window.

**Training history**: ``history_arrivals`` (target name -> arrival times before the run, on
the platform clock; a workflow's times count for its application) pre-fills the histograms
with the gaps longer than one tick, so the policy need not spend its first hours in the
standard keep-alive fallback, like the days of history the paper's policy learns from.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.policies.keepalive import is_active
from scheduler.policies.slots import SlotTracker
from scheduler.policy import Decision, FunctionDecision, Observation, Policy
from scheduler.registry import register_policy

__all__ = ["HybridHistogramPolicy", "IdleTimeHistogram", "Windows", "arima_next"]


@dataclass(frozen=True)
class Windows:
    """The policy's windows for one function, in seconds after the end of the last execution.

    Args:
        mode: ``histogram``, ``fixed`` (not representative) or ``arima`` (out of bounds).
        prewarm_s: the replica is unloaded until this long after the last execution.
        keepalive_end_s: the replica is kept loaded until this long after the last execution.
    """

    mode: str
    prewarm_s: float
    keepalive_end_s: float

    @property
    def keepalive_s(self) -> float:
        """The paper's keep-alive window: loaded time after the pre-warm point."""
        return max(0.0, self.keepalive_end_s - self.prewarm_s)


def arima_next(series_min: Sequence[float], order: tuple[int, int, int] = (1, 0, 1)) -> float:
    """One-step ARIMA forecast of an idle-time series (minutes); falls back to the mean.

    Args:
        series_min: past idle times in minutes, oldest first (at least one).
        order: ARIMA (p, d, q).

    Returns:
        The predicted next idle time in minutes (>= 0).
    """
    values = [float(v) for v in series_min]
    if not values:
        raise ValueError("arima_next needs at least one idle time")
    mean = sum(values) / len(values)
    if len(values) < 5 or max(values) - min(values) < 1e-9:
        return mean
    try:
        from statsmodels.tsa.arima.model import ARIMA

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = ARIMA(values, order=order).fit()
            pred = float(fitted.forecast(1)[0])
    except (ValueError, ArithmeticError, IndexError, TypeError, RuntimeError):
        return mean
    if not math.isfinite(pred):
        return mean
    return max(0.0, pred)


class IdleTimeHistogram:
    """Range-limited histogram of idle times with incremental CV of the bin counts.

    Args:
        n_bins: number of bins (240 for 4 h of 1-minute bins).
        bin_s: bin width in seconds.
        history: how many raw ITs to keep for ARIMA.
    """

    def __init__(self, n_bins: int, bin_s: float, history: int = 200) -> None:
        self.n_bins = n_bins
        self.bin_s = bin_s
        self.history = history
        self.bins: dict[int, int] = {}
        self.count = 0  # in-range ITs
        self.oob = 0
        self.sumsq = 0  # sum of squared bin counts
        self.raw_min: list[float] = []

    def add(self, it_s: float) -> None:
        """Record one idle time (seconds)."""
        self.raw_min.append(it_s / 60.0)
        if len(self.raw_min) > self.history:
            del self.raw_min[: len(self.raw_min) - self.history]
        index = int(it_s // self.bin_s)
        if index >= self.n_bins:
            self.oob += 1
            return
        c = self.bins.get(index, 0)
        self.bins[index] = c + 1
        self.sumsq += 2 * c + 1
        self.count += 1

    @property
    def oob_rate(self) -> float:
        total = self.count + self.oob
        return self.oob / total if total else 0.0

    @property
    def cv(self) -> float:
        """Coefficient of variation of the bin counts (sample std / mean); 0 when empty."""
        if self.count == 0:
            return 0.0
        n = self.n_bins
        mean = self.count / n
        var = max(0.0, (self.sumsq - n * mean * mean) / (n - 1))
        return math.sqrt(var) / mean

    def percentile_bin(self, q: float) -> int:
        """Index of the first bin where the cumulative share reaches ``q`` (0..1)."""
        prefix = 0
        for index in sorted(self.bins):
            prefix += self.bins[index]
            if prefix >= q * self.count - 1e-9:
                return index
        return self.n_bins - 1

    def to_json(self) -> dict[str, Any]:
        return {
            "bins": {str(k): v for k, v in self.bins.items()},
            "oob": self.oob,
            "raw_min": list(self.raw_min),
        }

    def load_json(self, data: Mapping[str, Any]) -> None:
        self.bins = {int(k): int(v) for k, v in dict(data.get("bins", {})).items()}
        self.count = sum(self.bins.values())
        self.sumsq = sum(v * v for v in self.bins.values())
        self.oob = int(data.get("oob", 0))
        self.raw_min = [float(v) for v in data.get("raw_min", [])]


class _FnState:
    __slots__ = ("hist", "last_end_s", "was_active", "windows")

    def __init__(self, hist: IdleTimeHistogram) -> None:
        self.hist = hist
        self.last_end_s: float | None = None
        self.was_active = False
        self.windows: Windows | None = None


@register_policy("hybrid-histogram")
class HybridHistogramPolicy(Policy):
    """Shahrad et al. ATC'20 hybrid histogram: per-function pre-warm and keep-alive windows.

    Args:
        range_s: histogram range (paper: 4 h); also the fixed keep-alive when not representative.
        bin_s: bin width (paper: 1 minute).
        head_percentile: pre-warm percentile (paper: 5).
        tail_percentile: keep-alive percentile (paper: 99).
        margin: histogram margin (paper: 10 %): pre-warm shrinks, keep-alive grows by it.
        cv_threshold: minimum CV of the bin counts for a representative histogram (2).
        min_idle_times: minimum in-range ITs for a representative histogram.
        oob_threshold: share of out-of-bound ITs that switches to ARIMA (0.5).
        arima_margin: ARIMA margin (paper: 15 %).
        per_application: one histogram per workflow (the paper's application); false: per
            function.
        history_arrivals: training arrivals, target name -> times (s) before the run.
    """

    name = "hybrid-histogram"
    description = "Shahrad et al. ATC'20: idle-time histogram pre-warm/keep-alive, ARIMA fallback."

    def __init__(
        self,
        range_s: float = 4 * 3600.0,
        bin_s: float = 60.0,
        head_percentile: float = 5.0,
        tail_percentile: float = 99.0,
        margin: float = 0.10,
        cv_threshold: float = 2.0,
        min_idle_times: int = 5,
        oob_threshold: float = 0.5,
        arima_margin: float = 0.15,
        per_application: bool = True,
        history_arrivals: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        if not 0 < bin_s <= range_s:
            raise ValueError("hybrid-histogram: need 0 < bin_s <= range_s")
        if not 0 <= head_percentile < tail_percentile <= 100:
            raise ValueError("hybrid-histogram: need 0 <= head_percentile < tail_percentile <= 100")
        if not 0 <= margin < 1 or not 0 <= arima_margin < 1:
            raise ValueError("hybrid-histogram: margins must be in [0, 1)")
        if not 0 < oob_threshold <= 1:
            raise ValueError("hybrid-histogram: oob_threshold must be in (0, 1]")
        self.range_s = float(range_s)
        self.bin_s = float(bin_s)
        self.n_bins = max(1, round(range_s / bin_s))
        self.head_percentile = float(head_percentile)
        self.tail_percentile = float(tail_percentile)
        self.margin = float(margin)
        self.cv_threshold = float(cv_threshold)
        self.min_idle_times = int(min_idle_times)
        self.oob_threshold = float(oob_threshold)
        self.arima_margin = float(arima_margin)
        self.per_application = bool(per_application)
        self._history = {str(k): [float(t) for t in v] for k, v in (history_arrivals or {}).items()}
        self._fns: dict[str, _FnState] = {}  # per application (or function)
        self._app_of: dict[str, str] = {}
        self._slots = SlotTracker()

    def _new_state(self) -> _FnState:
        return _FnState(IdleTimeHistogram(self.n_bins, self.bin_s))

    def compute_windows(self, hist: IdleTimeHistogram) -> Windows:
        """The windows the paper's rules give for ``hist`` (pure; ARIMA fitted here)."""
        if hist.oob and hist.oob_rate >= self.oob_threshold:
            pred_s = arima_next(hist.raw_min) * 60.0
            return Windows(
                "arima", pred_s * (1 - self.arima_margin), pred_s * (1 + self.arima_margin)
            )
        if hist.count < max(1, self.min_idle_times) or hist.cv < self.cv_threshold:
            return Windows("fixed", 0.0, self.range_s)
        head = hist.percentile_bin(self.head_percentile / 100)
        tail = hist.percentile_bin(self.tail_percentile / 100)
        return Windows(
            "histogram",
            head * self.bin_s * (1 - self.margin),
            (tail + 1) * self.bin_s * (1 + self.margin),
        )

    def windows(self, name: str) -> Windows:
        """Current windows of application or function ``name`` (fixed when unknown)."""
        st = self._fns.get(self._app_of.get(name, name))
        if st is None:
            return Windows("fixed", 0.0, self.range_s)
        if st.windows is None:
            st.windows = self.compute_windows(st.hist)
        return st.windows

    def _apps(self, observation: Observation) -> dict[str, str]:
        """Function -> application: the first workflow (by name) that calls it, else itself."""
        app_of = {name: name for name in observation.functions}
        if self.per_application:
            for wf_name in sorted(observation.workflows, reverse=True):
                for fn in observation.workflows[wf_name].functions:
                    if fn in app_of:
                        app_of[fn] = wf_name
        return app_of

    def _train(self, observation: Observation, app_of: Mapping[str, str]) -> None:
        """Pre-fill the histograms from ``history_arrivals`` (once, on the first tick)."""
        per_app: dict[str, list[float]] = {}
        for key, times in self._history.items():
            wf = observation.workflows.get(key)
            names = wf.functions if wf is not None else (key,)
            for app in {app_of.get(n, n) for n in names}:
                per_app.setdefault(app, []).extend(t for t in times if t <= observation.now_s)
        for app, times in per_app.items():
            if not times:
                continue
            times.sort()
            st = self._fns.setdefault(app, self._new_state())
            for a, b in itertools.pairwise(times):
                if b - a > observation.tick_s:
                    st.hist.add(b - a)
            st.last_end_s = times[-1]
            st.windows = None
        self._history = {}

    def decide(self, observation: Observation) -> Decision:
        """Unload after an execution, pre-warm and keep alive per the learned windows."""
        now_s = observation.now_s
        app_of = self._apps(observation)
        self._app_of = app_of
        if self._history:
            self._train(observation, app_of)
        active_apps: set[str] = set()
        warm_apps: set[str] = set()
        for name, fn in observation.functions.items():
            if is_active(fn):
                active_apps.add(app_of[name])
            elif fn.replicas_ready + fn.replicas_starting > 0:
                warm_apps.add(app_of[name])
        for app in set(app_of.values()):
            st = self._fns.get(app)
            if st is None:
                st = self._fns[app] = self._new_state()
                if app in warm_apps and app not in active_apps:
                    st.last_end_s = now_s  # warm when first seen: the windows start now
            active = app in active_apps
            if active:
                if not st.was_active and st.last_end_s is not None:
                    st.hist.add(max(0.0, now_s - st.last_end_s))
                    st.windows = None
                st.last_end_s = now_s
            st.was_active = active
        out: dict[str, FunctionDecision] = {}
        for name, fn in observation.functions.items():
            app = app_of[name]
            st = self._fns[app]
            used = self._slots.observe(fn, now_s, observation.tick_s)
            win = self.windows(app)
            tag = (
                f"{win.mode}: pre-warm {win.prewarm_s:.0f}s, "
                f"keep-alive until {win.keepalive_end_s:.0f}s"
            )
            if st.last_end_s is None:
                out[name] = FunctionDecision(replicas=used, reason="never used")
                continue
            # replica 1 follows the application's last execution, replica k its own last use
            lasts = list(self._slots.last_use_s.get(name, ()))
            lasts = [max(st.last_end_s, lasts[0]) if lasts else st.last_end_s, *lasts[1:]]
            keep = sum(1 for t in lasts if win.prewarm_s <= now_s - t < win.keepalive_end_s)
            idle_s = now_s - st.last_end_s
            if app in active_apps:
                keep = 1 + sum(
                    1 for t in lasts[1:] if win.prewarm_s <= now_s - t < win.keepalive_end_s
                )
                state = "active"
            elif idle_s < win.prewarm_s:
                state = f"idle {idle_s:.0f}s"
            elif idle_s < win.keepalive_end_s:
                state = f"warm, idle {idle_s:.0f}s"
            else:
                state = f"expired, idle {idle_s:.0f}s"
            out[name] = FunctionDecision(
                replicas=max(keep, used), reason=f"{state}, {keep} replica(s); {tag}"
            )
        for gone in set(self._fns) - set(app_of.values()):
            del self._fns[gone]
        self._slots.forget_except(observation.functions)
        return Decision(functions=out, reason="hybrid histogram")

    def state_dict(self) -> dict[str, Any]:
        """Histograms, raw ITs, last execution end and activity flag per function."""
        return {
            "functions": {
                name: {
                    "hist": st.hist.to_json(),
                    "last_end_s": st.last_end_s,
                    "was_active": st.was_active,
                }
                for name, st in self._fns.items()
            },
            "slots": self._slots.state_dict(),
            "app_of": dict(self._app_of),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (windows are recomputed on demand)."""
        self._fns = {}
        for name, data in dict(state.get("functions", {})).items():
            st = self._new_state()
            st.hist.load_json(data.get("hist", {}))
            last = data.get("last_end_s")
            st.last_end_s = None if last is None else float(last)
            st.was_active = bool(data.get("was_active", False))
            self._fns[str(name)] = st
        self._slots.load_state_dict(state.get("slots", {}))
        self._app_of = {str(k): str(v) for k, v in dict(state.get("app_of", {})).items()}
        self._history = {}
