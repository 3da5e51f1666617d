"""write-home-timeline: fan a stored post out to the home timeline of every follower of its
author and of every user it mentions.

Request: store-post's output (``post_id``, ``user_id``, ``created_at``, ``mentioned_ids``).
Response: ``{"post_id", "user_id", "recipients": int, "added": int}``.
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
    """Add the post to its readers' home timelines."""
    post_id = field(request, "post_id", int)
    user_id = field(request, "user_id", int)
    created_at = float(field(request, "created_at", (int, float)))
    mentioned = field(request, "mentioned_ids", list, default=[])
    if any(not isinstance(m, int) or isinstance(m, bool) for m in mentioned):
        raise BadInput("field 'mentioned_ids' must be a list of integers")
    recipients = (set(_STORE.followers(user_id)) | set(mentioned)) - {user_id}
    added = _STORE.add_to_timeline("home", recipients, post_id, created_at)
    return {"post_id": post_id, "user_id": user_id, "recipients": len(recipients), "added": added}
