"""Packaged YAML presets (read with importlib.resources) and the loader that validates them.

``load_preset("default")`` returns a typed :class:`Preset`; ``build_algo(preset, dataset)``
turns it into a VancoIQL / DiscreteVancoIQL with its scalers. ``available_presets()``
lists the packaged names.
"""

from __future__ import annotations

from vanco_offline.configs.presets import (
    DataSettings,
    NetworkSettings,
    Preset,
    TrainingSettings,
    available_presets,
    build_algo,
    load_preset,
    make_config,
)

__all__ = [
    "DataSettings",
    "NetworkSettings",
    "Preset",
    "TrainingSettings",
    "available_presets",
    "build_algo",
    "load_preset",
    "make_config",
]
