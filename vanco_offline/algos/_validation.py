"""Checks of the options shared by VancoIQLConfig and DiscreteVancoIQLConfig."""

from __future__ import annotations

from typing import Any


def check_iql_options(cfg: Any, name: str) -> None:
    """ValueError naming the first out-of-range IQL option of ``cfg`` and its valid range."""
    rules: list[tuple[str, bool, str]] = [
        ("actor_learning_rate", cfg.actor_learning_rate > 0, "> 0"),
        ("critic_learning_rate", cfg.critic_learning_rate > 0, "> 0"),
        ("batch_size", isinstance(cfg.batch_size, int) and cfg.batch_size >= 1, "an integer >= 1"),
        ("gamma", 0.0 <= cfg.gamma <= 1.0, "in [0, 1]"),
        ("tau", 0.0 < cfg.tau <= 1.0, "in (0, 1]"),
        ("n_critics", isinstance(cfg.n_critics, int) and cfg.n_critics >= 1, "an integer >= 1"),
        ("expectile", 0.0 < cfg.expectile < 1.0, "in (0, 1); 0.5 is plain mean regression"),
        ("weight_temp", cfg.weight_temp >= 0.0, ">= 0 (0 is behaviour cloning)"),
        ("max_weight", cfg.max_weight > 0.0, "> 0"),
    ]
    for option, ok, valid in rules:
        if not ok:
            raise ValueError(f"{name}: {option}={getattr(cfg, option)!r} is invalid; it must be {valid}")
