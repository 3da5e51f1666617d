"""Fixtures for the shipped functions: handlers loaded once, against a private social database.

Trained models are cached where replicas look for them (``functions.common.models.cache_dir``),
so only the first ever run pays for training.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.inprocess import load_handlers
from testbed.core.stack import load_stack
from testbed.core.workflows import WorkflowCatalog, load_workflows

REPO = Path(__file__).resolve().parents[2]
ML_FUNCTIONS = ("image-processing", "object-detection", "digit-classifier", "digit-classifier-svm")
SOCIAL_FUNCTIONS = (
    "compose-post",
    "text-filter",
    "media-filter",
    "store-post",
    "write-home-timeline",
    "write-user-timeline",
    "read-home-timeline",
    "read-user-timeline",
    "read-post",
)


@pytest.fixture(scope="session")
def catalog() -> WorkflowCatalog:
    return load_workflows(REPO / "functions" / "workflows")


@pytest.fixture(scope="session")
def stack() -> Any:
    return load_stack(REPO / "stack.yml")


@pytest.fixture(scope="session")
def ml_handlers() -> dict[str, Any]:
    return load_handlers(ML_FUNCTIONS)


@pytest.fixture(scope="session")
def social_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("social") / "social.db"


@pytest.fixture(scope="session")
def social_handlers(social_db: Path) -> Iterator[dict[str, Any]]:
    before = os.environ.get("SOCIAL_DB")
    os.environ["SOCIAL_DB"] = str(social_db)
    try:
        handlers = load_handlers(SOCIAL_FUNCTIONS)
    finally:
        if before is None:
            os.environ.pop("SOCIAL_DB", None)
        else:
            os.environ["SOCIAL_DB"] = before
    yield handlers
