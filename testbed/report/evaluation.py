"""The evaluation's figures: per-trace tables with intervals, frontiers and the paper's claims.

Everything here is computed from run directories (``OUT/<trace>/<label>/seed-<n>``) through
the one metrics module, so a figure in docs/RESULTS.md can be regenerated from the raw
results alone. Training periods are the runs' ``warmup_s`` and never scored.

The two claims of the paper, as this project tests them on each trace:

* **QoS**: QoS violations of an Aquatope policy against the best non-Aquatope policy that
  costs no more (mean decoupled cost over seeds), as a ratio "× fewer" with a paired
  bootstrap interval over seeds (goal: ≥ 5).
* **Cost**: the decoupled cost of an Aquatope policy that meets the QoS (violation rate
  within ``100 - percentile`` %) against the cheapest non-Aquatope policy that meets it
  too, as a saving with a paired bootstrap interval (goal: ≥ 34 %).

Both compare means over seeds. Where the seeds' traces differ by orders of magnitude (a
heavy-tailed generator), the mean cost follows the heaviest seed and the mean violation rate
the others, so a point can look dominated on average while no seed has a baseline that is
both as cheap and as good; :func:`dominated_seeds` says per seed.

The oracles (family ``oracle`` and labelled variants ``oracle-*``) are bounds, never
competitors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from testbed.core.atomic import atomic_path, atomic_write_text
from testbed.report.compare import Estimate, t_interval
from testbed.report.frontier import area_between, envelope_at
from testbed.report.metrics import RunMetrics

__all__ = [
    "Claim",
    "EvaluationSummary",
    "PointSummary",
    "bootstrap_ratio",
    "claim_text",
    "dominance_text",
    "dominated_seeds",
    "format_estimate",
    "oracle_gaps",
    "summarise",
    "write_results_markdown",
]

ORACLE = "oracle"
COLUMNS: tuple[tuple[str, str, Callable[[RunMetrics], float]], ...] = (
    ("qos_violation_pct", "QoS viol. %", lambda m: 100.0 * m.qos_violation_rate),
    ("cold_start_pct", "cold %", lambda m: 100.0 * m.cold_start_rate),
    ("p99_ms", "p99 ms", lambda m: 1000.0 * m.latency_s["p99"]),
    ("cost_usd", "cost $", lambda m: m.cost.decoupled_usd),
    ("idle_replica_s", "idle replica·s", lambda m: m.cost.idle_replica_s),
)

DIGITS = {"p99_ms": 0, "idle_replica_s": 0, "cost_usd": 3}


def is_aquatope(family: str) -> bool:
    return family.startswith("aquatope")


def is_oracle(family: str) -> bool:
    """A bound (``oracle``, or a labelled variant such as ``oracle-qos``): never a competitor."""
    return family == ORACLE or family.startswith(f"{ORACLE}-")


def is_ablation(family: str) -> bool:
    """An Aquatope variant with one part switched off: shown, never a competitor or a claim."""
    return family.startswith("ablation")


def is_competitor(family: str) -> bool:
    """A baseline the claims are measured against (not Aquatope, an ablation or the oracle)."""
    return not (is_aquatope(family) or is_ablation(family) or is_oracle(family))


@dataclass(frozen=True)
class PointSummary:
    """One label on one trace: its metrics over seeds (per seed, and as t-intervals)."""

    label: str
    family: str
    knob: tuple[str, object] | None
    per_seed: Mapping[int, Mapping[str, float]]
    estimates: Mapping[str, Estimate]
    requests: int

    def mean(self, key: str) -> float:
        return self.estimates[key].mean


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims on one trace, measured."""

    trace: str
    kind: str  # "qos" or "cost"
    aquatope: str
    competitor: str | None
    value: float  # "× fewer" violations, or the cost saving as a fraction
    low: float
    high: float
    goal: float
    note: str = ""

    @property
    def met(self) -> bool:
        return self.value == self.value and self.low >= self.goal


@dataclass(frozen=True)
class EvaluationSummary:
    """Every trace's points and the claims measured on them."""

    traces: Mapping[str, tuple[PointSummary, ...]]
    claims: tuple[Claim, ...]
    qos_percentile: Mapping[str, float] = field(default_factory=dict)


