"""compose-post: the entry of the social network's write path.

Checks the author exists and the post's shape, gives it an id and a timestamp, and passes
everything on to text-filter and media-filter.

Request: ``{"user_id": int, "text": str (1..2000 chars), "media": [{"type", "data"}] (optional,
at most 4)}``.
Response: ``{"post_id", "user_id", "username", "text", "media", "created_at"}``.
"""

from __future__ import annotations

import secrets
import sys
import time
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

MAX_TEXT_CHARS = 2000
MAX_MEDIA = 4


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Validate and stamp a new post."""
    user_id = field(request, "user_id", int)
    text = field(request, "text", str)
    if not text.strip() or len(text) > MAX_TEXT_CHARS:
        raise BadInput(f"field 'text' must hold 1..{MAX_TEXT_CHARS} characters")
    media = field(request, "media", list, default=[])
    if len(media) > MAX_MEDIA:
        raise BadInput(f"field 'media' holds {len(media)} items, at most {MAX_MEDIA} allowed")
    for i, item in enumerate(media):
        if not isinstance(item, dict):
            raise BadInput(f"media[{i}] must be an object with 'type' and 'data'")
        field(item, "type", str, where=f"media[{i}]")
        field(item, "data", str, where=f"media[{i}]")
    name = _STORE.user_name(user_id)
    if name is None:
        raise BadInput(f"field 'user_id': no user {user_id}")
    return {
        "post_id": secrets.randbits(52),
        "user_id": user_id,
        "username": name,
        "text": text,
        "media": media,
        "created_at": time.time(),
    }
