"""Checks of the options shared by VancoIQLConfig and DiscreteVancoIQLConfig.

Every numeric option must be a finite number of the right type in its range: an infinite
learning rate, a NaN gamma or a fractional batch size would train silently into NaN weights.
"""

from __future__ import annotations

import math
from typing import Any


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_iql_options(cfg: Any, name: str) -> None:
    """ValueError naming the first invalid IQL option of ``cfg`` and its valid range."""
    rules: list[tuple[str, Any, str]] = [
        ("actor_learning_rate", lambda v: _number(v) and v > 0, "a finite number > 0"),
        ("critic_learning_rate", lambda v: _number(v) and v > 0, "a finite number > 0"),
        ("batch_size", lambda v: _integer(v) and v >= 1, "an integer >= 1"),
        ("gamma", lambda v: _number(v) and 0.0 <= v <= 1.0, "in [0, 1]"),
        ("tau", lambda v: _number(v) and 0.0 < v <= 1.0, "in (0, 1]"),
        ("n_critics", lambda v: _integer(v) and v >= 1, "an integer >= 1"),
        ("expectile", lambda v: _number(v) and 0.0 < v < 1.0, "in (0, 1); 0.5 is plain mean regression"),
        ("weight_temp", lambda v: _number(v) and v >= 0.0, "a finite number >= 0 (0 is behaviour cloning)"),
        ("max_weight", lambda v: _number(v) and v > 0.0, "a finite number > 0"),
    ]
    for option, ok, valid in rules:
        if hasattr(cfg, option) and not ok(getattr(cfg, option)):
            raise ValueError(f"{name}: {option}={getattr(cfg, option)!r} is invalid; it must be {valid}")
