"""Native batched vector environments: many patients in one numpy simulator.

``gymnasium.make_vec("vanco_pk:VancoPK-v0", num_envs=N, vectorization_mode="vector_entry_point")``
builds :class:`VancoPKVectorEnv` (or :class:`VancoPKDiscreteVectorEnv`). There is no
per-patient environment object: one :class:`vanco_pk.simulator.BatchSimulator` advances all
``N`` patients with array operations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from vanco_pk.env import VancoPKDiscreteEnv, VancoPKEnv, advance, make_tracker, observe_chart, parse_dose

__all__ = ["VancoPKDiscreteVectorEnv", "VancoPKVectorEnv"]


class VancoPKVectorEnv(VectorEnv):
    """``num_envs`` patients of :class:`vanco_pk.env.VancoPKEnv`, simulated together.

    Takes the same keyword arguments as :class:`vanco_pk.env.VancoPKEnv` (its docstring
    lists the observation, action, reward, info and options); ``patients``, if given, holds
    one patient per sub-environment (or one for all), and sub-environment ``i`` always
    simulates patient ``i``.

    Autoreset follows Gymnasium 1.0 (next step): the ``step`` after a sub-environment's
    episode ends resets it, returns its first observation with reward 0, ``terminated`` and
    ``truncated`` False, and ignores its action. All episodes have the same length, so all
    sub-environments reset together.

    Seeding: ``reset(seed=s)`` gives sub-environment ``i`` its own stream seeded ``s + i``
    (or ``seed[i]`` for a list), exactly as a single environment reset with that seed, so
    patient ``i`` here and ``VancoPKEnv`` reset with ``seed=s + i`` give the same episode.
    Later episodes of a sub-environment continue its stream, as a single environment's do.

    ``info`` is Gymnasium's vector format: each key holds an array over sub-environments,
    with a boolean mask ``"_key"`` (always all True here); ``info["covariates"]`` is a dict
    of such arrays.
    """

    metadata = {"render_modes": []}  # noqa: RUF012 - the Gymnasium convention
    _single = VancoPKEnv

    def __init__(self, num_envs: int = 1, **kwargs: Any):
        if not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs = {num_envs!r} must be a positive integer")
        self.num_envs = int(num_envs)
        # A single env validates the options and builds the spaces; its simulator is unused.
        template = self._single(**kwargs)
        self.world = template.world
        self.extended_obs = template.extended_obs
        self.pk_features = template.pk_features
        self.reward_name = template.reward_name
        self.observation_names = template.observation_names
        self._reward = template._reward
        self._discrete = template._discrete
        fixed = template.fixed_patients
        if fixed is not None and len(fixed) not in (1, self.num_envs):
            raise ValueError(
                f"patients holds {len(fixed)} patients; give one per sub-environment ({self.num_envs}) or one"
            )
        if fixed is not None and len(fixed) == 1:
            fixed = fixed[np.zeros(self.num_envs, dtype=int)]
        self.fixed_patients = fixed
        self.single_observation_space = template.observation_space
        self.single_action_space = template.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._sim = template._sim.__class__(self.num_envs, self.world)
        self._tracker = make_tracker(self.world, template.pk_model) if template.tracks_exposure else None
        self._rngs: list[np.random.Generator] | None = None
        self._done = np.zeros(self.num_envs, dtype=bool)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; the vector env takes none")
        n = self.num_envs
        if seed is None:
            if self._rngs is None:
                seeds = [int(s) for s in self.np_random.integers(0, 2**63 - 1, size=n)]
                self._rngs = [seeding.np_random(s)[0] for s in seeds]
        else:
            if isinstance(seed, int | np.integer):
                seeds = [int(seed) + i for i in range(n)]
            else:
                seeds = list(seed)
                if len(seeds) != n:
                    raise ValueError(
                        f"seed list has {len(seeds)} entries; give one per sub-environment ({n})"
                    )
            super().reset(seed=seeds[0])
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        self._start(np.arange(n))
        self._done[:] = False
        return self._observation(), self._info(np.zeros(n, dtype=bool))

    def _start(self, index: np.ndarray) -> None:
        draws = self.world.draws_per_episode
        normals = np.stack([self._rngs[i].standard_normal(draws) for i in index])
        fixed = None if self.fixed_patients is None else self.fixed_patients[index]
        self._sim.reset(index, normals, fixed)
        if self._tracker is not None:
            if len(index) != self.num_envs:
                # Episodes all have the same length, so they always restart together.
                raise RuntimeError("internal error: the exposure tracker restarts all sub-envs at once")
            self._tracker.reset(self._sim.covariates)
            observe_chart(self._tracker, self._sim)

    def _observation(self) -> np.ndarray:
        obs = self._sim.observation(self.extended_obs)
        if self.pk_features:
            obs = np.column_stack([obs, self._tracker.features()]).astype(np.float32)
        return obs

    def step(self, actions):
        if self._rngs is None:
            raise ResetNeeded("call reset() before step()")
        n = self.num_envs
        dose, clipped = parse_dose(actions, self._discrete, n)
        done = self._done
        dose = np.where(done, 0.0, dose)
        clipped = clipped & ~done
        reward = advance(self._sim, self._tracker, self._reward, self.reward_name, dose).astype(np.float64)
        truncated = self._sim.truncated.copy()
        if np.any(done):
            # Next-step autoreset: these sub-environments start a new episode instead.
            restart = np.flatnonzero(done)
            self._start(restart)
            reward[restart] = 0.0
            truncated[restart] = False
        terminated = np.zeros(n, dtype=bool)
        self._done = truncated | terminated
        return self._observation(), reward, terminated, truncated, self._info(clipped)

    def _info(self, clipped: np.ndarray) -> dict[str, Any]:
        info = self._sim.info()
        info["action_clipped"] = clipped
        return _with_masks(info, self.num_envs)

    def set_sampling(self, protocols) -> None:
        """Level protocol per sub-environment (see :meth:`vanco_pk.simulator.BatchSimulator.set_sampling`)."""
        self._sim.set_sampling(protocols)

    def request_level(self, request) -> None:
        """Order a trough at the end of the next interval where ``request`` is True (one flag per patient)."""
        self._sim.request_levels(np.broadcast_to(np.asarray(request, dtype=bool), (self.num_envs,)))

    @property
    def simulator(self):
        """The underlying :class:`vanco_pk.simulator.BatchSimulator` (read-only use)."""
        return self._sim


class VancoPKDiscreteVectorEnv(VancoPKVectorEnv):
    """:class:`VancoPKVectorEnv` with ``Discrete(13)`` actions (``MultiDiscrete`` batched)."""

    _single = VancoPKDiscreteEnv


def _with_masks(info: dict[str, Any], n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in info.items():
        out[key] = _with_masks(value, n) if isinstance(value, dict) else value
        out[f"_{key}"] = np.ones(n, dtype=bool)
    return out
