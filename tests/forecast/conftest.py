"""Forecast tests: keep torch on one thread (the machine is shared)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _torch_single_thread() -> None:
    """Keep torch on one thread (the machine is shared) when it is already imported."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
