"""object-detection: find digit-like objects on the canvas with a fully convolutional torch net.

The objectness net (``functions.common.models``) maps the canvas to an objectness map;
connected regions above 0.5 become detections, specks and noise are rejected, and each object
is cropped, centred and resized to the classifiers' 16 x 16 input.

Request: image-processing's output (``{"height", "width", "canvas"}``).
Response: ``{"count", "height", "width", "detections": [{"box": [y0, x0, y1, x1],
"score", "crop": "<base64, 16 x 16 bytes>"}]}``, detections left to right.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    from functions.common import digits, models
    from functions.common.http import BadInput, json_handler
except ModuleNotFoundError:  # the repository root is not on sys.path (plain runner process)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from functions.common import digits, models
    from functions.common.http import BadInput, json_handler

__all__ = ["handle"]

torch.set_num_threads(1)
_NET = models.load_objectness_net()  # trained on first ever start, then read from the cache
# one pass over a blank canvas at start-up, so lazy imports and allocations hit the cold start
models.detect(_NET, np.zeros((digits.CANVAS_H, digits.CANVAS_W), dtype=np.float32))
digits.crop_features(np.zeros((digits.DIGIT_PX, digits.DIGIT_PX), dtype=np.float32))


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Detect and crop the objects on ``request["canvas"]``."""
    height, width = request.get("height"), request.get("width")
    canvas = digits.decode_u8(request.get("canvas"), height, width)
    if canvas.shape[0] % models.DETECT_POOL or canvas.shape[1] % models.DETECT_POOL:
        raise BadInput(f"canvas sides must be multiples of {models.DETECT_POOL}")
    found = models.detect(_NET, canvas)
    detections = [
        {
            "box": list(box),
            "score": round(score, 4),
            "crop": digits.encode_u8(digits.crop_features(crop)),
        }
        for box, score, crop in found
    ]
    return {"count": len(detections), "height": height, "width": width, "detections": detections}
