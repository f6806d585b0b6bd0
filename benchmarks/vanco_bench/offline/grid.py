"""What the offline benchmark runs: its datasets, its algorithms, and one cell's task.

Datasets are simulated cohorts (``vanco_offline.data.cohort.generate_cohort``) in the
D4RL style: ``medium`` (the clinician behaviour policy), ``medium-expert`` (half the stays
clinician, half MIPD) and ``medium-random`` (half clinician, half random doses), each
``small`` (150 stays x 14 decisions = 2,100 transitions) and ``large``
(3,600 stays = 50,400 transitions), with the simulator's Goti residual error on the levels
and 30 % of the levels missing. A dataset is a pure function of its name, size and seed.

Algorithms get the same dataset, the same gradient steps and batch size, the same hidden
layers and the same scalers (:func:`vanco_offline.data.fit_scalers`: standardised
observations, MinMax over 0..3000 mg for continuous doses), except the rows of the
``seed`` and ``base`` presets, which keep their own data settings: ``VancoIQL (seed)``
trains on raw mg with no scalers, and both train on the ``seed`` reward
(``vanco_pk.targets.seed_reward``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from vanco_pk.scenario import SCENARIOS
from vanco_pk.targets import AUC24_LOG_MIDPOINT
from vanco_pk.world import World

if TYPE_CHECKING:
    from vanco_offline.data import ConversionSettings

__all__ = [
    "ALGORITHMS",
    "DATASETS",
    "DOSE_SET_NAMES",
    "LOG_MIDPOINT_AUC",
    "PRACTICAL_BASELINES",
    "REFERENCE_POLICIES",
    "SIMPLE_BASELINES",
    "SIZES",
    "AlgoSettings",
    "CellTask",
    "DatasetSettings",
    "add_world_arguments",
    "build_config",
    "config_class",
    "load_dataset",
    "world_of",
]

#: Level noise and missed levels of every dataset's world and of its held-out patients' (in
#: ``ideal``; in ``icu`` the protocol decides which levels are drawn).
DATASET_NOISE: dict[str, Any] = {"measurement_noise": 1.0, "level_missing_prob": 0.3}
#: Dataset name -> behaviour mixture (share of stays per reference policy).
DATASETS: dict[str, dict[str, float]] = {
    "medium": {"clinician": 1.0},
    "medium-expert": {"clinician": 0.5, "mipd": 0.5},
    "medium-random": {"clinician": 0.5, "random": 0.5},
}
#: Size name -> number of stays (14 transitions each at the default 12 h x 7 days).
SIZES: dict[str, int] = {"small": 150, "large": 3600}
REFERENCE_POLICIES: tuple[str, ...] = (
    "clinician",
    "mipd",
    "mipd_local",
    "mipd_local490",
    "mipd_true",
    "oracle",
    "fixed",
    "random",
)
#: The AUC24 target of ``mipd_local490``: :data:`vanco_pk.targets.AUC24_LOG_MIDPOINT`.
LOG_MIDPOINT_AUC = AUC24_LOG_MIDPOINT
#: The strongest simple baselines every table carries beside the learned rows; a learned
#: policy's verdict is against the best of them. ``BC`` is d3rlpy's behaviour cloning on the
#: learned rows' data.
SIMPLE_BASELINES: tuple[str, ...] = ("mipd_local490", "mipd_local", "mipd_true", "mipd", "BC")
#: The baselines that use only what a hospital has (its logs and a published prior).
PRACTICAL_BASELINES: tuple[str, ...] = ("mipd_local490", "mipd_local", "mipd", "BC")
#: Action sets of a table (:func:`vanco_pk.simulate.simulate`'s ``dose_set``) and their names.
DOSE_SET_NAMES: dict[str, str] = {
    "grid": "the 250 mg grid (every dose rounded as a pharmacy gives it)",
    "continuous": "unrounded doses (the MIPD rows dose in 5 mg steps; clinician, fixed and random keep "
    "their grid rules)",
}
#: Population priors of the exposure tracker: ``published`` (Goti 2018) or ``local`` (refitted
#: to the dataset's own levels, :func:`vanco_offline.data.fit_local_model`).
PK_MODELS: tuple[str, ...] = ("published", "local")
#: Seed of the test patients of the reported tables: they choose nothing (docs/benchmark.md,
#: "Which seed chose what").
TEST_SEED = 20261207
#: Seed of the validation patients: every choice (budget, beta, tau, variant, preset) is made on these.
VALIDATION_SEED = 2 * 10**9


@dataclasses.dataclass(frozen=True)
class DatasetSettings:
    """One benchmark dataset: behaviour mixture, number of stays, seed and simulator options."""

    name: str
    size: str
    n_stays: int
    seed: int = 0
    level_missing_prob: float = DATASET_NOISE["level_missing_prob"]
    measurement_noise: float = DATASET_NOISE["measurement_noise"]
    misspecification: str | None = None
    scenario: str = "icu"

    @classmethod
    def make(
        cls,
        name: str,
        size: str,
        seed: int = 0,
        n_stays: int | None = None,
        level_missing_prob: float | None = None,
        misspecification: str | None = None,
        scenario: str | None = None,
    ) -> DatasetSettings:
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
        if size not in SIZES and n_stays is None:
            raise ValueError(f"unknown dataset size {size!r}; choose from {sorted(SIZES)} or give n_stays")
        stays = SIZES[size] if n_stays is None else int(n_stays)
        if stays < 2:
            raise ValueError(f"dataset {name}-{size}: n_stays = {stays} must be >= 2")
        world = scenario or "icu"
        if world not in SCENARIOS:
            raise ValueError(f"unknown scenario {world!r}; choose from {sorted(SCENARIOS)}")
        # In icu the monitoring protocol decides which levels are drawn; in ideal a level is
        # due at every decision and 30 % of them are missed.
        missing = float(_default_missing(world) if level_missing_prob is None else level_missing_prob)
        if not 0.0 <= missing < 1.0:
            raise ValueError(f"dataset {name}-{size}: level_missing_prob = {missing} must be in [0, 1)")
        if misspecification == "none":
            misspecification = None
        if misspecification is not None:
            from vanco_pk.patients import get_misspecification

            get_misspecification(misspecification)  # the simulator's own check and message
        return cls(
            name=name,
            size=size,
            n_stays=stays,
            seed=seed,
            level_missing_prob=missing,
            misspecification=misspecification,
            scenario=world,
        )

    @property
    def label(self) -> str:
        world = [] if self.scenario == "icu" else [self.scenario]
        if self.level_missing_prob != _default_missing(self.scenario):
            world.append(f"levels missing {self.level_missing_prob:g}")
        if self.misspecification:
            world.append(f"prior {self.misspecification}ly misspecified")
        return f"{self.name}-{self.size}" + (f" ({', '.join(world)})" if world else "")

    @property
    def mixture(self) -> dict[str, float]:
        return DATASETS[self.name]

    @property
    def world(self) -> World:
        """The world of the data and of the held-out patients: the scenario with its true model
        shifted by :attr:`misspecification` (MIPD and the exposure tracker keep the Goti prior)."""
        return World.make(
            scenario=self.scenario,
            misspecification=self.misspecification,
            measurement_noise=self.measurement_noise,
            level_missing_prob=self.level_missing_prob,
        )


def _default_missing(scenario: str) -> float:
    """Share of due levels missed by default: 0.3 in ideal (a level due at every decision), 0 in icu."""
    return float(DATASET_NOISE["level_missing_prob"]) if scenario == "ideal" else 0.0


def add_world_arguments(parser: Any) -> None:
    """``--scenario``, ``--level-missing-prob``, ``--misspecification``: the world of data and patients."""
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="icu",
        help="the simulated world (vanco_pk.scenario): icu (default: levels by protocol, changing kidneys, "
        "a second population model as truth, graded AKI) or ideal (a level due at every decision, the "
        "prior is the truth)",
    )
    parser.add_argument(
        "--level-missing-prob",
        type=float,
        help="share of due troughs not measured (default 0 in icu, "
        f"{DATASET_NOISE['level_missing_prob']} in ideal)",
    )
    parser.add_argument(
        "--misspecification",
        choices=["none", "mild", "severe"],
        help="true patients from a shifted population model (vanco_pk.patients.MISSPECIFICATIONS) while "
        "MIPD and the PK features keep the Goti prior (default none)",
    )


def world_of(args: Any) -> dict[str, Any]:
    """The ``DatasetSettings.make`` keywords of :func:`add_world_arguments`'s options."""
    return {
        "scenario": getattr(args, "scenario", None),
        "level_missing_prob": getattr(args, "level_missing_prob", None),
        "misspecification": getattr(args, "misspecification", None),
    }