def _summarise_points(
    runs: Sequence[RunMetrics], families: Mapping[str, str], knobs: Mapping[str, object]
) -> tuple[PointSummary, ...]:
    # the evaluation file's order (``families`` follows it), whatever version of the file
    # wrote the runs; labels it does not name follow, in the order their runs recorded
    rank = {label: i for i, label in enumerate(families)}
    groups: dict[str, list[RunMetrics]] = {}
    for run in sorted(runs, key=lambda r: (rank.get(r.label, len(rank)), r.order, r.seed)):
        groups.setdefault(run.label, []).append(run)
    points = []
    for label, members in groups.items():
        per_seed = {m.seed: {key: get(m) for key, _, get in COLUMNS} for m in members}
        estimates = {
            key: t_interval(values[key] for values in per_seed.values()) for key, _, _ in COLUMNS
        }
        knob = knobs.get(label)
        points.append(
            PointSummary(
                label=label,
                family=families.get(label, label),
                knob=knob if isinstance(knob, tuple) else None,
                per_seed=per_seed,
                estimates=estimates,
                requests=sum(m.requests for m in members),
            )
        )
    return tuple(points)


def bootstrap_ratio(
    numerator: Mapping[int, float],
    denominator: Mapping[int, float],
    *,
    resamples: int = 2000,
    seed: int = 0,
    floor: float = 0.0,
) -> tuple[float, float, float]:
    """Ratio of means over the seeds both have a value for, with a paired 95 % bootstrap
    interval.

    ``floor`` is added to both means (so a ratio of zero violations stays finite).

    Returns:
        ``(ratio, low, high)``; NaNs when no seed is shared.
    """
    # a seed without a value on either side (no scored request: NaN) says nothing
    seeds = sorted(
        s
        for s in set(numerator) & set(denominator)
        if numerator[s] == numerator[s] and denominator[s] == denominator[s]
    )
    if not seeds:
        return math.nan, math.nan, math.nan
    num = np.array([numerator[s] for s in seeds], dtype="float64")
    den = np.array([denominator[s] for s in seeds], dtype="float64")

    def ratio(n: np.ndarray, d: np.ndarray) -> np.ndarray:
        bottom = d + floor
        return np.where(bottom > 0, (n + floor) / np.where(bottom > 0, bottom, 1.0), np.inf)

    point = float(ratio(np.array(num.mean()), np.array(den.mean())))
    if len(seeds) < 2:
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(seeds), size=(resamples, len(seeds)))
    samples = ratio(num[picks].mean(axis=1), den[picks].mean(axis=1))
    low, high = np.percentile(samples, [2.5, 97.5])
    return point, float(low), float(high)


QOS_GOAL = 5.0  # the paper: 5x fewer QoS violations
COST_GOAL = 0.34  # the paper: 34 % lower cost


def _unmeasured(trace: str, kind: str, label: str, note: str) -> Claim:
    """A claim that cannot be measured on this trace, and why."""
    goal = QOS_GOAL if kind == "qos" else COST_GOAL
    return Claim(trace, kind, label, None, math.nan, math.nan, math.nan, goal, note=note)


def _qos_claims(trace: str, points: Sequence[PointSummary], floor: float) -> list[Claim]:
    competitors = [p for p in points if is_competitor(p.family)]
    claims = []
    for ours in (p for p in points if is_aquatope(p.family)):
        cost = ours.mean("cost_usd")
        affordable = [c for c in competitors if c.mean("cost_usd") <= cost * (1 + 1e-9)]
        if not affordable:
            note = "no non-Aquatope policy at or below its cost"
            claims.append(_unmeasured(trace, "qos", ours.label, note))
            continue
        best = min(affordable, key=lambda c: c.mean("qos_violation_pct"))
        value, low, high = bootstrap_ratio(
            {s: v["qos_violation_pct"] for s, v in best.per_seed.items()},
            {s: v["qos_violation_pct"] for s, v in ours.per_seed.items()},
            floor=floor,
        )
        claims.append(Claim(trace, "qos", ours.label, best.label, value, low, high, QOS_GOAL))
    return claims


