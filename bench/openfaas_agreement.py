"""Real OpenFaaS CE autoscaling vs our `always-on` emulation of it, on the identical trace.

Runs one experiment config twice, changing only where it runs and who scales:

* `ce-real`: `backend: openfaas` on `aquatope up --platform openfaas` (the real gateway,
  Prometheus and AlertManager; our provider), policy `openfaas-ce` (observe only: the
  AlertManager autoscaler acts);
* `ce-emulated`: `backend: local` (our gateway), policy `always-on` with the CE rule's
  parameters (total rate > 5 req/s over 10 s for 5 s, a step every 30 s, back to min at once;
  `--factor` sets its step in percent of scale.max).

Same workflow, trace generator and seeds, so the same intended send times. Prints, per side,
the QoS violation and cold start rates (mean and 95 % half-width over seeds), the
replica-seconds of ready replicas and the largest replica count each function reached.

Usage: python bench/openfaas_agreement.py [--seeds 1 2] [--duration 60] [--rate 40] [--factor 20]
Needs what `aquatope up --platform openfaas` needs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import emit, machine, temp_home

from testbed.experiment.results import find_runs, load_run
from testbed.report.compare import compare_runs, load_metrics

REPO = Path(__file__).resolve().parents[1]
CE_PARAMS = (
    "{{threshold_rps: 5, rate_window_s: 10, fire_after_s: 5, repeat_s: 30, "
    "scale_factor_pct: {factor:g}, cooldown_s: 0, per_replica: false, replica_cap: 5}}"
)


def config(name: str, backend: str, policy: str, args: argparse.Namespace) -> str:
    params = CE_PARAMS.format(factor=args.factor)
    params = f"\n    params: {params}" if policy == "always-on" else ""
    return f"""\
name: {name}
backend: {backend}
stack: {REPO / "stack.yml"}
workflows: [social-read-home]
trace:
  kind: bursty
  minutes: 8
  compress: 8
  options: {{rate_per_min: {args.rate}, on_min: 1.5, off_min: 1.5}}
duration_s: {args.duration}
warmup_s: 5
drain_s: 10
settle_s: 5
seeds: {list(args.seeds)}
tick_s: 1.0
sample_s: 0.5
loadgen: {{timeout_s: 30, locust_csv: false}}
policies:
  - name: {policy}
    label: {name}{params}
"""


def aquatope(home: Path, *args: str) -> None:
    env = {**os.environ, "AQUATOPE_HOME": str(home)}
    subprocess.run(
        [sys.executable, "-m", "testbed.cli", "--home", str(home), *args], check=True, env=env
    )


def replica_figures(out: Path) -> dict[str, Any]:
    """Mean ready replica-seconds per run, and the most replicas any function had."""
    seconds, peak = [], 0
    for path in find_runs([out]):
        tl = load_run(path).timeline
        tl = tl[tl["t_s"] >= 0]
        total = 0.0
        for _, fn in tl.groupby("function"):
            fn = fn.sort_values("t_s")
            total += float((fn["replicas_ready"] * fn["t_s"].diff().shift(-1).fillna(0)).sum())
            peak = max(peak, int(fn["replicas_ready"].max()))
        seconds.append(total)
    return {"ready_replica_s": round(sum(seconds) / len(seconds), 1), "max_replicas": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=40.0, help="trace requests per minute")
    parser.add_argument(
        "--factor",
        type=float,
        default=10.0,
        help="always-on's scale_factor_pct (default 10, the CE gateway's; the older rule: 20)",
    )
    args = parser.parse_args()
    work = temp_home("agreement")
    outs = {"ce-real": work / "out-real", "ce-emulated": work / "out-emulated"}

    real_home = work / "home-real"
    (work / "real.yaml").write_text(config("ce-real", "openfaas", "openfaas-ce", args))
    aquatope(real_home, "up", "--platform", "openfaas", "--port", "0", "--no-deploy")
    try:
        aquatope(
            real_home, "experiment", "run", str(work / "real.yaml"), "-o", str(outs["ce-real"])
        )
    finally:
        aquatope(real_home, "down")
    (work / "emulated.yaml").write_text(config("ce-emulated", "local", "always-on", args))
    aquatope(
        work / "home-emulated",
        "experiment",
        "run",
        str(work / "emulated.yaml"),
        "-o",
        str(outs["ce-emulated"]),
    )

    comparison = compare_runs(load_metrics(list(outs.values())))
    figures: dict[str, Any] = {
        "bench": "openfaas_agreement",
        "seeds": args.seeds,
        "emulation_scale_factor_pct": args.factor,
    }
    for label, out in outs.items():
        summary = comparison.get(label)
        est = summary.metrics
        figures[label] = {
            "requests": summary.requests,
            "qos_violation_pct": [round(est["qos_violation_pct"].mean, 2),
                                  round(est["qos_violation_pct"].half_width, 2)],
            "cold_start_pct": [round(est["cold_start_pct"].mean, 2),
                               round(est["cold_start_pct"].half_width, 2)],
            "p95_ms": round(est["p95_ms"].mean, 1),
            **replica_figures(out),
        }  # fmt: skip
        print(label, figures[label])
    figures["machine"] = machine()
    figures["results"] = str(work)
    emit(figures)


if __name__ == "__main__":
    main()
