"""`aquatope experiment check|run`: bad configs fail fast with one line naming the field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from testbed.cli import cli

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, policies: str, workflows: str = "[social-network]") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"name: c\nstack: {REPO / 'stack.yml'}\nworkflows: {workflows}\n"
        "trace: {kind: bursty, minutes: 2}\nduration_s: 30\n"
        f"policies:\n{policies}"
    )
    return path


def test_check_accepts_a_good_config(tmp_path: Path) -> None:
    path = _config(tmp_path, "  - name: always-on\n  - name: keepalive-knative\n")
    result = CliRunner().invoke(cli, ["experiment", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "always-on, keepalive-knative" in result.output
    assert "social-read-home" in result.output  # the mix resolved to its workflows


@pytest.mark.parametrize(
    ("policies", "workflows", "message"),
    [
        ("  - name: no-such-policy\n", "[social-network]", "policies.0: unknown policy"),
        (
            "  - name: keep-alive\n    params: {bogus: 1}\n",
            "[social-network]",
            "policies.0: policy keep-alive: unknown parameter 'bogus'",
        ),
        ("  - name: always-on\n", "[nope]", "workflows.0: unknown workflow 'nope'"),
    ],
)
def test_run_fails_fast_on_bad_policy_or_workflow(
    tmp_path: Path, policies: str, workflows: str, message: str
) -> None:
    path = _config(tmp_path, policies, workflows)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["experiment", "run", str(path), "-o", str(out)])
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()  # nothing started, nothing written


def test_two_runs_into_one_directory_give_one_clear_error(tmp_path: Path) -> None:
    """A second ``experiment run`` into a directory in use stops with one line, no traceback."""
    from testbed.experiment.results import LOCK_FILE, ResultsLock

    path = _config(tmp_path, "  - name: always-on\n")
    out = tmp_path / "out"
    with ResultsLock(out):
        assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())
        result = CliRunner().invoke(cli, ["experiment", "run", str(path), "-o", str(out)])
        assert result.exit_code == 1
        assert "directory in use by another experiment run" in result.output
        assert "Traceback" not in result.output
        assert not [p for p in out.iterdir() if p.name != LOCK_FILE]  # nothing written
    with ResultsLock(out):  # released: the next run may go ahead
        pass
