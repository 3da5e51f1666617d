"""noop: answers at once with a tiny JSON object (for measuring gateway overhead).

Request: anything (ignored). Response: ``{"ok": true}``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["handle"]


def handle(event: Any, context: Any) -> dict[str, Any]:
    """Return ``{"ok": true}``."""
    return {
        "statusCode": 200,
        "body": {"ok": True},
        "headers": {"Content-Type": "application/json"},
    }
