"""Reading object-detection's output in the classifier stages."""

from __future__ import annotations

from typing import Any

import numpy as np

from functions.common import digits
from functions.common.http import BadInput, field

__all__ = ["read_crops"]


def read_crops(request: dict[str, Any]) -> tuple[np.ndarray, list[list[int]]]:
    """The crops and boxes of an object-detection response.

    Returns:
        ``(features n x 256 float32, boxes)``.

    Raises:
        BadInput: ``detections`` is missing or malformed.
    """
    detections = field(request, "detections", list)
    side = digits.FEATURE_PX
    feats: list[np.ndarray] = []
    boxes: list[list[int]] = []
    for i, det in enumerate(detections):
        if not isinstance(det, dict):
            raise BadInput(f"detections[{i}] must be an object")
        crop = digits.decode_u8(field(det, "crop", str, where=f"detections[{i}]"), side, side)
        feats.append(crop.reshape(-1))
        box = det.get("box", [])
        boxes.append([int(v) for v in box] if isinstance(box, list) else [])
    if not feats:
        return np.zeros((0, side * side), dtype=np.float32), boxes
    return np.stack(feats), boxes