@dataclasses.dataclass(frozen=True)
class AlgoSettings:
    """A learned algorithm of the grid.

    ``preset`` names a packaged VancoIQL preset (its hyperparameters, reward and scaler
    choices); ``d3rlpy`` names a d3rlpy config class with ``options`` on top of d3rlpy's
    defaults. ``action`` is the dataset's action kind.
    """

    name: str
    action: str
    preset: str | None = None
    d3rlpy: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def reward(self) -> str:
        """The reward of the ``project`` variant: ``default`` (the trough reward), or ``seed`` for
        the presets trained on it (``seed``, ``base``).

        A preset's other data choices (``exposure`` reward, covariates, PK features) are not
        taken from it here: every algorithm of a run gets the same data, chosen by the run's
        options (``--data-preset`` derives them from a preset for all algorithms alike)."""
        if self.preset is None:
            return "default"
        from vanco_offline.configs import load_preset

        return "seed" if load_preset(self.preset).data.reward == "seed" else "default"


# d3rlpy's discrete CQL/BCQ defaults are Atari's (lr 6.25e-5, target copied every 8,000
# steps): with a budget of a few thousand steps the target network would never be updated.
_DISCRETE_Q = {"learning_rate": 3e-4, "target_update_interval": 1000}
ALGORITHMS: dict[str, AlgoSettings] = {
    spec.name: spec
    for spec in (
        AlgoSettings("VancoIQL", "continuous", preset="default"),
        AlgoSettings("ResidualVancoIQL", "continuous", preset="residual"),
        AlgoSettings("IQL", "continuous", d3rlpy="IQLConfig"),
        AlgoSettings("CQL", "continuous", d3rlpy="CQLConfig"),
        AlgoSettings("BCQ", "continuous", d3rlpy="BCQConfig"),
        AlgoSettings("BC", "continuous", d3rlpy="BCConfig"),
        AlgoSettings("DiscreteVancoIQL", "discrete", preset="discrete"),
        AlgoSettings("DiscreteCQL", "discrete", d3rlpy="DiscreteCQLConfig", options=_DISCRETE_Q),
        AlgoSettings("DiscreteBCQ", "discrete", d3rlpy="DiscreteBCQConfig", options=_DISCRETE_Q),
        AlgoSettings("DiscreteBC", "discrete", d3rlpy="DiscreteBCConfig"),
        AlgoSettings("VancoIQL (base)", "continuous", preset="base"),
        AlgoSettings("VancoIQL (seed)", "continuous", preset="seed"),
    )
}
#: The d3rlpy configs that take one encoder (the others take actor/critic/value/imitator ones).
_SINGLE_ENCODER = ("BCConfig", "DiscreteBCConfig", "DiscreteCQLConfig", "DiscreteBCQConfig")


