"""The import rules of docs/architecture.md, checked on the source (lazy imports included).

Each part of the project may import only the parts below it; a rule broken here is a seam
that leaks. The layer graph is printed (``pytest -s``) and must have no cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("testbed", "loadgen", "scheduler", "functions")

# layer -> the other layers it may import (its own layer and third-party code always allowed)
ALLOWED: dict[str, set[str]] = {
    "testbed.core": set(),
    "testbed.runner": set(),
    "functions": {"testbed.core", "testbed.runner"},
    "loadgen": {"testbed.core"},
    "scheduler.policy": {"testbed.core"},  # the Policy seam: observations and decisions
    "scheduler._threads": set(),
    "scheduler.registry": {"scheduler.policy"},
    "scheduler.forecast": {"testbed.core", "scheduler.policy", "scheduler._threads"},
    "scheduler.configure": {"testbed.core", "scheduler.policy", "scheduler._threads"},
    "scheduler.policies": {
        "testbed.core",
        "scheduler.policy",
        "scheduler.registry",
        "scheduler.forecast",
        "scheduler.configure",
        "scheduler._threads",
    },
    "scheduler.problems": {"testbed.core", "scheduler.configure"},
    # the package's face and the daemon side (observe, actuate, clock, daemon)
    "scheduler": {
        "testbed.core",
        "scheduler.policy",
        "scheduler.registry",
        "scheduler.forecast",
        "scheduler.configure",
    },
    "testbed.gateway": {"testbed", "testbed.core", "testbed.runner"},
    "testbed.sim": {"testbed.core", "functions"},
    # the real OpenFaaS CE control plane, our gateway as its provider
    "testbed.openfaas_ce": {"testbed.core", "testbed.gateway"},
    "testbed.backends": {"testbed.core", "testbed.gateway", "testbed.sim", "testbed.openfaas_ce"},
    "testbed": {"testbed.core", "testbed.backends"},
    "testbed.report": {"testbed.core", "testbed.experiment.results"},
    # composition roots: they wire everything together
    "testbed.experiment": {"*"},
    "testbed.cli": {"*"},
}
# modules of ``scheduler`` that do I/O or hold the loop: pure logic never imports them
SCHEDULER_IO = ("scheduler.daemon", "scheduler.observe", "scheduler.actuate", "scheduler.clock")


def layer_of(module: str) -> str:
    """The layer a module belongs to (the longest matching key of ``ALLOWED``)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in ALLOWED:
            return candidate
    return parts[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_imports() -> Iterator[tuple[str, str, int]]:
    """``(importing module, imported module, line)`` for every project-internal import."""
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            importer = module_name(path)
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] in PACKAGES:
                        yield importer, name, node.lineno


def allowed(importer_layer: str, imported: str) -> bool:
    rules = ALLOWED.get(importer_layer, set())
    if "*" in rules:
        return True
    target = layer_of(imported)
    if target == importer_layer:
        return True
    return target in rules or any(imported == r or imported.startswith(r + ".") for r in rules)


def test_every_import_follows_the_layer_rules() -> None:
    broken = [
        f"{importer} (line {line}) imports {imported}"
        for importer, imported, line in project_imports()
        if not allowed(layer_of(importer), imported)
    ]
    assert not broken, "\n".join(broken)


def test_pure_scheduler_logic_never_imports_the_daemon_side() -> None:
    pure = ("scheduler.policies", "scheduler.forecast", "scheduler.configure", "scheduler.policy")
    broken = [
        f"{importer} (line {line}) imports {imported}"
        for importer, imported, line in project_imports()
        if layer_of(importer) in pure and imported.startswith(SCHEDULER_IO)
    ]
    assert not broken, "\n".join(broken)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_layers_form_no_cycle(capsys: pytest.CaptureFixture[str]) -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for importer, imported, _ in project_imports():
        a, b = layer_of(importer), layer_of(imported)
        if a != b:
            graph[a].add(b)
    with capsys.disabled():
        print("\nlayer imports:")
        for layer, targets in sorted(graph.items()):
            print(f"  {layer} -> {', '.join(sorted(targets))}")
    cycle = _cycle(graph)
    assert cycle is None, f"import cycle between layers: {' -> '.join(cycle or [])}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None
