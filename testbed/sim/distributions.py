"""Distributions the simulator samples from, and fast buffered samplers over a numpy Generator.

A distribution is plain data (it lives in a profile JSON file)::

    {"kind": "empirical", "samples": [0.012, 0.013, ...]}   # bootstrap from measurements
    {"kind": "exponential", "mean_s": 0.5}                    # for queueing checks
    {"kind": "constant", "value_s": 0.2}                      # for exact tests
    {"kind": "lognormal", "median_s": 0.1, "sigma": 0.3}

Sampling draws values in batches (``numpy.random.Generator``) and hands them out one by one,
so the event loop pays one Python call per value and the stream is reproducible for a seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from testbed.core.errors import ConfigError

__all__ = ["Distribution", "Sampler"]

_KINDS = ("empirical", "exponential", "constant", "lognormal")
_BATCH = 1024


@dataclass(frozen=True)
class Distribution:
    """A non-negative distribution of durations in seconds.

    Args:
        kind: ``empirical``, ``exponential``, ``constant`` or ``lognormal``.
        samples: measured values (``empirical``), seconds.
        value_s: the mean (``exponential``), the value (``constant``) or the median
            (``lognormal``), seconds.
        sigma: log-space standard deviation (``lognormal``).
    """

    kind: str
    samples: tuple[float, ...] = ()
    value_s: float = 0.0
    sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(f"distribution kind must be one of {_KINDS}, got {self.kind!r}")
        if self.kind == "empirical":
            if not self.samples:
                raise ConfigError("empirical distribution needs at least one sample")
            if min(self.samples) < 0:
                raise ConfigError("empirical distribution has a negative sample")
        elif self.value_s < 0 or (self.kind != "constant" and not self.value_s > 0):
            raise ConfigError(
                f"{self.kind} distribution needs a positive value, got {self.value_s}"
            )
        if self.kind == "lognormal" and self.sigma < 0:
            raise ConfigError(f"lognormal sigma must be >= 0, got {self.sigma}")

    @classmethod
    def constant(cls, value_s: float) -> Distribution:
        return cls("constant", value_s=float(value_s))

    @classmethod
    def exponential(cls, mean_s: float) -> Distribution:
        return cls("exponential", value_s=float(mean_s))

    @classmethod
    def empirical(cls, samples: Any) -> Distribution:
        return cls("empirical", samples=tuple(float(x) for x in samples))

    @classmethod
    def from_json(cls, raw: object, *, where: str) -> Distribution:
        """Parse the JSON form; errors name ``where``.

        Raises:
            ConfigError: unknown kind, missing or bad field.
        """
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: a distribution is an object with a 'kind'")
        kind = raw.get("kind")
        try:
            if kind == "empirical":
                return cls.empirical(raw["samples"])
            if kind == "exponential":
                return cls.exponential(raw["mean_s"])
            if kind == "constant":
                return cls.constant(raw["value_s"])
            if kind == "lognormal":
                return cls("lognormal", value_s=float(raw["median_s"]), sigma=float(raw["sigma"]))
        except KeyError as exc:
            raise ConfigError(f"{where}: {kind} distribution needs field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        raise ConfigError(f"{where}: distribution kind must be one of {_KINDS}, got {kind!r}")

    def to_json(self) -> dict[str, Any]:
        if self.kind == "empirical":
            return {"kind": "empirical", "samples": [round(x, 6) for x in self.samples]}
        if self.kind == "exponential":
            return {"kind": "exponential", "mean_s": self.value_s}
        if self.kind == "constant":
            return {"kind": "constant", "value_s": self.value_s}
        return {"kind": "lognormal", "median_s": self.value_s, "sigma": self.sigma}

    @property
    def mean_s(self) -> float:
        """The distribution's mean in seconds."""
        if self.kind == "empirical":
            return float(np.mean(self.samples))
        if self.kind == "lognormal":
            return float(self.value_s * np.exp(self.sigma**2 / 2))
        return self.value_s

    def quantile_s(self, q: float) -> float:
        """The ``q``-quantile (0..1) in seconds."""
        if self.kind == "empirical":
            return float(np.quantile(self.samples, q))
        if self.kind == "exponential":
            return float(-self.value_s * np.log1p(-q)) if q < 1 else float("inf")
        if self.kind == "lognormal":
            from statistics import NormalDist

            return float(self.value_s * np.exp(self.sigma * NormalDist().inv_cdf(q)))
        return self.value_s

    def sampler(self, rng: np.random.Generator, scale: float = 1.0) -> Sampler:
        """A buffered sampler of this distribution times ``scale``."""
        return Sampler(self, rng, scale)


class Sampler:
    """Draws values one at a time from batches generated by ``rng``."""

    __slots__ = ("_buf", "_dist", "_i", "_rng", "_samples", "scale")

    def __init__(self, dist: Distribution, rng: np.random.Generator, scale: float = 1.0) -> None:
        self._dist = dist
        self._rng = rng
        self._samples = np.asarray(dist.samples, dtype=float) if dist.kind == "empirical" else None
        self._buf: list[float] = []
        self._i = 0
        self.scale = float(scale)

    def _refill(self) -> None:
        d = self._dist
        if d.kind == "empirical":
            assert self._samples is not None
            values = self._samples[self._rng.integers(0, len(self._samples), _BATCH)]
        elif d.kind == "exponential":
            values = self._rng.exponential(d.value_s, _BATCH)
        elif d.kind == "lognormal":
            values = d.value_s * np.exp(self._rng.normal(0.0, d.sigma, _BATCH))
        else:
            values = np.full(_BATCH, d.value_s)
        self._buf = values.tolist()
        self._i = 0

    def draw(self) -> float:
        """One value (seconds), already multiplied by ``scale``."""
        i = self._i
        if i >= len(self._buf):
            self._refill()
            i = 0
        self._i = i + 1
        return self._buf[i] * self.scale