@dataclasses.dataclass(frozen=True)
class CellTask:
    """One cell of the grid: a dataset, an algorithm (or reference policy) and a seed.

    Attributes
    ----------
    dataset : DatasetSettings
    algo : str
        A key of :data:`ALGORITHMS` or of :data:`REFERENCE_POLICIES`.
    seed : int
        Training seed (``d3rlpy.seed``), or the reference policy's sampling seed.
    n_steps : int
        Gradient steps (the same for every algorithm).
    batch_size : int
    hidden_units : tuple of int
        Hidden layers of every network.
    eval_patients : int
        Held-out patients for the rollout scores.
    eval_seed : int
        Seed of the held-out patients (the same for every cell): :data:`TEST_SEED` for a
        reported table, :data:`VALIDATION_SEED` for a choice.
    ope : bool
        Also compute FQE / WIS / WDR estimates and the matching simulator truth.
    ope_steps : int
        FQE gradient steps.
    covariates : bool
        Append the covariates to the observation (all algorithms of a run alike). This and the
        three fields below are the run's data variant: a learned algorithm trains on it, a
        reference policy's OPE (``ope``) is estimated on it and scored under its reward.
    reward_variant : str
        ``project`` (the ``default`` trough reward; ``seed`` for the seed and base presets),
        ``exposure`` (the project's exposure reward) or a candidate of
        :data:`vanco_bench.offline.variants.REWARD_VARIANTS`.
    last_dose : bool
        Append the previous dose to the observation (the data layer's ``last_dose``).
    pk_features : bool
        Append the exposure tracker's features (the data layer's ``pk_features``).
    pk_model : {"published", "local"}
        The tracker's population prior for the PK features and the exposure reward: Goti 2018,
        or the model refitted to the dataset's levels (:func:`local_fit`).
    overrides : mapping
        Config fields set on top of the algorithm's (the Ray Tune sweep).
    protocol : str
        The level protocol of every patient of the table: ``"world"`` (default: the world's
        own, ``trough_guided`` in ``icu``, for learned and reference rows alike) or a name of
        :data:`vanco_pk.scenario.SAMPLING_PROTOCOLS`.
    dose_set : {"grid", "continuous"}
        The action set of every row (:data:`DOSE_SET_NAMES`).
    """

    dataset: DatasetSettings
    algo: str
    seed: int
    n_steps: int = 5000
    batch_size: int = 256
    hidden_units: tuple[int, ...] = (32, 32)
    eval_patients: int = 500
    eval_seed: int = TEST_SEED
    ope: bool = False
    ope_steps: int = 3000
    covariates: bool = False
    reward_variant: str = "project"
    last_dose: bool = False
    pk_features: bool = False
    pk_model: str = "published"
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    protocol: str = "world"
    dose_set: str = "grid"

    def __post_init__(self) -> None:
        from vanco_pk.scenario import SAMPLING_PROTOCOLS

        from vanco_bench.offline.variants import REWARD_VARIANTS

        if self.protocol != "world" and self.protocol not in SAMPLING_PROTOCOLS:
            raise ValueError(
                f"CellTask.protocol = {self.protocol!r}; choose 'world' or one of {list(SAMPLING_PROTOCOLS)}"
            )
        if self.dose_set not in DOSE_SET_NAMES:
            raise ValueError(f"CellTask.dose_set = {self.dose_set!r}; choose one of {list(DOSE_SET_NAMES)}")

        if self.reward_variant not in REWARD_VARIANTS:
            raise ValueError(
                f"unknown reward variant {self.reward_variant!r}; choose from {list(REWARD_VARIANTS)}"
            )
        if self.algo not in ALGORITHMS and self.algo not in REFERENCE_POLICIES:
            raise ValueError(
                f"unknown algorithm {self.algo!r}; choose from {list(ALGORITHMS) + list(REFERENCE_POLICIES)}"
            )
        for name in ("n_steps", "batch_size", "eval_patients", "ope_steps"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"CellTask.{name} = {value!r} must be a positive integer")
        if self.pk_model not in PK_MODELS:
            raise ValueError(f"unknown pk_model {self.pk_model!r}; choose from {list(PK_MODELS)}")
        if self.algo in REFERENCE_POLICIES and self.overrides:
            raise ValueError(f"overrides {dict(self.overrides)} apply to learned algorithms, not {self.algo}")

    def data(self, action: str | None = None, reward: str | None = None) -> tuple[Any, Any]:
        """The task's dosing table and its conversion (:func:`load_dataset`) for its data variant.

        Args:
            action: ``"continuous"`` or ``"discrete"``; default the algorithm's.
            reward: a name in ``vanco_pk.targets.REWARDS``; default the algorithm's.
        """
        spec = ALGORITHMS.get(self.algo)
        return load_dataset(
            self.dataset,
            action if action is not None else spec.action,
            reward if reward is not None else spec.reward,
            self.covariates,
            self.reward_variant,
            self.last_dose,
            self.pk_features,
            self.pk_model,
        )

    def reference(self) -> tuple[str, dict[str, Any]]:
        """A reference policy's ``vanco_pk`` name and options: ``mipd_local`` and ``mipd_local490``
        are MIPD with the prior of :func:`local_fit` (the latter aimed at :data:`LOG_MIDPOINT_AUC`),
        ``mipd_true`` MIPD with the world's true population model and level error
        (:attr:`vanco_pk.scenario.Scenario.true_prior`; under a misspecification, the shifted
        model): information no hospital has."""
        if self.algo == "mipd_true":
            return "mipd", {"model": self.dataset.world.scenario.true_prior}
        if self.algo in ("mipd_local", "mipd_local490"):
            options: dict[str, Any] = {"model": local_fit(self.dataset).model}
            if self.algo == "mipd_local490":
                options["target_auc"] = LOG_MIDPOINT_AUC
            return "mipd", options
        return self.algo, {}

    @property
    def sampling(self) -> str:
        """The level protocol every patient of the table is sampled on (:attr:`protocol` resolved)."""
        if self.protocol == "world":
            from vanco_pk.scenario import get_scenario

            return get_scenario(self.dataset.scenario).sampling
        return self.protocol

    @property
    def variant(self) -> str:
        """The data variant in words ('' for the project's data)."""
        parts = []
        if self.reward_variant != "project":
            parts.append(f"reward {self.reward_variant}")
        if self.covariates:
            parts.append("covariates")
        if self.last_dose:
            parts.append("last dose")
        if self.pk_features:
            parts.append("PK features")
        if self.pk_model != "published":
            parts.append(f"{self.pk_model} PK model")
        return ", ".join(parts)

    @property
    def label(self) -> str:
        """The algorithm's name in the report, with its data variant (reference policies act on the
        simulator's chart, not on the variant's observation, so their name stands alone)."""
        return f"{self.algo} [{self.variant}]" if self.variant and self.learned else self.algo

    @property
    def learned(self) -> bool:
        return self.algo in ALGORITHMS

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.dataset.label, self.label, self.seed)


