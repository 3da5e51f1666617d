"""OpenFaaS CE on this machine: the real OpenFaaS gateway (built from its source archive),
Prometheus and AlertManager with the CE alert rules, in front of our provider.

``start_stack`` / ``stop_stack`` are what ``aquatope up --platform openfaas`` and
``aquatope down`` call.
"""

from __future__ import annotations

from testbed.openfaas_ce.monitoring import AlertRules
from testbed.openfaas_ce.stack import (
    OpenFaaSStack,
    StackOptions,
    running_stack,
    start_stack,
    stop_stack,
)

__all__ = [
    "AlertRules",
    "OpenFaaSStack",
    "StackOptions",
    "running_stack",
    "start_stack",
    "stop_stack",
]
