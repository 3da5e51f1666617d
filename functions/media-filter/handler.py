"""media-filter: decode and validate a post's media, make thumbnails and content hashes.

Request: compose-post's output (``post_id``, ``media``: ``[{"type": "image/png"|"image/jpeg",
"data": base64}]``).
Response: ``{"post_id", "media": [{"type", "width", "height", "bytes", "sha256",
"thumbnail": base64 PNG at most 32 x 32}]}``. Media that is not a decodable image of the
declared type, larger than 1 MB or 4 Mpx is a 400.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
from pathlib import Path
from typing import Any

from PIL import Image

try:
    from functions.common.http import BadInput, decode_base64, field, json_handler
except ModuleNotFoundError:  # the repository root is not on sys.path (plain runner process)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from functions.common.http import BadInput, decode_base64, field, json_handler

__all__ = ["handle"]

MAX_MEDIA_BYTES = 1_000_000
MAX_PIXELS = 4_000_000
THUMBNAIL_PX = 32
_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG"}


def inspect_media(item: dict[str, Any], where: str) -> dict[str, Any]:
    """Decode one media item and describe it.

    Raises:
        BadInput: unknown type, bad base64, too large, or not an image of that type.
    """
    kind = field(item, "type", str, where=where)
    if kind not in _FORMATS:
        raise BadInput(f"{where}.type {kind!r} not supported; use one of {sorted(_FORMATS)}")
    data = field(item, "data", str, where=where)
    raw = decode_base64(data, max_bytes=MAX_MEDIA_BYTES, what=f"{where}.data")
    try:
        img = Image.open(io.BytesIO(raw))
        if img.format != _FORMATS[kind]:
            raise BadInput(f"{where}: declared {kind} but the data is {img.format or 'unknown'}")
        if img.width * img.height > MAX_PIXELS:
            raise BadInput(f"{where}: {img.width}x{img.height} image is too large")
        img.load()
    except BadInput:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadInput(f"{where}.data is not a decodable image: {exc}") from None
    thumb = img.convert("RGB")
    thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")
    return {
        "type": kind,
        "width": img.width,
        "height": img.height,
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "thumbnail": base64.b64encode(buf.getvalue()).decode("ascii"),
    }


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Validate every media item of the post."""
    post_id = field(request, "post_id", int)
    media = field(request, "media", list, default=[])
    out = []
    for i, item in enumerate(media):
        if not isinstance(item, dict):
            raise BadInput(f"media[{i}] must be an object")
        out.append(inspect_media(item, f"media[{i}]"))
    return {"post_id": post_id, "media": out}
