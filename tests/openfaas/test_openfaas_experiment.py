"""An experiment file on `backend: openfaas` against `aquatope up --platform openfaas`: the load
generator drives a workflow through our workflow front, every stage crosses the real OpenFaaS
gateway, and the `openfaas-ce` policy only observes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from testbed.backends.openfaas import OpenFaaSPlatform
from testbed.core.errors import BackendUnavailable
from testbed.experiment.results import find_runs, load_run
from testbed.openfaas_ce.source import find_source

pytestmark = [pytest.mark.openfaas, pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CONFIG = f"""\
name: tiny-openfaas
backend: openfaas
stack: {REPO / "stack.yml"}
workflows: [social-read-home]
trace:
  kind: bursty
  minutes: 2
  compress: 12
  options: {{rate_per_min: 40, on_min: 0.5, off_min: 0.5}}
duration_s: 8
warmup_s: 1
drain_s: 5
seeds: [3]
sample_s: 0.5
loadgen: {{timeout_s: 20, locust_csv: false}}
policies:
  - name: openfaas-ce
"""


def _aquatope(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    try:
        find_source()
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    home = tmp_path_factory.mktemp("openfaas-exp")
    up = _aquatope("up", "--platform", "openfaas", "--port", "0", "--no-deploy", home=home)
    assert up.returncode == 0, up.stderr + up.stdout
    yield home
    _aquatope("down", home=home)


def test_the_front_passes_management_calls_and_names_unknown_workflows(home: Path) -> None:
    info = json.loads((home / "gateway.json").read_text())
    password = (home / "basic-auth-password").read_text().strip()
    with httpx.Client(base_url=info["workflow_url"], timeout=10) as front:
        assert front.get("/system/functions").status_code == 401  # the real gateway's auth
        system = front.get("/system/info", auth=("admin", password)).json()
        assert system["provider"]["provider"] == "aquatope-testbed"
        ghost = front.post("/workflow/ghost", content=b"{}")
        assert ghost.status_code == 404 and "social-read-home" in ghost.json()["error"]


def test_experiment_runs_through_the_real_gateway(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    result = _aquatope("experiment", "run", str(config), "-o", str(out), home=home)
    assert result.returncode == 0, result.stderr + result.stdout
    (run_dir,) = find_runs([out])
    run = load_run(run_dir)
    requests = pd.read_csv(run_dir / "requests.csv")
    assert len(requests) > 20 and requests["ok"].all()
    decisions = [
        json.loads(line) for line in (run_dir / "decisions.jsonl").read_text().splitlines()
    ]
    assert decisions and all("openfaas-ce" in d.get("reason", "") for d in decisions)
    assert not [d for d in decisions if d["actions"]]  # it never scaled anything itself
    assert run.meta["complete"] is True
    # every stage call crossed the OpenFaaS gateway: its own counters saw them
    info = json.loads((home / "gateway.json").read_text())
    password = (home / "basic-auth-password").read_text().strip()
    with OpenFaaSPlatform(info["url"], password=password, metrics_url=info["metrics_url"]) as p:
        counted = p.metrics().functions
    stages = pd.read_csv(run_dir / "stages.csv")
    for function, calls in stages.groupby("function").size().items():
        assert counted[str(function)].completed >= calls
