"""keyframe-extractor: the first stage of video-analytics, motion analysis of a camera clip.

Decodes every frame of the clip, estimates motion between consecutive frames by block
matching (8 x 8 blocks, the displacement with the least sum of absolute differences within
+-12 pixels across and +-2 down, as video encoders search), models the empty scene as the
median of the first four frames, and picks the *keyframe*: the first frame showing something
that holds still from then on (the moment the objects came to rest). The keyframe goes on
as a PNG for image-processing. Seconds of CPU per clip: the long first stage of a workflow.

Request: ``{"clip": "<base64 animated GIF>"}`` (at most 240 frames of at most 640 x 256).
Response: ``{"image": "<base64 PNG of the keyframe>", "keyframe": int, "still": bool,
"frames": int, "velocity": {"x", "y"} (median pixels per frame of the moving blocks, x to the
right, y down), "moving_blocks": int, "foreground_px": int}``; ``still`` is false when nothing
came to rest (the keyframe is then the frame with the most foreground).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

try:
    from functions.common import digits, video
    from functions.common.http import BadInput, decode_base64, field, json_handler
except ModuleNotFoundError:  # the repository root is not on sys.path (plain runner process)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from functions.common import digits, video
    from functions.common.http import BadInput, decode_base64, field, json_handler

__all__ = ["analyse", "handle"]

MAX_CLIP_BYTES = 4_000_000
MAX_FRAMES = 240
MAX_FRAME_PX = 640 * 256
BLOCK = 8
SEARCH_X = 12  # pixels searched left and right
SEARCH_Y = 2  # pixels searched up and down
BACKGROUND_FRAMES = 4  # the scene before anything arrives
FOREGROUND_DELTA = 40.0  # grey levels from the background that count as foreground
MIN_FOREGROUND_PX = 50
# a block moved when its best match differs from "no motion" by this much: half of the
# difference at zero displacement, which itself exceeds 10 grey levels per pixel on average
MOVED_SAD = 10.0 * BLOCK * BLOCK
MOVED_RATIO = 0.5
# displacements searched, nearest first: of equally good matches the smallest wins (a block
# inside a flat region matches many displacements equally)
_OFFSETS = sorted(
    ((oy, ox) for oy in range(-SEARCH_Y, SEARCH_Y + 1) for ox in range(-SEARCH_X, SEARCH_X + 1)),
    key=lambda o: (abs(o[0]) + abs(o[1]), o),
)[1:]  # (0, 0) is the reference


def _block_sad(cur: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Sum of absolute differences per ``BLOCK x BLOCK`` block, ``pairs x rows x cols``."""
    n, h, w = cur.shape
    diff = np.abs(cur - ref).reshape(n, h // BLOCK, BLOCK, w // BLOCK, BLOCK)
    sad: np.ndarray = diff.sum(axis=(2, 4))
    return sad


def block_motion(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block matching between each frame and the one before it.

    Returns:
        ``(dy, dx, moved)``, each ``frames - 1 x rows x cols``: where each block of frame
        ``i + 1`` came from in frame ``i`` (a block that moved right by 3 has ``dx = -3``),
        and whether it moved at all.
    """
    h = frames.shape[1] - frames.shape[1] % BLOCK
    w = frames.shape[2] - frames.shape[2] % BLOCK
    cur = frames[1:, :h, :w]
    padded = np.pad(frames[:-1], ((0, 0), (SEARCH_Y, SEARCH_Y), (SEARCH_X, SEARCH_X)), "edge")
    still = _block_sad(cur, padded[:, SEARCH_Y : SEARCH_Y + h, SEARCH_X : SEARCH_X + w])
    best = still.copy()
    dy = np.zeros(best.shape, dtype=np.int8)
    dx = np.zeros(best.shape, dtype=np.int8)
    for oy, ox in _OFFSETS:
        ref = padded[:, SEARCH_Y + oy : SEARCH_Y + oy + h, SEARCH_X + ox : SEARCH_X + ox + w]
        sad = _block_sad(cur, ref)
        better = sad < best
        best = np.where(better, sad, best)
        dy[better] = oy
        dx[better] = ox
    moved = (still > MOVED_SAD) & (best < MOVED_RATIO * still)
    return dy, dx, moved


def analyse(frames: np.ndarray) -> dict[str, Any]:
    """Motion, foreground and the keyframe of a ``frames x H x W`` grey clip (see the module
    docstring); the keyframe's pixels are returned under ``"pixels"``."""
    n = frames.shape[0]
    if n < BACKGROUND_FRAMES + 2:
        raise BadInput(f"clip has {n} frames, at least {BACKGROUND_FRAMES + 2} are needed")
    background = np.median(frames[:BACKGROUND_FRAMES], axis=0)
    foreground = (np.abs(frames - background) > FOREGROUND_DELTA).sum(axis=(1, 2))
    dy, dx, moved = block_motion(frames)
    moving_after = moved.reshape(n - 1, -1).any(axis=1)  # pair (i, i + 1) shows motion
    # still from frame i on: no motion in any pair after it
    still_from = np.flip(np.cumsum(np.flip(moving_after))) == 0
    candidates = [i for i in range(n - 1) if still_from[i] and foreground[i] >= MIN_FOREGROUND_PX]
    still = bool(candidates)
    key = candidates[0] if still else int(np.argmax(foreground))
    velocity = {"x": 0.0, "y": 0.0}
    if moved.any():  # content moves opposite to where its block came from
        velocity = {
            "x": float(-np.median(dx[moved])) + 0.0,
            "y": float(-np.median(dy[moved])) + 0.0,
        }  # + 0.0: no "-0.0"
    return {
        "keyframe": key,
        "still": still,
        "frames": n,
        "velocity": velocity,
        "moving_blocks": int(moved.sum()),
        "foreground_px": int(foreground[key]),
        "pixels": frames[key],
    }


def _warm_up() -> None:
    """Analyse a tiny blank clip once at start-up (Pillow's GIF plugin, numpy's kernels)."""
    analyse(np.zeros((BACKGROUND_FRAMES + 2, 2 * BLOCK, 2 * BLOCK), dtype=np.float32))
    digits.encode_png_b64(np.zeros((4, 4), dtype=np.uint8))


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Find the keyframe of ``request["clip"]`` and pass it on as ``image``."""
    raw = decode_base64(field(request, "clip", str), max_bytes=MAX_CLIP_BYTES, what="field 'clip'")
    try:
        frames = video.decode_frames(raw, max_frames=MAX_FRAMES, max_pixels=MAX_FRAME_PX)
    except ValueError as exc:
        raise BadInput(f"field 'clip': {exc}") from None
    if frames.shape[1] < BLOCK or frames.shape[2] < BLOCK:
        raise BadInput(f"field 'clip': frames smaller than {BLOCK}x{BLOCK}")
    result = analyse(frames)
    pixels = np.clip(result.pop("pixels"), 0, 255).astype(np.uint8)
    return {"image": digits.encode_png_b64(pixels), **result}


_warm_up()
