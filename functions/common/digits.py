"""The digit toolkit of the ml-pipeline: scikit-learn's bundled digits, canvases, crops.

Everything is deterministic given its inputs. Sizes (pixels, height x width):

- a source digit is scikit-learn's 8 x 8 image with values 0..16;
- the pipeline's working canvas is ``CANVAS_H x CANVAS_W`` (64 x 160) grey levels in [0, 1],
  digits ``DIGIT_PX`` (24) pixels tall;
- requests carry the canvas drawn ``RENDER_SCALE`` (2) times larger, in colour, as a PNG;
- classifiers see a digit as a ``FEATURE_PX x FEATURE_PX`` (16 x 16) crop, flattened.

Only numpy and Pillow are imported at module level; scikit-learn is imported when the dataset
is first needed.
"""

from __future__ import annotations

import base64
import functools
import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from functions.common.http import BadInput, decode_base64

__all__ = [
    "CANVAS_H",
    "CANVAS_W",
    "DIGIT_PX",
    "FEATURE_PX",
    "RENDER_SCALE",
    "Canvas",
    "crop_features",
    "decode_png_b64",
    "decode_u8",
    "digit_patch",
    "digits_split",
    "encode_png_b64",
    "encode_u8",
    "held_out_canvas",
    "render_canvas",
]

CANVAS_H = 64
CANVAS_W = 160
DIGIT_PX = 24
FEATURE_PX = 16
RENDER_SCALE = 2
MAX_DIGITS = 3
INK_THRESHOLD = 0.25
MIN_INK_PX = 12
SMALL_INK_SHARE = 0.15
_SLOT_W = CANVAS_W // MAX_DIGITS
MAX_PNG_BYTES = 2_000_000
RGB_LEVEL_STEP = 8
MAX_PIXELS = 4_000_000


@functools.cache
def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits split deterministically: every fifth sample is held out.

    Returns:
        ``(train_images, train_labels, test_images, test_labels)``; images are
        ``n x 8 x 8`` float64 arrays with values 0..16, labels ``n`` int64.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    held_out = np.arange(len(data.target)) % 5 == 0
    images = np.asarray(data.images, dtype=np.float64)
    labels = np.asarray(data.target, dtype=np.int64)
    return images[~held_out], labels[~held_out], images[held_out], labels[held_out]


def _render(image8: np.ndarray, size_px: int) -> np.ndarray:
    """An 8 x 8 digit (0..16) upscaled to ``size_px`` square, grey levels in [0, 1]."""
    u8 = np.clip(np.asarray(image8, dtype=np.float64) / 16.0 * 255.0, 0, 255).astype(np.uint8)
    big = Image.fromarray(u8, mode="L").resize((size_px, size_px), Image.Resampling.BILINEAR)
    return np.asarray(big, dtype=np.float32) / 255.0


def digit_patch(image8: np.ndarray) -> np.ndarray:
    """A digit as it looks on the working canvas: drawn at ``RENDER_SCALE`` then shrunk.

    Returns:
        ``DIGIT_PX x DIGIT_PX`` float32 in [0, 1].
    """
    big = _render(image8, DIGIT_PX * RENDER_SCALE)
    img = Image.fromarray((big * 255).astype(np.uint8), mode="L")
    small = img.resize((DIGIT_PX, DIGIT_PX), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32) / 255.0


@dataclass(frozen=True)
class Canvas:
    """A rendered canvas and its ground truth.

    Attributes:
        pixels: ``H x W`` float32 grey levels in [0, 1] (``H x W x 3`` uint8 when ``rgb``).
        labels: digit classes, left to right.
        boxes: ``(y0, x0, y1, x1)`` of each digit's drawn square, at the canvas's scale.
    """

    pixels: np.ndarray
    labels: tuple[int, ...]
    boxes: tuple[tuple[int, int, int, int], ...]


