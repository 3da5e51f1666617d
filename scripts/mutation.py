"""Mutation testing: run mutmut on the modules the figures depend on, one module at a time.

Each module is mutated in a throw-away copy of the repository (so the worktree never holds a
mutant) and tested against the tests of its own area only. Prints one line per module with
its score, then one JSON line with every figure. Usage::

    python scripts/mutation.py                      # every module in MODULES, all mutants
    python scripts/mutation.py testbed/report/cost.py --sample 80 --max-minutes 10

The score is killed / (killed + survived + timeouts counted as killed): mutants no test
reaches ("no tests") count as survivors, because nothing pins them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# module -> the tests of its area (the test selection handed to pytest)
# (the HTML report's rendering tests are left out of report/: they re-test the same numbers
# through plots at many times the cost)
REPORT_TESTS = ["tests/report/test_metrics.py", "tests/report/test_compare.py"]
MODULES: dict[str, list[str]] = {
    "testbed/report/metrics.py": REPORT_TESTS,
    "testbed/report/cost.py": REPORT_TESTS,
    "testbed/experiment/results.py": ["tests/experiment/test_results.py", *REPORT_TESTS],
    "loadgen/traces/azure2019.py": ["tests/loadgen/test_azure_readers.py"],
    "scheduler/policies/keepalive.py": ["tests/scheduler/test_keepalive.py"],
    "scheduler/policies/hybrid_histogram.py": ["tests/scheduler/test_hybrid_histogram.py"],
    "scheduler/policies/kpa.py": ["tests/scheduler/test_kpa.py"],
    "scheduler/policies/always_on.py": ["tests/scheduler/test_always_on.py"],
    "scheduler/forecast/phase.py": [
        "tests/forecast/test_forecast_phase_exact.py",
        "tests/forecast/test_forecast_phase.py",
    ],
    "scheduler/forecast/mixture.py": [
        "tests/forecast/test_forecast_mixture.py",
        "tests/forecast/test_forecast_phase.py",
    ],
    "scheduler/forecast/pool.py": [
        "tests/forecast/test_forecast_pool_dag.py",
        "tests/forecast/test_forecast_prewarm_v2.py",
        "tests/forecast/test_forecast_pool_edges.py",
    ],
    "scheduler/forecast/dag.py": [
        "tests/forecast/test_forecast_dag_edges.py",
        "tests/forecast/test_forecast_pool_dag.py",
        "tests/forecast/test_forecast_prewarm_v2.py",
    ],
    "scheduler/policies/oracle.py": [
        "tests/scheduler/test_oracle_edges.py",
        "tests/scheduler/test_oracle_qos.py",
        "tests/scheduler/test_oracle_static.py",
    ],
    # (test_cfg_online_sim.py reads stack.yml, which the throw-away copy does not hold)
    "scheduler/policies/aquatope_config.py": [
        "tests/scheduler/test_aquatope_config_edges.py",
        "tests/configure/test_cfg_policy.py",
    ],
    "scheduler/policies/aquatope.py": [
        "tests/scheduler/test_aquatope_edges.py",
        "tests/scheduler/test_aquatope_prewarm.py",
    ],
    "scheduler/policies/prewarm_config.py": [
        "tests/scheduler/test_prewarm_config.py",
        "tests/scheduler/test_aquatope_edges.py",
    ],
    # (test_aquatope_prewarm_local.py runs live replicas: too slow to repeat per mutant)
    "scheduler/policies/aquatope_prewarm.py": [
        "tests/scheduler/test_aquatope_prewarm_edges.py",
        "tests/scheduler/test_aquatope_prewarm.py",
        "tests/scheduler/test_aquatope_edges.py",
        "tests/scheduler/test_prewarm_timer_sim.py",
        "tests/scheduler/test_prewarm_video.py",
        "tests/forecast/test_forecast_prewarm_v2.py",
        "tests/forecast/test_forecast_phase.py",
    ],
    "loadgen/traces/azure2021.py": [
        "tests/loadgen/test_trace_readers_edges.py",
        "tests/loadgen/test_azure_readers.py",
    ],
    "loadgen/traces/counts.py": [
        "tests/loadgen/test_trace_readers_edges.py",
        "tests/loadgen/test_azure_readers.py",
    ],
    "scheduler/policies/slots.py": [
        "tests/scheduler/test_slots_static_pool_edges.py",
        "tests/scheduler/test_keepalive.py",
        "tests/scheduler/test_hybrid_histogram.py",
    ],
    "scheduler/policies/static_pool.py": [
        "tests/scheduler/test_slots_static_pool_edges.py",
        "tests/scheduler/test_oracle_static.py",
        "tests/scheduler/test_policies_common.py",
    ],
    "testbed/gateway/pool.py": [
        "tests/gateway/test_pool_lifecycle.py",  # first: drives the pool directly, in seconds
        "tests/gateway/test_local_backend.py",
        "tests/gateway/test_replica_churn.py",
        "tests/gateway/test_api.py",
        "tests/contract/test_sim_vs_live.py",
    ],
}
# modules whose code runs only in processes the tests start (the gateway): mutmut maps tests to
# mutants by the calls it sees in the pytest process, so it would call every mutant "not
# reached". Each sampled mutant is tested directly instead: its tests run with the mutant
# switched on through ``MUTANT_UNDER_TEST``, which the processes they start inherit.
SUBPROCESS_MODULES = frozenset({"testbed/gateway/pool.py"})

_DIRECT_TIMEOUT_S = 600.0  # one direct test run of a mutant (a hang counts as killed)
COPIED = ["testbed", "loadgen", "scheduler", "functions", "tests", "pyproject.toml"]
STATUSES = (
    "killed",
    "survived",
    "no tests",
    "timeout",
    "suspicious",
    "skipped",
    "segfault",
    "not checked",
)


def _mutmut_section(module: str, tests: list[str]) -> str:
    package = module.split("/", 1)[0]
    args = json.dumps([*tests, "-p", "no:cacheprovider", "-x", "-q"])
    return (
        "\n[tool.mutmut]\n"
        f'source_paths = ["{package}"]\n'
        f'only_mutate = ["{module}"]\n'
        f"pytest_add_cli_args_test_selection = {args}\n"
        'also_copy = ["testbed", "loadgen", "scheduler", "functions"]\n'
        "use_git_change_detection = false\n"
    )


def _copy_repo(into: Path, module: str, tests: list[str]) -> None:
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, into / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, into / name)
    # pytest's importlib mode cannot place tests/ as a namespace package under mutmut's
    # sys.path (``tests.helpers`` is then not found); a regular package it can
    (into / "tests" / "__init__.py").touch()
    pyproject = into / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + _mutmut_section(module, tests))


def _statuses(results_text: str) -> dict[str, str]:
    """``mutmut results --all true`` lines (``name: status``) as a mapping."""
    out = {}
    for line in results_text.splitlines():
        name, sep, status = line.strip().partition(": ")
        if sep and status in STATUSES:
            out[name] = status
    return out


def _wilson(killed: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion (the score of a random sample of mutants)."""
    if n == 0:
        return (math.nan, math.nan)
    p = killed / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(mid - half, 3), round(mid + half, 3))


