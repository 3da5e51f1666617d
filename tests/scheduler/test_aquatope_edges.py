"""``aquatope``'s composition edges: how two decisions merge, how the halves are built from
options (and refused), what the merged decision says when there is no configurator, both
halves' state, and the parameters the registry lists. A stub configurator stands in for
``aquatope-config`` where its decisions must be known exactly."""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import pytest

import scheduler.registry
from scheduler.policies import aquatope
from scheduler.policies.aquatope import AquatopePolicy, compose
from scheduler.policies.aquatope_config import AquatopeConfigPolicy
from scheduler.policies.aquatope_prewarm import AquatopePrewarmPolicy
from scheduler.policies.prewarm_config import PrewarmConfig
from scheduler.policy import Decision, FunctionDecision, Observation, Policy
from scheduler.registry import available_policies, create_policy
from testbed.core.config import Limits
from tests.scheduler.sched_helpers import fobs

SMALL = Limits(cpu_cores=0.5, memory_mb=256)
BIG = Limits(cpu_cores=2.0, memory_mb=1024)


class _Stub(Policy):
    """A configurator whose decision and state are fixed; it records what it saw."""

    name = "stub"

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.seen: list[Observation] = []
        self.loaded: list[Mapping[str, Any]] = []

    def decide(self, observation: Observation) -> Decision:
        self.seen.append(observation)
        return self.decision

    def state_dict(self) -> dict[str, Any]:
        return {"stub": len(self.seen)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.loaded.append(dict(state))


def _obs(now_s: float, **arrivals: int) -> Observation:
    fns = {n: fobs(n, arrivals=arrivals.get(n, 0), replicas_ready=0) for n in ("f", "g")}
    return Observation(now_s=now_s, tick_s=1.0, functions=fns)


def _prewarm() -> AquatopePrewarmPolicy:
    return AquatopePrewarmPolicy(forecaster="ewma")


def test_compose_takes_replicas_from_both_and_limits_from_the_configurator() -> None:
    prewarm = Decision(
        {
            "f": FunctionDecision(replicas=3, reason="pw f"),
            "h": FunctionDecision(replicas=2, reason="pw h"),
            "k": FunctionDecision(replicas=None, reason="pw k"),
        },
        reason="pre-warm",
    )
    config = Decision(
        {
            "f": FunctionDecision(replicas=5, limits=SMALL, reason="cfg f"),
            "g": FunctionDecision(limits=BIG, reason="cfg g"),
            "k": FunctionDecision(replicas=1, limits=SMALL),
        },
        reason="configurator",
    )
    merged = compose(prewarm, config)
    assert list(merged.functions) == ["f", "g", "h", "k"]  # every function of either, sorted
    assert merged.functions["f"] == FunctionDecision(replicas=5, limits=SMALL, reason="pw f; cfg f")
    assert merged.functions["g"] == FunctionDecision(replicas=None, limits=BIG, reason="cfg g")
    assert merged.functions["h"] == FunctionDecision(replicas=2, limits=None, reason="pw h")
    assert merged.functions["k"] == FunctionDecision(replicas=1, limits=SMALL, reason="pw k")
    assert merged.valid and merged.reason == "pre-warm"
    # the configurator's target is a floor only: a larger pre-warm target wins
    lower = Decision({"f": FunctionDecision(replicas=2, limits=SMALL)})
    assert compose(prewarm, lower).functions["f"].replicas == 3


def test_compose_reason_and_validity_follow_the_pre_warmer() -> None:
    config = Decision({"f": FunctionDecision(limits=SMALL)}, reason="configurator")
    quiet = Decision({"f": FunctionDecision(replicas=1)})
    assert compose(quiet, config).reason == "configurator"  # the pre-warmer said nothing
    declined = Decision.decline("no forecast yet")
    merged = compose(declined, config)
    assert not merged.valid and merged.reason == "no forecast yet"
    assert merged.functions["f"].limits == SMALL
    # no configurator decision, or an invalid one: the pre-warm decision as it is
    prewarm = Decision({"f": FunctionDecision(replicas=4)}, reason="pre-warm")
    assert compose(prewarm, None) is prewarm
    assert compose(prewarm, Decision.decline("tuning")) is prewarm


def test_options_go_to_their_half_and_wrong_combinations_are_refused() -> None:
    both = AquatopePolicy(forecaster="ewma", step_s=2.0, config_budget=4, config_trial_ticks=3)
    assert both.prewarm.config.forecaster == "ewma" and both.prewarm.config.step_s == 2.0
    assert isinstance(both.config, AquatopeConfigPolicy)
    assert both.config.budget == 4 and both.config.trial_ticks == 3
    assert both.config_note == "aquatope-config composed"
    built = _prewarm()
    with pytest.raises(ValueError, match=r"^aquatope: pre-warm options given with a built"):
        AquatopePolicy(prewarm=built, step_s=2.0)
    with pytest.raises(ValueError, match=r"^aquatope: config_\* options given with configure"):
        AquatopePolicy(prewarm=built, configure=False, config_budget=4)
    # a config (not a policy) is a starting point the options change
    cfg = AquatopePolicy(prewarm=PrewarmConfig(forecaster="ewma", step_s=3.0), miss_price_s=9.0)
    assert cfg.prewarm.config == PrewarmConfig(forecaster="ewma", step_s=3.0, miss_price_s=9.0)
    stub = _Stub(Decision())
    given = AquatopePolicy(prewarm=built, config=stub)
    assert given.prewarm is built and given.config is stub
    assert given.config_note == "aquatope-config given"


def test_without_a_configurator_every_decision_says_why() -> None:
    off = AquatopePolicy(prewarm=_prewarm(), configure=False)
    assert off.config is None and off.config_note == "disabled"
    alone = _prewarm()
    for t in (1.0, 2.0, 3.0):
        d = off.decide(_obs(t, f=3))
        assert d.reason == "pre-warm only (disabled)"
        assert d.functions == alone.decide(_obs(t, f=3)).functions and d.valid


def test_a_configurator_not_registered_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    everything = available_policies()
    everything.pop("aquatope-config")
    monkeypatch.setattr(scheduler.registry, "available_policies", lambda: everything)
    pol = AquatopePolicy(prewarm=_prewarm())
    assert pol.config is None and pol.config_note == "aquatope-config not available"
    assert pol.decide(_obs(1.0, f=2)).reason == "pre-warm only (aquatope-config not available)"


def test_both_halves_see_every_observation_and_their_decisions_merge() -> None:
    stub = _Stub(Decision({"f": FunctionDecision(limits=SMALL, reason="cfg")}, reason="c"))
    pol = AquatopePolicy(prewarm=_prewarm(), config=stub)
    alone = _prewarm()
    for t in (1.0, 2.0, 3.0):
        o = _obs(t, f=4, g=1)
        d = pol.decide(o)
        assert stub.seen[-1] is o
        assert d == compose(alone.decide(o), stub.decision)
    assert len(stub.seen) == 3
    assert d.functions["f"].limits == SMALL and d.functions["g"].limits is None


def test_state_holds_both_halves_and_restores_each() -> None:
    stub = _Stub(Decision())
    pol = AquatopePolicy(prewarm=_prewarm(), config=stub)
    for t in (1.0, 2.0):
        pol.decide(_obs(t, f=3))
    state = json.loads(json.dumps(pol.state_dict()))
    assert state["config"] == {"stub": 2}
    assert state["prewarm"] == json.loads(json.dumps(pol.prewarm.state_dict()))
    other = _Stub(Decision())
    clone = AquatopePolicy(prewarm=_prewarm(), config=other)
    clone.load_state_dict(state)
    assert other.loaded == [{"stub": 2}]
    assert json.loads(json.dumps(clone.prewarm.state_dict())) == state["prewarm"]
    o = _obs(3.0, f=3)
    assert clone.decide(o) == pol.decide(o)
    # a state saved without a configurator leaves the configurator alone
    clone.load_state_dict({"prewarm": state["prewarm"], "config": None})
    assert other.loaded == [{"stub": 2}]
    off = AquatopePolicy(prewarm=_prewarm(), configure=False)
    assert off.state_dict()["config"] is None
    off.load_state_dict(state)  # a configurator's state with none to give it to: ignored
    # an empty state (nothing saved yet) restores both halves to nothing learned
    fresh = AquatopePolicy(prewarm=_prewarm(), config=_Stub(Decision()))
    fresh.load_state_dict({})
    assert fresh.state_dict() == {"prewarm": _prewarm().state_dict(), "config": {"stub": 0}}


def test_registry_lists_pre_warm_fields_configure_and_prefixed_configurator_parameters() -> None:
    params = available_policies()["aquatope"].parameters
    for f in fields(PrewarmConfig):
        assert params[f.name][1] == f.default
    assert params["step_s"][0] is float and params["forecaster"][0] is str
    assert params["configure"] == (bool, True)
    config_params = available_policies()["aquatope-config"].parameters
    assert config_params  # there is something to prefix
    for name, (kind, default) in config_params.items():
        assert params["config_" + name] == (kind, default)
    assert set(params) == {f.name for f in fields(PrewarmConfig)} | {"configure"} | {
        "config_" + n for n in config_params
    }
    # string values (YAML, --param) are read with those types
    pol = create_policy(
        "aquatope", {"forecaster": "ewma", "config_budget": "4", "configure": "true"}
    )
    assert isinstance(pol, AquatopePolicy) and isinstance(pol.config, AquatopeConfigPolicy)
    assert pol.config.budget == 4
    off = create_policy("aquatope", {"forecaster": "ewma", "configure": "false"})
    assert isinstance(off, AquatopePolicy) and off.config is None


def test_the_signature_lists_every_parameter_keyword_only_in_order() -> None:
    # built when the module is imported; rebuilt here to see what it is made of
    sig, hints = aquatope._registry_signature()
    config_params = available_policies()["aquatope-config"].parameters
    prewarm = [f.name for f in fields(PrewarmConfig)]
    assert list(sig.parameters) == [
        "self",
        *prewarm,
        "configure",
        *("config_" + n for n in config_params),
    ]
    this = sig.parameters["self"]
    assert this.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert this.default is inspect.Parameter.empty
    assert all(
        p.kind is inspect.Parameter.KEYWORD_ONLY for n, p in sig.parameters.items() if n != "self"
    )
    for f in fields(PrewarmConfig):
        p = sig.parameters[f.name]
        assert (p.default, p.annotation, hints[f.name]) == (f.default, f.type, f.type)
    p = sig.parameters["configure"]
    assert (p.default, p.annotation, hints["configure"]) == (True, "bool", "bool")
    for name, (kind, default) in config_params.items():
        p = sig.parameters["config_" + name]
        assert (p.default, p.annotation, hints["config_" + name]) == (default, kind, kind)
    assert set(hints) == set(sig.parameters) - {"self"}
    assert inspect.signature(AquatopePolicy.__init__) == sig


def test_the_signature_without_a_configurator_module(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def missing(name: str) -> Any:
        if name == "scheduler.policies.aquatope_config":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name)

    monkeypatch.setattr(importlib, "import_module", missing)
    monkeypatch.setattr(scheduler.registry, "_REGISTRY", {})
    sig, hints = aquatope._registry_signature()
    assert list(sig.parameters) == ["self", *(f.name for f in fields(PrewarmConfig)), "configure"]
    assert set(hints) == set(sig.parameters) - {"self"}

    def broken(name: str) -> Any:  # the configurator's own import fails: not hidden
        raise ModuleNotFoundError("No module named 'botorch'", name="botorch")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="botorch"):
        aquatope._registry_signature()
