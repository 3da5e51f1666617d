"""Request bodies for each workflow, prepared before the run so sending stays cheap.

Bodies come from ``functions.workloads.make_payload(workflow, rng)`` when that module exists
(it knows what each workflow expects); otherwise every body is ``b"{}"``.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Iterable

__all__ = ["PayloadPool", "default_maker"]

PayloadMaker = Callable[[str, random.Random], bytes]


def default_maker() -> PayloadMaker | None:
    """``functions.workloads.make_payload`` if it can be imported, else ``None``."""
    try:
        module = importlib.import_module("functions.workloads")
    except ImportError:
        return None
    maker = getattr(module, "make_payload", None)
    return maker if callable(maker) else None


class PayloadPool:
    """A few pre-built bodies per target, handed out round-robin.

    Args:
        targets: workflow or function names.
        seed: seeds the body generator.
        per_target: bodies prepared for each target.
        maker: ``(name, random.Random) -> bytes``; default :func:`default_maker`, else ``b"{}"``.
    """

    def __init__(
        self,
        targets: Iterable[str],
        *,
        seed: int = 0,
        per_target: int = 16,
        maker: PayloadMaker | None = None,
    ) -> None:
        maker = maker or default_maker()
        rng = random.Random(seed)
        self._bodies: dict[str, list[bytes]] = {}
        self._next: dict[str, int] = {}
        for name in targets:
            bodies: list[bytes] = []
            for _ in range(per_target):
                body = b"{}"
                if maker is not None:
                    try:
                        body = maker(name, rng)
                    except (KeyError, ValueError):  # the maker does not know this target
                        body = b"{}"
                bodies.append(body)
            self._bodies[name] = bodies
            self._next[name] = 0

    def get(self, name: str) -> bytes:
        """The next body for ``name`` (``b"{}"`` for unknown names)."""
        bodies = self._bodies.get(name)
        if not bodies:
            return b"{}"
        i = self._next[name]
        self._next[name] = (i + 1) % len(bodies)
        return bodies[i]
