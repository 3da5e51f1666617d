"""digit-classifier: classify each detected crop with a small torch CNN.

Request: object-detection's output (``{"detections": [{"box", "crop"}, ...]}``).
Response: ``{"model": "cnn", "labels": [int], "confidences": [float],
"boxes": [[y0, x0, y1, x1]]}``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

try:
    from functions.common import digits, models
    from functions.common.crops import read_crops
    from functions.common.http import json_handler
except ModuleNotFoundError:  # the repository root is not on sys.path (plain runner process)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from functions.common import digits, models
    from functions.common.crops import read_crops
    from functions.common.http import json_handler

__all__ = ["handle"]

torch.set_num_threads(1)
_NET = models.load_digit_net()  # trained on first ever start, then read from the cache
with torch.inference_mode():  # one pass at start-up, so the cold start includes warm-up
    _NET(torch.zeros(1, 1, digits.FEATURE_PX, digits.FEATURE_PX))


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Label every crop in ``request["detections"]``."""
    feats, boxes = read_crops(request)
    labels: list[int] = []
    confidences: list[float] = []
    if len(feats):
        side = digits.FEATURE_PX
        with torch.inference_mode():
            prob = torch.softmax(_NET(torch.from_numpy(feats).reshape(-1, 1, side, side)), dim=1)
        conf, pred = prob.max(dim=1)
        labels = [int(v) for v in pred]
        confidences = [round(float(v), 4) for v in conf]
    return {"model": "cnn", "labels": labels, "confidences": confidences, "boxes": boxes}
