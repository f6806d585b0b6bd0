"""Wrappers for agents that expect a unit action box (Stable-Baselines3, most online RL code).

``VancoPK-v0``'s action is the dose itself, ``Box(0, 3000, (1,))`` in mg. A Gaussian policy
initialised around 0 with unit scale (PPO, SAC, TD3 in Stable-Baselines3) then starts by
giving about 0-1 mg per dose and has to learn a mean of ~1000 before anything it does
matters. :class:`NormalizedDose` rescales the action:

.. math::

    \\text{dose (mg)} = \\frac{a + 1}{2} \\cdot 3000, \\qquad a \\in [-1, 1]

so ``a = 0`` is 1500 mg, ``a = -1`` holds the dose and ``a = 1`` is the 3 g maximum.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RescaleAction

from vanco_pk.targets import DOSE_MAX_MG

__all__ = ["NormalizedDose", "action_to_dose"]


def action_to_dose(action: np.ndarray | float) -> np.ndarray:
    """Dose in mg of a normalised action in [-1, 1] (clipped into range)."""
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    return (a + 1.0) / 2.0 * DOSE_MAX_MG


class NormalizedDose(RescaleAction):
    """``VancoPK-v0`` with actions in ``Box(-1, 1, (1,))``: ``dose = (a + 1) / 2 * 3000`` mg.

    Example::

        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env
        from vanco_pk.wrappers import NormalizedDose

        env = make_vec_env("vanco_pk:VancoPK-v0", n_envs=4, wrapper_class=NormalizedDose)
        PPO("MlpPolicy", env).learn(50_000)

    Args:
        env: a continuous ``VancoPK`` environment (a ``Box(0, 3000)`` action in mg).
    """

    def __init__(self, env: gym.Env):
        space = env.action_space
        if not (
            isinstance(space, gym.spaces.Box)
            and space.shape == (1,)
            and float(space.low[0]) == 0.0
            and float(space.high[0]) == DOSE_MAX_MG
        ):
            raise ValueError(
                f"NormalizedDose wraps a continuous dose in mg, Box(0, {DOSE_MAX_MG:g}, (1,)); got {space}"
            )
        one = np.ones(1, dtype=np.float32)
        super().__init__(env, min_action=-one, max_action=one)
