"""image-processing: decode a PNG, grey-scale it, resize it to the working canvas, normalise it.

Request: ``{"image": "<base64 PNG or JPEG>"}`` (any size up to 4 Mpx, colour or grey).
Response: ``{"height": 64, "width": 160, "canvas": "<base64, one byte per pixel>",
"source": {"width", "height", "mode"}, "inverted": bool, "contrast": float}``; the canvas is
grey levels in [0, 1] quantised to bytes, background dark, contrast stretched.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

try:
    from functions.common import digits
    from functions.common.http import field, json_handler
except ModuleNotFoundError:  # the repository root is not on sys.path (plain runner process)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from functions.common import digits
    from functions.common.http import field, json_handler

__all__ = ["handle"]


def normalise(gray: np.ndarray) -> tuple[np.ndarray, bool, float]:
    """Map grey levels to [0, 1] with a dark background and the ink stretched to full range.

    Args:
        gray: ``H x W`` uint8.

    Returns:
        ``(canvas float32 H x W, inverted, contrast)`` where contrast is the stretched range.
    """
    x = gray.astype(np.float32) / 255.0
    inverted = bool(np.median(x) > 0.5)
    if inverted:
        x = 1.0 - x
    lo, hi = np.percentile(x, [1.0, 99.9])
    contrast = float(hi - lo)
    if contrast < 1e-3:
        return np.zeros_like(x), inverted, contrast
    return np.clip((x - lo) / contrast, 0.0, 1.0), inverted, contrast


def _warm_up() -> None:
    """Decode and process a tiny PNG once at start-up (Pillow loads its plugins lazily)."""
    tiny = digits.encode_png_b64(np.zeros((4, 4, 3), dtype=np.uint8))
    gray = digits.decode_png_b64(tiny).convert("L").resize((8, 4), Image.Resampling.BILINEAR)
    digits.encode_u8(normalise(np.asarray(gray, dtype=np.uint8))[0])


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Decode, grey-scale, resize and normalise ``request["image"]``."""
    img = digits.decode_png_b64(field(request, "image", str))
    source = {"width": img.width, "height": img.height, "mode": img.mode}
    gray = img.convert("L").resize((digits.CANVAS_W, digits.CANVAS_H), Image.Resampling.BILINEAR)
    canvas, inverted, contrast = normalise(np.asarray(gray, dtype=np.uint8))
    return {
        "height": digits.CANVAS_H,
        "width": digits.CANVAS_W,
        "canvas": digits.encode_u8(canvas),
        "source": source,
        "inverted": inverted,
        "contrast": round(contrast, 4),
    }


_warm_up()