def _bounded(
    cmd: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float, kill: int
) -> tuple[int, str] | None:
    """Run ``cmd`` in a session of its own: ``(exit code, output)``, or None when it ran past
    ``timeout_s`` (its whole process group is then sent ``kill``)."""
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, kill)
            proc.communicate()
            return None
    return proc.returncode, output


class _Mutmut:
    """``python -m mutmut`` in one throw-away copy, each call bounded by a deadline."""

    def __init__(self, work: Path, deadline: float) -> None:
        self.work = work
        self.deadline = deadline
        # only the mutated copy is importable, also in the processes tests start (gateways);
        # the folder must exist before Python starts, or the path entry is cached as dead
        (work / "mutants").mkdir()
        self.env = {**os.environ, "PYTHONPATH": str(work / "mutants")}

    def run(self, *args: str, uncovered_ok: bool = False) -> bool:
        """``mutmut run ARGS``; False when the deadline stopped it. ``uncovered_ok``: its
        exit when no test reaches any mutant is not a failure (the mutants are generated)."""
        done = _bounded(
            [sys.executable, "-m", "mutmut", "run", *args],
            cwd=self.work,
            env=self.env,
            timeout_s=max(1.0, self.deadline - time.monotonic()),
            kill=signal.SIGTERM,
        )
        if done is None:  # bounded: score what was checked so far
            return False
        returncode, output = done
        if returncode != 0 and not (uncovered_ok and "could not find any test" in output):
            sys.stderr.write(output[-6000:])
            raise SystemExit(f"mutation: mutmut run {' '.join(args[:3])} failed ({returncode})")
        return True

    def output(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "mutmut", *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout


def _run_directly(
    mm: _Mutmut, tests: list[str], names: list[str], workers: int
) -> tuple[dict[str, str], bool]:
    """Test each mutant by running ``tests`` with it switched on (``MUTANT_UNDER_TEST``):
    ``killed`` when they fail or time out, ``survived`` when they pass, ``not checked`` past
    the deadline. Returns the statuses and whether every mutant was checked."""
    from concurrent.futures import ThreadPoolExecutor

    def pytest(mutant: str) -> str:
        left = mm.deadline - time.monotonic()
        if left <= 0:
            return "not checked"
        done = _bounded(
            [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider"],
            cwd=mm.work / "mutants",
            env={**mm.env, "MUTANT_UNDER_TEST": mutant},
            timeout_s=min(left, _DIRECT_TIMEOUT_S),
            kill=signal.SIGKILL,
        )
        if done is None:
            return "timeout" if left > _DIRECT_TIMEOUT_S else "not checked"
        returncode, output = done
        if not mutant and returncode != 0:
            sys.stderr.write(output[-6000:])
        return "survived" if returncode == 0 else "killed"

    if pytest("") != "survived":
        raise SystemExit(f"mutation: {' '.join(tests)} fail with no mutant switched on")
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        statuses = dict(zip(names, pool.map(pytest, names), strict=True))
    return statuses, all(v != "not checked" for v in statuses.values())


def run_module(
    module: str,
    tests: list[str],
    *,
    max_children: int,
    max_minutes: float,
    sample: int,
    seed: int,
    keep: Path | None,
) -> dict[str, Any]:
    """Mutate ``module``, test it with ``tests``; return the counts and the survivors.

    With ``sample`` > 0, every mutant is generated but only a seeded random sample of that
    many is tested; the score is then an estimate, given with its 95% interval.
    """
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aquatope-mut-") as tmp:
        work = Path(tmp)
        _copy_repo(work, module, tests)
        mm = _Mutmut(work, start + max_minutes * 60)
        children = ("--max-children", str(max_children))
        direct = module in SUBPROCESS_MODULES
        if direct or sample > 0:
            # generate all and collect test coverage, testing only each function's first
            # mutant (a module tested directly has no coverage mutmut can see)
            finished = mm.run(*children, "*__mutmut_1", uncovered_ok=direct)
            population = sorted(_statuses(mm.output("results", "--all", "true")))
            chosen = population
            if 0 < sample < len(population):
                chosen = sorted(random.Random(seed).sample(population, sample))
        else:
            finished = mm.run(*children)
            population = chosen = sorted(_statuses(mm.output("results", "--all", "true")))
        if direct:
            status, checked_all = _run_directly(mm, tests, chosen, max_children)
            finished = finished and checked_all
        else:
            if sample > 0:
                finished = finished and mm.run(*children, *chosen)
            status = _statuses(mm.output("results", "--all", "true"))
        checked = {name: status[name] for name in chosen if status[name] != "not checked"}
        survivors = sorted(n for n, st in checked.items() if st in ("survived", "no tests"))
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            diffs = [mm.output("show", name) for name in survivors]
            (keep / f"{module.replace('/', '.')}.survivors.diff").write_text("\n".join(diffs))
    wall_s = time.monotonic() - start
    counts = {st: sum(1 for v in checked.values() if v == st) for st in STATUSES}
    killed = counts["killed"] + counts["timeout"] + counts["segfault"]
    n = len(checked)
    return {
        "module": module,
        "tests": tests,
        "mutants": len(population),
        "tested": n,
        "finished": finished,
        "killed": killed,
        "survived": counts["survived"] + counts["suspicious"],
        "no_tests": counts["no tests"],
        "score": round(killed / n, 3) if n else None,
        "ci95": _wilson(killed, n) if len(chosen) < len(population) else None,
        "wall_s": round(wall_s, 1),
        "survivors": survivors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: all listed)")
    parser.add_argument("--max-children", type=int, default=2, help="parallel test workers")
    parser.add_argument(
        "--max-minutes", type=float, default=30.0, help="stop a module's run after this long"
    )
    parser.add_argument(
        "--sample", type=int, default=0, help="test a seeded random sample of N mutants (0: all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--keep", type=Path, help="folder to write each module's survivor diffs")
    args = parser.parse_args(argv)
    chosen = args.modules or list(MODULES)
    unknown = [m for m in chosen if m not in MODULES]
    if unknown:
        parser.error(f"no test selection for {unknown}; known: {', '.join(MODULES)}")
    figures = []
    for module in chosen:
        result = run_module(
            module,
            MODULES[module],
            max_children=args.max_children,
            max_minutes=args.max_minutes,
            sample=args.sample,
            seed=args.seed,
            keep=args.keep,
        )
        figures.append(result)
        score = "n/a" if result["score"] is None else f"{100 * result['score']:.1f}%"
        if result["ci95"] is not None:
            low, high = result["ci95"]
            score += f" (95% CI {100 * low:.0f}-{100 * high:.0f}%)"
        print(
            f"{module}: {score} killed ({result['killed']}/{result['tested']} tested of "
            f"{result['mutants']}; {result['survived']} survived, {result['no_tests']} not "
            f"reached by its tests{'' if result['finished'] else '; stopped at the time bound'};"
            f" {result['wall_s']:.0f}s)",
            flush=True,
        )
    print(json.dumps({"mutation": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
