"""The ml-pipeline's models, trained deterministically on scikit-learn's bundled digits.

No weights are downloaded. Each model is trained once, with fixed seeds and one thread, and
cached on disk under ``$AQUATOPE_MODEL_DIR`` (default ``$AQUATOPE_HOME/models``, i.e.
``~/.aquatope/models``). The cache file name carries a hash of this module's source and the
library versions, so changing the training code retrains and stale files are never loaded.

Models:

- :class:`ObjectnessNet`: a fully convolutional net mapping a ``1 x 64 x 160`` canvas to a
  ``1 x 32 x 80`` objectness map (logits; "inside a digit" vs background and specks).
- :class:`DigitNet`: a small CNN mapping a ``1 x 16 x 16`` digit crop to 10 class logits.
- an RBF support-vector classifier on the same 256 features (scikit-learn).

torch and scikit-learn are imported inside functions, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from functions.common import digits

__all__ = [
    "Detection",
    "build_digit_net",
    "build_objectness_net",
    "cache_dir",
    "detect",
    "digit_features",
    "load_digit_net",
    "load_objectness_net",
    "load_svm",
]

SEED = 20231
DETECT_POOL = 2
MIN_COMPONENT_PX = 20  # at the objectness map's resolution
BOX_MARGIN_PX = 3


def cache_dir() -> Path:
    """Where trained models are kept (created on demand)."""
    explicit = os.environ.get("AQUATOPE_MODEL_DIR")
    if explicit:
        return Path(explicit)
    home = os.environ.get("AQUATOPE_HOME") or str(Path.home() / ".aquatope")
    return Path(home) / "models"


def _code_key() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "-"

    source = Path(__file__).read_bytes() + Path(digits.__file__).read_bytes()
    versions = "|".join(installed(p) for p in ("torch", "scikit-learn", "numpy", "pillow")).encode()
    return hashlib.sha256(source + versions).hexdigest()[:16]


def _cached(name: str, train: Callable[[], bytes]) -> bytes:
    """The bytes of model ``name``: read from the cache, or trained and written atomically."""
    path = cache_dir() / f"{name}-{_code_key()}.bin"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    blob = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return blob


def _torch_bytes(state: dict[str, Any]) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _torch_state(blob: bytes) -> dict[str, Any]:
    import io

    import torch

    return torch.load(io.BytesIO(blob), weights_only=True)  # type: ignore[no-any-return]


# ---------------------------------------------------------------- features


def digit_features(images8: np.ndarray) -> np.ndarray:
    """Classifier features of source digits, prepared exactly as detected crops are.

    Args:
        images8: ``n x 8 x 8`` digits with values 0..16.

    Returns:
        ``n x 256`` float32.
    """
    return np.stack([digits.crop_features(digits.digit_patch(img)) for img in images8])


# ---------------------------------------------------------------- objectness


def build_objectness_net() -> Any:
    """An untrained :class:`ObjectnessNet`: ``n x 1 x H x W`` -> ``n x 1 x H/2 x W/2`` logits."""
    import torch
    from torch import nn

    class ObjectnessNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AvgPool2d(DETECT_POOL)
            self.body = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(8, 8, 3, padding=2, dilation=2),
                nn.ReLU(),
                nn.Conv2d(8, 8, 3, padding=4, dilation=4),
                nn.ReLU(),
                nn.Conv2d(8, 8, 3, padding=2, dilation=2),
                nn.ReLU(),
                nn.Conv2d(8, 1, 1),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(self.pool(x))  # type: ignore[no-any-return]

    return ObjectnessNet()


def _objectness_data(n: int, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    train_x, train_y, _, _ = digits.digits_split()
    xs = np.zeros((n, 1, digits.CANVAS_H, digits.CANVAS_W), dtype=np.float32)
    hh, ww = digits.CANVAS_H // DETECT_POOL, digits.CANVAS_W // DETECT_POOL
    ys = np.zeros((n, 1, hh, ww), dtype=np.float32)
    for i in range(n):
        k = rng.randint(1, digits.MAX_DIGITS)
        idx = [rng.randrange(len(train_y)) for _ in range(k)]
        canvas = digits.render_canvas(
            [train_x[j] for j in idx], [int(train_y[j]) for j in idx], rng
        )
        xs[i, 0] = canvas.pixels
        for y0, x0, y1, x1 in canvas.boxes:
            ink = np.argwhere(canvas.pixels[y0:y1, x0:x1] > digits.INK_THRESHOLD)
            offset = np.array([y0, x0])
            (iy0, ix0), (iy1, ix1) = ink.min(axis=0) + offset, ink.max(axis=0) + offset + 1
            ys[
                i,
                0,
                iy0 // DETECT_POOL : -(-iy1 // DETECT_POOL),
                ix0 // DETECT_POOL : -(-ix1 // DETECT_POOL),
            ] = 1.0
    return xs, ys


def _train_objectness() -> bytes:
    import torch

    torch.manual_seed(SEED)
    xs, ys = _objectness_data(128, random.Random(SEED))
    net = build_objectness_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(3.0))
    x_all, y_all = torch.from_numpy(xs), torch.from_numpy(ys)
    gen = torch.Generator().manual_seed(SEED)
    for _epoch in range(8):
        order = torch.randperm(len(x_all), generator=gen)
        for start in range(0, len(order), 16):
            batch = order[start : start + 16]
            opt.zero_grad()
            loss = loss_fn(net(x_all[batch]), y_all[batch])
            loss.backward()
            opt.step()
    return _torch_bytes(net.state_dict())


def load_objectness_net() -> Any:
    """The trained objectness net in eval mode (trains and caches it on first use)."""
    net = build_objectness_net()
    net.load_state_dict(_torch_state(_cached("objectness", _with_one_thread(_train_objectness))))
    return net.eval()


Detection = tuple[tuple[int, int, int, int], float, np.ndarray]
"""``(box, score, crop)``: box ``(y0, x0, y1, x1)`` in canvas pixels, score the mean
objectness, crop the canvas inside the box with everything outside the object's region zeroed."""


