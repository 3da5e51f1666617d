"""How a replay sends: :class:`ReplayOptions`, validated once, shared by every caller."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from testbed.core.errors import ConfigError

__all__ = ["DEFAULT_REPLAY_OPTIONS", "ReplayOptions"]


@dataclass(frozen=True, kw_only=True)
class ReplayOptions:
    """Options of an open-loop replay (what is sent comes from the :class:`~loadgen.Plan`).

    Args:
        max_in_flight: cap on concurrent requests (and pooled connections); beyond it
            requests are dropped and recorded as such.
        timeout_s: per-request network timeout.
        drain_s: how long to wait for responses after the last send (default ``timeout_s``).
        late_after_s: lateness above which a send counts as late.
        start_at_unix_s: wait until this Unix time and use it as ``t0`` (default: now).
        flush_every_s: period of partial-file flushes.
        locust_csv: also write Locust's CSV statistics (``locust_*.csv``).
        spin_s: busy-wait this long before each send time instead of sleeping (more
            punctual, costs CPU; 0 sleeps only).
        seed: seeds the request payloads.

    Raises:
        ConfigError: a value out of range (naming the option).
    """

    max_in_flight: int = 2000
    timeout_s: float = 60.0
    drain_s: float | None = None
    late_after_s: float = 0.01
    start_at_unix_s: float | None = None
    flush_every_s: float = 5.0
    locust_csv: bool = True
    spin_s: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "max_in_flight": self.max_in_flight >= 1,
            "timeout_s": self.timeout_s > 0,
            "drain_s": self.drain_s is None or self.drain_s >= 0,
            "late_after_s": self.late_after_s >= 0,
            "flush_every_s": self.flush_every_s > 0,
            "spin_s": 0 <= self.spin_s < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ConfigError(
                f"replay options out of range: {values} (need max_in_flight >= 1, "
                "timeout_s > 0, drain_s >= 0, late_after_s >= 0, flush_every_s > 0, "
                "0 <= spin_s < 1)"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "loadgen") -> ReplayOptions:
        """Options from a config mapping; an unknown key or a wrong type names ``where.key``.

        Raises:
            ConfigError: unknown option, wrong type or value out of range.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            names = ", ".join(unknown)
            raise ConfigError(
                f"{where}: unknown option(s) {names}; known: {', '.join(sorted(known))}"
            )
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def replace(self, **changes: Any) -> ReplayOptions:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


DEFAULT_REPLAY_OPTIONS = ReplayOptions()
