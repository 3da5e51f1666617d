"""The ``sim`` backend: :class:`~testbed.sim.platform.SimPlatform` under its backend name.

``connect("sim", profile=..., seed=..., workflows=...)`` in :mod:`testbed.backends` builds
one of these; the simulator itself lives in :mod:`testbed.sim`.
"""

from __future__ import annotations

from typing import Any

from testbed.sim.platform import SimClock, SimPlatform, SimResults

__all__ = ["SimClock", "SimPlatform", "SimResults", "connect_sim"]


def connect_sim(**opts: Any) -> SimPlatform:
    """A fresh simulated platform; ``opts`` are :class:`SimPlatform`'s keyword arguments.

    ``workflows`` defaults to the shipped workflows (``load_workflows()``) when they load.
    """
    if "workflows" not in opts:
        from testbed.core.workflows import load_workflows

        opts["workflows"] = load_workflows()
    profile = opts.pop("profile", None)
    return SimPlatform(profile, **opts)
