"""Clinical scores of a dosing policy from simulator rollouts on held-out patients.

Every policy of the offline benchmark -- a trained d3rlpy algorithm or a reference policy of
``vanco_pk.policies`` -- is rolled out by the one simulator loop
(:func:`vanco_pk.simulate.simulate`) on the same patients, with the same noise and
missing-level settings as the data, on the same action set, and scored on its trace:

* ``attainment``: :data:`vanco_pk.targets.ATTAINMENT_DEFINITION`
  (:meth:`vanco_pk.simulate.Trace.attainment`, the one definition of every table);
* ``target_48h``: fraction of patients whose AUC24 is in 400-600 at some interval end by 48 h;
* ``time_to_target_h``: restricted mean time (h) to the first interval end with AUC24 in
  400-600; a patient who never gets there counts as the episode length;
* ``aki_rate``: fraction of patients with KDIGO AKI at any time of the episode;
* ``return_``: mean undiscounted sum of the project's reward per patient, and
  ``discounted_return`` with ``gamma`` (what OPE estimates);
* ``dose_at_max``: fraction of doses within 1 % of 3000 mg, and
  ``mean_dose_mg``;
* ``levels_per_week``: troughs and peaks drawn per patient, per 7 days (the protocol).

``RolloutScores.trace`` keeps the per-patient trace, for paired patient-level comparisons.

A learned policy sees the observation it was trained on: the simulator's features rounded
as the cohort tables write them (``vanco_pk.targets.CHART_DECIMALS``), plus covariates,
the level indicator, the previous dose and the PK exposure features when its dataset had
them. The PK features come from the same :class:`vanco_pk.exposure.ExposureTracker` the
converter replays, fed the same rounded chart values, so a rollout and the conversion of
the cohort table of the same stay give the same observation. :func:`model_env` wraps the
one-patient Gymnasium environment the same way (:class:`ModelObservation`), for d3rlpy's
``EnvironmentEvaluator`` and any other code that steps a model in the simulator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from vanco_pk.env import charted_level
from vanco_pk.exposure import PK_FEATURES, TRACKER_COVARIATES, ExposureTracker
from vanco_pk.pk import GOTI_2018, GotiModel
from vanco_pk.simulate import Trace, simulate
from vanco_pk.targets import (
    COVARIATES,
    CREATININE,
    DOSE_MAX_MG,
    FEATURES,
    chart_round,
)
from vanco_pk.world import World

from vanco_offline.data.schema import LAST_DOSE, LEVEL_INDICATOR

if TYPE_CHECKING:
    from vanco_offline.data.options import ConversionSettings

__all__ = [
    "EvalPatients",
    "ModelObservation",
    "ObservationBuilder",
    "RolloutScores",
    "algo_actor",
    "model_env",
    "observation_builder",
    "plain_info",
    "policy_actor",
    "reference_actor",
    "rollout",
]

_AT_MAX_MG = 0.99 * DOSE_MAX_MG

#: ``actor(obs, info) -> doses (P,) in mg``; ``info`` without Gymnasium's ``_key`` masks.
Actor = Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class EvalPatients:
    """The held-out patients every policy is scored on.

    Attributes
    ----------
    n_patients : int
        Patients rolled out at once (one vector environment).
    seed : int
        The patients of ``generate_cohort(n_patients, ..., seed=seed)``
        (:func:`vanco_pk.simulate.patient_seeds`): a seed no cohort of the data used gives
        new patients.
    dose_set : {"grid", "continuous"}
        The action set every policy doses from (:func:`vanco_pk.simulate.simulate`): the
        250 mg grid a pharmacy gives (default) or the policy's dose unrounded.
    world : vanco_pk.World
        The world of the data (scenario, noise, missing levels, interval, ...); default
        ``World()``.
    gamma : float
        Discount of ``discounted_return``.
    """

    n_patients: int = 500
    seed: int = 10**9
    world: World = dataclasses.field(default_factory=World)
    gamma: float = 0.99
    dose_set: str = "grid"

    def __post_init__(self) -> None:
        if self.n_patients < 2:
            raise ValueError(f"EvalPatients.n_patients = {self.n_patients!r}: score on at least 2 patients")
        if not isinstance(self.world, World):
            raise ValueError(
                f"EvalPatients.world must be a vanco_pk.World (World.make(...)), "
                f"got {type(self.world).__name__}"
            )


@dataclasses.dataclass(frozen=True)
class RolloutScores:
    """Clinical scores of one policy on the held-out patients (see the module docstring)."""

    attainment: float
    target_48h: float
    time_to_target_h: float
    aki_rate: float
    return_: float
    discounted_return: float
    dose_at_max: float
    mean_dose_mg: float
    levels_per_week: float
    n_patients: int
    trace: Trace | None = dataclasses.field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "trace"}


class _ActorPolicy:
    """An :data:`Actor` and its reset behind the policy protocol of :func:`vanco_pk.simulate.simulate`."""

    def __init__(self, actor: Actor, reset: Callable[[Mapping[str, Any]], None] | None):
        self.actor = actor
        self._reset = reset
        self.sampling = getattr(actor, "sampling", None)
        self.needs_truth = bool(getattr(actor, "needs_truth", False))

    def reset(self, covariates: Mapping[str, Any], seed: Any = None) -> None:
        if self._reset is not None:
            self._reset(covariates)

    def act(self, features: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        return self.actor(features, info)


def rollout(
    actor: Actor,
    patients: EvalPatients,
    reset: Callable[[Mapping[str, Any]], None] | None = None,
    protocol: str | None = None,
) -> RolloutScores:
    """Roll ``actor`` out on ``patients`` and score it (:func:`vanco_pk.simulate.simulate`).

    Parameters
    ----------
    actor : callable
        ``actor(features, info) -> doses`` for all patients at once (mg, shape (P,)); it sees
        the chart (:data:`vanco_pk.simulate.CHART_VIEW`).
    patients : EvalPatients
    reset : callable, optional
        Called once with the patients' (charted) covariates after the environment reset.
    protocol : str, optional
        The level protocol of every patient (default: the world's for a policy without one of
        its own, :func:`vanco_pk.scenario.protocol_for`).

    Returns
    -------
    RolloutScores
    """
    trace = simulate(
        _ActorPolicy(actor, reset),
        patients.seed,
        patients.n_patients,
        protocol=protocol,
        dose_set=patients.dose_set,
        world=patients.world,
    )
    return scores_of(trace, patients.gamma)


def scores_of(trace: Trace, gamma: float = 0.99) -> RolloutScores:
    """The :class:`RolloutScores` of a :class:`vanco_pk.simulate.Trace`."""
    steps = len(trace.time_h)
    in_range = trace.in_range
    reached = in_range.any(axis=0)
    first = np.where(reached, trace.time_h[np.argmax(in_range, axis=0)], steps * trace.interval_h)
    by_48h = in_range[trace.time_h <= 48.0].any(axis=0)
    return RolloutScores(
        attainment=trace.attainment(),
        target_48h=float(by_48h.mean()),
        time_to_target_h=float(first.mean()),
        aki_rate=float(trace.aki.mean()),
        return_=float(trace.returns(1.0).mean()),
        discounted_return=float(trace.returns(gamma).mean()),
        dose_at_max=float((trace.dose_mg >= _AT_MAX_MG).mean()),
        mean_dose_mg=float(trace.dose_mg.mean()),
        levels_per_week=float(trace.levels_per_week().mean()),
        n_patients=trace.n_patients,
        trace=trace,
    )


def plain_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """``info`` of a vector env without Gymnasium's ``_key`` masks, nested mappings included."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_"):
            continue
        out[key] = plain_info(value) if isinstance(value, Mapping) else value
    return out


