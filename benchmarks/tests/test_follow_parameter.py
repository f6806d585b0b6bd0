"""The rooms count of docs/architecture.md: one static reading, by module or by package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    path = ROOT / "benchmarks" / "follow_parameter.py"
    spec = importlib.util.spec_from_file_location("follow_parameter", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("follow_parameter", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_counting_by_package_merges_the_modules_of_one_package(monkeypatch):
    tool = _tool()
    monkeypatch.chdir(ROOT)
    start = "vanco_offline/commands/demo.py:run:args"
    by_module = tool.measure(start)
    by_package = tool.measure(start, by="package")
    # The same path, read at two grains: the packages are those of the modules entered.
    assert by_package["path"] == by_module["path"]
    assert by_package["rooms"] == len({tool.package_of(m) for m in by_module["stays"]})
    assert by_package["rooms"] < by_module["rooms"] and by_package["returns"] <= by_module["returns"]
    assert tool.package_of("vanco_offline.ope.twin.kidney") == "vanco_offline.ope"
    assert tool.package_of("vanco_pk.simulate") == "vanco_pk"
    assert tool.package_of("vanco_offline.training") == "vanco_offline.training"
