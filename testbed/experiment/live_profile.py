"""Live runs read for a simulator profile (``aquatope profile-from-runs``).

The fitting is :mod:`testbed.sim.warm_samples`'s; this module reads the run directories.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from testbed.core.errors import ConfigError
from testbed.experiment.results import find_runs, load_run
from testbed.sim.profile import Profile
from testbed.sim.warm_samples import LiveSamples, add_run

__all__ = ["live_samples"]


def live_samples(
    run_dirs: Iterable[str | Path], profile: Profile, *, host_cores: float | None = None
) -> LiveSamples:
    """Warm stages and request overheads of live runs, each run read once.

    Args:
        run_dirs: run directories (or directories holding runs, e.g. an experiment's).
        profile: the profile whose scaling tables turn a duration at the run's limits into
            one at no limit.
        host_cores: the runs' host cores; default each run's ``meta.json`` (usable cores).

    Raises:
        ConfigError: a directory holds no run, a run is malformed or lacks its cores, or a
            run was simulated (its durations are the profile's own).
    """
    out = LiveSamples()
    runs: list[str] = []
    for path in find_runs(list(run_dirs)):
        run = load_run(path)
        backend = str(run.meta.get("backend", ""))
        if backend == "sim":
            raise ConfigError(f"{path}: a simulated run; warm samples come from live runs only")
        machine = run.meta.get("machine") or {}
        cores = host_cores or machine.get("cores_usable") or machine.get("cores")
        if not cores:
            raise ConfigError(f"{path}/meta.json: no machine cores; give the host's cores")
        add_run(out, run.stages, run.requests, run.timeline, profile, host_cores=float(cores))
        runs.append(f"{path} ({backend})")
    out.facts = {
        "runs": runs,
        "stages": dict(sorted(out.facts.get("stages", {}).items())),
        "kept": {fn: len(v.durations_s) for fn, v in sorted(out.functions.items())},
    }
    return out