def detect(net: Any, canvas: np.ndarray, threshold: float = 0.5) -> list[Detection]:
    """Find digit-like objects: objectness map, threshold, connected components, crops.

    Args:
        net: a trained objectness net.
        canvas: ``H x W`` float32 in [0, 1] (H and W even).
        threshold: probability above which a map cell counts as object.

    Returns:
        Detections sorted left to right.
    """
    import torch
    from scipy import ndimage

    with torch.inference_mode():
        logits = net(torch.from_numpy(np.ascontiguousarray(canvas, dtype=np.float32))[None, None])
        prob = torch.sigmoid(logits)[0, 0].numpy()
    labelled, _count = ndimage.label(prob > threshold)
    found: list[Detection] = []
    h, w = canvas.shape
    for index, region in enumerate(ndimage.find_objects(labelled), start=1):
        if region is None:
            continue
        mask = labelled == index
        if int(mask[region].sum()) < MIN_COMPONENT_PX:
            continue
        ys, xs = region
        box = (
            max(0, ys.start * DETECT_POOL - BOX_MARGIN_PX),
            max(0, xs.start * DETECT_POOL - BOX_MARGIN_PX),
            min(h, ys.stop * DETECT_POOL + BOX_MARGIN_PX),
            min(w, xs.stop * DETECT_POOL + BOX_MARGIN_PX),
        )
        full = np.kron(mask, np.ones((DETECT_POOL, DETECT_POOL), dtype=bool))[:h, :w]
        full = ndimage.binary_dilation(full, iterations=BOX_MARGIN_PX)
        crop = (canvas * full)[box[0] : box[2], box[1] : box[3]]
        found.append((box, float(prob[region][mask[region]].mean()), crop))
    return sorted(found, key=lambda item: item[0][1])


# ---------------------------------------------------------------- classifiers


def build_digit_net() -> Any:
    """An untrained :class:`DigitNet`: ``n x 1 x 16 x 16`` -> ``n x 10`` logits."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def _train_digit_net() -> bytes:
    import torch

    torch.manual_seed(SEED)
    train_x, train_y, _, _ = digits.digits_split()
    side = digits.FEATURE_PX
    x_all = torch.from_numpy(digit_features(train_x)).reshape(-1, 1, side, side)
    y_all = torch.from_numpy(train_y)
    net = build_digit_net()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)
    for _epoch in range(20):
        order = torch.randperm(len(x_all), generator=gen)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            opt.zero_grad()
            loss_fn(net(x_all[batch]), y_all[batch]).backward()
            opt.step()
    return _torch_bytes(net.state_dict())


def load_digit_net() -> Any:
    """The trained digit CNN in eval mode (trains and caches it on first use)."""
    net = build_digit_net()
    net.load_state_dict(_torch_state(_cached("digit-cnn", _with_one_thread(_train_digit_net))))
    return net.eval()


def _train_svm() -> bytes:
    from sklearn.svm import SVC

    train_x, train_y, _, _ = digits.digits_split()
    model = SVC(kernel="rbf", C=10.0, gamma="scale")
    model.fit(digit_features(train_x), train_y)
    return pickle.dumps(model)


def load_svm() -> Any:
    """The trained support-vector classifier (trains and caches it on first use)."""
    return pickle.loads(_cached("digit-svm", _train_svm))  # our own cache file


def _with_one_thread(train: Callable[[], bytes]) -> Callable[[], bytes]:
    def run() -> bytes:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return train()
        finally:
            torch.set_num_threads(before)

    return run
