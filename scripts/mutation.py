"""Mutation testing: run mutmut on the modules the figures depend on, one module at a time.

Each module is mutated in a throw-away copy of the repository (so the worktree never holds a
mutant) and tested against the tests of its own area only. Prints one line per module with
its score, then one JSON line with every figure. Usage::

    python scripts/mutation.py                      # every module in MODULES
    python scripts/mutation.py testbed/report/cost.py --max-children 2

The score is killed / (killed + survived + timeouts counted as killed): mutants no test
reaches ("no tests") count as survivors, because nothing pins them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    "testbed/gateway/pool.py": ["tests/gateway/test_local_backend.py", "tests/gateway/test_api.py"],
}

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


def _count(results_text: str) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for line in results_text.splitlines():
        match = re.match(r"\s*\S+:\s*(.+?)\s*$", line)
        if match and match.group(1) in counts:
            counts[match.group(1)] += 1
    return counts


def run_module(
    module: str, tests: list[str], *, max_children: int, max_minutes: float, keep: Path | None
) -> dict:
    """Mutate ``module``, test it with ``tests``; return the counts and the survivors."""
    with tempfile.TemporaryDirectory(prefix="aquatope-mut-") as tmp:
        work = Path(tmp)
        _copy_repo(work, module, tests)
        # only the mutated copy is importable, also in the processes tests start (gateways);
        # the folder must exist before Python starts, or the path entry is cached as dead
        (work / "mutants").mkdir()
        env = {**os.environ, "PYTHONPATH": str(work / "mutants")}
        mutmut = [sys.executable, "-m", "mutmut"]
        start = time.monotonic()
        with subprocess.Popen(
            [*mutmut, "run", "--max-children", str(max_children)],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        ) as proc:
            try:
                output, _ = proc.communicate(timeout=max_minutes * 60)
            except subprocess.TimeoutExpired:  # bounded: score what was checked so far
                os.killpg(proc.pid, signal.SIGTERM)
                output, _ = proc.communicate()
        wall_s = time.monotonic() - start
        if proc.returncode != 0 and wall_s < max_minutes * 60:
            sys.stderr.write(output[-6000:])
            raise SystemExit(f"mutation: mutmut run failed on {module} (exit {proc.returncode})")
        listing = subprocess.run(
            [*mutmut, "results", "--all", "true"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        counts = _count(listing)
        survivors = [
            line.split(":")[0].strip()
            for line in listing.splitlines()
            if line.strip().endswith(("survived", "no tests"))
        ]
        diffs = []
        for name in survivors:
            shown = subprocess.run(
                [*mutmut, "show", name], cwd=work, env=env, capture_output=True, text=True
            )
            diffs.append(shown.stdout)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            stem = module.replace("/", ".")
            (keep / f"{stem}.survivors.diff").write_text("\n".join(diffs))
    killed = counts["killed"] + counts["timeout"] + counts["segfault"]
    total = killed + counts["survived"] + counts["no tests"] + counts["suspicious"]
    return {
        "module": module,
        "not_checked": counts["not checked"],
        "tests": tests,
        "mutants": total,
        "killed": killed,
        "survived": counts["survived"] + counts["suspicious"],
        "no_tests": counts["no tests"],
        "score": round(killed / total, 3) if total else None,
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
            keep=args.keep,
        )
        figures.append(result)
        score = "n/a" if result["score"] is None else f"{100 * result['score']:.1f}%"
        print(
            f"{module}: {score} killed ({result['killed']}/{result['mutants']}; "
            f"{result['survived']} survived, {result['no_tests']} not reached, "
            f"{result['not_checked']} not checked in time; "
            f"{result['wall_s']:.0f}s)",
            flush=True,
        )
    print(json.dumps({"mutation": [{k: v for k, v in f.items()} for f in figures]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
