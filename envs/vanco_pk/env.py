"""Gymnasium environments: vancomycin dosing of one simulated ICU patient.

``VancoPK-v0`` (:class:`VancoPKEnv`, continuous dose) and ``VancoPKDiscrete-v0``
(:class:`VancoPKDiscreteEnv`, dose grid). The batched version is :mod:`vanco_pk.vector`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from vanco_pk.exposure import PK_FEATURES, ExposureTracker
from vanco_pk.infection import InfectionParams
from vanco_pk.kidney import KidneyParams
from vanco_pk.patients import Covariates, ICUPopulation, Misspecification, Patients
from vanco_pk.pk import GOTI_2018, GotiModel
from vanco_pk.population import model_with
from vanco_pk.render import RENDER_MODES, EpisodeTrace
from vanco_pk.scenario import Scenario
from vanco_pk.simulator import EXTENDED_FEATURES, LEVEL_REPORT_MAX, BatchSimulator
from vanco_pk.targets import AUC_REWARDS, DOSE_GRID_MG, DOSE_MAX_MG, FEATURES, get_reward_function
from vanco_pk.world import World, world_of

__all__ = [
    "VancoPKDiscreteEnv",
    "VancoPKEnv",
    "charted_level",
    "make_tracker",
    "observation_space",
    "observe_chart",
    "parse_dose",
]

# Bounds the simulator cannot leave (not typical ranges): the level is capped at the assay's
# report limit, the signs at physiological limits, creatinine/BUN by the largest injury.
_FEATURE_LOW = [0.0, 0.0, 0.0, 0.0, 30.0, 0.0, 0.0]
_FEATURE_HIGH = [LEVEL_REPORT_MAX, 100.0, 100.0, 2500.0, 45.0, 300.0, 300.0]
_COVARIATE_LOW = [30.0, 18.0, 0.0, 120.0, 0.0]
_COVARIATE_HIGH = [250.0, 100.0, 1.0, 220.0, 1.0]
# The MAP clearance is bounded by the fit's +-4 SD limit (~27 L/h at the CrCL cap); the AUC
# estimate by all the drug of an episode in the smallest V1 the fit allows (> 0.4 L).
_PK_CL_HIGH = 100.0
_PK_MIN_V1_L = 0.4


def observation_space(
    extended: bool, episode_days: float, pk_features: bool = False, decision_interval_h: float = 12.0
) -> spaces.Box:
    """The observation Box of one patient (float32)."""
    low, high = list(_FEATURE_LOW), list(_FEATURE_HIGH)
    if extended:
        low += [*_COVARIATE_LOW, 0.0, 0.0]
        high += [*_COVARIATE_HIGH, episode_days * 24.0, DOSE_MAX_MG]
    if pk_features:
        doses = episode_days * 24.0 / decision_interval_h + 1
        low += [0.0, 0.0, 0.0]
        high += [_PK_CL_HIGH, 24.0 * DOSE_MAX_MG * doses / _PK_MIN_V1_L, DOSE_MAX_MG]
    return spaces.Box(np.array(low, np.float32), np.array(high, np.float32), dtype=np.float32)


def make_tracker(world: World, model: GotiModel = GOTI_2018) -> ExposureTracker:
    """The exposure tracker of an environment (the dose rule repeats every decision interval),
    with ``model`` as its population prior."""
    h = world.decision_interval_h
    return ExposureTracker(interval_h=h, horizon_h=max(24.0, h), model=model)


def charted_level(info: Mapping[str, Any]) -> np.ndarray:
    """The level a chart shows at each decision (mg/L), NaN while none has been measured.

    ``info["raw_level"]`` is 0 and ``info["level_known"]`` False until the first level is
    drawn (finite values keep ``info`` comparable, as Gymnasium's ``check_env`` requires);
    policies and tables read the level with NaN for "never measured".
    """
    return np.where(np.asarray(info["level_known"], bool), np.asarray(info["raw_level"], np.float64), np.nan)


def observe_chart(tracker: ExposureTracker, sim: BatchSimulator) -> None:
    """Feed the tracker the current decision as a chart shows it: time, creatinine, the trough drawn.

    Peaks are left out: the data layer's tables (and so its ``pk_features`` replay) carry
    troughs only, and the environment's features must equal the converted table's.
    """
    level = sim.obs[:, 0]
    drawn = np.where(sim.level_measured & np.isfinite(level), level, np.nan)
    tracker.observe(sim.time_h, sim.obs[:, 1], drawn)


def advance(
    sim: BatchSimulator,
    tracker: ExposureTracker | None,
    reward_fn: Any,
    reward_name: str,
    dose: np.ndarray,
) -> np.ndarray:
    """Give ``dose`` (mg, one per patient), update the chart's tracker, return the reward per patient.

    The reward sees the raw observations before and after the interval, and for an AUC reward
    the tracker's estimate after it (the same estimate the converter computes from a table).
    """
    before = sim.raw_observation()
    sim.step(dose)
    after = sim.raw_observation()
    extra = {}
    if tracker is not None:
        tracker.record(dose)
        observe_chart(tracker, sim)
        if reward_name in AUC_REWARDS:
            extra["next_auc24"] = tracker.auc24()
    return reward_fn(before, dose, after, **extra)


def parse_dose(action: Any, discrete: bool, n: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Dose (mg) of ``n`` actions, and whether each was clipped into [0, 3000] mg.

    Continuous actions are doses in mg (clipped into range, NaN rejected); discrete
    actions index :data:`vanco_pk.targets.DOSE_GRID_MG`.
    """
    if discrete:
        arr = np.asarray(action)
        if arr.size != n or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"action must be {n} integer index(es) into the dose grid; got {action!r}")
        arr = arr.reshape(n)
        bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (arr < 0) | (arr >= len(DOSE_GRID_MG))
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"action[{i}] = {arr[i]!r} is not a dose-grid index; "
                f"use an integer in 0..{len(DOSE_GRID_MG) - 1}"
            )
        return DOSE_GRID_MG[arr.astype(np.int64)], np.zeros(n, dtype=bool)
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"action must be a dose in mg (a number); got {action!r}") from None
    if arr.size != n:
        raise ValueError(f"action must hold {n} dose(s) in mg; got shape {arr.shape}")
    arr = arr.reshape(n)
    if np.any(np.isnan(arr)):
        i = int(np.flatnonzero(np.isnan(arr))[0])
        raise ValueError(f"action[{i}] is NaN; give a dose in mg between 0 and {DOSE_MAX_MG:g}")
    dose = np.clip(arr, 0.0, DOSE_MAX_MG)
    return dose, dose != arr


