"""``aquatope profile``: measure service-time and cold-start profiles for the simulator."""

from __future__ import annotations

import os
from pathlib import Path

import click

__all__ = ["profile", "profile_from_runs"]


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise click.BadParameter(f"{what} must be positive numbers, got {text!r}")
    return values


def _busy_warning(conditions: dict[str, object]) -> str:
    """A line when the machine was loaded (load per core above 1) while profiling."""
    worst = 0.0
    cores = 0
    for when in ("start", "end"):
        facts = conditions.get(when)
        if not isinstance(facts, dict) or not facts.get("loadavg") or not facts.get("cpu_count"):
            continue
        cores = int(facts["cpu_count"])
        worst = max(worst, float(facts["loadavg"][0]) / cores)
    if worst <= 1.0:
        return ""
    return (
        f"the machine was loaded while profiling ({worst:.2f} runnable per core on {cores} "
        "cores): the profile's times carry that load; simulate only runs at a similar load"
    )


# both commands write DIR/profile.json
_output_option = click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for profile.json.",
)


@click.command("profile")
@click.option(
    "--backend",
    type=click.Choice(["local", "docker"]),
    default="local",
    show_default=True,
    help="Live backend to measure on (a private gateway is started and stopped).",
)
@click.option(
    "--workflow", "workflows", multiple=True, help="Profile this workflow's functions (repeatable)."
)
@click.option("--function", "functions", multiple=True, help="Profile this function (repeatable).")
@click.option(
    "--stack", "stack_path", default="stack.yml", show_default=True, type=click.Path(dir_okay=False)
)
@_output_option
@click.option(
    "--calls", default=30, show_default=True, type=click.IntRange(3), help="Warm calls per level."
)
@click.option(
    "--cold",
    "n_cold",
    default=8,
    show_default=True,
    type=click.IntRange(1),
    help="Cold starts per function.",
)
@click.option(
    "--cpu-levels", default="0.25,0.5,1", show_default=True, help="CPU limits (cores) to measure."
)
@click.option(
    "--concurrency",
    default="1,2,4",
    show_default=True,
    help="Concurrent calls per replica to measure.",
)
@click.option(
    "--storm",
    "storm",
    type=click.IntRange(0),
    default=None,
    help="Replicas started at once to fit the cores a start keeps busy  "
    "[default: 4 per core; 0: no storm].",
)
@click.option(
    "--idle-levels",
    default="none",
    show_default=True,
    help="Seconds the replica sits idle before a call (e.g. 0.3,1,3), to measure how much "
    "slower a call after a pause runs. On an idle host that is the upper bound (45x after "
    "3 s here, 2-4x under a run's load): `profile-from-runs` fits it under load.",
)
@click.option(
    "--idle-calls",
    default=4,
    show_default=True,
    type=click.IntRange(1),
    help="Calls after each idle level.",
)
@click.option("--no-memory", is_flag=True, help="Skip the peak-RSS probe.")
@click.option(
    "--merge",
    is_flag=True,
    help="Keep functions of an existing DIR/profile.json that this run does not measure.",
)
def profile(
    backend: str,
    workflows: tuple[str, ...],
    functions: tuple[str, ...],
    stack_path: str,
    output: str,
    calls: int,
    n_cold: int,
    cpu_levels: str,
    concurrency: str,
    storm: int | None,
    idle_levels: str,
    idle_calls: int,
    no_memory: bool,
    merge: bool,
) -> None:
    """Measure per-function service time (vs CPU limit, concurrency and idle time before a
    call), cold starts (alone and in a storm), memory and gateway overhead through a live
    gateway, and write DIR/profile.json for the `sim` backend."""
    from testbed.core.errors import TestbedError
    from testbed.core.stack import load_stack
    from testbed.core.workflows import load_workflows
    from testbed.sim.profile import save_profile
    from testbed.sim.profiler import ProfileSettings, profile_functions

    out = Path(output)
    home = out / ".profile-home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AQUATOPE_HOME"] = str(home.resolve())  # replicas' stores live here
    settings = ProfileSettings(
        n_service=calls,
        n_cold=n_cold,
        cpu_levels=_floats(cpu_levels, "--cpu-levels"),
        concurrency_levels=tuple(int(v) for v in _floats(concurrency, "--concurrency")),
        storm_replicas=storm,
        idle_levels=()
        if idle_levels.strip().lower() == "none"
        else _floats(idle_levels, "--idle-levels"),
        idle_calls=idle_calls,
    )
    try:
        stack = load_stack(stack_path)
        catalog = load_workflows()
        names: list[str] = list(functions)
        for wf in workflows:
            names.extend(catalog.get(wf).functions)
        if not names:
            names = [spec.name for spec in stack]
        names = list(dict.fromkeys(names))
        specs = [stack[name] for name in names]
        click.echo(f"preparing payloads for {len(specs)} function(s)...")
        from testbed.sim.payloads import function_payloads

        payloads = function_payloads(catalog.workflows.values(), names)
        from testbed.backends import connect

        platform = connect(backend, state_dir=str(home))
        try:
            result = profile_functions(
                platform,
                specs,
                payloads,
                settings=settings,
                provenance={
                    "method": f"measured through the live gateway ({backend} backend) with "
                    "`aquatope profile`; peak memory from a child process serving the payloads",
                    "backend": backend,
                    "stack": str(Path(stack_path)),
                },
                measure_memory=not no_memory,
                log=click.echo,
            )
        finally:
            platform.close()
    except TestbedError as exc:
        raise click.ClickException(str(exc)) from None
    from testbed.sim.conditions import condition_warnings

    conditions = result.provenance.get("conditions") or {}
    busy = _busy_warning(conditions)
    if busy:
        click.echo(f"warning: {busy}", err=True)
    if merge and (out / "profile.json").is_file():
        from testbed.sim.profile import Profile, load_profile

        old = load_profile(out / "profile.json", check_conditions=False)
        now = conditions.get("start") or None
        for line in condition_warnings(old.provenance, now):
            click.echo(f"warning: the functions kept by --merge: {line}", err=True)
        kept = {k: v for k, v in old.functions.items() if k not in result.functions}
        provenance = dict(result.provenance)
        if kept:
            provenance["merged"] = {
                "functions": sorted(kept),
                "from": {
                    k: old.provenance.get(k) for k in ("date", "method", "machine", "conditions")
                },
            }
        result = Profile({**kept, **result.functions}, result.gateway_overhead_s, provenance)
    path = save_profile(result, out / "profile.json")
    failed = result.provenance.get("failed")
    if failed:
        click.echo(f"not profiled (see provenance.failed): {', '.join(failed)}", err=True)
    click.echo(f"wrote {path}")


