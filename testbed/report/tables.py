"""Rich tables of a :class:`~testbed.report.compare.Comparison` (terminal and HTML)."""

from __future__ import annotations

import html
import math

from rich.table import Table

from testbed.report.compare import Comparison, Estimate
from testbed.report.metrics import HEADLINE

__all__ = ["comparison_html", "comparison_table", "format_estimate"]


def format_estimate(est: Estimate, fmt: str) -> str:
    """``"12.3 ± 0.4"``, ``"12.3"`` with one seed, ``"—"`` when missing."""
    if est.mean != est.mean:
        return "—"
    text = fmt.format(est.mean)
    if est.half_width == est.half_width:
        text += " ± " + fmt.format(est.half_width)
    return text


def _ratio(est: Estimate) -> str:
    if est.mean != est.mean:
        return "—"
    text = f"{est.mean:.2f}×"
    if est.half_width == est.half_width and not math.isinf(est.half_width):
        text += f" ± {est.half_width:.2f}"
    return text


def comparison_table(comp: Comparison) -> Table:
    """Metrics as rows; per policy its mean ± CI half-width across seeds and its baseline ratio."""
    pct = round(comp.confidence * 100)
    table = Table(
        title=(
            f"Policies compared: mean ± {pct}% CI across seeds (t-distribution); "
            f"'× base' = per-seed ratio to {comp.baseline!r}"
        ),
        title_justify="left",
    )
    table.add_column("metric", style="bold")
    for pol in comp.policies:
        is_base = pol.label == comp.baseline
        table.add_column(pol.label + (" (baseline)" if is_base else ""), justify="right")
        if not is_base:
            table.add_column("× base", justify="right", style="cyan")
    table.add_row(
        "seeds / requests",
        *(
            cell
            for pol in comp.policies
            for cell in (
                [f"{len(pol.seeds)} / {pol.requests}"]
                + ([] if pol.label == comp.baseline else [""])
            )
        ),
    )
    for head in HEADLINE:
        cells: list[str] = []
        for pol in comp.policies:
            cells.append(format_estimate(pol.metrics[head.key], head.fmt))
            if pol.label != comp.baseline:
                cells.append(_ratio(pol.ratios[head.key]))
        table.add_row(head.title, *cells)
    return table


def comparison_html(comp: Comparison) -> str:
    """Both tables as plain HTML ``<table>`` elements (for the report page)."""
    heads = "".join(f"<th>{html.escape(h.title)}</th>" for h in HEADLINE)
    rows = []
    for pol in comp.policies:
        cells = "".join(
            f"<td>{html.escape(format_estimate(pol.metrics[h.key], h.fmt))}</td>" for h in HEADLINE
        )
        name = html.escape(pol.label) + (
            " <em>(baseline)</em>" if pol.label == comp.baseline else ""
        )
        rows.append(
            f"<tr><th>{name}</th><td>{len(pol.seeds)}</td><td>{pol.requests}</td>{cells}</tr>"
        )
    ratio_rows = []
    for pol in comp.policies:
        cells = "".join(f"<td>{html.escape(_ratio(pol.ratios[h.key]))}</td>" for h in HEADLINE)
        ratio_rows.append(f"<tr><th>{html.escape(pol.label)}</th>{cells}</tr>")
    pct = round(comp.confidence * 100)
    return (
        f"<h2>Summary (mean ± {pct}% CI across seeds)</h2>"
        f"<table><tr><th>policy</th><th>seeds</th><th>requests</th>{heads}</tr>"
        + "".join(rows)
        + "</table>"
        + f"<h2>Ratio to baseline {html.escape(str(comp.baseline))}</h2>"
        + f"<table><tr><th>policy</th>{heads}</tr>"
        + "".join(ratio_rows)
        + "</table>"
    )
