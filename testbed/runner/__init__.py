"""The function runner (watchdog) that every replica runs. Stdlib only."""

from __future__ import annotations

__all__: list[str] = []
