"""A wrapper that makes "draw a level" part of the action, so an agent can learn when to sample."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vanco_pk.targets import DOSE_MAX_MG

__all__ = ["LevelRequest"]


class LevelRequest(gym.Wrapper):
    """Action = (dose, request a trough at the end of this interval).

    Wraps :class:`vanco_pk.env.VancoPKEnv` (``Box``: the action becomes
    ``Box([0, 0], [3000, 1])``, a request when the second component is >= 0.5) or
    :class:`vanco_pk.env.VancoPKDiscreteEnv` (``MultiDiscrete([13, 2])``). The requested
    trough is drawn on top of whatever the scenario's protocol orders (use
    ``scenario={"base": "icu", "sampling": "on_request"}`` for levels only on request).
    ``request_cost`` is subtracted from the reward of each step that requests a level (a
    level costs a blood draw and money; 0 by default). ``info["level_requested"]`` says
    whether this step requested one.
    """

    def __init__(self, env: gym.Env, request_cost: float = 0.0):
        super().__init__(env)
        if not (np.isfinite(request_cost) and request_cost >= 0):
            raise ValueError(f"LevelRequest: request_cost = {request_cost!r} must be a number >= 0")
        self.request_cost = float(request_cost)
        inner = env.action_space
        if isinstance(inner, spaces.Discrete):
            self.action_space = spaces.MultiDiscrete([int(inner.n), 2])
        elif isinstance(inner, spaces.Box):
            self.action_space = spaces.Box(
                np.array([0.0, 0.0], np.float32), np.array([DOSE_MAX_MG, 1.0], np.float32), dtype=np.float32
            )
        else:
            raise ValueError(f"LevelRequest wraps a VancoPK env; got action space {inner!r}")
        self._discrete = isinstance(inner, spaces.Discrete)

    def step(self, action: Any):
        arr = np.asarray(action, dtype=np.float64).reshape(-1)
        if arr.size != 2 or np.any(np.isnan(arr)):
            raise ValueError(f"LevelRequest: action must be (dose, request); got {action!r}")
        request = bool(arr[1] >= 0.5)
        self.env.unwrapped.request_level(request)
        dose = int(arr[0]) if self._discrete else arr[:1]
        obs, reward, terminated, truncated, info = self.env.step(dose)
        info["level_requested"] = request
        return obs, reward - self.request_cost * request, terminated, truncated, info
