"""Clips for the video-analytics workflow: a still camera watching digits slide into view.

A clip is a grey-level animated GIF (the camera is monochrome): an empty scene with sparse
sensor speckle, then a canvas of 1-3 held-out digits (the ml-pipeline's request canvas)
entering from the right at a constant speed, coming to rest and staying still to the end.
Deterministic given the ``random.Random`` it is drawn from.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from functions.common import digits

__all__ = [
    "BACKGROUND_LEVEL",
    "CLIP_FRAMES",
    "INK_LEVEL",
    "Clip",
    "decode_frames",
    "render_clip",
]

CLIP_FRAMES = 96
BACKGROUND_LEVEL = 20  # grey level of the empty scene
INK_LEVEL = 220  # grey level of full ink
SPECKLE_LEVEL = 12  # a speckled pixel is this much brighter than the scene
SPECKLE_SHARE = 0.01  # share of the pixels speckled in each frame
SPEEDS_PX = (4, 6, 8)  # pixels per frame the digits move left while they enter
REST_FRAMES = 12  # frames the digits stay still at the end of a clip
EMPTY_FRAMES = 4  # the clip's first frames never show a digit (the background's sample)


@dataclass(frozen=True)
class Clip:
    """One clip and its truth.

    Attributes:
        gif: the clip, an animated grey-level GIF.
        labels: the digits' classes, left to right.
        rest_frame: the first frame with the digits at rest (index from 0).
        speed_px: how many pixels per frame the digits moved left while entering.
    """

    gif: bytes
    labels: tuple[int, ...]
    rest_frame: int
    speed_px: int


def render_clip(
    rng: random.Random, *, frames: int = CLIP_FRAMES, n_digits: int | None = None
) -> Clip:
    """Draw one clip: the digits enter from the right and rest for the last frames.

    Args:
        rng: the only source of randomness (digits, layout, speed, speckle).
        frames: frames in the clip; enough for the digits to cross the frame at the slowest
            speed after :data:`EMPTY_FRAMES` empty ones, plus :data:`REST_FRAMES`.
        n_digits: how many digits (1-3); random when ``None``.

    Raises:
        ValueError: ``frames`` is too short for the digits to enter and rest.
    """
    canvas = digits.held_out_canvas(rng, n_digits, specks=False)
    height, width = canvas.pixels.shape
    speed = rng.choice(SPEEDS_PX)
    rest = frames - REST_FRAMES
    if rest - EMPTY_FRAMES < -(-width // speed):
        raise ValueError(f"a clip of {frames} frames is too short for the digits to enter")
    scene = (BACKGROUND_LEVEL + canvas.pixels * (INK_LEVEL - BACKGROUND_LEVEL)).astype(np.float32)
    noise = np.random.default_rng(rng.randrange(2**32))
    images = []
    for i in range(frames):
        shift = max(0, (rest - i) * speed)  # how far right of its resting place the scene is
        frame = np.full((height, width), BACKGROUND_LEVEL, dtype=np.float32)
        if shift < width:
            frame[:, shift:] = scene[:, : width - shift]
        frame += (noise.random((height, width)) < SPECKLE_SHARE) * SPECKLE_LEVEL
        images.append(Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8), "L"))
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=40, loop=0)
    return Clip(buf.getvalue(), canvas.labels, rest, speed)


def decode_frames(data: bytes, *, max_frames: int, max_pixels: int) -> np.ndarray:
    """Every frame of an animated image as grey levels, ``frames x H x W`` float32.

    Raises:
        ValueError: not an image Pillow can read, more than ``max_frames`` frames, frames
            larger than ``max_pixels`` or of different sizes.
    """
    try:
        image = Image.open(io.BytesIO(data))
        n = int(getattr(image, "n_frames", 1))
        if n > max_frames:
            raise ValueError(f"clip has {n} frames, at most {max_frames} are accepted")
        if image.width * image.height > max_pixels:
            raise ValueError(
                f"clip frames are {image.width}x{image.height}, at most {max_pixels} pixels"
            )
        out = np.empty((n, image.height, image.width), dtype=np.float32)
        for i in range(n):
            image.seek(i)
            out[i] = np.asarray(image.convert("L"), dtype=np.float32)
    except (OSError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:  # not an image
        raise ValueError(f"clip is not a readable animated image: {exc}") from exc
    return out
