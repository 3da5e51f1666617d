"""The Prometheus and AlertManager configs we write: accepted by promtool/amtool, and the alert
rule fires on the CE condition (promtool's rule unit tests, no server)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from testbed.core.errors import ConfigError
from testbed.openfaas_ce.monitoring import (
    ALERT_NAME,
    AlertRules,
    write_alertmanager_config,
    write_prometheus_config,
)

SERIES = 'gateway_function_invocation_total{{function_name="{name}.openfaas-fn",code="200"}}'


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} missing: scripts/ensure-system-deps.sh installs it (Debian prometheus)"
        )
    return path


@pytest.mark.openfaas
def test_prometheus_config_and_rules_are_valid(tmp_path: Path) -> None:
    path = write_prometheus_config(
        tmp_path, rules=AlertRules(), metrics_target="127.0.0.1:8082",
        alertmanager_target="127.0.0.1:9093",
    )  # fmt: skip
    out = subprocess.run(
        [_tool("promtool"), "check", "config", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 rules found" in out.stdout + out.stderr


@pytest.mark.openfaas
def test_alert_fires_above_the_threshold_only(tmp_path: Path) -> None:
    """promtool evaluates our rules on synthetic series: 10 req/s fires, 2 req/s does not."""
    write_prometheus_config(
        tmp_path, rules=AlertRules(), metrics_target="127.0.0.1:8082",
        alertmanager_target="127.0.0.1:9093",
    )  # fmt: skip
    unit = {
        "rule_files": [str(tmp_path / "rules.yml")],
        "evaluation_interval": "5s",
        "tests": [
            {
                "interval": "5s",
                "input_series": [
                    {
                        "series": SERIES.format(name="hot"),
                        "values": "0+50x20",  # 50 per 5 s scrape = 10 req/s
                    },
                    {
                        "series": SERIES.format(name="calm"),
                        "values": "0+10x20",  # 2 req/s
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "60s",
                        "alertname": ALERT_NAME,
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "function_name": "hot.openfaas-fn",
                                    "service": "gateway",
                                    "severity": "major",
                                },
                                "exp_annotations": {
                                    "summary": "High invocation rate on hot.openfaas-fn",
                                    "description": "hot.openfaas-fn: 10 req/s above 5",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "unit.yml"
    test_file.write_text(yaml.safe_dump(unit))
    out = subprocess.run(
        [_tool("promtool"), "test", "rules", str(test_file)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.openfaas
def test_alertmanager_config_is_valid_and_keeps_the_password_out(tmp_path: Path) -> None:
    secret = tmp_path / "basic-auth-password"
    secret.write_text("s3cret-value")
    path = write_alertmanager_config(
        tmp_path, rules=AlertRules(), alert_url="http://127.0.0.1:8080/system/alert",
        username="admin", password_file=secret,
    )  # fmt: skip
    out = subprocess.run(
        [_tool("amtool"), "check-config", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "s3cret-value" not in path.read_text()
    hook = yaml.safe_load(path.read_text())["receivers"][0]["webhook_configs"][0]
    assert hook["url"].endswith("/system/alert") and hook["send_resolved"] is True


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold_rps": 0}, "threshold_rps"),
        ({"for_s": -1}, "for_s"),
        ({"rate_window_s": 5.0, "scrape_interval_s": 5.0}, "rate_window_s"),
    ],
)
def test_bad_rules_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        AlertRules(**kwargs)
