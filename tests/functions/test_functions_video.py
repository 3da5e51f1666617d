"""The video-analytics workflow: keyframe-extractor's motion analysis, then the ml-pipeline."""

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
from functions.common import video
from functions.inprocess import call, load_handlers, run_workflow


@pytest.fixture(scope="module")
def video_handlers() -> dict[str, Any]:
    ml = ("image-processing", "object-detection", "digit-classifier", "digit-classifier-svm")
    return load_handlers(("keyframe-extractor", *ml))


def _gif(frames: list[np.ndarray]) -> str:
    """An animated GIF of these frames; each gets a faint mark of its own in a corner, or
    Pillow would merge identical frames into one."""
    marked = [f.copy() for f in frames]
    for i, f in enumerate(marked):
        f[0, 0] = 20 + i % 10
    images = [Image.fromarray(f.astype(np.uint8), "L") for f in marked]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=40)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _extract(handlers: dict[str, Any], body: Any) -> tuple[int, dict[str, Any]]:
    response = call(handlers["keyframe-extractor"], body)
    return response.status_code, json.loads(response.body)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_keyframe_is_where_the_digits_come_to_rest(
    video_handlers: dict[str, Any], seed: int
) -> None:
    clip = video.render_clip(random.Random(seed))
    status, out = _extract(video_handlers, {"clip": base64.b64encode(clip.gif).decode()})
    assert status == 200, out
    assert out["frames"] == video.CLIP_FRAMES
    assert out["still"] is True
    assert out["keyframe"] == clip.rest_frame
    # the digits moved left at the clip's speed, never up or down
    assert out["velocity"] == {"x": -float(clip.speed_px), "y": 0.0}
    assert out["moving_blocks"] > 0
    keyframe = np.asarray(Image.open(io.BytesIO(base64.b64decode(out["image"]))))
    assert keyframe.shape == (128, 320)
    ink = int((keyframe > video.BACKGROUND_LEVEL + 40).sum())  # the digits are on it
    assert ink > 0 and abs(ink - out["foreground_px"]) <= 0.01 * ink + 5


def test_the_workflow_labels_the_digits_of_each_clip(
    video_handlers: dict[str, Any], catalog: Any
) -> None:
    workflow = catalog.get("video-analytics")
    assert workflow.topological_order()[0].name == "keyframe-extractor"
    assert workflow.qos.target_s == 6.0
    right = 0
    for index in range(workloads.N_CLIPS):
        sample = workloads.video_clip(index)
        out = run_workflow(workflow, video_handlers, sample.payload).output
        right += tuple(out["digit-classifier"]["labels"]) == sample.clip.labels
        assert out["digit-classifier"]["boxes"] == out["digit-classifier-svm"]["boxes"]
    assert right >= workloads.N_CLIPS - 1


def test_a_scene_that_never_comes_to_rest_has_no_still_keyframe(
    video_handlers: dict[str, Any],
) -> None:
    """A bright bar crossing the clip to its end: the keyframe is the first frame with the
    most foreground in view."""
    frames = []
    for i in range(24):
        f = np.full((32, 160), 20.0)
        if i >= 6:
            x = (i - 6) * 5
            f[8:24, x : x + 16] = 220.0
        frames.append(f)
    status, out = _extract(video_handlers, {"clip": _gif(frames)})
    assert status == 200, out
    assert out["still"] is False
    assert out["keyframe"] == 6
    assert out["foreground_px"] == 16 * 16
    assert out["velocity"] == {"x": 5.0, "y": 0.0}  # moving right


def test_an_empty_scene_has_no_motion(video_handlers: dict[str, Any]) -> None:
    status, out = _extract(video_handlers, {"clip": _gif([np.full((32, 32), 20.0)] * 8)})
    assert status == 200, out
    assert out["moving_blocks"] == 0
    assert out["velocity"] == {"x": 0.0, "y": 0.0}
    assert out["still"] is False  # nothing in view


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "'clip' is required"),
        ({"clip": 7}, "'clip' must be a string"),
        ({"clip": "not base64!"}, "clip"),
        ({"clip": base64.b64encode(b"GIF89a but not really").decode()}, "not a readable"),
        ({"clip": _gif([np.zeros((16, 16))] * 3)}, "at least 6 are needed"),
        ({"clip": _gif([np.zeros((4, 4))] * 8)}, "smaller than 8x8"),
        ({"clip": _gif([np.zeros((300, 600))] * 6)}, "at most 163840 pixels"),
    ],
)
def test_bad_clips_are_a_400(video_handlers: dict[str, Any], body: Any, fragment: str) -> None:
    status, out = _extract(video_handlers, body)
    assert status == 400
    assert fragment in out["error"]


def test_too_many_frames_are_refused_before_decoding(video_handlers: dict[str, Any]) -> None:
    frames = [np.full((8, 8), 20.0) for _ in range(241)]
    status, out = _extract(video_handlers, {"clip": _gif(frames)})
    assert status == 400
    assert "241 frames, at most 240" in out["error"]


def test_clips_are_fixed_per_index_and_picked_by_the_rng() -> None:
    a = workloads.video_sample(random.Random(3))
    b = workloads.video_sample(random.Random(3))
    assert a is b  # rendered once per process
    picked = {workloads.video_sample(random.Random(s)).clip.gif for s in range(40)}
    assert len(picked) == workloads.N_CLIPS
    with pytest.raises(IndexError, match="clip 8 of 8"):
        workloads.video_clip(workloads.N_CLIPS)