def _cost_claims(trace: str, points: Sequence[PointSummary], allowed_pct: float) -> list[Claim]:
    meeting = [p for p in points if p.mean("qos_violation_pct") <= allowed_pct]
    competitors = [p for p in meeting if is_competitor(p.family)]
    claims = []
    for ours in (p for p in points if is_aquatope(p.family)):
        if ours not in meeting:
            note = f"misses the QoS ({ours.mean('qos_violation_pct'):.2f} % > {allowed_pct:g} %)"
            claims.append(_unmeasured(trace, "cost", ours.label, note))
            continue
        if not competitors:
            note = "no non-Aquatope policy meets the QoS"
            claims.append(_unmeasured(trace, "cost", ours.label, note))
            continue
        cheapest = min(competitors, key=lambda c: c.mean("cost_usd"))
        ratio, low, high = bootstrap_ratio(
            {s: v["cost_usd"] for s, v in ours.per_seed.items()},
            {s: v["cost_usd"] for s, v in cheapest.per_seed.items()},
        )
        # saving = 1 - ours/theirs; the interval flips
        claims.append(
            Claim(
                trace, "cost", ours.label, cheapest.label, 1 - ratio, 1 - high, 1 - low, COST_GOAL
            )
        )
    return claims


def _cost_and_violations(values: Mapping[str, float]) -> tuple[float, float] | None:
    """A seed's decoupled cost and violation rate; None when either is missing (NaN)."""
    cost, viol = values.get("cost_usd", math.nan), values.get("qos_violation_pct", math.nan)
    return None if cost != cost or viol != viol else (cost, viol)


def dominated_seeds(
    ours: PointSummary, points: Sequence[PointSummary]
) -> dict[int, tuple[str, ...]]:
    """Per seed of ``ours``, the competitors that dominate it on that seed: a decoupled cost
    no higher and a violation rate no higher, one of them lower (a seed is missing when no
    competitor does; a seed without a value on either side says nothing)."""
    out: dict[int, tuple[str, ...]] = {}
    for seed, values in ours.per_seed.items():
        mine = _cost_and_violations(values)
        if mine is None:
            continue
        cost, viol = mine
        better = []
        for p in points:
            theirs = _cost_and_violations(p.per_seed.get(seed, {}))
            if not is_competitor(p.family) or theirs is None:
                continue
            c, v = theirs
            no_worse = c <= cost * (1 + 1e-9) and v <= viol + 1e-9
            if no_worse and (c < cost * (1 - 1e-9) or v < viol - 1e-9):
                better.append(p.label)
        if better:
            out[seed] = tuple(better)
    return out


def dominance_text(ours: PointSummary, points: Sequence[PointSummary]) -> str:
    """:func:`dominated_seeds` as one cell: ``k of n (seed s: a, b; ...)`` or ``none of n``,
    of the ``n`` seeds with a value."""
    seeds = sum(1 for v in ours.per_seed.values() if _cost_and_violations(v) is not None)
    dominated = dominated_seeds(ours, points)
    if not dominated:
        return f"none of {seeds}"
    which = "; ".join(f"seed {s}: {', '.join(labels)}" for s, labels in sorted(dominated.items()))
    return f"{len(dominated)} of {seeds} ({which})"


def summarise(
    runs_by_trace: Mapping[str, Sequence[RunMetrics]],
    *,
    families: Mapping[str, str],
    knobs: Mapping[str, object],
    qos_percentile: float = 95.0,
) -> EvaluationSummary:
    """Points and claims of every trace.

    Args:
        runs_by_trace: per trace, the metrics of its runs (any order).
        families: label → family (unswept labels are their own family).
        knobs: label → ``(parameter, value)`` for swept labels.
        qos_percentile: the workflows' QoS percentile: a policy meets the QoS when at most
            ``100 - qos_percentile`` % of its requests violate their target.
    """
    traces: dict[str, tuple[PointSummary, ...]] = {}
    claims: list[Claim] = []
    allowed = 100.0 - qos_percentile
    for trace, runs in runs_by_trace.items():
        points = _summarise_points(runs, families, knobs)
        traces[trace] = points
        requests = max((p.requests / max(len(p.per_seed), 1) for p in points), default=1.0)
        floor = 100.0 / max(requests, 1.0)  # one violated request, in %
        claims += _qos_claims(trace, points, floor)
        claims += _cost_claims(trace, points, allowed)
    return EvaluationSummary(traces, tuple(claims), {t: qos_percentile for t in traces})


