"""vanco-offline: offline reinforcement learning for vancomycin dosing in the ICU.

Importing the package registers :class:`~vanco_offline.algos.VancoIQLConfig` and
:class:`~vanco_offline.algos.DiscreteVancoIQLConfig` with d3rlpy, so that
``d3rlpy.load_learnable`` can rebuild saved models. The registration happens when d3rlpy
is imported (at once if it already is), so that ``import vanco_offline`` alone -- the
command line's ``--help``, the numpy bundle runtime -- does not load torch and d3rlpy.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from vanco_offline._hooks import when_imported

__version__ = "0.1.0"


def _register_algorithms(d3rlpy: ModuleType) -> None:
    importlib.import_module("vanco_offline.algos")


# d3rlpy imports the unmaintained `gym`, whose import prints a multi-line notice to stderr.
when_imported("gym", quiet=True)
when_imported("d3rlpy", _register_algorithms)


def __getattr__(name: str) -> Any:
    if name == "algos":
        return importlib.import_module("vanco_offline.algos")
    raise AttributeError(f"module 'vanco_offline' has no attribute {name!r}")


__all__ = ["__version__", "algos"]
