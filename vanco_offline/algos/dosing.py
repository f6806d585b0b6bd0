"""Dose in mg from a trained d3rlpy algorithm: its decision rule, then the action's meaning.

A discrete algorithm (``DiscreteVancoIQL``, d3rlpy's discrete CQL/BCQ/BC, ...) returns an
index :math:`k` into the dose grid, and the dose is :math:`\\mathrm{DOSE\\_GRID\\_MG}[k]`
(:data:`vanco_pk.targets.DOSE_GRID_MG`). A continuous one (``VancoIQL``,
``ResidualVancoIQL``, d3rlpy's IQL/CQL/BCQ/BC, ...) returns the dose itself in mg, after its
action scaler's reverse transform; a residual model's prior dose is already added inside its
decision rule. The dose is the first action column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from vanco_pk.targets import DOSE_GRID_MG

__all__ = ["action_to_mg", "is_discrete", "predict_dose_mg"]


def is_discrete(algo: Any) -> bool:
    """Whether ``algo`` (a d3rlpy algorithm) acts on the dose grid."""
    return algo.get_action_type().name == "DISCRETE"


def action_to_mg(actions: np.ndarray, discrete: bool) -> np.ndarray:
    """Doses in mg, shape ``(n,)``, of ``n`` actions as d3rlpy returns or stores them.

    Parameters
    ----------
    actions : array
        Grid indices ``(n,)`` or ``(n, 1)`` when ``discrete``, else doses ``(n, action_size)``.
    discrete : bool
        Whether the actions index :data:`vanco_pk.targets.DOSE_GRID_MG`.
    """
    actions = np.asarray(actions)
    if discrete:
        return DOSE_GRID_MG[actions.reshape(-1).astype(np.int64)]
    return actions.reshape(len(actions), -1)[:, 0].astype(np.float64)


def predict_dose_mg(algo: Any, observations: np.ndarray, *, sample: bool = False) -> np.ndarray:
    """The doses (mg, shape ``(n,)``) that ``algo`` gives ``n`` observations.

    Parameters
    ----------
    algo : d3rlpy algorithm
        A built (trained or loaded) algorithm, discrete or continuous.
    observations : array
        ``(n, observation_size)``, or one observation ``(observation_size,)``.
    sample : bool
        Sample from the policy (``algo.sample_action``) instead of its greedy action
        (``algo.predict``).
    """
    x = np.asarray(observations, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    actions = algo.sample_action(x) if sample else algo.predict(x)
    return action_to_mg(actions, is_discrete(algo))
