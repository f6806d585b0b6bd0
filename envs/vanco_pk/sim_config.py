"""Options of the batched simulator, shared by the single and the vector environment."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vanco_pk import world
from vanco_pk.infection import DEFAULT_INFECTION, InfectionParams
from vanco_pk.kidney import DEFAULT_KIDNEY, KidneyParams
from vanco_pk.patients import ICU_POPULATION, N_PATIENT_DRAWS, ICUPopulation, Misspecification
from vanco_pk.scenario import ICU, Scenario

__all__ = ["N_STEP_DRAWS", "SimulatorConfig"]

#: Standard normals per patient and observation: level error (2), missing draw, 4 signs.
N_STEP_DRAWS = 7


@dataclass(frozen=True)
class SimulatorConfig:
    """Options shared by the single and the vector environment (see :class:`vanco_pk.env.VancoPKEnv`)."""

    decision_interval_h: float = 12.0
    episode_days: float = 7.0
    measurement_noise: float = 1.0
    level_missing_prob: float = 0.0
    misspecification: Misspecification = field(default_factory=Misspecification)
    population: ICUPopulation = ICU_POPULATION
    kidney: KidneyParams = DEFAULT_KIDNEY
    infection: InfectionParams = DEFAULT_INFECTION
    scenario: Scenario = ICU

    def __post_init__(self) -> None:
        h = self.decision_interval_h
        if not (np.isfinite(h) and 6.0 <= h <= 72.0):
            raise ValueError(
                f"decision_interval_h = {h!r} must be between 6 and 72 h (a 3 g dose needs 5 h at 10 mg/min)"
            )
        steps = self.episode_days * 24.0 / h
        if not (np.isfinite(steps) and steps >= 1 and abs(steps - round(steps)) < 1e-9):
            raise ValueError(
                f"episode_days = {self.episode_days!r} must hold a whole number (>= 1) of "
                f"{h:g}-h decision intervals (episode_days * 24 / decision_interval_h)"
            )
        if not (np.isfinite(self.measurement_noise) and self.measurement_noise >= 0):
            raise ValueError(
                f"measurement_noise = {self.measurement_noise!r} must be >= 0 (1 = Goti 2018 error)"
            )
        if not (0.0 <= self.level_missing_prob < 1.0):
            raise ValueError(f"level_missing_prob = {self.level_missing_prob!r} must be in [0, 1)")

    @property
    def n_steps(self) -> int:
        """Decisions per episode."""
        return round(self.episode_days * 24.0 / self.decision_interval_h)

    @property
    def draws_per_episode(self) -> int:
        """Standard normals one patient's episode consumes (patient traits, observations, then
        the scenario's own draws, which the ``ideal`` world has none of)."""
        return N_PATIENT_DRAWS + (self.n_steps + 1) * N_STEP_DRAWS + self.world_draws

    @property
    def world_draws(self) -> int:
        """Standard normals of the scenario's patient traits and per-observation events."""
        if not self.scenario.extra_draws:
            return 0
        return world.N_WORLD_PATIENT_DRAWS + (self.n_steps + 1) * world.N_WORLD_STEP_DRAWS
