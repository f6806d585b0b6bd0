"""A small synthetic dosing dataset for the algorithm tests and ``vanco-offline bench speed``.

Independent of the ``vanco_pk`` simulator on purpose (the algorithms are tested without
it): a one-compartment vancomycin model with 12-hourly intermittent doses, a creatinine
that rises with toxic troughs, an infection burden that falls with adequate troughs, and
a trough-guided clinician with noise. The observation is the seven schema features of
``vanco_pk.targets.FEATURES`` in schema units; the reward is the project's (or the
seed's) from ``vanco_pk.targets``. Shaped like the seed's data: 140 stays x 15 steps
= 2,100 transitions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import MDPDataset
from vanco_pk.targets import DOSE_GRID_MG, DOSE_MAX_MG, DOSE_STEP_MG, FEATURES, get_reward_function

__all__ = ["DosingData", "make_dosing_dataset", "simulate_dosing"]

_INTERVAL_H = 12.0


@dataclasses.dataclass(frozen=True)
class DosingData:
    """Flat per-step arrays of a simulated cohort, stays back to back.

    ``observations`` (N, 7) in schema units, ``doses_mg`` (N,), ``rewards`` (N,),
    ``next_observations`` (N, 7), ``terminals`` (N,) with 1 on each stay's last step.
    """

    observations: np.ndarray
    doses_mg: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray


def simulate_dosing(
    n_stays: int = 140,
    n_steps: int = 15,
    *,
    reward: str = "default",
    seed: int = 0,
    policy: Callable[[np.ndarray], np.ndarray] | None = None,
) -> DosingData:
    """Simulate ``n_stays`` ICU stays of ``n_steps`` 12-hourly dosing decisions each.

    ``policy`` maps observations (n, 7) to doses in mg (n,); by default the noisy
    trough-guided clinician that generates the training data. The same ``seed`` gives
    the same patients whatever the policy, so policies can be compared on them.
    """
    if n_stays < 1 or n_steps < 1:
        raise ValueError(f"n_stays={n_stays} and n_steps={n_steps} must both be >= 1")
    reward_fn = get_reward_function(reward)
    rng = np.random.default_rng(seed)
    # Separate streams so that the patients do not depend on the policy's own draws.
    policy_rng = np.random.default_rng([seed, 1])
    weight = np.clip(rng.normal(75.0, 15.0, n_stays), 45.0, 140.0)
    age = rng.uniform(30.0, 85.0, n_stays)
    base_scr = np.clip(rng.lognormal(0.0, 0.3, n_stays), 0.5, 3.0)
    eta_cl, eta_v = rng.normal(0.0, 0.3, (2, n_stays))
    volume = 0.7 * weight * np.exp(eta_v)
    scr, burden, trough = base_scr.copy(), rng.uniform(0.6, 1.0, n_stays), np.zeros(n_stays)
    level = np.zeros(n_stays)
    dose = np.zeros(n_stays)

    def observe() -> np.ndarray:
        noise = rng.normal(size=(5, n_stays))
        return np.stack(
            [
                level,
                scr,
                7.0 + 10.0 * burden + 1.0 * noise[0],
                np.clip(14.0 * scr + 2.0 * noise[1], 3.0, None),
                37.0 + 1.8 * burden + 0.2 * noise[2],
                120.0 - 20.0 * burden + 6.0 * noise[3],
                80.0 + 30.0 * burden + 5.0 * noise[4],
            ],
            axis=1,
        )

    states = [observe()]
    doses = []
    for step in range(n_steps):
        if policy is None:
            dose = _clinician(step, level, dose, weight, policy_rng)
        else:
            chosen = np.asarray(policy(states[-1].astype(np.float32)), np.float64).reshape(-1)
            dose = np.clip(chosen, 0.0, DOSE_MAX_MG)
        doses.append(dose)
        crcl = np.minimum((140.0 - age) * weight / (72.0 * scr), 150.0)
        k = 4.5 * (crcl / 120.0) ** 0.8 * np.exp(eta_cl) / volume
        trough = (trough + dose / volume) * np.exp(-k * _INTERVAL_H)
        measured = trough * (1.0 + 0.15 * rng.normal(size=n_stays)) + rng.normal(0.0, 1.0, n_stays)
        level = np.clip(measured, 0.0, None)
        # Toxic troughs injure the kidney; otherwise creatinine drifts back to baseline.
        injury = 0.04 * np.clip(trough - 20.0, 0.0, None) / 5.0
        scr = np.clip(scr + injury - 0.1 * (scr - base_scr) + rng.normal(0, 0.02, n_stays), 0.3, None)
        adequate = trough >= 10.0
        burden = np.clip(np.where(adequate, 0.8 * burden, 1.05 * burden + 0.02), 0.0, 1.0)
        states.append(observe())
    obs = np.stack(states[:-1], axis=1).reshape(-1, len(FEATURES))
    next_obs = np.stack(states[1:], axis=1).reshape(-1, len(FEATURES))
    doses_mg = np.stack(doses, axis=1).reshape(-1)
    terminals = np.zeros((n_stays, n_steps))
    terminals[:, -1] = 1.0
    return DosingData(
        observations=obs.astype(np.float32),
        doses_mg=doses_mg.astype(np.float32),
        rewards=reward_fn(obs, doses_mg, next_obs).astype(np.float32),
        next_observations=next_obs.astype(np.float32),
        terminals=terminals.reshape(-1).astype(np.float32),
    )


def _clinician(
    step: int, level: np.ndarray, last: np.ndarray, weight: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Loading dose of 25 mg/kg, then trough-guided adjustment with mistakes, on the 250 mg grid."""
    if step == 0:
        dose = 25.0 * weight
    else:
        dose = np.where(level < 10.0, last * 1.3 + 250.0, np.where(level > 20.0, last * 0.6, last))
        dose = np.where(level > 25.0, 0.0, dose)
    mistake = rng.random(dose.shape) < 0.25
    dose = dose + mistake * rng.choice([-500.0, -250.0, 250.0, 500.0], size=dose.shape)
    return np.clip(np.rint(dose / DOSE_STEP_MG) * DOSE_STEP_MG, 0.0, DOSE_MAX_MG)


def make_dosing_dataset(
    n_stays: int = 140,
    n_steps: int = 15,
    *,
    reward: str = "default",
    action: str = "continuous",
    seed: int = 0,
) -> MDPDataset:
    """The simulated cohort as a d3rlpy ``MDPDataset``.

    ``action="continuous"``: actions are doses in mg, float32 (N, 1), with
    ``ActionSpace.CONTINUOUS`` (unscaled: pair with ``MinMaxActionScaler(0, 3000)``).
    ``action="discrete"``: indices into ``vanco_pk.targets.DOSE_GRID_MG`` (13 levels).
    """
    data = simulate_dosing(n_stays, n_steps, reward=reward, seed=seed)
    if action == "continuous":
        actions = data.doses_mg.reshape(-1, 1)
        kwargs = {"action_space": ActionSpace.CONTINUOUS}
    elif action == "discrete":
        actions = np.rint(data.doses_mg / DOSE_STEP_MG).astype(np.int64)
        kwargs = {"action_space": ActionSpace.DISCRETE, "action_size": len(DOSE_GRID_MG)}
    else:
        raise ValueError(f"action={action!r}; choose 'continuous' or 'discrete'")
    return MDPDataset(
        observations=data.observations,
        actions=actions,
        rewards=data.rewards.reshape(-1, 1),
        terminals=data.terminals,
        **kwargs,
    )
