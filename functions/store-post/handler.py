"""store-post: join text-filter's and media-filter's results and store the post.

Request (a join): ``{"text-filter": {...}, "media-filter": {...}}`` for the same ``post_id``.
Response: ``{"post_id", "user_id", "created_at", "mentioned_ids": [int], "stored": bool}``
(``stored`` is false when the post id was already stored, e.g. on a retry).
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
    """Store the filtered post with its media descriptions."""
    text = field(request, "text-filter", dict)
    media = field(request, "media-filter", dict)
    post_id = field(text, "post_id", int, where="text-filter")
    if field(media, "post_id", int, where="media-filter") != post_id:
        raise BadInput("text-filter and media-filter describe different posts")
    user_id = field(text, "user_id", int, where="text-filter")
    mentions = field(text, "mentions", list, where="text-filter")
    mentioned_ids = sorted(
        {
            int(m["user_id"])
            for m in mentions
            if isinstance(m, dict) and isinstance(m.get("user_id"), int)
        }
    )
    post = {
        "post_id": post_id,
        "user_id": user_id,
        "text": field(text, "text", str, where="text-filter"),
        "mentions": mentions,
        "media": field(media, "media", list, where="media-filter"),
        "created_at": float(field(text, "created_at", (int, float), where="text-filter")),
    }
    urls = [u for u in field(text, "urls", list, where="text-filter") if isinstance(u, dict)]
    if any(not isinstance(u.get("url"), str) or not isinstance(u.get("short"), str) for u in urls):
        raise BadInput("text-filter.urls items need string 'url' and 'short'")
    if _STORE.user_name(user_id) is None:
        raise BadInput(f"text-filter.user_id: no user {user_id}")
    stored = _STORE.store_post(post, urls)
    return {
        "post_id": post_id,
        "user_id": user_id,
        "created_at": post["created_at"],
        "mentioned_ids": mentioned_ids,
        "stored": stored,
    }