@click.command("profile-from-runs")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--base",
    "base_path",
    default=None,
    type=click.Path(exists=True),
    help="Profile to start from (a profile.json or its directory)  [default: the shipped one].",
)
@_output_option
@click.option(
    "--min-samples",
    default=20,
    show_default=True,
    type=click.IntRange(1),
    help="Warm stages a function needs before its service time is replaced.",
)
@click.option(
    "--host-cores",
    type=click.FloatRange(min=1, min_open=False),
    default=None,
    help="Cores of the host the runs were on  [default: each run's meta.json].",
)
@click.option(
    "--no-idle-scaling",
    "no_idle",
    is_flag=True,
    help="Do not fit how much slower a call runs after its replica sat idle.",
)
def profile_from_runs(
    runs: tuple[str, ...],
    base_path: str | None,
    output: str,
    min_samples: int,
    host_cores: float | None,
    no_idle: bool,
) -> None:
    """Take each function's warm service time from live runs (RUNS: run or experiment
    directories) instead of calls timed one at a time on an idle gateway: the warm stages
    the simulator would not stretch by itself (no start, no other call of the function, no
    more stages in flight than cores), so the host's own load (load generator, gateway,
    daemon) and the workflows' real payloads are in them. A call after its replica sat idle
    runs slower (cold caches): each function with enough samples also gets an idle-scaling
    table, fitted from the idle time before each stage. Cold starts and the other scaling
    tables stay the base profile's; the gateway overhead becomes what the runs' warm requests
    spent outside their stages."""
    from testbed.core.errors import TestbedError
    from testbed.experiment.live_profile import live_samples
    from testbed.sim.profile import load_profile, save_profile
    from testbed.sim.warm_samples import with_warm_service

    try:
        base = load_profile(base_path, check_conditions=False)
        live = live_samples(runs, base, host_cores=host_cores)
        result = with_warm_service(base, live, min_samples=min_samples, idle=not no_idle)
    except TestbedError as exc:
        raise click.ClickException(str(exc)) from None
    warm = result.provenance["warm_service"]
    for name, n in sorted(warm["replaced"].items()):
        table = warm["idle_scaling"].get(name)
        slower = ", ".join(f"{x:.3g}x after {s:.3g} s" for s, x in table) if table else "none"
        click.echo(f"{name}: {n} warm samples; idle scaling: {slower}")
    kept = live.functions
    short = {n: len(kept[n].durations_s) if n in kept else 0 for n in warm["kept_from_profile"]}
    if short:
        listed = ", ".join(f"{n} ({k})" for n, k in sorted(short.items()))
        click.echo(f"kept the base profile's service time (< {min_samples} samples): {listed}")
    if warm["gateway_overhead_samples"]:
        mean_ms = result.gateway_overhead_s.mean_s * 1e3
        click.echo(
            f"gateway overhead: {warm['gateway_overhead_samples']} warm requests "
            f"(mean {mean_ms:.2f} ms)"
        )
    if not warm["replaced"]:
        raise click.ClickException(
            f"no function had {min_samples} uncontended warm stages in {len(warm['runs'])} "
            "run(s); give more runs or a lower --min-samples"
        )
    click.echo(f"wrote {save_profile(result, Path(output) / 'profile.json')}")
