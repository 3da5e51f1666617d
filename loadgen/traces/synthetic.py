"""Seeded synthetic traces in the Azure 2019 per-minute layout.

Kinds:

- ``bursty``: each function is an on/off Markov-modulated Poisson process (exponential
  on and off periods; Poisson arrivals at a high rate while on, a low one while off).
- ``diurnal``: Poisson arrivals with a sinusoidal daily cycle.
- ``flash-crowd``: a steady rate, then a sudden surge that decays exponentially.
- ``timers``: strictly periodic timer triggers, each function with its own period (whole
  minutes) and phase, firing ``calls_per_fire`` calls each time.
- ``poisson``: memoryless arrivals at a constant rate: nothing in a function's own past says
  when its next call comes (sparse workflow requests: only the workflow's DAG tells which
  stage is called next).
- ``azure-like``: many functions grouped into applications, matching the published shape
  of the Azure Functions 2019 trace (Shahrad et al., ATC'20): heavy-tailed rates over ~8
  orders of magnitude, ~45% of applications invoked at most once per hour and ~81% at most
  once per minute, the trigger mix by share of functions and of invocations, the
  functions-per-application distribution, strictly periodic timers, a diurnal (and weekly)
  cycle, bursts, and about half of the functions running under a second on average.

All generators return :class:`~loadgen.traces.counts.MinuteCounts`; write them with
:func:`loadgen.traces.azure2019.write_azure2019`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from loadgen.trace import FunctionInfo
from loadgen.traces.counts import MinuteCounts
from testbed.core.errors import ConfigError

__all__ = [
    "AZURE_APP_SIZES",
    "AZURE_TRIGGER_SHARES",
    "KINDS",
    "AzureLikeParams",
    "synthesize",
]

# trigger -> (share of functions, share of invocations), Shahrad et al. ATC'20, Fig. 2
AZURE_TRIGGER_SHARES: dict[str, tuple[float, float]] = {
    "http": (0.55, 0.36),
    "queue": (0.15, 0.34),
    "event": (0.02, 0.25),
    "timer": (0.16, 0.02),
    "orchestration": (0.07, 0.02),
    "others": (0.05, 0.01),
}
# functions per application: (low, high) inclusive -> share of applications
AZURE_APP_SIZES: tuple[tuple[int, int, float], ...] = (
    (1, 1, 0.54),
    (2, 2, 0.16),
    (3, 3, 0.10),
    (4, 5, 0.08),
    (6, 10, 0.07),
    (11, 30, 0.05),
)


@dataclass(frozen=True)
class AzureLikeParams:
    """Knobs of the ``azure-like`` generator (defaults reproduce the published facts).

    Attributes:
        log10_rate_mean, log10_rate_sd: per-application mean rate, in log10(invocations
            per minute), drawn from a normal clipped to [log10_rate_min, log10_rate_max].
            P(rate <= 1/60) ~ 0.45 and P(rate <= 1) ~ 0.81 with the defaults.
        diurnal_amplitude: (low, high) range of each function's daily amplitude.
        weekend_factor: rate multiplier on days 6 and 7 of each week.
        bursty_share: share of non-timer functions modulated on/off.
        duration_median_s, duration_log_sd: lognormal mean execution time per function.
    """

    log10_rate_mean: float = -1.556
    log10_rate_sd: float = 1.772
    log10_rate_min: float = -5.0
    log10_rate_max: float = 3.0
    diurnal_amplitude: tuple[float, float] = (0.2, 0.7)
    weekend_factor: float = 0.7
    bursty_share: float = 0.3
    duration_median_s: float = 1.0
    duration_log_sd: float = 1.5


def _hash(rng: np.random.Generator) -> str:
    return bytes(rng.integers(0, 256, size=32, dtype=np.uint8)).hex()


def _on_fraction(
    rng: np.random.Generator, minutes: int, on_min: float, off_min: float
) -> np.ndarray:
    """Fraction of each minute spent 'on' by an alternating exponential on/off process."""
    edges = [0.0]
    state_on = [bool(rng.random() < on_min / (on_min + off_min))]
    while edges[-1] < minutes:
        edges.append(edges[-1] + rng.exponential(on_min if state_on[-1] else off_min))
        state_on.append(not state_on[-1])
    edges_arr = np.asarray(edges)
    # cumulative on-time at each switch, then interpolate at minute boundaries
    seg = np.diff(edges_arr) * np.asarray(state_on[:-1], dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    grid = np.arange(minutes + 1, dtype=np.float64)
    on_cum = np.interp(grid, edges_arr, cum)
    out: np.ndarray = np.clip(np.diff(on_cum), 0.0, 1.0)
    return out


def _diurnal(minutes: int, amplitude: float, peak_minute: float, period_min: float) -> np.ndarray:
    t = np.arange(minutes, dtype=np.float64) + 0.5
    return 1.0 + amplitude * np.cos(2 * math.pi * (t - peak_minute) / period_min)


def _names(
    rng: np.random.Generator, n: int, trigger: str
) -> tuple[list[str], dict[str, FunctionInfo]]:
    names = [_hash(rng) for _ in range(n)]
    owner = _hash(rng)
    app = _hash(rng)
    return names, {n_: FunctionInfo(owner=owner, app=app, trigger=trigger) for n_ in names}


def bursty(
    functions: int,
    minutes: int,
    seed: int,
    *,
    rate_per_min: float = 60.0,
    on_min: float = 5.0,
    off_min: float = 15.0,
    off_rate_ratio: float = 0.0,
) -> MinuteCounts:
    """On/off MMPP per function, mean rate ``rate_per_min``.

    While on the rate is ``rate_per_min / (p_on + off_rate_ratio * (1 - p_on))`` with
    ``p_on = on_min / (on_min + off_min)``; while off it is ``off_rate_ratio`` times that.
    """
    if on_min <= 0 or off_min <= 0 or not 0 <= off_rate_ratio <= 1:
        raise ConfigError("bursty: on_min and off_min must be > 0, off_rate_ratio in [0, 1]")
    rng = np.random.default_rng(seed)
    p_on = on_min / (on_min + off_min)
    high = rate_per_min / (p_on + off_rate_ratio * (1 - p_on))
    names, info = _names(rng, functions, "http")
    rows = []
    for _ in range(functions):
        on = _on_fraction(rng, minutes, on_min, off_min)
        rows.append(rng.poisson(high * (on + off_rate_ratio * (1 - on))))
    return MinuteCounts(
        tuple(names), np.asarray(rows, dtype=np.int64), info, f"bursty(seed={seed})"
    )


def diurnal(
    functions: int,
    minutes: int,
    seed: int,
    *,
    rate_per_min: float = 60.0,
    amplitude: float = 0.6,
    period_min: float = 1440.0,
    peak_minute: float = 840.0,
) -> MinuteCounts:
    """Poisson arrivals at ``rate_per_min * (1 + amplitude * cos(2π (t - peak) / period))``."""
    if not 0 <= amplitude <= 1 or period_min <= 0:
        raise ConfigError("diurnal: amplitude must be in [0, 1] and period_min > 0")
    rng = np.random.default_rng(seed)
    names, info = _names(rng, functions, "http")
    lam = rate_per_min * _diurnal(minutes, amplitude, peak_minute, period_min)
    counts = rng.poisson(np.broadcast_to(lam, (functions, minutes)))
    return MinuteCounts(tuple(names), counts.astype(np.int64), info, f"diurnal(seed={seed})")


def flash_crowd(
    functions: int,
    minutes: int,
    seed: int,
    *,
    rate_per_min: float = 60.0,
    surge: float = 10.0,
    start_minute: int | None = None,
    decay_min: float | None = None,
) -> MinuteCounts:
    """Steady Poisson rate, then at ``start_minute`` a jump to ``surge`` times the rate that
    decays back exponentially with time constant ``decay_min``."""
    if surge < 1:
        raise ConfigError("flash-crowd: surge must be >= 1")
    rng = np.random.default_rng(seed)
    start = minutes // 3 if start_minute is None else start_minute
    tau = max(1.0, minutes / 10) if decay_min is None else decay_min
    t = np.arange(minutes, dtype=np.float64)
    boost = np.where(t >= start, (surge - 1) * np.exp(-(t - start) / tau), 0.0)
    lam = rate_per_min * (1.0 + boost)
    names, info = _names(rng, functions, "http")
    counts = rng.poisson(np.broadcast_to(lam, (functions, minutes)))
    return MinuteCounts(tuple(names), counts.astype(np.int64), info, f"flash-crowd(seed={seed})")


def timers(
    functions: int,
    minutes: int,
    seed: int,
    *,
    period_min: tuple[int, int] = (2, 10),
    calls_per_fire: int = 1,
) -> MinuteCounts:
    """Periodic timers: function i fires ``calls_per_fire`` calls every ``p_i`` minutes from
    a phase in ``[0, p_i)``, ``p_i`` drawn uniformly from the inclusive ``period_min`` range."""
    low, high = period_min
    if not 1 <= low <= high or calls_per_fire < 1:
        raise ConfigError("timers: need 1 <= period_min[0] <= period_min[1], calls_per_fire >= 1")
    rng = np.random.default_rng(seed)
    names, info = _names(rng, functions, "timer")
    counts = np.zeros((functions, minutes), dtype=np.int64)
    for i in range(functions):
        period = int(rng.integers(low, high + 1))
        phase = int(rng.integers(0, period))
        counts[i, phase::period] = calls_per_fire
    return MinuteCounts(tuple(names), counts, info, f"timers(seed={seed})")


def poisson(functions: int, minutes: int, seed: int, *, rate_per_min: float = 1.0) -> MinuteCounts:
    """Homogeneous Poisson arrivals at ``rate_per_min`` per function (memoryless)."""
    if not 0 < rate_per_min < math.inf:
        raise ConfigError(f"poisson: rate_per_min must be > 0 and finite, got {rate_per_min}")
    rng = np.random.default_rng(seed)
    names, info = _names(rng, functions, "http")
    counts = rng.poisson(rate_per_min, size=(functions, minutes))
    return MinuteCounts(tuple(names), counts.astype(np.int64), info, f"poisson(seed={seed})")


def _app_sizes(rng: np.random.Generator, functions: int) -> list[int]:
    shares = np.array([s for _, _, s in AZURE_APP_SIZES])
    sizes: list[int] = []
    while sum(sizes) < functions:
        lo, hi, _ = AZURE_APP_SIZES[int(rng.choice(len(shares), p=shares / shares.sum()))]
        sizes.append(int(rng.integers(lo, hi + 1)))
    sizes[-1] -= sum(sizes) - functions
    return sizes


def _assign_triggers(rng: np.random.Generator, rates: np.ndarray) -> list[str]:
    """Give triggers to functions so both the function and the invocation shares match.

    Quotas fix the count per trigger (function shares); walking functions from the busiest
    down, each takes the trigger with open quota that is furthest below its invocation
    share (ties broken at random).
    """
    names = list(AZURE_TRIGGER_SHARES)
    n = rates.size
    f_share = np.array([AZURE_TRIGGER_SHARES[t][0] for t in names])
    i_share = np.array([AZURE_TRIGGER_SHARES[t][1] for t in names])
    quota = np.floor(f_share / f_share.sum() * n).astype(np.int64)
    rest = n - int(quota.sum())
    if rest:
        frac = f_share / f_share.sum() * n - quota
        quota[np.argsort(-frac + rng.random(len(names)) * 1e-9)[:rest]] += 1
    total = float(rates.sum())
    got = np.zeros(len(names))
    out = [""] * n
    for i in np.argsort(-rates, kind="stable"):
        deficit = i_share * total - got + rng.random(len(names)) * 1e-12
        deficit[quota == 0] = -np.inf
        k = int(np.argmax(deficit))
        quota[k] -= 1
        got[k] += rates[i]
        out[i] = names[k]
    return out


def azure_like(
    functions: int,
    minutes: int,
    seed: int,
    *,
    params: AzureLikeParams | None = None,
) -> MinuteCounts:
    """Many functions with the shape of the Azure Functions 2019 trace (see module doc)."""
    p = params or AzureLikeParams()
    rng = np.random.default_rng(seed)
    sizes = _app_sizes(rng, functions)
    app_log_rate = np.clip(
        rng.normal(p.log10_rate_mean, p.log10_rate_sd, size=len(sizes)),
        p.log10_rate_min,
        p.log10_rate_max,
    )
    rates = np.empty(functions)
    app_of = np.repeat(np.arange(len(sizes)), sizes)
    pos = 0
    for a, size in enumerate(sizes):
        weights = rng.dirichlet(np.full(size, 0.5)) if size > 1 else np.ones(1)
        rates[pos : pos + size] = 10.0 ** app_log_rate[a] * weights
        pos += size
    triggers = _assign_triggers(rng, rates)
    owners = [_hash(rng) for _ in sizes]
    apps = [_hash(rng) for _ in sizes]
    memory = np.exp(rng.normal(math.log(150.0), 0.6, size=len(sizes)))
    durations = np.exp(rng.normal(math.log(p.duration_median_s), p.duration_log_sd, functions))
    day_peak = 840.0 + rng.normal(0, 60)
    t = np.arange(minutes, dtype=np.float64)
    weekend = np.where(((t // 1440) % 7) >= 5, p.weekend_factor, 1.0)
    counts = np.zeros((functions, minutes), dtype=np.int64)
    names: list[str] = []
    info: dict[str, FunctionInfo] = {}
    for i in range(functions):
        name = _hash(rng)
        names.append(name)
        a = int(app_of[i])
        info[name] = FunctionInfo(
            owner=owners[a],
            app=apps[a],
            trigger=triggers[i],
            avg_duration_s=float(durations[i]),
            memory_mb=float(memory[a]),
        )
        if triggers[i] == "timer":
            period_s = max(1.0, round(60.0 / rates[i]))
            phase = rng.random() * period_s
            n_fire = int((minutes * 60.0 - phase) // period_s) + 1 if phase < minutes * 60 else 0
            fire_min = ((phase + period_s * np.arange(n_fire)) // 60).astype(np.int64)
            counts[i] = np.bincount(fire_min[fire_min < minutes], minlength=minutes)
            continue
        amp = rng.uniform(*p.diurnal_amplitude)
        lam = rates[i] * _diurnal(minutes, amp, day_peak + rng.normal(0, 90), 1440.0) * weekend
        if rng.random() < p.bursty_share:
            on_min, off_min = rng.uniform(2, 20), rng.uniform(5, 60)
            p_on = on_min / (on_min + off_min)
            lam = lam * _on_fraction(rng, minutes, on_min, off_min) / p_on
        counts[i] = rng.poisson(lam)
    return MinuteCounts(tuple(names), counts, info, f"azure-like(seed={seed})")


KINDS: dict[str, Callable[..., MinuteCounts]] = {
    "bursty": bursty,
    "diurnal": diurnal,
    "flash-crowd": flash_crowd,
    "azure-like": azure_like,
    "timers": timers,
    "poisson": poisson,
}


def synthesize(
    kind: str, *, functions: int, minutes: int, seed: int, **options: object
) -> MinuteCounts:
    """Generate a synthetic trace.

    Args:
        kind: one of :data:`KINDS` (``bursty``, ``diurnal``, ``flash-crowd``, ``azure-like``,
            ``timers``, ``poisson``).
        functions: number of functions (>= 1).
        minutes: length in minutes (>= 1).
        seed: random seed; the same arguments give the same counts.
        **options: the generator's keyword options (e.g. ``rate_per_min``).

    Returns:
        Per-minute counts in the Azure 2019 layout.

    Raises:
        ConfigError: unknown kind or bad sizes.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown trace kind {kind!r}; one of {', '.join(KINDS)}")
    if functions < 1 or minutes < 1:
        raise ConfigError(f"functions and minutes must be >= 1, got {functions}, {minutes}")
    return KINDS[kind](functions, minutes, seed, **options)