@functools.lru_cache(maxsize=8)
def _table(spec: DatasetSettings):
    from vanco_offline.data.cohort import generate_cohort

    return generate_cohort(spec.n_stays, spec.mixture, seed=spec.seed, world=spec.world)


@functools.lru_cache(maxsize=8)
def local_fit(spec: DatasetSettings):
    """The population model refitted to ``spec``'s logged levels (cached per process).

    The fit sees the dataset only -- the hospital's logs -- never a validation or test patient.
    """
    from vanco_offline.data import fit_local_model

    return fit_local_model(_table(spec))


@functools.lru_cache(maxsize=16)
def _converted(spec: DatasetSettings, observation: ConversionSettings, reward: str, variant: str):
    """``spec``'s table converted with ``observation``'s columns and ``reward`` (or ``variant``'s)."""
    from vanco_bench.offline.variants import COMPUTED_REWARDS, variant_reward
    from vanco_offline.data import convert_with

    if variant == "project" or variant in COMPUTED_REWARDS:
        # The table's reward column is the environment's default reward; drop it so that the
        # converter computes the algorithm's reward (default, seed or exposure) from the rows.
        computed = reward if variant == "project" else COMPUTED_REWARDS[variant]
        table = _table(spec).drop(columns=["reward"])
    else:
        # The candidate reward is the table's reward column (reward=None: use the column).
        table, computed = variant_reward(_table(spec), variant), None
    result = convert_with(table, dataclasses.replace(observation, reward=computed))
    expected = "from the table" if computed is None else f"'{computed}' reward"
    if expected not in result.report.reward_source:
        raise RuntimeError(f"the converter's rewards are {result.report.reward_source}, expected {expected}")
    return result


