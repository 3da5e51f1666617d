"""read-user-timeline: the post ids on a user's user timeline, newest first.

Request: ``{"user_id": int, "start": int = 0, "stop": int = 10}`` (``0 <= start < stop``,
at most 100 posts).
Response: ``{"user_id", "start", "stop", "post_ids": [int]}``, read-post's input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    from functions.common import social
    from functions.common.http import json_handler
except ModuleNotFoundError:  # the repository root is not on sys.path (plain runner process)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from functions.common import social
    from functions.common.http import json_handler

__all__ = ["handle"]

_STORE = social.open_store()  # opened (and seeded on first ever open) at start-up


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Page through the user timeline."""
    return social.read_timeline(_STORE, "user", request)