def render_canvas(
    images8: list[np.ndarray],
    labels: list[int],
    rng: random.Random,
    *,
    scale: int = 1,
    specks: bool = True,
    rgb: bool = False,
) -> Canvas:
    """Draw 1-3 digits left to right on a dark canvas, plus a few small distractor specks.

    Each digit sits in its own third of the canvas (so digits never touch), at a random offset.

    Args:
        images8: the digits, 8 x 8 with values 0..16.
        labels: their classes.
        rng: the only source of randomness (positions, specks, colour).
        scale: drawing scale; 1 gives the working canvas, ``RENDER_SCALE`` the request image.
        specks: add 0-3 small squares that are not digits.
        rgb: return a tinted ``uint8`` colour image (32 levels per channel) instead of grey
            levels.

    Raises:
        ValueError: not 1..3 digits.
    """
    if not 1 <= len(images8) <= MAX_DIGITS or len(images8) != len(labels):
        raise ValueError(f"need 1..{MAX_DIGITS} digits with one label each")
    h, w, d = CANVAS_H * scale, CANVAS_W * scale, DIGIT_PX * scale
    canvas = np.zeros((h, w), dtype=np.float32)
    slots = sorted(rng.sample(range(MAX_DIGITS), len(images8)))
    boxes: list[tuple[int, int, int, int]] = []
    for slot, image8 in zip(slots, images8, strict=True):
        x = (slot * _SLOT_W + rng.randint(4, _SLOT_W - DIGIT_PX - 4)) * scale
        y = rng.randint(3, CANVAS_H - DIGIT_PX - 3) * scale
        canvas[y : y + d, x : x + d] = np.maximum(canvas[y : y + d, x : x + d], _render(image8, d))
        boxes.append((y, x, y + d, x + d))
    if specks:
        for _ in range(rng.randint(0, 3)):
            side = rng.randint(2, 3) * scale
            for _attempt in range(20):
                y, x = rng.randint(0, h - side), rng.randint(0, w - side)
                margin = 4 * scale
                clear = all(
                    y + side + margin <= b[0]
                    or y >= b[2] + margin
                    or x + side + margin <= b[1]
                    or x >= b[3] + margin
                    for b in boxes
                )
                if clear:
                    canvas[y : y + side, x : x + side] = rng.uniform(0.6, 1.0)
                    break
    if rgb:
        tint = np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.6, 1.0)], dtype=np.float32)
        background = np.array([12, 10, 24], dtype=np.float32)
        colour = background + canvas[..., None] * (tint * 255.0 - background)
        # 32 levels per channel: keeps the PNG of a request at a few KB
        levels = np.round(np.clip(colour, 0, 255) / RGB_LEVEL_STEP) * RGB_LEVEL_STEP
        pixels: np.ndarray = np.clip(levels, 0, 255).astype(np.uint8)
    else:
        pixels = canvas
    return Canvas(pixels, tuple(int(v) for v in labels), tuple(boxes))


def held_out_canvas(
    rng: random.Random,
    n_digits: int | None = None,
    *,
    scale: int = RENDER_SCALE,
    specks: bool = True,
    rgb: bool = False,
) -> Canvas:
    """A canvas of ``n_digits`` (1-3, random when ``None``) held-out digits drawn by ``rng``:
    what the shipped workflows' requests show (:func:`render_canvas` for the options)."""
    _, _, test_x, test_y = digits_split()
    k = n_digits if n_digits is not None else rng.randint(1, MAX_DIGITS)
    idx = [rng.randrange(len(test_y)) for _ in range(k)]
    return render_canvas(
        [test_x[i] for i in idx],
        [int(test_y[i]) for i in idx],
        rng,
        scale=scale,
        specks=specks,
        rgb=rgb,
    )