def load_dataset(
    spec: DatasetSettings,
    action: str,
    reward: str = "default",
    covariates: bool = False,
    reward_variant: str = "project",
    last_dose: bool = False,
    pk_features: bool = False,
    pk_model: str = "published",
):
    """The dataset's dosing table and its conversion (cached per process).

    Returns
    -------
    (pandas.DataFrame, vanco_offline.data.ConversionResult)
        The table (with the environment's ``reward`` column) and the converted dataset:
        never-measured levels filled with 0 mg/L (as the simulator shows them), rewards
        computed by the converter with ``reward`` (or ``reward_variant``), covariates, the
        previous dose and the PK features appended when asked; with ``pk_model="local"`` the
        PK features and the exposure reward use the model refitted to the dataset (:func:`local_fit`).
    """
    from vanco_pk.population import model_values

    from vanco_offline.data import ConversionSettings

    observation = ConversionSettings(
        action=action,  # type: ignore[arg-type]
        fill_unmeasured_level=True,
        covariates=covariates,
        last_dose=last_dose,
        pk_features=pk_features,
        pk_model=tuple(model_values(local_fit(spec).model).items()) if pk_model == "local" else None,
    )
    return _table(spec), _converted(spec, observation, reward, reward_variant)


def config_class(spec: AlgoSettings) -> type:
    """The config class of ``spec``: its preset's (VancoIQL, ResidualVancoIQL, ...) or d3rlpy's."""
    if spec.preset is not None:
        from vanco_offline.configs import load_preset, make_config

        return type(make_config(load_preset(spec.preset)))
    import d3rlpy.algos

    return getattr(d3rlpy.algos, str(spec.d3rlpy))


