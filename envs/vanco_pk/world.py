"""The world a policy is simulated in: one typed, frozen :class:`World`.

A :class:`World` is everything that describes the patients' world rather than the agent: the
:class:`~vanco_pk.scenario.Scenario` (which carries the true population model), the decision
interval, the episode length, the level noise and missing levels, the reward, and the patient
generator's, kidney and infection parameters. The environments, the vector environment,
:func:`vanco_pk.simulate.simulate` and every scorer of a policy take one.

The agent's observation (``extended_obs``, ``pk_features``, ``pk_model``) and fixed
``patients`` are not part of it: they are arguments of the environment.

A misspecified truth is not a second knob: :func:`misspecified` shifts the scenario's true
model once (``World.make(misspecification="mild")``), so ``world.scenario.model`` is the
model the true patients are drawn from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from vanco_pk import scenario_rules
from vanco_pk.infection import DEFAULT_INFECTION, InfectionParams
from vanco_pk.kidney import DEFAULT_KIDNEY, KidneyParams
from vanco_pk.patients import (
    ICU_POPULATION,
    N_PATIENT_DRAWS,
    ICUPopulation,
    Misspecification,
    get_misspecification,
)
from vanco_pk.scenario import ICU, Scenario, get_scenario
from vanco_pk.targets import REWARDS

__all__ = ["AGENT_OPTIONS", "N_STEP_DRAWS", "World", "misspecified", "world_of"]

#: Standard normals per patient and observation: level error (2), missing draw, 4 signs.
N_STEP_DRAWS = 7
#: Environment options that shape the agent's observation or fix its patients, not the world.
AGENT_OPTIONS: tuple[str, ...] = ("extended_obs", "pk_features", "pk_model", "patients", "render_mode")


def misspecified(scenario: Scenario, misspecification: Misspecification | str | dict | None) -> Scenario:
    """``scenario`` with its true model shifted by ``misspecification`` (a
    :class:`~vanco_pk.patients.Misspecification`, a preset name, a dict of its fields or
    ``None``); no shift returns ``scenario`` itself."""
    shift = get_misspecification(misspecification)
    if shift == Misspecification():
        return scenario
    return replace(scenario, true_model=shift.true_model(scenario.model))


@dataclass(frozen=True)
class World:
    """The simulated world: shared by the single and the vector environment and every scorer.

    Attributes
    ----------
    scenario : Scenario
        Levels, kidneys, AKI and the true population model (:mod:`vanco_pk.scenario`).
    decision_interval_h : float
        Hours between decisions, 6-72.
    episode_days : float
        Episode length; must hold a whole number of intervals.
    measurement_noise : float
        Multiplier on the residual error of measured levels (0 = exact).
    level_missing_prob : float
        Probability that an ordered trough is not measured (level carried forward).
    reward : str
        ``"default"``, ``"seed"`` or ``"exposure"`` (:data:`vanco_pk.targets.REWARDS`).
    population, kidney, infection
        Patient generator, kidney and infection parameters (advanced).
    """

    scenario: Scenario = ICU
    decision_interval_h: float = 12.0
    episode_days: float = 7.0
    measurement_noise: float = 1.0
    level_missing_prob: float = 0.0
    reward: str = "default"
    population: ICUPopulation = ICU_POPULATION
    kidney: KidneyParams = DEFAULT_KIDNEY
    infection: InfectionParams = DEFAULT_INFECTION

    def __post_init__(self) -> None:
        if not isinstance(self.scenario, Scenario):
            raise ValueError(
                f"World.scenario must be a Scenario (World.make takes a name or a dict); "
                f"got {type(self.scenario).__name__}"
            )
        for name in ("decision_interval_h", "episode_days", "measurement_noise", "level_missing_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise ValueError(f"World.{name} = {value!r} must be a number")
            object.__setattr__(self, name, float(value))
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
        if self.reward not in REWARDS:
            raise ValueError(f"unknown reward {self.reward!r}; choose one of {sorted(REWARDS)}")

    @classmethod
    def make(
        cls,
        scenario: Scenario | str | dict | None = "icu",
        misspecification: Misspecification | str | dict | None = None,
        **fields: Any,
    ) -> World:
        """A :class:`World` from the environment's keyword arguments: ``scenario`` as
        :func:`vanco_pk.scenario.get_scenario` takes it, ``misspecification`` shifting its true
        model (:func:`misspecified`), ``kidney_params`` / ``infection_params`` (the env's names)
        or ``kidney`` / ``infection``, and any other field of :class:`World`.

        Raises
        ------
        ValueError
            An unknown option, or an option of the agent (:data:`AGENT_OPTIONS`).
        """
        for env_name, name in (("kidney_params", "kidney"), ("infection_params", "infection")):
            if env_name in fields:
                fields[name] = fields.pop(env_name)
        agent = sorted(set(fields) & set(AGENT_OPTIONS))
        if agent:
            raise ValueError(
                f"{agent} shape the agent's observation (or fix its patients), not the world: "
                "give them to the environment, not to World"
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"scenario"}
        unknown = sorted(set(fields) - names)
        if unknown:
            raise ValueError(
                f"unknown world option(s) {unknown}; known: "
                f"{sorted(names | {'scenario', 'misspecification'})}"
            )
        return cls(scenario=misspecified(get_scenario(scenario), misspecification), **fields)

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
        return scenario_rules.N_WORLD_PATIENT_DRAWS + (self.n_steps + 1) * scenario_rules.N_WORLD_STEP_DRAWS


def world_of(world: World | None, options: dict[str, Any]) -> World:
    """``world``, or a :class:`World` made from ``options`` (:meth:`World.make`), not both."""
    if world is None:
        return World.make(**options)
    if not isinstance(world, World):
        raise ValueError(f"world must be a vanco_pk.World; got {type(world).__name__}")
    if options:
        raise ValueError(f"give either world= or its options {sorted(options)}, not both")
    return world
