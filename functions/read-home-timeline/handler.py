"""read-home-timeline: the post ids on a user's home timeline, newest first.

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
    from functions.common.http import BadInput, field, json_handler
except ModuleNotFoundError:  # the repository root is not on sys.path (plain runner process)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from functions.common import social
    from functions.common.http import BadInput, field, json_handler

__all__ = ["handle"]

_STORE = social.open_store()  # opened (and seeded on first ever open) at start-up

MAX_PAGE = 100


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Page through the home timeline."""
    user_id = field(request, "user_id", int)
    start = field(request, "start", int, default=0)
    stop = field(request, "stop", int, default=start + 10)
    if not 0 <= start < stop or stop - start > MAX_PAGE:
        raise BadInput(
            f"need 0 <= start < stop and stop - start <= {MAX_PAGE}, got {start}..{stop}"
        )
    if _STORE.user_name(user_id) is None:
        raise BadInput(f"field 'user_id': no user {user_id}")
    post_ids = _STORE.timeline("home", user_id, start, stop)
    return {"user_id": user_id, "start": start, "stop": stop, "post_ids": post_ids}