def oracle_gaps(points: Sequence[PointSummary], y: str) -> dict[str, Estimate]:
    """Per family (the oracle's variants aside): how much more ``y`` it pays than the
    ``oracle`` family's lower envelope at equal idle replica-seconds, averaged over the
    family's idle range (a single point: at its idle), per seed, as a t-interval over the
    seeds that every point of both ran. Empty when the trace has no ``oracle`` points.

    Args:
        points: one trace's points.
        y: the harm compared, a :data:`COLUMNS` key (``cold_start_pct``,
            ``qos_violation_pct``).
    """
    oracle = [p for p in points if p.family == ORACLE]
    if not oracle:
        return {}
    families: dict[str, list[PointSummary]] = {}
    for p in points:
        if not is_oracle(p.family):
            families.setdefault(p.family, []).append(p)

    def curve(members: Sequence[PointSummary], seed: int) -> list[tuple[float, float]]:
        pairs = [(p.per_seed[seed]["idle_replica_s"], p.per_seed[seed][y]) for p in members]
        return [(x, v) for x, v in pairs if x == x and v == v]

    out: dict[str, Estimate] = {}
    for family, members in families.items():
        seeds = set.intersection(*(set(p.per_seed) for p in [*members, *oracle]))
        gaps: list[float] = []
        for seed in sorted(seeds):
            mine, bound = curve(members, seed), curve(oracle, seed)
            got = area_between(mine, bound)
            if got is not None:
                gaps.append(got[1])
            elif len({x for x, _ in mine}) == 1:  # one point (or one idle figure)
                ref = envelope_at(bound, mine[0][0])
                if ref is not None:
                    gaps.append(min(v for _, v in mine) - ref)
        out[family] = t_interval(gaps)
    return out


def format_estimate(est: Estimate, digits: int) -> str:
    """``mean ± half-width`` (just the mean for one seed, a dash for none)."""
    if est.mean != est.mean:
        return "—"
    if est.half_width != est.half_width:
        return f"{est.mean:.{digits}f}"
    return f"{est.mean:.{digits}f} ± {est.half_width:.{digits}f}"


def claim_text(claim: Claim) -> str:
    """A claim as one line: the measured factor or saving, its interval and the competitor."""
    if claim.value != claim.value:
        return f"— ({claim.note})"
    if claim.kind == "qos":
        value = "∞" if math.isinf(claim.value) else f"{claim.value:.2f}×"
        return f"{value} [{claim.low:.2f}, {claim.high:.2f}] vs {claim.competitor}"
    return (
        f"{100 * claim.value:.1f} % [{100 * claim.low:.1f}, {100 * claim.high:.1f}] "
        f"cheaper than {claim.competitor}"
    )