class ObservationBuilder:
    """Rebuilds a training observation, column by column, from the simulator's ``obs`` and ``info``.

    The seven features are rounded as cohort tables write them, covariates come from the
    episode's ``info["covariates"]`` (rounded likewise), the level indicator is 1 once a
    level was ever measured (the simulator shows 0 mg/L before, as the converter fills it),
    the last dose is the simulator's ``info["dose_mg"]`` (0 before the first dose), and the
    PK features come from an :class:`~vanco_pk.exposure.ExposureTracker` fed the rounded
    chart (times, creatinine, covariates, the doses given, the levels drawn), as the data
    layer replays a table.

    Call :meth:`reset` with the episode's covariates, then the builder once per decision.
    """

    def __init__(
        self, observation_names: Sequence[str], interval_h: float = 12.0, pk_model: GotiModel = GOTI_2018
    ):
        names = tuple(observation_names)
        known = set(FEATURES) | set(COVARIATES) | {LEVEL_INDICATOR, LAST_DOSE} | set(PK_FEATURES)
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(
                f"cannot rebuild observation column(s) {unknown} in the simulator; the offline benchmark "
                f"knows {sorted(known)}"
            )
        self.names = names
        self.interval_h = float(interval_h)
        self._tracker = (
            ExposureTracker(interval_h=self.interval_h, horizon_h=max(24.0, self.interval_h), model=pk_model)
            if set(PK_FEATURES) & set(names)
            else None
        )
        self._covariates: dict[str, np.ndarray] | None = None
        self._started = False

    @property
    def needs_history(self) -> bool:
        """Whether a column depends on the stay's earlier decisions (the PK features)."""
        return self._tracker is not None

    def reset(self, covariates: Mapping[str, Any]) -> None:
        """Start episodes of patients with these covariates (``info["covariates"]``)."""
        self._covariates = {}
        for name in COVARIATES:
            if name in covariates:
                value = np.asarray(covariates[name], np.float64)
                self._covariates[name] = chart_round(name, value)
        self._started = False
        if self._tracker is not None:
            self._tracker.reset({c: self._covariates[c] for c in TRACKER_COVARIATES})

    def __call__(self, obs: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        if self._covariates is None:
            self.reset(info.get("covariates", {}))
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float64))
        # A level never measured is NaN on the chart and 0 in the observation (as the converter fills it).
        rounded = np.nan_to_num(obs[:, : len(FEATURES)], nan=0.0)
        for j, name in enumerate(FEATURES):
            rounded[:, j] = chart_round(name, rounded[:, j])
        pk = None
        if self._tracker is not None:
            if self._started:
                self._tracker.record(np.asarray(info["dose_mg"], dtype=np.float64))
            raw = chart_round("vanco_level", charted_level(info))
            drawn = np.where(np.asarray(info["level_measured"], bool) & np.isfinite(raw), raw, np.nan)
            self._tracker.observe(np.asarray(info["time_h"], np.float64), rounded[:, CREATININE], drawn)
            pk = self._tracker.features()
        self._started = True
        columns = []
        for name in self.names:
            if name in FEATURES:
                value = rounded[:, FEATURES.index(name)]
            elif name in COVARIATES:
                value = np.broadcast_to(self._covariates[name], (len(obs),))
            elif name == LAST_DOSE:
                value = np.asarray(info["dose_mg"], dtype=np.float64)  # given at the previous decision
            elif name in PK_FEATURES:
                value = pk[:, PK_FEATURES.index(name)]
            else:
                value = np.asarray(info["level_known"], dtype=np.float64)
            columns.append(value)
        return np.stack(columns, axis=1).astype(np.float32)


