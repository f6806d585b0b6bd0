"""The import graph of vanco_offline and vanco_pk: no cycle, no import from a lower layer to a higher one.

The graph is read with :mod:`ast` (nothing is imported); imports inside functions count too.
The layers are those of docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"vanco_offline": ROOT / "vanco_offline", "vanco_pk": ROOT / "envs" / "vanco_pk"}

#: Layers, highest first: a module may import only from its own layer or a lower one.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("vanco_offline.cli",),
    ("vanco_offline.commands",),
    (
        "vanco_offline.recommend",
        "vanco_offline.plots",
        "vanco_offline.export",
        "vanco_offline.bundle",
        "vanco_offline.training",
        "vanco_offline.trained",
    ),
    ("vanco_bench",),
    ("vanco_offline.ope",),
    ("vanco_offline.rollout",),
    (
        "vanco_offline.data",
        "vanco_offline.algos",
        "vanco_offline.configs",
        "vanco_offline.clinical",
        "vanco_offline.safety",
        "vanco_offline.extras",
        "vanco_offline.progress",
        "vanco_offline._hooks",
        "vanco_offline",
    ),
    ("vanco_pk",),
)
#: Third-party packages the simulator must never import.
NOT_IN_VANCO_PK = ("vanco_offline", "torch", "d3rlpy")


def _modules() -> dict[str, Path]:
    out = {}
    for base in PACKAGES.values():
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imported_names(module: str, path: Path):
    """``(dotted name, line)`` of every import in the file, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{target}.{alias.name}"
                yield (full if full in MODULES else target), node.lineno


def _owner(name: str) -> str:
    """The module of ours that defines ``name`` (its longest known prefix)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _graph() -> dict[str, dict[str, int]]:
    """module -> {imported module (ours) or top-level third-party package: first line}."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in MODULES.items():
        edges = graph.setdefault(module, {})
        for name, line in _imported_names(module, path):
            target = _owner(name) if name.split(".")[0] in PACKAGES else name.split(".")[0]
            if target != module:
                edges.setdefault(target, line)
    return graph


def _layer(module: str) -> int:
    best, depth = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = i, len(prefix)
    if best is None:
        raise AssertionError(f"{module} has no layer in tests/test_import_graph.py LAYERS")
    return best


GRAPH = _graph()


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c in graph), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_is_read():
    assert len(MODULES) > 100
    assert "vanco_offline.rollout" in GRAPH["vanco_offline.ope.policy"]
    assert "vanco_pk.targets" in GRAPH["vanco_offline.data.schema"]


def test_cycle_detection_finds_a_cycle():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


def test_imports_point_down_the_layers():
    upward = [
        f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}"
        for module, edges in GRAPH.items()
        for target, line in edges.items()
        if target in MODULES and _layer(target) < _layer(module)
    ]
    assert upward == []


@pytest.mark.parametrize("forbidden", NOT_IN_VANCO_PK)
def test_vanco_pk_stands_alone(forbidden):
    offenders = [
        f"{MODULES[module].relative_to(ROOT)}:{line}"
        for module, edges in GRAPH.items()
        if module.split(".")[0] == "vanco_pk"
        for target, line in edges.items()
        if target.split(".")[0] == forbidden
    ]
    assert offenders == []
