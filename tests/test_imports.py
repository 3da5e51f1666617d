"""Import hygiene: the light entry points must not pull in torch, Locust/gevent or docker."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "gevent", "locust", "docker", "botorch", "gpytorch")


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    [
        "import testbed",
        "import scheduler",
        "import loadgen",
        "import testbed.runner.server",
        "from testbed.cli import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass",
    ],
)
def test_light_imports(code: str) -> None:
    loaded = _modules_after(code)
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"{code!r} imported {heavy[:5]}"


def test_runner_imports_only_the_standard_library() -> None:
    loaded = _modules_after("import testbed.runner.server")
    third_party = {"aiohttp", "pydantic", "yaml", "httpx", "numpy", "click", "rich"}
    assert not {m.split(".")[0] for m in loaded} & third_party


def test_scheduler_imports_no_loadgen_and_only_testbed_types() -> None:
    loaded = _modules_after("import scheduler, scheduler.registry\nscheduler.available_policies()")
    assert not any(m == "loadgen" or m.startswith("loadgen.") for m in loaded)
    testbed_modules = {m for m in loaded if m.startswith("testbed.")}
    assert all(m.startswith("testbed.core") for m in testbed_modules), testbed_modules
