"""Optional extras: which ``pip install 'vanco-offline[EXTRA]'`` provides a missing package.

A command that needs an optional package stops with one line naming the extra (exit code
2, see :mod:`vanco_offline.cli`), never with an ImportError traceback.
"""

from __future__ import annotations

__all__ = ["EXTRAS", "MissingExtraError", "missing_extra"]

#: top-level module -> the extra that installs it
EXTRAS: dict[str, str] = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "minari": "minari",
    "duckdb": "mimic",
    "ray": "ray",
    "stable_baselines3": "sb3",
}


class MissingExtraError(ImportError):
    """An optional package is missing; the message names the extra that installs it."""


def missing_extra(module: str, extra: str | None = None, feature: str | None = None) -> MissingExtraError:
    """The error to raise when ``module`` is missing (``extra`` defaults to :data:`EXTRAS`)."""
    extra = extra or EXTRAS.get(module.split(".")[0])
    what = f"{feature} needs" if feature else "this needs"
    hint = f"pip install 'vanco-offline[{extra}]'" if extra else f"pip install {module.split('.')[0]}"
    return MissingExtraError(f"{what} the optional package '{module.split('.')[0]}': {hint}", name=module)
