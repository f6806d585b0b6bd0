"""vanco-offline: offline reinforcement learning for vancomycin dosing in the ICU.

Importing the package registers :class:`~vanco_offline.algos.VancoIQLConfig` and
:class:`~vanco_offline.algos.DiscreteVancoIQLConfig` with d3rlpy, so that
``d3rlpy.load_learnable`` can rebuild saved models.
"""

from __future__ import annotations

import contextlib
import io
import sys

__version__ = "0.1.0"


def _import_gym_quietly() -> None:
    # d3rlpy imports the unmaintained `gym`, whose import prints a multi-line notice to
    # stderr on every run; silence that one print, not warnings in general.
    if "gym" in sys.modules:
        return
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            import gym  # noqa: F401
        except ImportError:
            pass


_import_gym_quietly()

try:
    from vanco_offline import algos  # registers the algorithms with d3rlpy
except ModuleNotFoundError as _missing:
    # Without torch/d3rlpy only the torch-free parts work (the bundle runtime, the safety
    # layer); there is nothing to register with d3rlpy then.
    if (_missing.name or "").split(".")[0] not in ("torch", "d3rlpy"):
        raise

__all__ = ["__version__", "algos"]