def observation_builder(
    observation_names: Sequence[str], interval_h: float = 12.0, pk_model: GotiModel = GOTI_2018
) -> ObservationBuilder:
    """An :class:`ObservationBuilder` for these training columns (``interval_h``: the decision
    interval; ``pk_model``: the population prior of the PK features, the conversion's
    :attr:`~vanco_offline.data.ConversionSettings.population_model`)."""
    return ObservationBuilder(observation_names, interval_h, pk_model)


def algo_actor(
    algo: Any,
    observation_names: Sequence[str],
    action_map: Callable[[np.ndarray], np.ndarray] | None = None,
    interval_h: float = 12.0,
    pk_model: GotiModel = GOTI_2018,
) -> tuple[Actor, Callable[[Mapping[str, Any]], None]]:
    """A d3rlpy algorithm's greedy dose as an :data:`Actor`, and its per-episode reset.

    Discrete algorithms predict a dose-grid index; continuous ones a dose in mg (after
    their action scaler; :func:`vanco_offline.algos.dosing.predict_dose_mg`). ``action_map``
    replaces that mapping of ``algo.predict``'s output to mg (e.g. to read an unscaled
    [-1, 1] output linearly onto 0..3000 mg). ``interval_h`` is the environment's decision
    interval (the PK features' forward dose rule), ``pk_model`` their population prior (the
    model's conversion options say which). Call ``reset`` at each episode start: the
    observation may depend on the stay's history.
    """
    from vanco_offline.algos.dosing import predict_dose_mg

    build = observation_builder(observation_names, interval_h, pk_model)

    def reset(covariates: Mapping[str, Any]) -> None:
        build.reset(covariates)

    def act(obs: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        x = build(obs, info)
        if action_map is not None:
            return action_map(np.asarray(algo.predict(x))).reshape(-1)
        return predict_dose_mg(algo, x)

    return act, reset


def reference_actor(
    name: str, seed: int, **options: Any
) -> tuple[Actor, Callable[[Mapping[str, Any]], None]]:
    """A ``vanco_pk.policies`` policy (sampling with its own seeded streams) as an :data:`Actor`."""
    from vanco_pk.policies import make_policy

    return policy_actor(make_policy(name, **options), seed)


def policy_actor(policy: Any, seed: int) -> tuple[Actor, Callable[[Mapping[str, Any]], None]]:
    """A policy object of the ``vanco_pk.policies`` protocol as an :data:`Actor` and its reset;
    the actor carries the policy's ``needs_truth`` (the oracle is shown the true state, nobody else)."""

    def reset(covariates: Mapping[str, Any]) -> None:
        policy.reset(covariates, seed=seed)

    def act(obs: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        return np.atleast_1d(policy.act(obs, info))

    act.needs_truth = bool(getattr(policy, "needs_truth", False))  # type: ignore[attr-defined]
    return act, reset


class ModelObservation(gym.Wrapper):
    """A one-patient :class:`vanco_pk.env.VancoPKEnv` that emits exactly a model's observation.

    The observation is rebuilt from the simulator's features and ``info`` by an
    :class:`ObservationBuilder` for ``observation_names`` (a trained model's
    ``observation_names``, the converter's columns), so a model trained on converted data
    -- with covariates, the previous dose or the exposure tracker's features -- acts in the
    simulator on the columns it was trained on, and d3rlpy's ``EnvironmentEvaluator`` can
    score it. Actions, rewards and ``info`` are the wrapped environment's.

    Parameters
    ----------
    env : VancoPKEnv or VancoPKDiscreteEnv
        Without ``extended_obs`` or ``pk_features``: the columns are rebuilt here.
    observation_names : sequence of str
        The model's observation columns, in order.
    pk_model : GotiModel
        The population prior of the PK features (the model's conversion options say which).
    """

    def __init__(self, env: gym.Env, observation_names: Sequence[str], pk_model: GotiModel = GOTI_2018):
        super().__init__(env)
        base = env.unwrapped
        if getattr(base, "extended_obs", False) or getattr(base, "pk_features", False):
            raise ValueError("ModelObservation: create the environment without extended_obs or pk_features")
        self.builder = ObservationBuilder(observation_names, base.world.decision_interval_h, pk_model)
        self.observation_names = self.builder.names
        n = len(self.observation_names)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        batch = _batch_of_one(info)
        self.builder.reset(batch["covariates"])
        return self.builder(obs, batch)[0], info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self.builder(obs, _batch_of_one(info))[0], reward, terminated, truncated, info


def model_env(
    observation: Sequence[str] | ConversionSettings,
    action: str | None = None,
    pk_model: GotiModel | None = None,
    world: World | None = None,
) -> ModelObservation:
    """The simulator as a Gymnasium environment that emits a model's observation.

    This is the one mapping from a conversion to the environment: the environment's own
    ``extended_obs`` / ``pk_features`` flags give the simulator's chart, not a model's
    columns, and are refused here.

    Parameters
    ----------
    observation : ConversionSettings or sequence of str
        The model's conversion (a preset's ``DataSettings.conversion_settings()``, a saved model's
        ``ConversionSettings.from_dict(model.conversion)``): its columns for the simulator's
        chart (:func:`vanco_offline.data.observations.observation_names`, every covariate
        present), its action kind and its reward. Or the model's columns themselves
        (``TrainedModel.observation_names``, ``ConversionResult.observation_names``).
    action : {"continuous", "discrete"}, optional
        Dose in mg (:class:`~vanco_pk.env.VancoPKEnv`) or a dose-grid index
        (:class:`~vanco_pk.env.VancoPKDiscreteEnv`), as the model acts; default the
        conversion's, else continuous.
    pk_model : GotiModel, optional
        The population prior of the PK features and of the environment's exposure reward;
        default the conversion's (``ConversionSettings.population_model``), else Goti 2018.
    world : vanco_pk.World, optional
        The environment's world (scenario, noise, interval, reward, ...); default ``World()``.
        Its reward becomes the conversion's when the conversion names one (a world naming
        another non-default reward is refused).
    """
    from vanco_pk.env import VancoPKDiscreteEnv, VancoPKEnv

    from vanco_offline.data.options import ConversionSettings

    if isinstance(observation, ConversionSettings):
        from vanco_offline.data.observations import observation_names

        names = observation_names(observation, (*FEATURES, *COVARIATES))
        action = observation.action if action is None else action
        pk_model = observation.population_model if pk_model is None else pk_model
        if observation.reward is not None:
            world = World() if world is None else world
            if world.reward not in ("default", observation.reward):
                raise ValueError(
                    f"world.reward = {world.reward!r} but the model's conversion rewards "
                    f"{observation.reward!r}; give the model's columns instead of its conversion "
                    "to score another reward"
                )
            world = dataclasses.replace(world, reward=observation.reward)
    else:
        names = tuple(observation)
    action = "continuous" if action is None else action
    if action not in ("continuous", "discrete"):
        raise ValueError(f"action must be 'continuous' or 'discrete', got {action!r}")
    pk_model = GOTI_2018 if pk_model is None else pk_model
    # The environment's own tracker (for the exposure reward) shares the model's prior.
    env = (VancoPKDiscreteEnv if action == "discrete" else VancoPKEnv)(pk_model=pk_model, world=world)
    return ModelObservation(env, names, pk_model)


def _batch_of_one(info: Mapping[str, Any]) -> dict[str, Any]:
    """A one-patient ``info`` (scalars) as the vector environment's (arrays of one)."""
    return {
        key: _batch_of_one(value) if isinstance(value, Mapping) else np.atleast_1d(value)
        for key, value in info.items()
    }
