"""Diagnostics of an evaluation that are not estimates: action support and the seed's greedy Q."""

from __future__ import annotations

from typing import Any

import numpy as np

from vanco_offline.ope.behavior import BehaviorModel
from vanco_offline.ope.report import ActionSupport
from vanco_offline.ope.settings import SupportSettings
from vanco_offline.ope.trajectories import Trajectories

__all__ = ["action_support", "greedy_q"]


def action_support(
    trajectories: Trajectories, pmf: np.ndarray, behavior: BehaviorModel, settings: SupportSettings
) -> ActionSupport:
    """How much of the evaluated policy's mass lies on doses the behaviour policy rarely gives."""
    traj = trajectories
    mask = traj.mask
    rare_here = behavior.probabilities < settings.threshold
    conditional = float((pmf * rare_here).sum(axis=2)[mask].mean())
    freq = np.bincount(traj.actions[mask], minlength=traj.n_actions) / traj.n_transitions
    rare = freq < settings.threshold
    marginal = float(pmf[..., rare].sum(axis=-1)[mask].mean()) if rare.any() else 0.0
    return ActionSupport(
        threshold=settings.threshold,
        conditional_mass=conditional,
        marginal_mass=marginal,
        rare_doses=tuple(float(v) for v in traj.action_values[rare]),
        warn_above=settings.warn_above,
    )


def greedy_q(algo: Any, trajectories: Trajectories) -> float | None:
    """The seed's criterion: mean over logged states of the algorithm's Q of its greedy action.

    None for an algorithm without a Q-function (e.g. behaviour cloning).
    """
    obs = trajectories.observations[trajectories.mask].astype(np.float32)
    try:
        values = [
            algo.predict_value(obs[i : i + 8192], algo.predict(obs[i : i + 8192]))
            for i in range(0, len(obs), 8192)
        ]
    except (NotImplementedError, AttributeError, AssertionError):
        return None
    return float(np.mean(np.concatenate(values)))