def encode_png_b64(pixels: np.ndarray) -> str:
    """PNG-encode a uint8 image (``H x W`` or ``H x W x 3``) or [0, 1] floats, as base64 text."""
    arr = pixels
    if arr.dtype != np.uint8:
        arr = np.clip(np.asarray(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_png_b64(text: str, *, field_name: str = "image") -> Image.Image:
    """Decode base64 PNG/JPEG text into a loaded Pillow image.

    Raises:
        BadInput: not base64, too large, or not a decodable image.
    """
    if not isinstance(text, str) or not text:
        raise BadInput(f"field {field_name!r} must be a non-empty base64 string")
    raw = decode_base64(text, max_bytes=MAX_PNG_BYTES, what=f"field {field_name!r}")
    try:
        img = Image.open(io.BytesIO(raw))
        if img.width * img.height > MAX_PIXELS:
            raise BadInput(f"field {field_name!r}: image of {img.width}x{img.height} is too large")
        img.load()
    except BadInput:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadInput(f"field {field_name!r} is not a decodable image: {exc}") from None
    return img


def encode_u8(pixels: np.ndarray) -> str:
    """[0, 1] floats quantised to bytes, base64: the canvas as stages pass it along."""
    u8 = np.clip(np.asarray(pixels, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return base64.b64encode(u8.tobytes()).decode("ascii")


def decode_u8(text: object, height: object, width: object) -> np.ndarray:
    """Inverse of :func:`encode_u8`.

    Returns:
        ``height x width`` float32 in [0, 1].

    Raises:
        BadInput: bad base64, bad sizes, or a length that does not match them.
    """
    if not isinstance(height, int) or not isinstance(width, int) or isinstance(height, bool):
        raise BadInput("fields 'height' and 'width' must be integers")
    if not (0 < height <= 4096 and 0 < width <= 4096):
        raise BadInput(f"canvas size {height}x{width} out of range (1..4096)")
    if not isinstance(text, str):
        raise BadInput("field 'canvas' must be a base64 string")
    raw = decode_base64(text, max_bytes=height * width, what="field 'canvas'")
    if len(raw) != height * width:
        raise BadInput(f"field 'canvas' holds {len(raw)} bytes, expected {height}x{width}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width).astype(np.float32) / 255.0


def crop_features(canvas: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The classifier input for the digit inside ``box``: its ink, centred, squared, resized.

    Ink blobs much smaller than the largest one (specks, noise) are dropped first.

    The same function prepares training digits and detected crops, so both look alike.

    Args:
        canvas: ``H x W`` float32 in [0, 1].
        box: ``(y0, x0, y1, x1)``; the whole canvas when ``None``.

    Returns:
        ``FEATURE_PX * FEATURE_PX`` float32 vector in [0, 1] (all zeros if there is no ink).
    """
    from scipy import ndimage

    patch = canvas if box is None else canvas[box[0] : box[2], box[1] : box[3]]
    labelled, count = ndimage.label(patch > INK_THRESHOLD)
    if count == 0:
        return np.zeros(FEATURE_PX * FEATURE_PX, dtype=np.float32)
    sizes = np.bincount(labelled.ravel())[1:]
    keep = np.flatnonzero(sizes >= max(MIN_INK_PX, SMALL_INK_SHARE * sizes.max())) + 1
    kept = np.isin(labelled, keep)
    patch = np.where(kept, patch, 0.0).astype(np.float32)
    ink = np.argwhere(kept)
    (y0, x0), (y1, x1) = ink.min(axis=0), ink.max(axis=0) + 1
    tight = patch[y0:y1, x0:x1]
    side = int(max(tight.shape) * 1.2) + 2
    square = np.zeros((side, side), dtype=np.float32)
    oy, ox = (side - tight.shape[0]) // 2, (side - tight.shape[1]) // 2
    square[oy : oy + tight.shape[0], ox : ox + tight.shape[1]] = tight
    img = Image.fromarray(square, mode="F").resize(
        (FEATURE_PX, FEATURE_PX), Image.Resampling.BILINEAR
    )
    out = np.asarray(img, dtype=np.float32)
    peak = float(out.max())
    return (out / peak if peak > 0 else out).reshape(-1)
