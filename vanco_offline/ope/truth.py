"""Ground truth from the simulator: the evaluated policy's discounted return on fresh patients.

When the data came from ``vanco_pk``, the value every estimator tries to recover is known
up to Monte Carlo error: roll the same (softened) policy out on new patients of the same
population, with the same decision interval, horizon, noise settings and gamma.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from vanco_pk.targets import DOSE_GRID_MG, FEATURES
from vanco_pk.vector import VancoPKVectorEnv

from vanco_offline.ope.policy import EvaluatedPolicy, soften

__all__ = ["SimulatorTruth", "TrueValue", "simulate_value"]


@dataclasses.dataclass(frozen=True)
class SimulatorTruth:
    """How to compute the ground truth.

    Attributes
    ----------
    n_patients : int
        Fresh patients to roll out (the standard error falls as 1/sqrt of it).
    seed : int
        Patient ``i`` is the environment reset with ``seed + i``; keep it away from the
        seeds that generated the data so that the patients are new (default 10**6).
    env_options : mapping
        Keyword arguments of ``vanco_pk.env.VancoPKEnv`` that generated the data
        (``decision_interval_h``, ``episode_days``, ``measurement_noise``,
        ``level_missing_prob``, ``misspecification``, ``reward``, ...).
    batch : int
        Patients simulated at once.
    """

    n_patients: int = 2000
    seed: int = 1_000_000
    env_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch: int = 1000

    def __post_init__(self) -> None:
        if self.n_patients < 2 or self.batch < 1:
            raise ValueError("SimulatorTruth needs n_patients >= 2 and batch >= 1")
        if "extended_obs" in self.env_options:
            raise ValueError("SimulatorTruth builds the observation itself; do not pass extended_obs")


@dataclasses.dataclass(frozen=True)
class TrueValue:
    """Mean discounted return of a policy over simulated patients, with its standard error."""

    value: float
    std_error: float
    n_patients: int
    horizon: int
    gamma: float
    returns: np.ndarray = dataclasses.field(repr=False)

    def __str__(self) -> str:
        return (
            f"{self.value:.3f} +- {self.std_error:.3f} (simulator, {self.n_patients} fresh patients, "
            f"{self.horizon} decisions, gamma {self.gamma:g})"
        )


def simulate_value(
    policy: EvaluatedPolicy,
    gamma: float,
    truth: SimulatorTruth = SimulatorTruth(),
    observation_names: Sequence[str] = FEATURES,
) -> TrueValue:
    """Roll ``policy`` (softened by its ``epsilon``) out on fresh simulated patients.

    Parameters
    ----------
    policy : EvaluatedPolicy
    gamma : float
    truth : SimulatorTruth
    observation_names : sequence of str
        The observation columns a d3rlpy algorithm was trained on (the data layer's).

    Returns
    -------
    TrueValue
    """
    actor = policy.simulator_policy(observation_names)
    returns = []
    horizon = 0
    for start in range(0, truth.n_patients, truth.batch):
        n = min(truth.batch, truth.n_patients - start)
        env = VancoPKVectorEnv(num_envs=n, **dict(truth.env_options))
        horizon = env.config.n_steps
        seed = truth.seed + start
        obs, info = env.reset(seed=seed)
        actor.reset(info["covariates"], seed=[np.random.SeedSequence([seed, i]) for i in range(n)])
        rng = np.random.default_rng([seed, 1])
        total = np.zeros(n)
        for t in range(horizon):
            pmf = soften(np.atleast_2d(actor.action_probs(obs, _single_info(info))), policy.epsilon)
            u = rng.random(n)[:, None]
            index = np.minimum((u >= np.cumsum(pmf, axis=1)).sum(axis=1), len(DOSE_GRID_MG) - 1)
            dose = DOSE_GRID_MG[index]
            actor.record(dose)
            obs, reward, terminated, _, info = env.step(dose.reshape(n, 1))
            total += gamma**t * reward
            if np.any(terminated):
                raise RuntimeError(
                    "the simulator terminated an episode early, which simulate_value does not handle"
                )
        returns.append(total)
        env.close()
    values = np.concatenate(returns)
    return TrueValue(
        value=float(values.mean()),
        std_error=float(values.std(ddof=1) / np.sqrt(len(values))),
        n_patients=len(values),
        horizon=horizon,
        gamma=gamma,
        returns=values,
    )


def _single_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """Gymnasium vector info without its ``_key`` masks (the policies read plain arrays)."""
    return {k: v for k, v in info.items() if not k.startswith("_")}
