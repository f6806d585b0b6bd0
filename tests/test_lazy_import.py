"""`import vanco_offline` is light, and still registers the algorithms with d3rlpy."""

from __future__ import annotations

import subprocess
import sys

import pytest

REGISTERED = """
from d3rlpy.base import register_learnable
from vanco_offline.algos import DiscreteVancoIQLConfig, VancoIQLConfig
for config in (VancoIQLConfig, DiscreteVancoIQLConfig):
    try:
        register_learnable(config)
    except AssertionError:  # d3rlpy: "seems to be already registered"
        continue
    raise SystemExit(f"{config.__name__} was not registered on import")
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_command_line_help_imports_neither_torch_nor_d3rlpy():
    done = _run(
        "import sys, contextlib, io\n"
        "from vanco_offline.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "heavy = sorted({'torch', 'd3rlpy', 'gym'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "order",
    [
        "import vanco_offline, d3rlpy",
        "import d3rlpy, vanco_offline",
        # an availability check finds d3rlpy without running it: the hook must wait for the import
        "import importlib.util, vanco_offline\nassert importlib.util.find_spec('d3rlpy')\nimport d3rlpy",
    ],
)
def test_the_algorithms_are_registered_whichever_is_imported_first(order):
    done = _run(order + "\n" + REGISTERED)
    assert done.returncode == 0, done.stderr
    if order.startswith("import vanco_offline"):  # d3rlpy's `gym` is imported silently
        assert "Gym has been unmaintained" not in done.stderr
