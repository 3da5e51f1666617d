"""The OpenFaaS-compatible gateway: routing, queueing, cold starts, metrics, workflows."""

from __future__ import annotations

__all__: list[str] = []
