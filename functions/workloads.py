"""Request payloads for the shipped workflows, deterministic for a seeded ``random.Random``.

``make_payload(workflow, rng)`` gives the body of one invocation; loadgen and the benchmarks
call it for every request. The helpers beside it return the ground truth the tests check.

- ``ml-pipeline``: ``{"image": base64 PNG}``, a 320 x 128 colour canvas with 1-3 held-out
  scikit-learn digits (never seen in training) and a few distractor specks (about 2-4 KB).
- ``social-compose-post``: ``{"user_id", "text", "media"?}``; text with @mentions, URLs and
  now and then a banned word, a small PNG attached to about a third of the posts.
- ``social-read-home`` / ``social-read-user``: ``{"user_id", "start", "stop"}``.
- ``video-analytics``: ``{"clip": base64 animated GIF}``, one of :data:`N_CLIPS` camera
  clips (:mod:`functions.common.video`, 96 frames, about 300 KB), rendered once per process.
- ``noop``: ``{}``; ``cpu-burn``: ``{"n": ...}``.
"""

from __future__ import annotations

import base64
import functools
import json
import random
from dataclasses import dataclass

from functions.common import digits, video
from functions.common.social import N_USERS, username

__all__ = [
    "N_CLIPS",
    "WORKFLOWS",
    "MLSample",
    "VideoSample",
    "make_payload",
    "ml_sample",
    "resolve",
    "video_clip",
    "video_sample",
]

N_CLIPS = 8

_WORDS = tuple(
    [
        "serverless",
        "latency",
        "cold",
        "start",
        "workflow",
        "replica",
        "gateway",
        "coffee",
        "morning",
        "paper",
        "review",
        "scheduler",
        "bayesian",
        "forecast",
        "queue",
        "burst",
        "cluster",
        "cache",
        "deploy",
        "weekend",
        "lunch",
        "music",
        "benchmark",
        "tail",
        "quantile",
        "budget",
    ]
)
_SITES = ("https://example.org/", "http://news.example.com/a/", "https://blog.example.net/p/")


@dataclass(frozen=True)
class MLSample:
    """One ml-pipeline request and its truth: ``labels`` left to right."""

    payload: bytes
    labels: tuple[int, ...]


def ml_sample(rng: random.Random, n_digits: int | None = None) -> MLSample:
    """A canvas of 1-3 held-out digits, drawn at the request scale, as the request body.

    Args:
        rng: source of every random choice.
        n_digits: how many digits (1-3); random when ``None``.
    """
    canvas = digits.held_out_canvas(rng, n_digits, rgb=True)
    body = json.dumps({"image": digits.encode_png_b64(canvas.pixels)}).encode()
    return MLSample(body, canvas.labels)


@dataclass(frozen=True)
class VideoSample:
    """One video-analytics request and its truth (:class:`functions.common.video.Clip`)."""

    payload: bytes
    clip: video.Clip


@functools.cache
def video_clip(index: int) -> VideoSample:
    """Clip ``index`` (0 to :data:`N_CLIPS` - 1) of the fixed set, rendered once per process."""
    if not 0 <= index < N_CLIPS:
        raise IndexError(f"clip {index} of {N_CLIPS}")
    clip = video.render_clip(random.Random(f"video-analytics-clip-{index}"))
    body = json.dumps({"clip": base64.b64encode(clip.gif).decode("ascii")}).encode()
    return VideoSample(body, clip)


def video_sample(rng: random.Random) -> VideoSample:
    """One of :data:`N_CLIPS` fixed clips, picked by ``rng`` (rendering a clip takes longer
    than a load generator should spend per request, so each is rendered once per process)."""
    return video_clip(rng.randrange(N_CLIPS))


def _compose(rng: random.Random) -> dict[str, object]:
    user = rng.randrange(N_USERS)
    words = rng.sample(_WORDS, rng.randint(4, 10))
    for _ in range(rng.randint(0, 2)):
        words.insert(rng.randrange(len(words) + 1), "@" + username(rng.randrange(N_USERS)))
    for _ in range(rng.randint(0, 2)):
        url = rng.choice(_SITES) + "".join(rng.choices("abcdefghijklmnop0123456789", k=12))
        words.insert(rng.randrange(len(words) + 1), url)
    if rng.random() < 0.1:
        words.insert(rng.randrange(len(words) + 1), rng.choice(("spam", "Scam", "clickbait")))
    body: dict[str, object] = {"user_id": user, "text": " ".join(words)}
    if rng.random() < 1 / 3:
        side = rng.randint(16, 48)
        shade = rng.randrange(256)
        import numpy as np

        pixels = np.full((side, side, 3), shade, dtype=np.uint8)
        pixels[:, : side // 2, 0] = 255 - shade
        body["media"] = [{"type": "image/png", "data": digits.encode_png_b64(pixels)}]
    return body


def _read(rng: random.Random) -> dict[str, object]:
    start = rng.choice((0, 0, 0, 5))
    return {"user_id": rng.randrange(N_USERS), "start": start, "stop": start + 10}


WORKFLOWS = (
    "ml-pipeline",
    "social-compose-post",
    "social-read-home",
    "social-read-user",
    "video-analytics",
    "noop",
    "cpu-burn",
)


def make_payload(workflow: str, rng: random.Random) -> bytes:
    """The body of one invocation of ``workflow`` (a concrete workflow, not a mix).

    Raises:
        KeyError: ``workflow`` has no payload generator here.
    """
    if workflow == "ml-pipeline":
        return ml_sample(rng).payload
    if workflow == "social-compose-post":
        return json.dumps(_compose(rng)).encode()
    if workflow in ("social-read-home", "social-read-user"):
        return json.dumps(_read(rng)).encode()
    if workflow == "video-analytics":
        return video_sample(rng).payload
    if workflow == "noop":
        return b"{}"
    if workflow == "cpu-burn":
        return json.dumps({"n": rng.choice((10_000, 20_000, 50_000))}).encode()
    raise KeyError(f"no payload generator for workflow {workflow!r}; known: {', '.join(WORKFLOWS)}")


def resolve(weights: dict[str, float], rng: random.Random) -> str:
    """Pick one workflow of a mix (``{"social-compose-post": 0.2, ...}``) by weight."""
    names = sorted(weights)
    return rng.choices(names, weights=[weights[n] for n in names], k=1)[0]