class VancoPKEnv(gym.Env[np.ndarray, np.ndarray]):
    """Vancomycin dosing of one simulated ICU patient (Goti 2018 PK, kidney, infection).

    Each step is one decision interval: the action is the dose given as an IV infusion at
    its start (<= 10 mg/min, at least 1 h), the patient is simulated to its end, a trough
    is drawn just before the next decision, and the next observation is what a clinician
    would see then.

    ## Observation space
    ``Box(float32, (7,))``: :data:`vanco_pk.targets.FEATURES` in order and schema units --
    ``vanco_level`` (mg/L, last *measured* trough), ``creatinine`` (mg/dL), ``wbc``
    (10^9/L), ``bun`` (mg/dL), ``temperature`` (C), ``sbp`` (mmHg), ``heart_rate`` (bpm).
    The level is a trough drawn at the end of an interval: in ``scenario="icu"`` only when
    the level protocol orders it or the agent requests it (``request_level``), with a
    7.5 % + 1.0 mg/L assay error and a real draw up to 2 h before the documented time; in
    ``"ideal"`` at every interval with the Goti residual error (22.7 % proportional +
    3.4 mg/L additive). Both are scaled by ``measurement_noise``, clipped at 0, reported up
    to 1000 mg/L, skipped with probability ``level_missing_prob`` and otherwise carried
    forward; 0.0 while never measured (at reset the patient is vancomycin-naive). A sample
    from a patient who has had no drug yet reads exactly 0 (below the assay's limit). In
    ``icu`` the creatinine carries a 3 % assay error.
    With ``extended_obs=True``: ``Box(float32, (14,))`` named by
    :data:`vanco_pk.EXTENDED_FEATURES` -- the seven features, the covariates ``weight_kg``,
    ``age``, ``sex`` (0 male, 1 female), ``height_cm``, ``dialysis`` (0/1), then
    ``hours_since_level`` (since the last measured level, or since the episode start while
    none has been measured) and ``last_dose_mg``. With ``pk_features=True`` three more
    columns follow, :data:`vanco_pk.exposure.PK_FEATURES`: the Bayesian MAP clearance
    (L/h), the estimated AUC24 of the last 24 h (mg*h/L) and the dose that puts the
    predicted AUC24 at 500 (mg), from an :class:`vanco_pk.exposure.ExposureTracker` fed what
    a chart holds (covariates, times, creatinine, doses given, levels drawn), never the
    truth. ``env.observation_names`` holds the names.

    ## Action space
    ``Box(0, 3000, (1,), float32)``: the dose in mg for the next interval. Out-of-range
    doses are clipped (``info["action_clipped"]``); a NaN dose raises ``ValueError``.
    :class:`VancoPKDiscreteEnv` uses ``Discrete(13)``, an index into
    :data:`vanco_pk.targets.DOSE_GRID_MG` (0, 250, ..., 3000 mg).

    ## Reward
    ``targets.reward(raw_obs, dose, raw_next_obs)`` (or ``targets.seed_reward`` with
    ``reward="seed"``), computed on the raw observations whose level is NaN while never
    measured (no exposure term then): about +1 for a level in 10-20 mg/L, penalties for low
    and toxic levels and for creatinine rises, +0.25 for WBC and temperature improving.
    ``reward="exposure"`` (:func:`vanco_pk.targets.exposure_auc_reward`) scores the
    tracker's *estimated* AUC24 of the next state instead of the trough, as the data layer
    computes it from a logged table.

    ## Episode start and end
    A patient drawn from the ICU generator (or a fixed one) with an infection, before the
    first dose. The episode truncates after ``episode_days * 24 / decision_interval_h``
    decisions; it never terminates early (death and discharge are not modelled).

    ## Info (reset and step)
    True state at ``time_h`` (hours since the start): ``auc24`` (AUC over the last 24 h,
    mg*h/L), ``trough`` (concentration at the end of the interval just simulated), ``peak``
    (at the end of its infusion), ``interval_auc``; ``cl``, ``v1``, ``v2``, ``q`` (true
    individual parameters now, which govern the next interval; CL follows kidney
    function), ``central_mg``, ``peripheral_mg`` (drug amounts now); ``gfr`` (native GFR,
    mL/min), ``crcl`` (GFR plus dialysis clearance), ``creatinine_true``, ``bun_true``,
    ``kidney_injury`` (fraction of native GFR lost); ``aki`` (KDIGO criteria met at
    ``time_h``: creatinine >= 1.5 x baseline or >= 0.3 mg/dL above its lowest value in the
    last 48 h), ``aki_stage`` (0-3), ``aki_so_far`` (``aki`` at any decision of the
    episode; in ``icu`` from the measured creatinine against its first value),
    ``aki_events`` (graded-hazard AKI events so far; 0 in ``ideal``); ``burden``
    (infection, 0-1) and ``infection_resolved``; ``dose_mg`` (dose actually given),
    ``infusion_h``, ``action_clipped``, ``level_measured`` (a new level was drawn at this
    step's end), ``draw_early_h`` (hours the real draw preceded the documented time),
    ``peak_measured``, ``peak_level`` (mg/L, 0 where none) and ``peak_offset_h`` (a peak
    drawn inside the interval that just ended, with its documented hours after the end of
    the infusion: the AUC-guided protocol's first peak + trough pair),
    ``raw_level`` (the observation's level, 0 while never measured) and ``level_known``
    (a level has been measured; :func:`charted_level` gives the level with NaN for
    never measured); ``covariates``
    (``weight_kg``, ``age``, ``sex``, ``height_cm``, ``dialysis``,
    ``baseline_creatinine``: a clinician knows them, so policies may read them). At reset
    the exposure keys are 0.

    ## Arguments
    The world's options (``decision_interval_h`` to ``infection_params`` below, and
    ``scenario``) build one :class:`vanco_pk.world.World` (``env.world``); give a ``World``
    as ``world`` instead, not both. The others shape the agent's observation.

    decision_interval_h : hours between decisions, 6-72 (default 12).
    episode_days : episode length in days (default 7); must hold a whole number of intervals.
    measurement_noise : multiplier on the residual error of measured levels (0 = exact; default 1).
    level_missing_prob : probability that a trough is not measured (level carried forward; default 0).
    misspecification : ``None``, ``"mild"``, ``"severe"``, a dict of
        :class:`vanco_pk.patients.Misspecification` fields, or an instance: the scenario's
        true model shifted once (:func:`vanco_pk.world.misspecified`), so that true patients
        come from a model that differs further from Goti 2018, which policies assume.
    extended_obs : add covariates, hours since the last level and the last dose.
    pk_features : add the exposure tracker's three features (after the extended columns).
    pk_model : the exposure tracker's population prior (``pk_features`` and the ``exposure``
        reward): ``None`` for Goti 2018, a :class:`vanco_pk.pk.GotiModel`, or a dict of its
        fields to replace (:func:`vanco_pk.population.model_with`; e.g. a model refitted to a
        hospital's levels, as a trained model's conversion options record it).
    reward : ``"default"`` (default), ``"seed"`` or ``"exposure"``.
    patients : fixed patients instead of drawn ones: :class:`vanco_pk.patients.Patients`
        (everything fixed; only the measurement and sign noise vary with the seed) or
        :class:`vanco_pk.patients.Covariates` (covariates fixed, PK deviations and the rest
        drawn from the seed). With several, ``reset(options={"patient_index": i})`` picks
        one; otherwise one is picked from the seeded stream.
    scenario : the world (:mod:`vanco_pk.scenario`): ``"icu"`` (default: levels only when the
        protocol orders them or the agent asks, draw-time and assay error, a true population
        model that is not the dosing software's prior, inter-occasion variability, ARC,
        explicit dialysis, graded AKI from noisy creatinine) or ``"ideal"`` (a trough at every
        decision, truth = Goti 2018); a dict of :class:`vanco_pk.scenario.Scenario` fields
        (with an optional ``base``) or an instance overrides options. ``level_missing_prob``
        applies to the levels the protocol orders.
    population, kidney_params, infection_params : model parameters (advanced).
    world : a :class:`vanco_pk.world.World`, instead of the options above.
    render_mode : ``None``, ``"ansi"`` (the chart so far as text) or ``"rgb_array"`` (the true
        concentration-time curve with the measured levels; needs matplotlib), see
        :mod:`vanco_pk.render`. Another mode only warns at ``render()``, as Gymnasium does.

    ## Level requests
    ``env.request_level(True)`` before ``step`` orders a trough at the end of that interval
    on top of the protocol; :class:`vanco_pk.level_request.LevelRequest` wraps the env so
    the request is a second action component that an agent can learn.

    ## Seeding
    ``reset(seed=s)`` makes the episode a function of ``s`` alone: the patient, the noise
    of every observation and all missing levels are drawn at reset from one stream, so the
    same seed and actions give the same episode, and the vector env's patient ``i`` with
    seed ``s`` equals this env with seed ``s + i``.
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 4}  # noqa: RUF012 - the Gymnasium convention
    _discrete = False

    def __init__(
        self,
        decision_interval_h: float | None = None,
        episode_days: float | None = None,
        measurement_noise: float | None = None,
        level_missing_prob: float | None = None,
        misspecification: Misspecification | str | dict | None = None,
        extended_obs: bool = False,
        reward: str | None = None,
        patients: Patients | Covariates | None = None,
        pk_features: bool = False,
        population: ICUPopulation | None = None,
        kidney_params: KidneyParams | None = None,
        infection_params: InfectionParams | None = None,
        render_mode: str | None = None,
        scenario: Scenario | str | dict | None = None,
        pk_model: GotiModel | Mapping[str, float] | None = None,
        world: World | None = None,
    ):
        options = {
            "decision_interval_h": decision_interval_h,
            "episode_days": episode_days,
            "measurement_noise": measurement_noise,
            "level_missing_prob": level_missing_prob,
            "misspecification": misspecification,
            "reward": reward,
            "population": population,
            "kidney": kidney_params,
            "infection": infection_params,
            "scenario": scenario,
        }
        self.world = world_of(world, {k: v for k, v in options.items() if v is not None})
        reward = self.world.reward
        self.extended_obs = bool(extended_obs)
        self.pk_features = bool(pk_features)
        self.reward_name = reward
        self._reward = get_reward_function(reward)
        # The tracker runs for the PK features and for a reward that scores its AUC estimate.
        self.tracks_exposure = self.pk_features or reward in AUC_REWARDS
        self.pk_model = pk_model if isinstance(pk_model, GotiModel) else model_with(pk_model)
        self.fixed_patients = _check_patients(patients)
        names = EXTENDED_FEATURES if self.extended_obs else FEATURES
        self.observation_names = (*names, *PK_FEATURES) if self.pk_features else names
        self.observation_space = observation_space(
            self.extended_obs, self.world.episode_days, self.pk_features, self.world.decision_interval_h
        )
        self.action_space = self._make_action_space()
        self.render_mode = render_mode
        self._trace = EpisodeTrace(self.world.decision_interval_h) if render_mode is not None else None
        self._sim = BatchSimulator(1, self.world)
        self._tracker = make_tracker(self.world, self.pk_model) if self.tracks_exposure else None
        self._started = False

    def _make_action_space(self) -> spaces.Space:
        return spaces.Box(0.0, DOSE_MAX_MG, shape=(1,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        index = options.pop("patient_index", None)
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; the only option is 'patient_index'")
        normals = self.np_random.standard_normal(self.world.draws_per_episode)
        fixed = None
        if self.fixed_patients is not None:
            m = len(self.fixed_patients)
            if index is None:
                index = 0 if m == 1 else int(self.np_random.integers(m))
            if not (isinstance(index, int | np.integer) and 0 <= index < m):
                raise ValueError(f"patient_index = {index!r} must be an integer in 0..{m - 1}")
            fixed = self.fixed_patients[int(index)]
        elif index is not None:
            raise ValueError("patient_index needs fixed patients (the `patients` argument)")
        self._sim.reset(np.array([0]), normals[None], fixed)
        if self._tracker is not None:
            self._tracker.reset(self._sim.covariates)
            observe_chart(self._tracker, self._sim)
        if self._trace is not None:
            self._trace.reset(self._sim)
        self._started = True
        info = self._info(np.zeros(1, dtype=bool))
        return self._observation()[0], info

    def _observation(self) -> np.ndarray:
        obs = self._sim.observation(self.extended_obs)
        if self.pk_features:
            obs = np.column_stack([obs, self._tracker.features()]).astype(np.float32)
        return obs

    def step(self, action):
        if not self._started:
            raise ResetNeeded("call reset() before step()")
        if self._sim.truncated[0]:
            raise ResetNeeded(
                f"the episode ended after {self.world.n_steps} decisions (truncated); call reset()"
            )
        dose, clipped = parse_dose(action, self._discrete)
        if self._trace is not None:
            self._trace.record(self._sim, float(dose[0]))
        reward = float(advance(self._sim, self._tracker, self._reward, self.reward_name, dose)[0])
        if self._trace is not None:
            self._trace.observe(self._sim)
        truncated = bool(self._sim.truncated[0])
        return self._observation()[0], reward, False, truncated, self._info(clipped)

    def _info(self, clipped: np.ndarray) -> dict[str, Any]:
        info = _scalars(self._sim.info())
        info["action_clipped"] = bool(clipped[0])
        return info

    def render(self) -> str | np.ndarray | None:
        """``"ansi"``: the chart so far as text; ``"rgb_array"``: the concentration curve (matplotlib)."""
        if self.render_mode not in RENDER_MODES or not self._started:
            gym.logger.warn(f"render_mode = {self.render_mode!r}: nothing to render (modes: {RENDER_MODES})")
            return None
        return self._trace.ansi() if self.render_mode == "ansi" else self._trace.rgb_array()

    def set_sampling(self, protocol: str) -> None:
        """This patient's level protocol (a name of ``SAMPLING_PROTOCOLS``), kept across resets."""
        self._sim.set_sampling([protocol])

    def request_level(self, request: bool = True) -> None:
        """Order a trough at the end of the next interval (on top of the scenario's protocol)."""
        self._sim.request_levels(np.array([bool(request)]))

    @property
    def simulator(self) -> BatchSimulator:
        """The underlying one-patient :class:`vanco_pk.simulator.BatchSimulator` (read-only use)."""
        return self._sim


class VancoPKDiscreteEnv(VancoPKEnv):
    """:class:`VancoPKEnv` with ``Discrete(13)`` actions indexing ``DOSE_GRID_MG`` (0-3000 mg)."""

    _discrete = True

    def _make_action_space(self) -> spaces.Space:
        return spaces.Discrete(len(DOSE_GRID_MG))


def _scalars(info: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = _scalars(value)
        elif value.dtype == bool:
            out[key] = bool(value[0])
        elif np.issubdtype(value.dtype, np.integer):
            out[key] = int(value[0])
        else:
            out[key] = float(value[0])
    return out


def _check_patients(patients: Patients | Covariates | None) -> Patients | Covariates | None:
    if patients is None or isinstance(patients, Patients | Covariates):
        return patients
    raise ValueError(
        f"patients must be None, a vanco_pk.patients.Patients or a Covariates; got {type(patients).__name__}"
    )
