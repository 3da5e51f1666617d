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

from testbed.experiment.results import RunData, atomic_write_text, find_runs, load_run
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
    groups: dict[str, list[RunData]] = {}
    for run in loaded:
        groups.setdefault(run.label, []).append(run)
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
        tmp = png_path.with_name(f".{png_path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(png_path)
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
        + _cold_table(comp)
        + "".join(sections)
        + f"<h2>Runs</h2><ul class='runs'>{run_list}</ul></body></html>\n"
    )
    atomic_write_text(out_html, page)
    return ReportResult(out_html, tuple(pngs), comp)
