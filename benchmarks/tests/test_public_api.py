"""The benchmarks call the library through its public API only.

Every module of ``vanco_bench`` is read with :mod:`ast` (nothing is imported): no name that
starts with an underscore may be imported from ``vanco_offline`` or ``vanco_pk`` (nor a
module whose path has one), and no such attribute may be read from a name imported from
them. The benchmarks' own private helpers (``vanco_bench``) are theirs to use. That the
library never imports the benchmarks is checked with its import graph
(tests/test_import_graph.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import vanco_bench

LIBRARY = ("vanco_offline", "vanco_pk")
PACKAGE = Path(vanco_bench.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def _private(name: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))


def private_uses(source: str) -> list[str]:
    """``line: what`` for every private name of the library that ``source`` imports or reads."""
    tree = ast.parse(source)
    found, bound = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] not in LIBRARY:
                continue
            for alias in node.names:
                bound.add(alias.asname or alias.name)
                if _private(node.module) or _private(alias.name):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in LIBRARY:
                    bound.add(alias.asname or alias.name.split(".")[0])
                    if _private(alias.name):
                        found.append(f"{node.lineno}: import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_finds_a_private_use():
    source = (
        "from vanco_offline.ope._threads import single_thread\n"
        "from vanco_offline.configs.presets import _config_class\n"
        "import vanco_pk.env\n"
        "from vanco_offline import training\n"
        "from vanco_bench.fidelity import _odds_ratio\n"  # the benchmarks' own: allowed
        "vanco_pk.env._check(1)\n"
        "training._helper()\n"
        "training.__name__\n"
    )
    assert [use.split(":")[0] for use in private_uses(source)] == ["1", "2", "6", "7"]


def test_the_package_is_read():
    assert len(MODULES) > 20 and PACKAGE / "offline" / "grid.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_benchmark_uses_a_private_name_of_the_library(path):
    assert private_uses(path.read_text(encoding="utf-8")) == []
