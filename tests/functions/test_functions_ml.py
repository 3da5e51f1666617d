"""The ml-pipeline's handlers doing their real work in-process."""

from __future__ import annotations

import base64
import io
import json
import random
from typing import Any

import numpy as np
import pytest
from PIL import Image

from functions import workloads
from functions.common import digits, models
from functions.inprocess import call, run_workflow


def _detections_body(features: np.ndarray) -> dict[str, Any]:
    return {
        "detections": [
            {"box": [0, 0, digits.DIGIT_PX, digits.DIGIT_PX], "crop": digits.encode_u8(f)}
            for f in features
        ]
    }


@pytest.mark.parametrize(
    ("name", "min_accuracy"), [("digit-classifier", 0.95), ("digit-classifier-svm", 0.95)]
)
def test_classifier_accuracy_on_held_out_digits(
    ml_handlers: dict[str, Any], name: str, min_accuracy: float
) -> None:
    _, _, test_x, test_y = digits.digits_split()
    response = call(ml_handlers[name], _detections_body(models.digit_features(test_x)))
    assert response.status_code == 200
    labels = np.array(json.loads(response.body)["labels"])
    assert labels.shape == test_y.shape
    assert (labels == test_y).mean() >= min_accuracy


def test_one_known_digit_of_each_class_through_the_pipeline(
    ml_handlers: dict[str, Any], catalog: Any
) -> None:
    """For each class, the held-out digit closest to that class's mean training image."""
    train_x, train_y, test_x, test_y = digits.digits_split()
    workflow = catalog.get("ml-pipeline")
    rng = random.Random(7)
    for cls in range(10):
        candidates = np.flatnonzero(test_y == cls)
        mean = train_x[train_y == cls].mean(axis=0)
        index = int(candidates[np.argmin(((test_x[candidates] - mean) ** 2).sum(axis=(1, 2)))])
        canvas = digits.render_canvas(
            [test_x[index]], [cls], rng, scale=digits.RENDER_SCALE, rgb=True
        )
        body = json.dumps({"image": digits.encode_png_b64(canvas.pixels)}).encode()
        out = run_workflow(workflow, ml_handlers, body).output
        assert out["digit-classifier"]["labels"] == [cls]
        assert out["digit-classifier-svm"]["labels"] == [cls]


def test_pipeline_labels_random_canvases(ml_handlers: dict[str, Any], catalog: Any) -> None:
    workflow = catalog.get("ml-pipeline")
    rng = random.Random(11)
    n = 30
    counted = cnn_ok = svm_ok = 0
    for _ in range(n):
        sample = workloads.ml_sample(rng)
        out = run_workflow(workflow, ml_handlers, sample.payload).output
        cnn, svm = out["digit-classifier"], out["digit-classifier-svm"]
        counted += len(cnn["boxes"]) == len(sample.labels)
        cnn_ok += tuple(cnn["labels"]) == sample.labels
        svm_ok += tuple(svm["labels"]) == sample.labels
        assert cnn["boxes"] == svm["boxes"]
    assert counted >= 0.95 * n
    assert cnn_ok >= 0.85 * n
    assert svm_ok >= 0.85 * n


def test_detection_boxes_cover_the_digits(ml_handlers: dict[str, Any]) -> None:
    _, _, test_x, test_y = digits.digits_split()
    canvas = digits.render_canvas(
        [test_x[0], test_x[1]], [int(test_y[0]), int(test_y[1])], random.Random(3)
    )
    body = {
        "height": digits.CANVAS_H,
        "width": digits.CANVAS_W,
        "canvas": digits.encode_u8(canvas.pixels),
    }
    out = json.loads(call(ml_handlers["object-detection"], body).body)
    assert out["count"] == 2
    for det, (y0, x0, y1, x1) in zip(out["detections"], canvas.boxes, strict=True):
        by0, bx0, by1, bx1 = det["box"]
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        assert by0 <= cy <= by1 and bx0 <= cx <= bx1
        assert 0.5 < det["score"] <= 1.0


def test_specks_alone_are_not_objects(ml_handlers: dict[str, Any]) -> None:
    canvas = np.zeros((digits.CANVAS_H, digits.CANVAS_W), dtype=np.float32)
    for y, x in ((5, 10), (40, 70), (20, 140)):
        canvas[y : y + 3, x : x + 3] = 0.9
    body = {"height": digits.CANVAS_H, "width": digits.CANVAS_W, "canvas": digits.encode_u8(canvas)}
    out = json.loads(call(ml_handlers["object-detection"], body).body)
    assert out["count"] == 0
    for name in ("digit-classifier", "digit-classifier-svm"):
        assert json.loads(call(ml_handlers[name], out).body)["labels"] == []


def test_image_processing_inverts_light_backgrounds_and_resizes(
    ml_handlers: dict[str, Any],
) -> None:
    img = np.full((100, 250), 230, dtype=np.uint8)
    img[30:70, 100:140] = 20  # a dark square on a light page
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    body = {"image": base64.b64encode(buf.getvalue()).decode()}
    out = json.loads(call(ml_handlers["image-processing"], body).body)
    assert out["source"] == {"width": 250, "height": 100, "mode": "L"}
    assert out["inverted"] is True
    canvas = digits.decode_u8(out["canvas"], out["height"], out["width"])
    assert canvas.shape == (digits.CANVAS_H, digits.CANVAS_W)
    assert canvas[:5, :5].max() == 0.0  # background went dark
    assert canvas[digits.CANVAS_H // 2, digits.CANVAS_W // 2] == 1.0  # the square went bright


@pytest.mark.parametrize(
    ("name", "body", "fragment"),
    [
        ("image-processing", b"not json", "not valid JSON"),
        ("image-processing", b"[1, 2]", "JSON object"),
        ("image-processing", {}, "'image' is required"),
        ("image-processing", {"image": "%%%"}, "not valid base64"),
        (
            "image-processing",
            {"image": base64.b64encode(b"hello").decode()},
            "not a decodable image",
        ),
        ("object-detection", {"height": 4, "width": 4, "canvas": "AAAA"}, "holds 3 bytes"),
        ("object-detection", {"height": "x", "width": 4, "canvas": ""}, "integers"),
        (
            "object-detection",
            {"height": 3, "width": 3, "canvas": base64.b64encode(bytes(9)).decode()},
            "multiples",
        ),
        ("digit-classifier", {}, "'detections' is required"),
        ("digit-classifier-svm", {"detections": [{"crop": "AA=="}]}, "holds 1 bytes"),
        ("digit-classifier", {"detections": ["x"]}, "must be an object"),
    ],
)
def test_bad_input_is_a_400(
    ml_handlers: dict[str, Any], name: str, body: Any, fragment: str
) -> None:
    response = call(ml_handlers[name], body)
    assert response.status_code == 400
    assert fragment in json.loads(response.body)["error"]


def test_model_cache_trains_once(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQUATOPE_MODEL_DIR", str(tmp_path))
    calls: list[int] = []

    def train() -> bytes:
        calls.append(1)
        return b"weights"

    assert models._cached("probe", train) == b"weights"
    assert models._cached("probe", train) == b"weights"
    assert calls == [1]
    (cached,) = tmp_path.glob("probe-*.bin")
    assert cached.read_bytes() == b"weights"
