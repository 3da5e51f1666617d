"""read-post: fetch posts by id (the second stage of both read workflows).

Request: ``{"post_ids": [int] (at most 100), "user_id"?: int}`` (a timeline reader's output).
Response: ``{"user_id", "posts": [{"post_id", "user_id", "username", "text", "mentions",
"urls", "media", "created_at"}], "missing": [int]}`` in the order asked; media thumbnails are
left out (``sha256``, sizes and type stay).
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

MAX_POSTS = 100


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Look the posts up."""
    post_ids = field(request, "post_ids", list)
    if len(post_ids) > MAX_POSTS:
        raise BadInput(f"field 'post_ids' holds {len(post_ids)} ids, at most {MAX_POSTS} allowed")
    if any(not isinstance(p, int) or isinstance(p, bool) for p in post_ids):
        raise BadInput("field 'post_ids' must be a list of integers")
    found = _STORE.posts(post_ids)
    posts = []
    for pid in post_ids:
        post = found.get(pid)
        if post is not None:
            post["media"] = [
                {k: v for k, v in m.items() if k != "thumbnail"} for m in post["media"]
            ]
            posts.append(post)
    return {
        "user_id": request.get("user_id"),
        "posts": posts,
        "missing": [p for p in post_ids if p not in found],
    }
