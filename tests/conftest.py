"""Shared fixtures: an isolated AQUATOPE_HOME, tiny real handlers, and a live local gateway."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import missing

REPO = Path(__file__).resolve().parents[1]

HANDLERS = {
    "echo": """
        import json, os

        def handle(event, context):
            return {"statusCode": 200, "body": {"pid": os.getpid(), "path": event.path,
                    "query": dict(event.query), "body": event.body.decode()}}
    """,
    "burn": """
        import hashlib, json, os

        def handle(event, context):
            n = int((event.json() or {}).get("n", 20000))
            digest = b"x"
            for _ in range(n):
                digest = hashlib.sha256(digest).digest()
            return {"statusCode": 200, "body": {"pid": os.getpid(), "digest": digest.hex()}}
    """,
    "hog": """
        import os

        def handle(event, context):
            mb = int(event.body or b"200")
            block = bytearray(mb * 1024 * 1024)
            for i in range(0, len(block), 4096):
                block[i] = 1
            return {"statusCode": 200, "body": {"pid": os.getpid(), "mb": mb}}
    """,
    "broken": """
        raise RuntimeError("this handler fails at import")
    """,
    "upper": """
        import json

        def handle(event, context):
            data = event.json()
            if isinstance(data, dict) and "text" in data:
                return {"statusCode": 200, "body": {"text": data["text"].upper()}}
            return {"statusCode": 200, "body": {"joined": sorted(data)}}
    """,
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(available, reason): skip without a component, fail in CI (CI=true)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        if not mark.kwargs["available"]:
            missing(mark.kwargs["reason"])


@pytest.fixture(autouse=True)
def aquatope_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own state directory (password, pid files, logs)."""
    home = tmp_path / "aquatope-home"
    monkeypatch.setenv("AQUATOPE_HOME", str(home))
    monkeypatch.delenv("OPENFAAS_URL", raising=False)
    monkeypatch.delenv("OPENFAAS_PASSWORD", raising=False)
    return home


@pytest.fixture(scope="session")
def handler_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny real handlers written to disk: echo, burn (CPU), hog (memory), broken, upper."""
    root = tmp_path_factory.mktemp("handlers")
    out = {}
    for name, source in HANDLERS.items():
        folder = root / name
        folder.mkdir()
        (folder / "handler.py").write_text(textwrap.dedent(source))
        out[name] = folder
    return out


@pytest.fixture(scope="module")
def local_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real gateway process with the local backend, shared by a test module."""
    from testbed.backends import connect

    home = tmp_path_factory.mktemp("gateway-home")
    old = os.environ.get("AQUATOPE_HOME")
    os.environ["AQUATOPE_HOME"] = str(home)
    try:
        with connect("local", state_dir=home) as platform:
            yield platform
    finally:
        if old is None:
            os.environ.pop("AQUATOPE_HOME", None)
        else:
            os.environ["AQUATOPE_HOME"] = old
