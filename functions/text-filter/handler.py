"""text-filter: mentions, URL shortening and banned-word masking of a post's text.

Request: compose-post's output (``post_id``, ``user_id``, ``text``, ...).
Response: ``{"post_id", "user_id", "created_at", "text", "mentions": [{"username", "user_id"}],
"urls": [{"url", "short"}], "masked_words"}``; the text has its URLs replaced by short ones and
banned words masked. Mentions of unknown users are dropped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    from functions.common import social
    from functions.common import text as textkit
    from functions.common.http import field, json_handler
except ModuleNotFoundError:  # the repository root is not on sys.path (plain runner process)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from functions.common import social
    from functions.common import text as textkit
    from functions.common.http import field, json_handler

__all__ = ["handle"]

_STORE = social.open_store()  # opened (and seeded on first ever open) at start-up


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Extract mentions and URLs, shorten URLs, mask banned words."""
    post_id = field(request, "post_id", int)
    user_id = field(request, "user_id", int)
    created_at = field(request, "created_at", (int, float))
    text = field(request, "text", str)
    names = textkit.extract_mentions(text)
    known = _STORE.users_by_name(names)
    mentions = [{"username": n, "user_id": known[n]} for n in names if n in known]
    urls = [{"url": u, "short": textkit.shorten(u)} for u in textkit.extract_urls(text)]
    for item in sorted(urls, key=lambda u: -len(u["url"])):
        text = text.replace(item["url"], item["short"])
    text, masked = textkit.filter_banned(text)
    return {
        "post_id": post_id,
        "user_id": user_id,
        "created_at": created_at,
        "text": text,
        "mentions": mentions,
        "urls": urls,
        "masked_words": masked,
    }
