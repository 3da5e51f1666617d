"""The ``sim`` backend: a discrete-event simulator of the testbed's platform.

It is calibrated from profiles measured on a real backend (``aquatope profile``) and runs
day-long traces in seconds, in simulated time, with the same policies and daemon as live runs::

    from testbed.sim import SimPlatform
    sim = SimPlatform(seed=1, workflows=load_workflows())   # shipped reference profile
    sim.deploy(spec); sim.run_trace({"ml-pipeline": times}, until_s=600, on_tick=daemon_tick)

See docs/simulator.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Distribution",
    "FunctionProfile",
    "Profile",
    "SimClock",
    "SimPlatform",
    "SimResults",
    "default_profile_path",
    "load_profile",
    "save_profile",
]

_LAZY = {
    "Distribution": "testbed.sim.distributions",
    "FunctionProfile": "testbed.sim.profile",
    "Profile": "testbed.sim.profile",
    "default_profile_path": "testbed.sim.profile",
    "load_profile": "testbed.sim.profile",
    "save_profile": "testbed.sim.profile",
    "SimClock": "testbed.sim.platform",
    "SimPlatform": "testbed.sim.platform",
    "SimResults": "testbed.sim.platform",
}

if TYPE_CHECKING:
    from testbed.sim.distributions import Distribution
    from testbed.sim.platform import SimClock, SimPlatform, SimResults
    from testbed.sim.profile import (
        FunctionProfile,
        Profile,
        default_profile_path,
        load_profile,
        save_profile,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'testbed.sim' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
