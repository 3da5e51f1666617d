"""write-user-timeline: put a stored post on its author's own timeline.

Request: store-post's output (``post_id``, ``user_id``, ``created_at``).
Response: ``{"post_id", "user_id", "added": int}``.
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


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Add the post to its author's user timeline."""
    post_id = field(request, "post_id", int)
    user_id = field(request, "user_id", int)
    created_at = float(field(request, "created_at", (int, float)))
    if _STORE.user_name(user_id) is None:
        raise BadInput(f"field 'user_id': no user {user_id}")
    added = _STORE.add_to_timeline("user", [user_id], post_id, created_at)
    return {"post_id": post_id, "user_id": user_id, "added": added}