def frontier_png(points: Sequence[PointSummary], *, x: str, y: str, title: str) -> bytes:
    """A frontier plot (one line per family, its swept points in order of ``x``) as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    by_family: dict[str, list[PointSummary]] = {}
    for p in points:
        by_family.setdefault(p.family, []).append(p)
    for family, members in sorted(by_family.items()):
        members = sorted(members, key=lambda p: p.mean(x))
        xs = [p.mean(x) for p in members]
        ys = [p.mean(y) for p in members]
        yerr = [0.0 if p.estimates[y].half_width != p.estimates[y].half_width
                else p.estimates[y].half_width for p in members]  # fmt: skip
        bound = is_oracle(family)
        ax.errorbar(
            xs,
            ys,
            yerr=yerr,
            marker="o",
            capsize=3,
            label=family,
            linestyle="--" if bound else "-",
            color="black" if bound else None,
        )
    ax.set(
        xlabel=dict((k, t) for k, t, _ in COLUMNS)[x], ylabel=dict((k, t) for k, t, _ in COLUMNS)[y]
    )
    ax.set_title(title)
    ax.set_ylim(bottom=0.0)  # rates and costs are never negative, whatever the interval says
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_results_markdown(
    summary: EvaluationSummary,
    path: Path,
    *,
    title: str,
    command: str,
    preamble: str = "",
    figures_dir: Path | None = None,
) -> list[Path]:
    """Write the evaluation as Markdown (tables with intervals, claims, frontier PNGs).

    Args:
        summary: the measured points and claims.
        path: the Markdown file (written atomically).
        title: its heading.
        command: the command that regenerates it (printed at the top).
        preamble: paragraphs placed before the tables (setup, fidelity, caveats).
        figures_dir: where PNGs go (default ``<path stem>/`` beside the file).

    Returns:
        The PNG files written.
    """
    figures = figures_dir or path.with_suffix("")
    lines = [f"# {title}", "", f"Regenerate with `{command}`.", ""]
    if preamble:
        lines += [preamble.strip(), ""]
    lines += [
        "## The paper's claims, measured",
        "",
        "| trace | Aquatope policy | QoS violations: × fewer than the best policy at ≤ its "
        "cost (goal ≥ 5) | cost: saving vs the cheapest QoS-meeting policy (goal ≥ 34 %) |",
        "| --- | --- | --- | --- |",
    ]
    by_key: dict[tuple[str, str], dict[str, Claim]] = {}
    for claim in summary.claims:
        by_key.setdefault((claim.trace, claim.aquatope), {})[claim.kind] = claim
    for (trace, label), kinds in by_key.items():
        qos, cost = kinds.get("qos"), kinds.get("cost")
        lines.append(
            f"| {trace} | {label} | {claim_text(qos) if qos else '—'} | "
            f"{claim_text(cost) if cost else '—'} |"
        )
    lines += [
        "",
        "Intervals are paired 95 % bootstrap intervals over seeds; a claim holds on a trace "
        "when the interval's low end reaches the goal. A seed whose trace sends no request in "
        "the scored window has no value and is left out (the tables' seeds column counts the "
        "seeds with a value; table intervals are Student-t over them).",
        "",
        "Per seed: where a baseline costs no more and violates the QoS no more (less in "
        "one) on the same seed's trace. Means over seeds can hide this both ways when the "
        "seeds' loads differ by orders of magnitude.",
        "",
        "| trace | Aquatope policy | seeds where a baseline dominates it |",
        "| --- | --- | --- |",
    ]
    for trace, points in summary.traces.items():
        for ours in (p for p in points if is_aquatope(p.family)):
            lines.append(f"| {trace} | {ours.label} | {dominance_text(ours, points)} |")
    lines.append("")
    written: list[Path] = []
    for trace, points in summary.traces.items():
        lines += [f"## {trace}", ""]
        header = "| policy | seeds | " + " | ".join(t for _, t, _ in COLUMNS) + " |"
        lines += [header, "| --- | --- |" + " --- |" * len(COLUMNS)]
        for p in points:
            cells = [format_estimate(p.estimates[k], DIGITS.get(k, 2)) for k, _, _ in COLUMNS]
            seeds = p.estimates["qos_violation_pct"].n  # seeds with a scored request
            lines.append(f"| {p.label} | {seeds} | " + " | ".join(cells) + " |")
        lines.append("")
        cold_gaps = oracle_gaps(points, "cold_start_pct")
        if cold_gaps:
            qos_gaps = oracle_gaps(points, "qos_violation_pct")
            lines += [
                "Gap to the oracle: percentage points of cold starts and of QoS violations "
                "above the oracle's frontier at equal idle replica-seconds, averaged over each "
                "family's idle range (per seed; mean ± 95 % interval over seeds).",
                "",
                "| policy family | seeds | cold % above the oracle | QoS viol. % above the "
                "oracle |",
                "| --- | --- | --- | --- |",
            ]
            for family, gap in cold_gaps.items():
                qos_gap = qos_gaps.get(family, t_interval([]))
                lines.append(
                    f"| {family} | {gap.n} | {format_estimate(gap, 2)} | "
                    f"{format_estimate(qos_gap, 2)} |"
                )
            lines.append("")
        for x, y, name in (
            ("idle_replica_s", "cold_start_pct", "cold-vs-idle"),
            ("cost_usd", "qos_violation_pct", "qos-vs-cost"),
        ):
            png = figures / f"{trace}-{name}.png"
            data = frontier_png(points, x=x, y=y, title=f"{trace}: {name.replace('-', ' ')}")
            with atomic_path(png) as tmp:
                tmp.write_bytes(data)
            written.append(png)
            rel = png.relative_to(path.parent) if png.is_relative_to(path.parent) else png
            lines += [f"![{trace} {name}]({rel.as_posix()})", ""]
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return written
