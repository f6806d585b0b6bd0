"""Ground truth from the simulator: the evaluated policy's discounted return on fresh patients.

When the data came from ``vanco_pk``, the value every estimator tries to recover is known
up to Monte Carlo error: roll the same (softened) policy out on new patients of the same
population, with the same decision interval, horizon, noise settings, reward and gamma.

The reward is the world's (``SimulatorTruth.world.reward``: ``"default"``, ``"seed"`` or
``"exposure"``, the last scoring the exposure tracker's estimated AUC24 as the converter's
``reward="exposure"`` does). A d3rlpy algorithm is fed the observation it was trained on,
rebuilt at every decision from the rollout's chart exactly as the data layer converts a
cohort table (:class:`vanco_offline.rollout.ObservationBuilder`): rounded
features, covariates, the level indicator, the previous dose and the PK exposure features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from vanco_pk.simulate import simulate
from vanco_pk.targets import DOSE_GRID_MG, FEATURES
from vanco_pk.world import World

from vanco_offline.ope.policy import EvaluatedPolicy, soften

__all__ = ["Outcomes", "SimulatorTruth", "TrueValue", "roll_out", "simulate_value"]


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
    world : vanco_pk.World
        The world that generated the data (scenario and its true model, interval, horizon,
        noise, missing levels) with the ``reward`` the data were converted with
        (``"exposure"`` for ``convert(..., reward="exposure")``); default ``World()``.
    batch : int
        Patients simulated at once.
    patient_seeds : sequence of int, optional
        The environment seed of each patient, instead of ``n_patients`` and ``seed``: e.g. a
        cohort's (``vanco_offline.data.cohort.cohort_seeds(seed, n)[0]``), to roll a policy
        out on the logged patients themselves.
    """

    n_patients: int = 2000
    seed: int = 1_000_000
    world: World = dataclasses.field(default_factory=World)
    batch: int = 1000
    patient_seeds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.patient_seeds is not None:
            seeds = tuple(int(s) for s in self.patient_seeds)
            if len(seeds) < 2 or min(seeds) < 0:
                raise ValueError(
                    "SimulatorTruth.patient_seeds needs at least 2 non-negative seeds, "
                    f"got {len(seeds)} (smallest {min(seeds, default=None)})"
                )
            object.__setattr__(self, "patient_seeds", seeds)
            object.__setattr__(self, "n_patients", len(seeds))
        if self.n_patients < 2 or self.batch < 1:
            raise ValueError(
                f"SimulatorTruth needs n_patients >= 2 and batch >= 1, got {self.n_patients} and {self.batch}"
            )
        if not isinstance(self.world, World):
            raise ValueError(
                f"SimulatorTruth.world must be a vanco_pk.World (World.make(...)), "
                f"got {type(self.world).__name__}"
            )

    def seeds(self, start: int, n: int) -> list[int]:
        """Environment seeds of patients ``start .. start + n - 1``."""
        if self.patient_seeds is None:
            return list(range(self.seed + start, self.seed + start + n))
        return list(self.patient_seeds[start : start + n])


@dataclasses.dataclass(frozen=True)
class TrueValue:
    """Mean discounted return of a policy over simulated patients, with its standard error.

    ``attainment`` is :data:`vanco_pk.targets.ATTAINMENT_DEFINITION`, the one of every table
    (:meth:`vanco_pk.simulate.Trace.attainment`); ``aki_rate`` the fraction of patients
    with KDIGO AKI at any time of the episode.
    """

    value: float
    std_error: float
    n_patients: int
    horizon: int
    gamma: float
    returns: np.ndarray = dataclasses.field(repr=False)
    attainment: float = float("nan")
    aki_rate: float = float("nan")

    def __str__(self) -> str:
        return (
            f"{self.value:.3f} +- {self.std_error:.3f} (simulator, {self.n_patients} fresh patients, "
            f"{self.horizon} decisions, gamma {self.gamma:g})"
        )


@dataclasses.dataclass(frozen=True)
class Outcomes:
    """Per patient of a rollout: discounted return, attainment fraction and AKI (arrays (P,))."""

    returns: np.ndarray
    attainment: np.ndarray
    aki: np.ndarray
    horizon: int


class _Softened:
    """``policy``'s simulator actor softened by its ``epsilon``, behind the one policy protocol
    (:func:`vanco_pk.simulate.simulate`): each dose is drawn from the softened pmf on the grid."""

    def __init__(
        self, policy: EvaluatedPolicy, observation_names: Sequence[str], interval_h: float, stream: int
    ):
        self.actor = policy.simulator_policy(observation_names, interval_h)
        self.epsilon = policy.epsilon
        self.needs_truth = bool(getattr(self.actor, "needs_truth", False))
        self.stream = stream
        self.rng = np.random.default_rng([stream, 1])

    def reset(self, covariates: Mapping[str, Any], seed: Any = None) -> None:
        n = len(next(iter(covariates.values())))
        self.actor.reset(covariates, seed=[np.random.SeedSequence([self.stream, i]) for i in range(n)])

    def act(self, features: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        pmf = soften(np.atleast_2d(self.actor.action_probs(features, info)), self.epsilon)
        u = self.rng.random(len(pmf))[:, None]
        index = np.minimum((u >= np.cumsum(pmf, axis=1)).sum(axis=1), len(DOSE_GRID_MG) - 1)
        dose = DOSE_GRID_MG[index]
        self.actor.record(dose)
        return dose


def roll_out(
    policy: EvaluatedPolicy,
    gamma: float,
    seeds: Sequence[int],
    stream: int,
    observation_names: Sequence[str] = FEATURES,
    world: World | None = None,
    patients: Any = None,
) -> Outcomes:
    """Roll ``policy`` (softened by its ``epsilon``) out once on the patients of ``seeds``.

    ``seeds`` are the patients' environment seeds; ``stream`` seeds the policy's own
    randomness and the softened policy's random doses. Every policy samples levels on the
    world's own protocol (the logs'). The attainment is the one of every
    table (:meth:`vanco_pk.simulate.Trace.attainment_by_patient`). ``world`` is the
    patients' world (default ``World()``), ``patients`` fixed patients (the twins).
    """
    world = World() if world is None else world
    actor = _Softened(policy, observation_names, world.decision_interval_h, stream)
    # Every evaluated policy samples on the world's own protocol, the logs' (like for like).
    trace = simulate(actor, list(seeds), protocol=world.scenario.sampling, world=world, patients=patients)
    return Outcomes(
        returns=trace.returns(gamma),
        attainment=trace.attainment_by_patient(),
        aki=trace.aki,
        horizon=len(trace.time_h),
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
    parts = []
    for start in range(0, truth.n_patients, truth.batch):
        n = min(truth.batch, truth.n_patients - start)
        parts.append(
            roll_out(policy, gamma, truth.seeds(start, n), truth.seed + start, observation_names, truth.world)
        )
    values = np.concatenate([p.returns for p in parts])
    return TrueValue(
        value=float(values.mean()),
        std_error=float(values.std(ddof=1) / np.sqrt(len(values))),
        n_patients=len(values),
        horizon=parts[0].horizon,
        gamma=gamma,
        returns=values,
        attainment=float(np.concatenate([p.attainment for p in parts]).mean()),
        aki_rate=float(np.concatenate([p.aki for p in parts]).mean()),
    )
