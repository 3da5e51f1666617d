"""Request payloads for the shipped workflows, deterministic for a seeded ``random.Random``.

``make_payload(workflow, rng)`` gives the body of one invocation; loadgen and the benchmarks
call it for every request. The helpers beside it return the ground truth the tests check.

- ``ml-pipeline``: ``{"image": base64 PNG}``, a 320 x 128 colour canvas with 1-3 held-out
  scikit-learn digits (never seen in training) and a few distractor specks (about 2-4 KB).
- ``social-compose-post``: ``{"user_id", "text", "media"?}``; text with @mentions, URLs and
  now and then a banned word, a small PNG attached to about a third of the posts.
- ``social-read-home`` / ``social-read-user``: ``{"user_id", "start", "stop"}``.
- ``noop``: ``{}``; ``cpu-burn``: ``{"n": ...}``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from functions.common import digits
from functions.common.social import N_USERS, username

__all__ = [
    "WORKFLOWS",
    "MLSample",
    "make_payload",
    "ml_sample",
    "resolve",
]

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
    _, _, test_x, test_y = digits.digits_split()
    k = n_digits if n_digits is not None else rng.randint(1, digits.MAX_DIGITS)
    idx = [rng.randrange(len(test_y)) for _ in range(k)]
    canvas = digits.render_canvas(
        [test_x[i] for i in idx],
        [int(test_y[i]) for i in idx],
        rng,
        scale=digits.RENDER_SCALE,
        rgb=True,
    )
    body = json.dumps({"image": digits.encode_png_b64(canvas.pixels)}).encode()
    return MLSample(body, canvas.labels)


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
    if workflow == "noop":
        return b"{}"
    if workflow == "cpu-burn":
        return json.dumps({"n": rng.choice((10_000, 20_000, 50_000))}).encode()
    raise KeyError(f"no payload generator for workflow {workflow!r}; known: {', '.join(WORKFLOWS)}")


def resolve(weights: dict[str, float], rng: random.Random) -> str:
    """Pick one workflow of a mix (``{"social-compose-post": 0.2, ...}``) by weight."""
    names = sorted(weights)
    return rng.choices(names, weights=[weights[n] for n in names], k=1)[0]
