"""One self-contained HTML report: tables plus figures embedded as base64 PNG.

Each figure is also written as a PNG file beside the page (``<stem>-<figure>.png``), so it can
be reused in papers and slides. The page loads nothing from elsewhere.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.core.atomic import atomic_path, atomic_write_text
from testbed.experiment.results import RunData, find_runs, load_run
from testbed.report import plots
from testbed.report.compare import Comparison, compare_runs
from testbed.report.metrics import compute_metrics
from testbed.report.tables import comparison_html

__all__ = ["FIGURES", "ReportResult", "write_report"]

# (slug, caption) in page order
FIGURES: tuple[tuple[str, str], ...] = (
    ("latency-cdf", "End-to-end latency CDF per workflow (all seeds pooled)"),
    ("qos-violations", "QoS violations over time (errors and timeouts count)"),
    ("replicas-vs-demand", "Warm replicas vs demand over time"),
    ("cost-breakdown", "Cost breakdown in both pricing models (idle replicas charged)"),
)

# Marks the body with how many images the browser decoded (checked by the headless test).
_SCRIPT = (
    "<script>window.addEventListener('load',function(){var n=0,a=document.images;"
    "for(var i=0;i<a.length;i++){if(a[i].complete&&a[i].naturalWidth>0)n++;}"
    "document.body.setAttribute('data-images-decoded',n+'/'+a.length);});</script>"
)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: right; }
tr th:first-child { text-align: left; }
figure { margin: 2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.runs { font-size: 0.8em; color: #555; }
"""


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and what it compared."""

    html_path: Path
    png_paths: tuple[Path, ...]
    comparison: Comparison


def _cold_table(comp: Comparison) -> str:
    functions = sorted(
        {f for p in comp.policies for r in p.runs for f in r.cold_start_rate_by_function}
    )
    if not functions:
        return ""
    head = "".join(f"<th>{html.escape(f)}</th>" for f in functions)
    rows = []
    for pol in comp.policies:
        cells = []
        for fn in functions:
            values = [
                r.cold_start_rate_by_function[fn]
                for r in pol.runs
                if fn in r.cold_start_rate_by_function
            ]
            cells.append(
                f"<td>{100 * sum(values) / len(values):.1f}</td>" if values else "<td>—</td>"
            )
        rows.append(f"<tr><th>{html.escape(pol.label)}</th>{''.join(cells)}</tr>")
    return (
        "<h2>Cold-start rate per function (% of calls, mean over seeds)</h2>"
        f"<table><tr><th>policy</th>{head}</tr>{''.join(rows)}</table>"
    )


def _mean(values: list[float]) -> float | None:
    clean = [v for v in values if v == v]
    return sum(clean) / len(clean) if clean else None


def _workflow_table(comp: Comparison) -> str:
    """Per workflow and policy: requests, QoS violations, cold starts, p50/p95/p99."""
    workflows = sorted({w for p in comp.policies for r in p.runs for w in r.by_workflow})
    if not workflows:
        return ""
    rows = []
    for wf in workflows:
        for pol in comp.policies:
            stats = [r.by_workflow[wf] for r in pol.runs if wf in r.by_workflow]
            if not stats:
                continue

            def cell(
                key: str, scale: float, fmt: str, stats: list[dict[str, float]] = stats
            ) -> str:
                value = _mean([x[key] for x in stats])
                return (
                    f"<td>{fmt.format(value * scale)}</td>" if value is not None else "<td>—</td>"
                )

            rows.append(
                f"<tr><th>{html.escape(wf)}</th><th>{html.escape(pol.label)}</th>"
                + cell("requests", 1, "{:.0f}")
                + cell("qos_violation_rate", 100, "{:.1f}")
                + cell("cold_start_rate", 100, "{:.1f}")
                + cell("p50", 1000, "{:.0f}")
                + cell("p95", 1000, "{:.0f}")
                + cell("p99", 1000, "{:.0f}")
                + "</tr>"
            )
    return (
        "<h2>Per workflow (mean over seeds)</h2><table><tr><th>workflow</th><th>policy</th>"
        "<th>requests</th><th>QoS viol. %</th><th>cold %</th><th>p50 ms</th><th>p95 ms</th>"
        f"<th>p99 ms</th></tr>{''.join(rows)}</table>"
    )


def _stage_table(comp: Comparison) -> str:
    """Per stage (``workflow/stage``) and policy: p50/p95/p99 stage duration in ms."""
    stages = sorted({k for p in comp.policies for r in p.runs for k in r.stage_latency_s})
    if not stages:
        return ""
    head = "".join(f"<th>{html.escape(p.label)}</th>" for p in comp.policies)
    rows = []
    for stage in stages:
        cells = []
        for pol in comp.policies:
            parts = []
            for q in ("p50", "p95", "p99"):
                value = _mean(
                    [r.stage_latency_s[stage][q] for r in pol.runs if stage in r.stage_latency_s]
                )
                parts.append("—" if value is None else f"{value * 1000:.0f}")
            cells.append(f"<td>{' / '.join(parts)}</td>")
        rows.append(f"<tr><th>{html.escape(stage)}</th>{''.join(cells)}</tr>")
    return (
        "<h2>Per stage: p50 / p95 / p99 duration in ms (queueing and cold start included)</h2>"
        f"<table><tr><th>stage</th>{head}</tr>{''.join(rows)}</table>"
    )


def write_report(
    paths: Sequence[str | Path],
    out_html: str | Path,
    *,
    baseline: str | None = None,
    title: str = "Scheduler comparison",
) -> ReportResult:
    """Load every complete run under ``paths`` and write the HTML report and its PNGs.

    Args:
        paths: results directories (experiments or single runs).
        out_html: the page to write; PNGs go beside it.
        baseline: label for ratios (default: the first policy).
        title: page title.

    Raises:
        ConfigError: no complete runs, unknown baseline, malformed files.
    """
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    run_dirs = find_runs(paths)
    loaded: list[RunData] = [load_run(p) for p in run_dirs]
    comp = compare_runs([compute_metrics(r) for r in loaded], baseline=baseline)
    groups: dict[str, list[RunData]] = {p.label: [] for p in comp.policies}  # table order
    for run in loaded:
        groups[run.label].append(run)
    figures = {
        "latency-cdf": plots.latency_cdf(groups),
        "qos-violations": plots.qos_violations_over_time(groups),
        "replicas-vs-demand": plots.replicas_vs_demand(groups),
        "cost-breakdown": plots.cost_breakdown(comp),
    }
    sections = []
    pngs = []
    for slug, caption in FIGURES:
        data = plots.figure_png(figures[slug])
        png_path = out_html.with_name(f"{out_html.stem}-{slug}.png")
        with atomic_path(png_path) as tmp:
            tmp.write_bytes(data)
        pngs.append(png_path)
        encoded = base64.b64encode(data).decode("ascii")
        sections.append(
            f'<figure id="{slug}"><img alt="{html.escape(caption)}" '
            f'src="data:image/png;base64,{encoded}"><figcaption>{html.escape(caption)} '
            f"({html.escape(png_path.name)})</figcaption></figure>"
        )
    run_list = "".join(
        f"<li>{html.escape(r.label)} seed {r.seed}: {html.escape(str(r.path))}</li>" for r in loaded
    )
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>{_SCRIPT}</head><body>"
        f"<h1>{html.escape(title)}</h1><p>Generated {now} from {len(loaded)} runs. "
        "Metric definitions: DESIGN.md §8 (testbed/report/metrics.py). Cost in micro-USD.</p>"
        + comparison_html(comp)
        + _workflow_table(comp)
        + _cold_table(comp)
        + _stage_table(comp)
        + "".join(sections)
        + f"<h2>Runs</h2><ul class='runs'>{run_list}</ul></body></html>\n"
    )
    atomic_write_text(out_html, page)
    return ReportResult(out_html, tuple(pngs), comp)
