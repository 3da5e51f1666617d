"""Start storms: how long replicas take to start when many are asked for at once, live and
simulated side by side.

For each level ``N`` and round, every listed function is scaled from zero to ``N`` replicas
in one go (all functions at once with ``--together``: a host-wide storm of ``N x functions``
starts), and each replica's start (asked for until it serves) is recorded. The same steps
then run in the simulator with a profile, so the two columns differ only in who starts the
replicas. Prints one line per function and level, then one JSON object on the last line.

Usage::

    .venv/bin/python bench/start_storm.py [--backend docker|local] \
        [--functions digit-classifier,text-filter] [--levels 1,2,4,8] [--rounds 3] \
        [--together] [--profile FILE] [-o OUT.json]

``docker`` needs the images built (``aquatope build``). Run it on an idle machine: the start
times are the host's CPU and container engine under contention, nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testbed.core.atomic import atomic_write_json  # noqa: E402
from testbed.core.host import usable_cores  # noqa: E402
from testbed.core.platform import FunctionSpec, Platform  # noqa: E402
from testbed.sim.profile import Profile  # noqa: E402
from testbed.sim.profiler import fit_start_cores, start_storm  # noqa: E402


def measure(
    platform: Platform,
    specs: Sequence[FunctionSpec],
    levels: Sequence[int],
    *,
    rounds: int,
    together: bool,
    timeout_s: float,
    log: Callable[[str], None] = print,
) -> dict[str, dict[int, list[float]]]:
    """Start times per function and level over ``rounds`` storms (levels interleaved per
    round, so drift on a shared machine hits every level alike)."""
    for spec in specs:
        labels = {k: v for k, v in spec.labels.items() if not k.startswith("com.openfaas.scale")}
        platform.deploy(dataclasses.replace(spec, labels=labels))
    groups = [[s.name for s in specs]] if together else [[s.name] for s in specs]
    starts: dict[str, dict[int, list[float]]] = {s.name: {n: [] for n in levels} for s in specs}
    try:
        for r in range(rounds):
            for n in levels:
                for group in groups:
                    got = start_storm(platform, group, n, timeout_s=timeout_s)
                    for name, values in got.items():
                        starts[name][n].extend(values)
                        log(f"round {r + 1} N={n} {name}: " + " ".join(f"{v:.2f}" for v in values))
    finally:
        for spec in specs:
            platform.remove(spec.name)
    return starts


def summary(values: list[float]) -> dict[str, float | int]:
    return {"median_s": statistics.median(values), "max_s": max(values), "n": len(values)}


def fitted(profile: Profile, live: dict[str, dict[int, list[float]]]) -> Profile:
    """``profile`` with each measured function's ``cold_start_cores`` fitted from its storms
    (one replica alone against the largest storm)."""
    functions = dict(profile.functions)
    for name, by_n in live.items():
        if name not in functions:
            continue
        k = max(by_n)
        cores = fit_start_cores(
            alone_s=statistics.median(by_n[1]),
            storm_s=statistics.median(by_n[k]),
            replicas=k,
            cores=float(usable_cores()),
        )
        functions[name] = dataclasses.replace(functions[name], cold_start_cores=cores)
    return dataclasses.replace(profile, functions=functions)


def simulate(profile: Profile, specs: list[FunctionSpec], levels: list[int], **kwargs: Any) -> Any:
    from testbed.sim.platform import SimPlatform

    sim = SimPlatform(profile=profile, seed=0)
    try:
        return measure(sim, specs, levels, log=lambda _: None, **kwargs)
    finally:
        sim.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("docker", "local"), default="docker")
    ap.add_argument("--functions", default="digit-classifier,text-filter")
    ap.add_argument("--levels", default="1,2,4,8", help="replicas asked for at once")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--together", action="store_true", help="every function storms at once")
    ap.add_argument("--profile", help="simulator profile (default: the shipped one)")
    ap.add_argument(
        "--fit-into",
        metavar="FILE",
        help="write --profile here with cold_start_cores fitted from the live storms "
        "(needs level 1, without --together) and simulate it too",
    )
    ap.add_argument("--timeout-s", type=float, default=120.0)
    ap.add_argument("-o", "--output", help="write the figures here as JSON too")
    args = ap.parse_args()
    try:
        levels = sorted({int(v) for v in args.levels.split(",") if v})
    except ValueError:
        ap.error(f"--levels: comma-separated integers, got {args.levels!r}")
    if not levels or levels[0] < 1:
        ap.error("--levels: positive integers, e.g. 1,2,4,8")
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    if args.fit_into and (args.together or levels[0] != 1 or len(levels) < 2):
        ap.error("--fit-into needs solo storms (no --together) at level 1 and a larger one")

    from testbed.backends import connect
    from testbed.core.stack import load_stack
    from testbed.sim.profile import default_profile_path, load_profile, save_profile

    stack = load_stack(REPO / "stack.yml")
    names = [v for v in args.functions.split(",") if v]
    unknown = [n for n in names if n not in stack.functions]
    if unknown:
        ap.error(f"--functions: not in stack.yml: {', '.join(unknown)}")
    specs = [stack[n] for n in names]
    profile = load_profile(args.profile or default_profile_path())
    kwargs = {"rounds": args.rounds, "together": args.together, "timeout_s": args.timeout_s}

    sides: dict[str, dict[str, dict[int, list[float]]]] = {}
    home = Path(tempfile.mkdtemp(prefix="start-storm-"))
    os.environ["AQUATOPE_HOME"] = str(home)
    live = connect(args.backend, state_dir=str(home))
    try:
        sides["live"] = measure(live, specs, levels, **kwargs)
    finally:
        live.close()
    sides["sim"] = simulate(profile, specs, levels, **kwargs)
    if args.fit_into:
        refit = fitted(profile, sides["live"])
        save_profile(refit, args.fit_into)
        sides["sim fitted"] = simulate(refit, specs, levels, **kwargs)
        for name in names:
            print(f"{name}: cold_start_cores {refit.functions[name].cold_start_cores:g}")

    rows = []
    print(f"{'function':<22} {'N':>3} " + " ".join(f"{side + ' p50 s':>16}" for side in sides))
    for name in names:
        for n in levels:
            row = {side: summary(got[name][n]) for side, got in sides.items()}
            rows.append({"function": name, "n": n, **row})
            print(
                f"{name:<22} {n:>3} "
                + " ".join(f"{row[side]['median_s']:>16.2f}" for side in sides)
            )
    result = {
        "bench": "start_storm",
        "backend": args.backend,
        "together": args.together,
        "rounds": args.rounds,
        "host_cores": usable_cores(),
        "rows": rows,
    }
    if args.output:
        atomic_write_json(Path(args.output), result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