def build_config(spec: AlgoSettings, task: CellTask, result: Any) -> Any:
    """The d3rlpy config of ``spec`` for ``task``, with the scalers fitted on ``result``."""
    from d3rlpy.models.encoders import VectorEncoderFactory

    from vanco_offline.algos.residual_iql import check_prior_column
    from vanco_offline.data import fit_scalers

    encoder = VectorEncoderFactory(hidden_units=list(task.hidden_units))
    scalers = fit_scalers(result)
    if spec.preset is not None:
        from vanco_offline.configs import load_preset, make_config

        preset = load_preset(spec.preset)
        config = make_config(preset)
        fields = {
            "actor_encoder_factory": encoder,
            "critic_encoder_factory": encoder,
            "value_encoder_factory": encoder,
            "batch_size": task.batch_size,
            "observation_scaler": (
                scalers.observation_scaler if preset.data.observation_scaler == "standard" else None
            ),
        }
        if spec.action == "continuous":
            clinical = preset.data.action_scaler == "clinical"
            fields["action_scaler"] = scalers.action_scaler if clinical else None
        _check_overrides(task, config, spec.name)
        config = dataclasses.replace(config, **fields, **dict(task.overrides))
        check_prior_column(config, result.observation_names)
        return config
    import d3rlpy.algos

    cls = getattr(d3rlpy.algos, str(spec.d3rlpy))
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {"batch_size": task.batch_size, "observation_scaler": scalers.observation_scaler}
    if spec.action == "continuous":
        kwargs["action_scaler"] = scalers.action_scaler
    if spec.d3rlpy in _SINGLE_ENCODER:
        kwargs["encoder_factory"] = encoder
    else:
        kwargs.update({f: encoder for f in names if f.endswith("_encoder_factory")})
    kwargs.update(spec.options)
    _check_overrides(task, cls, spec.name)
    kwargs.update(task.overrides)
    return cls(**kwargs)


def _check_overrides(task: CellTask, config: Any, name: str) -> None:
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(task.overrides) - names)
    if unknown:
        kind = config if isinstance(config, type) else type(config)
        raise ValueError(
            f"overrides {unknown} are not fields of {name}'s config {kind.__name__}; valid: {sorted(names)}"
        )
