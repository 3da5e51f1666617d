"""Prometheus and AlertManager configuration for the OpenFaaS CE autoscaler (written by us).

Prometheus scrapes the gateway's metrics port, records the per-function request rate and
raises ``APIHighInvocationRate`` while it stays above a threshold; AlertManager groups the
alert per function and posts it (and its resolution) to the gateway's ``POST /system/alert``,
which scales the function in steps of ``com.openfaas.scale.factor`` percent of
``com.openfaas.scale.max``, and back to ``com.openfaas.scale.min`` when it resolves.
Every address is on the stack's loopback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed.core.atomic import atomic_write_text
from testbed.core.errors import ConfigError

__all__ = [
    "ALERT_NAME",
    "RATE_RECORD",
    "AlertRules",
    "write_alertmanager_config",
    "write_prometheus_config",
]

ALERT_NAME = "APIHighInvocationRate"
RATE_RECORD = "function:gateway_function_invocation:rate"


@dataclass(frozen=True, kw_only=True)
class AlertRules:
    """The alert and scrape timing (defaults: OpenFaaS CE's).

    Args:
        threshold_rps: successful requests per second of one function that raise the alert.
        rate_window_s: window of the rate (``rate(...[10s])``).
        for_s: how long the rate must stay above the threshold before the alert fires.
        scrape_interval_s: Prometheus scrape and rule evaluation interval.
        group_wait_s / group_interval_s / repeat_interval_s: AlertManager notification timing
            (a firing alert is re-sent every ``repeat_interval_s``: one scale step each).
    """

    threshold_rps: float = 5.0
    rate_window_s: float = 10.0
    for_s: float = 5.0
    scrape_interval_s: float = 5.0
    group_wait_s: float = 5.0
    group_interval_s: float = 10.0
    repeat_interval_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("threshold_rps", "rate_window_s", "scrape_interval_s", "group_interval_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"alert rules: {name} must be positive, got {getattr(self, name)}"
                )
        for name in ("for_s", "group_wait_s", "repeat_interval_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"alert rules: {name} must be >= 0, got {getattr(self, name)}")
        if self.rate_window_s < 2 * self.scrape_interval_s:
            raise ConfigError(
                "alert rules: rate_window_s must cover two scrapes "
                f"({self.rate_window_s:g} < 2 x {self.scrape_interval_s:g})"
            )


def _dur(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def write_prometheus_config(
    directory: Path, *, rules: AlertRules, metrics_target: str, alertmanager_target: str
) -> Path:
    """Write ``prometheus.yml`` and ``rules.yml`` into ``directory``.

    Args:
        metrics_target: ``host:port`` of the gateway's metrics endpoint.
        alertmanager_target: ``host:port`` of AlertManager.

    Returns:
        The path of ``prometheus.yml``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rate = (
        "sum by (function_name) (rate(gateway_function_invocation_total"
        f'{{code="200"}}[{_dur(rules.rate_window_s)}]))'
    )
    rule_groups = {
        "groups": [
            {
                "name": "openfaas",
                "rules": [
                    {"record": RATE_RECORD, "expr": rate},
                    {
                        "alert": ALERT_NAME,
                        "expr": f"{RATE_RECORD} > {rules.threshold_rps:g}",
                        "for": _dur(rules.for_s),
                        "labels": {"service": "gateway", "severity": "major"},
                        "annotations": {
                            "summary": "High invocation rate on {{ $labels.function_name }}",
                            "description": (
                                "{{ $labels.function_name }}: {{ $value }} req/s above "
                                f"{rules.threshold_rps:g}"
                            ),
                        },
                    },
                ],
            }
        ]
    }
    config = {
        "global": {
            "scrape_interval": _dur(rules.scrape_interval_s),
            "evaluation_interval": _dur(rules.scrape_interval_s),
        },
        "rule_files": [str(directory / "rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_target]}]}]},
        "scrape_configs": [
            {"job_name": "openfaas-gateway", "static_configs": [{"targets": [metrics_target]}]}
        ],
    }
    atomic_write_text(directory / "rules.yml", yaml.safe_dump(rule_groups, sort_keys=False))
    path = directory / "prometheus.yml"
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))
    return path


def write_alertmanager_config(
    directory: Path,
    *,
    rules: AlertRules,
    alert_url: str,
    username: str,
    password_file: Path,
) -> Path:
    """Write ``alertmanager.yml``: ``APIHighInvocationRate`` to the gateway's ``/system/alert``.

    The password is read by AlertManager from ``password_file`` (never written here).

    Returns:
        The path of ``alertmanager.yml``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "route": {
            "group_by": ["alertname", "function_name"],
            "group_wait": _dur(rules.group_wait_s),
            "group_interval": _dur(rules.group_interval_s),
            "repeat_interval": _dur(rules.repeat_interval_s),
            "receiver": "scale-up",
            "routes": [
                {
                    "matchers": ['service="gateway"', f'alertname="{ALERT_NAME}"'],
                    "receiver": "scale-up",
                }
            ],
        },
        "receivers": [
            {
                "name": "scale-up",
                "webhook_configs": [
                    {
                        "url": alert_url,
                        "send_resolved": True,
                        "http_config": {
                            "basic_auth": {
                                "username": username,
                                "password_file": str(password_file),
                            }
                        },
                    }
                ],
            }
        ],
    }
    path = directory / "alertmanager.yml"
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))
    return path
