"""digit-classifier-svm: classify each detected crop with an RBF support-vector machine.

Request: object-detection's output (``{"detections": [{"box", "crop"}, ...]}``).
Response: ``{"model": "svm", "labels": [int], "margins": [float], "boxes": [[y0, x0, y1, x1]]}``
where a margin is the winning class's one-vs-rest decision value.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

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

_SVM = models.load_svm()  # trained on first ever start, then read from the cache
_SVM.decision_function(np.zeros((1, digits.FEATURE_PX**2), dtype=np.float32))  # warm-up


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Label every crop in ``request["detections"]``."""
    feats, boxes = read_crops(request)
    labels: list[int] = []
    margins: list[float] = []
    if len(feats):
        scores = _SVM.decision_function(feats)
        best = scores.argmax(axis=1)
        labels = [int(_SVM.classes_[i]) for i in best]
        margins = [round(float(scores[j, i]), 4) for j, i in enumerate(best)]
    return {"model": "svm", "labels": labels, "margins": margins, "boxes": boxes}
