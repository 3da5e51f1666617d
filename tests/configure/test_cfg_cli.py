"""``aquatope configure`` in-process (CliRunner) on the synthetic backend."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from testbed.cli import cli


def test_configure_prints_choice_and_trials_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = CliRunner().invoke(
        cli,
        [
            "configure",
            "--workflow",
            "chain-2",
            "--backend",
            "synthetic",
            "--method",
            "power-tuning",
            "--budget",
            "10",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "chosen configuration" in result.output
    assert "cheaper than all-max" in " ".join(result.output.split())
    data = json.loads(out.read_text())
    assert data["method"] == "power-tuning" and len(data["trials"]) == 10
    assert data["best"]["latency_s"] <= data["qos_target_s"]
    assert data["trials"][0]["source"] == "probe"


def test_unreachable_qos_exits_1_with_a_clear_message() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "configure",
            "--workflow",
            "chain-2",
            "--backend",
            "synthetic",
            "--qos",
            "0.001",
            "--method",
            "random",
            "--budget",
            "5",
        ],
    )
    assert result.exit_code == 1
    assert "QoS cannot be met" in result.output
    assert "Traceback" not in result.output


def test_unknown_synthetic_workflow_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        cli, ["configure", "--workflow", "nope", "--backend", "synthetic", "--budget", "3"]
    )
    assert result.exit_code == 2 and "unknown synthetic problem" in result.output
