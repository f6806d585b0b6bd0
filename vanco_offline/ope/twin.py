"""A pharmacokinetic digital-twin estimator: each logged patient re-dosed in silico by the policy.

For every logged stay ``i``:

1. **Posterior over its PK parameters** from its own chart (covariates, creatinine at each
   decision, doses, measured troughs), under the Goti 2018 population model as prior and
   its residual error as likelihood: the MAP estimate of ``eta = (eta_CL, eta_V1)``
   (:func:`vanco_pk.estimation.map_estimate`, the code MIPD and the exposure tracker
   use), a Laplace approximation ``N(eta_MAP, H^-1)`` (``H`` the finite-difference Hessian
   of :func:`~vanco_pk.estimation.map_objective`) widened by ``proposal_scale`` as an
   importance-sampling proposal, and ``n_draws`` draws resampled with weights
   ``p(eta | chart) / q(eta)`` (sampling-importance-resampling, so a skewed or bimodal
   posterior is not forced into a Gaussian). A stay without a level keeps the prior.
2. **Twins**: one simulated patient per draw, with the stay's covariates and baseline
   creatinine, ``CL`` and ``V1`` from the draw, ``V2`` and the traits no chart measures
   (kidney sensitivity to exposure, bacterial growth, baseline vital signs, initial burden)
   drawn from the simulator's population, the BUN/creatinine ratio from the first row.
3. **Rollout** of the evaluated policy -- greedy, as deployed, unless it was softened on
   purpose -- on every twin in :class:`vanco_pk.vector.VancoPKVectorEnv`, with the kidney and
   infection dynamics of ``vanco_pk`` and the data's reward, interval and level protocol.

The value is the mean over stays of each stay's mean discounted return over its twins; the
attainment (fraction of intervals with true AUC24 in 400-600) and AKI rate likewise. The
interval is a bootstrap over stays in which each resampled stay contributes one of its
twins at random: it carries the sampling of patients, the posterior and the rollout noise.

What it assumes, and where it can be wrong: the twins live in the world of Goti 2018 and
of ``vanco_pk``'s kidney and infection models. It never sees the true patients' model:
the twins are simulated from ``TwinSettings.model`` (Goti 2018, or a model refitted to the
logged levels), not from the scenario's ``true_model`` nor any ``misspecification`` (the
world a user knows -- scenario, interval, horizon, reward, level protocol -- is kept). Where
the true patients come from another population model, the twin is biased by the
difference, which its interval does not contain: ``docs/ope.md`` measures its coverage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from vanco_pk.estimation import DoseHistory, map_estimate, map_hessian, map_objective
from vanco_pk.patients import N_PATIENT_DRAWS, Covariates, Misspecification, Patients
from vanco_pk.pk import GOTI_2018, GotiModel
from vanco_pk.scenario import get_scenario
from vanco_pk.sim_config import SimulatorConfig
from vanco_pk.targets import FEATURES
from vanco_pk.vector import VancoPKVectorEnv

from vanco_offline.ope.bootstrap import Interval, bootstrap_counts, percentile_interval
from vanco_offline.ope.policy import EvaluatedPolicy
from vanco_offline.ope.truth import roll_out

__all__ = [
    "TWIN_REFITTED",
    "PKPosterior",
    "TwinEstimate",
    "TwinSettings",
    "local_prior",
    "pk_posterior",
    "twin_estimate",
]

#: Covariate columns a twin needs from the table (height is optional: Goti 2018 does not use it).
TWIN_COVARIATES: tuple[str, ...] = ("weight_kg", "age", "sex", "dialysis")
#: The population parameters :func:`local_prior` refits: those the simulator can give a twin
#: (:func:`_as_misspecification`); the CrCL cap and the dialysis factor stay Goti 2018's.
TWIN_REFITTED: tuple[str, ...] = ("cl", "volume", "omega2_cl", "omega2_v1", "prop_error", "crcl_exponent")
_DEFAULT_HEIGHT_CM = 170.0
_HESSIAN_STEP = 1e-2


@dataclasses.dataclass(frozen=True)
class TwinSettings:
    """How the twins are built and run.

    Attributes
    ----------
    n_draws : int
        Posterior draws (twins) per logged stay.
    oversample : int
        Proposal draws per kept draw in the importance resampling.
    proposal_scale : float
        The Laplace covariance is multiplied by ``proposal_scale ** 2`` for the proposal
        (heavier than the posterior, so the importance weights stay bounded).
    env_options : mapping
        ``VancoPKEnv`` options of the world the data come from (``decision_interval_h``,
        ``episode_days``, ``level_missing_prob``, ``measurement_noise``, ``reward``, ...).
        ``misspecification`` is dropped: the twin's PK model is its prior's.
    model : GotiModel
        The population PK model of the prior and the twins: Goti 2018, or :func:`local_prior`
        (refitted to the logged levels). It may differ from Goti 2018 only in
        :data:`TWIN_REFITTED` and ``v1``, ``v2``, ``q`` (what the simulator can vary).
    batch : int
        Twins simulated at once.
    n_bootstrap, confidence : int, float
        The interval (see the module docstring).
    seed : int
    """

    n_draws: int = 10
    oversample: int = 8
    proposal_scale: float = 1.5
    env_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: GotiModel = GOTI_2018
    batch: int = 5000
    n_bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_draws", "oversample", "batch", "n_bootstrap"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"TwinSettings.{name} must be a positive integer, got {getattr(self, name)!r}"
                )
        if not self.proposal_scale >= 1.0:
            raise ValueError(f"TwinSettings.proposal_scale must be >= 1, got {self.proposal_scale!r}")
        for key in ("patients", "extended_obs", "pk_features"):
            if key in self.env_options:
                raise ValueError(
                    f"TwinSettings.env_options: do not pass {key!r}; the twins and the policy's "
                    "observation are built by the estimator"
                )

    def world(self) -> dict[str, Any]:
        """The twins' environment options: the data's world (scenario, interval, horizon, reward,
        level protocol) with the twin's own PK model in place of the truth's.

        The scenario's ``true_model`` and any ``misspecification`` are what the user cannot
        know; the twins are simulated from ``model``, the model their posterior was drawn under,
        written as a :class:`vanco_pk.patients.Misspecification` of Goti 2018.
        """
        options = {k: v for k, v in self.env_options.items() if k != "misspecification"}
        scenario = get_scenario(options.get("scenario", SimulatorConfig.scenario))
        options["scenario"] = dataclasses.replace(scenario, true_model="goti2018")
        options["misspecification"] = _as_misspecification(self.model)
        return options


def local_prior(table: Any, seed: int = 0, max_stays: int | None = 600) -> GotiModel:
    """Goti 2018 refitted to the levels of the logged ``table`` (:func:`vanco_offline.data.fit_local_model`,
    :data:`TWIN_REFITTED`): the twin's prior from the data alone, never from the true model."""
    from vanco_offline.data.local_model import fit_local_model

    return fit_local_model(table, parameters=TWIN_REFITTED, max_stays=max_stays, seed=seed).model


def _as_misspecification(model: GotiModel) -> Misspecification:
    """``model`` as scale factors on Goti 2018 (ValueError for a field the simulator cannot vary)."""
    fixed = ("crcl_ref", "weight_ref", "dialysis_cl_factor", "dialysis_v1_factor", "crcl_cap")
    differ = [name for name in fixed if getattr(model, name) != getattr(GOTI_2018, name)]
    if differ:
        raise ValueError(
            f"TwinSettings.model differs from Goti 2018 in {differ}, which the simulator cannot give "
            "its twins; refit only cl, volume, v1, v2, omega2_cl, omega2_v1, prop_error, crcl_exponent"
        )
    return Misspecification(
        cl_scale=model.cl / GOTI_2018.cl,
        v1_scale=model.v1 / GOTI_2018.v1,
        v2_scale=model.v2 / GOTI_2018.v2,
        q_scale=model.q / GOTI_2018.q,
        crcl_exponent=model.crcl_exponent,
    )


@dataclasses.dataclass(frozen=True)
class PKPosterior:
    """Posterior draws of ``(eta_CL, eta_V1)`` per stay.

    Attributes
    ----------
    map_eta : ndarray (n, 2)
    laplace_cov : ndarray (n, 2, 2)
    draws : ndarray (n, S, 2)
    ess : ndarray (n,)
        Kish effective sample size of each stay's importance weights (of ``oversample * S``
        proposals); low values mean the Laplace proposal missed the posterior's shape.
    n_levels : ndarray (n,)
        Measured levels that informed each stay's posterior.
    """

    map_eta: np.ndarray
    laplace_cov: np.ndarray
    draws: np.ndarray
    ess: np.ndarray
    n_levels: np.ndarray


@dataclasses.dataclass(frozen=True)
class TwinEstimate:
    """The twin estimator's results for one policy.

    ``value``, ``attainment`` and ``aki_rate`` with their intervals; ``per_stay`` holds each
    stay's twin-mean discounted return; ``posterior`` the PK posterior.
    """

    value: float
    interval: Interval
    attainment: float
    attainment_interval: Interval
    aki_rate: float
    aki_interval: Interval
    per_stay: np.ndarray = dataclasses.field(repr=False)
    posterior: PKPosterior = dataclasses.field(repr=False)
    n_twins: int = 0
    note: str = ""


def stay_histories(table: Any, stay_ids: Sequence[Any]) -> tuple[DoseHistory, Covariates, np.ndarray]:
    """The chart of each stay (all its rows) as :class:`DoseHistory` rows, grouped later by length.

    Returns the histories padded to the longest stay (times continue 12 h apart, doses 0,
    levels NaN after a stay's end), the twins' covariates and each stay's number of rows.
    """
    missing = [
        c for c in (*TWIN_COVARIATES, "time_h", "creatinine", "dose_mg", "vanco_level") if c not in table
    ]
    if missing:
        raise ValueError(
            f"the twin estimator needs the dosing table's columns {missing} (covariates, times, "
            "creatinine, doses and levels of every stay)"
        )
    groups = table.groupby("stay_id", sort=False).indices
    absent = [s for s in stay_ids if s not in groups]
    if absent:
        raise ValueError(
            f"stay(s) {absent[:3]} of the data are not in the table: pass the table they came from"
        )
    rows = [np.sort(groups[s]) for s in stay_ids]
    lengths = np.array([len(r) for r in rows])
    width = int(lengths.max())
    n = len(rows)

    def column(name: str, fill: float) -> np.ndarray:
        values = table[name].to_numpy(np.float64)
        out = np.full((n, width), fill)
        for i, r in enumerate(rows):
            out[i, : len(r)] = values[r]
        return out

    time = column("time_h", np.nan)
    for i, length in enumerate(lengths.tolist()):
        if length < width:
            step = time[i, length - 1] - time[i, length - 2] if length > 1 else 12.0
            time[i, length:] = time[i, length - 1] + step * np.arange(1, width - length + 1)
    creatinine = column("creatinine", np.nan)
    for i, length in enumerate(lengths.tolist()):
        creatinine[i, length:] = creatinine[i, length - 1]
    dose = np.nan_to_num(column("dose_mg", 0.0))
    level = column("vanco_level", np.nan)
    if "level_measured" in table:
        level = np.where(column("level_measured", 0.0) > 0, level, np.nan)
    first = np.array([r[0] for r in rows])
    cov = {c: table[c].to_numpy(np.float64)[first] for c in TWIN_COVARIATES}
    height = (
        table["height_cm"].to_numpy(np.float64)[first]
        if "height_cm" in table
        else np.full(n, _DEFAULT_HEIGHT_CM)
    )
    history = DoseHistory(
        weight_kg=cov["weight_kg"],
        age=cov["age"],
        sex=cov["sex"],
        dialysis=cov["dialysis"],
        time_h=time,
        dose_mg=dose,
        creatinine=creatinine,
        level=level,
    )
    covariates = Covariates(
        weight_kg=cov["weight_kg"],
        age=cov["age"],
        sex=cov["sex"],
        height_cm=np.nan_to_num(height, nan=_DEFAULT_HEIGHT_CM),
        dialysis=cov["dialysis"],
        creatinine=creatinine[:, 0],
    )
    return history, covariates, lengths


def pk_posterior(
    history: DoseHistory, n_draws: int, rng: np.random.Generator, settings: TwinSettings = TwinSettings()
) -> PKPosterior:
    """MAP, Laplace and importance-resampled posterior draws of every stay's ``(eta_CL, eta_V1)``."""
    model = settings.model
    n = history.n_patients
    prior_cov = np.diag([model.omega2_cl, model.omega2_v1])
    fit = map_estimate(history, model)
    levels = np.isfinite(history.level[:, 1:]).sum(axis=1)
    hess = map_hessian(history, fit.eta, model, h=_HESSIAN_STEP)
    det = hess[:, 0, 0] * hess[:, 1, 1] - hess[:, 0, 1] ** 2
    ok = (levels > 0) & (hess[:, 0, 0] > 0) & (det > 0) & np.isfinite(det)
    cov = np.broadcast_to(prior_cov, (n, 2, 2)).copy()
    cov[ok] = np.linalg.inv(hess[ok])
    # Levels only narrow the prior: a Laplace variance above the prior's (a nearly flat,
    # badly conditioned direction) falls back to the prior.
    wide = (cov[:, 0, 0] > prior_cov[0, 0]) | (cov[:, 1, 1] > prior_cov[1, 1])
    cov[wide] = prior_cov
    chol = np.linalg.cholesky(cov + 1e-10 * np.eye(2))
    m = n_draws * settings.oversample
    z = rng.standard_normal((n, m, 2))
    scale = settings.proposal_scale
    proposals = fit.eta[:, None, :] + scale * np.einsum("nij,nmj->nmi", chol, z)
    log_q = -0.5 * (z**2).sum(axis=-1)  # up to per-stay constants, which cancel
    log_p = -map_objective(history, proposals, model)
    log_w = log_p - log_q
    log_w -= log_w.max(axis=1, keepdims=True)
    w = np.exp(log_w)
    w /= w.sum(axis=1, keepdims=True)
    ess = 1.0 / (w**2).sum(axis=1)
    # Systematic resampling per stay.
    u = (rng.random((n, 1)) + np.arange(n_draws)[None, :]) / n_draws
    index = np.minimum((np.cumsum(w, axis=1)[:, None, :] < u[..., None]).sum(axis=2), m - 1)
    draws = np.take_along_axis(proposals, index[..., None], axis=1)
    return PKPosterior(map_eta=fit.eta, laplace_cov=cov, draws=draws, ess=ess, n_levels=levels)


def _twins(
    covariates: Covariates,
    first_bun: np.ndarray,
    draws: np.ndarray,
    rng: np.random.Generator,
    model: GotiModel,
) -> Patients:
    """One simulated patient per posterior draw (stay-major order: stay 0's draws first)."""
    n, s, _ = draws.shape
    index = np.repeat(np.arange(n), s)
    cov = covariates[index]
    base = Patients.from_normals(rng.standard_normal((n * s, N_PATIENT_DRAWS)), covariates=cov)
    eta = draws.reshape(n * s, 2)
    pk_z = np.column_stack(
        [eta[:, 0] / np.sqrt(model.omega2_cl), eta[:, 1] / np.sqrt(model.omega2_v1), base.pk_z[:, 2]]
    )
    ratio = np.clip(first_bun[index] / covariates.creatinine[index], 8.0, 30.0)
    ratio = np.where(np.isfinite(ratio), ratio, base.bun_ratio)
    return dataclasses.replace(base, pk_z=pk_z, bun_ratio=ratio)


def twin_estimate(
    policy: EvaluatedPolicy,
    table: Any,
    stay_ids: Sequence[Any],
    gamma: float,
    settings: TwinSettings = TwinSettings(),
    observation_names: Sequence[str] = FEATURES,
    horizon: int | None = None,
) -> TwinEstimate:
    """Value, attainment and AKI rate of ``policy`` on digital twins of the logged stays.

    Parameters
    ----------
    policy : EvaluatedPolicy
        Rolled out as it is (greedy unless its ``epsilon`` softens it).
    table : pandas.DataFrame
        The dosing table of the logged stays (covariates, times, creatinine, doses, levels).
    stay_ids : sequence
        The stays to twin (the data's).
    gamma : float
    settings : TwinSettings
    observation_names : sequence of str
        The observation a d3rlpy algorithm was trained on (rebuilt in the rollout).
    horizon : int, optional
        Decisions of the logged stays: checked against the twins' world.

    Raises
    ------
    ValueError
        Missing table columns, stays not in the table, a world whose horizon is not the data's.
    """
    if not isinstance(policy, EvaluatedPolicy):
        raise ValueError(
            f"twin_estimate needs an EvaluatedPolicy (vanco_offline.ope.as_policy), got {type(policy)}"
        )
    root = np.random.SeedSequence([settings.seed, 0x7717])
    post_rng, trait_rng, boot_rng = (np.random.default_rng(s) for s in root.spawn(3))
    history, covariates, _ = stay_histories(table, stay_ids)
    posterior = pk_posterior(history, settings.n_draws, post_rng, settings)
    groups = table.groupby("stay_id", sort=False).indices
    first_bun = (
        table["bun"].to_numpy(np.float64)[[np.sort(groups[s])[0] for s in stay_ids]]
        if "bun" in table
        else np.full(len(stay_ids), np.nan)
    )
    world = settings.world()
    # The simulator scales pk_z by its own model's omegas (Goti 2018's: the misspecification
    # leaves them), so each draw's eta is written in those units.
    patients = _twins(
        covariates, first_bun, posterior.draws, trait_rng, world["misspecification"].true_model()
    )
    n, s = len(stay_ids), settings.n_draws
    total = n * s
    returns, attainment, aki = np.empty(total), np.empty(total), np.empty(total)
    seeds = root.generate_state(total, dtype=np.uint32).astype(np.int64)
    for start in range(0, total, settings.batch):
        stop = min(total, start + settings.batch)
        env = VancoPKVectorEnv(num_envs=stop - start, patients=patients[np.arange(start, stop)], **world)
        if horizon is not None and env.config.n_steps != horizon:
            raise ValueError(
                f"the twins' world runs {env.config.n_steps} decisions but the logged stays have {horizon}: "
                "give TwinSettings the env_options that generated the data"
            )
        out = roll_out(
            policy,
            gamma,
            env,
            [int(v) for v in seeds[start:stop]],
            int(seeds[start]) + 1_000_003 * settings.seed,
            observation_names,
        )
        returns[start:stop], attainment[start:stop], aki[start:stop] = out.returns, out.attainment, out.aki
    grid = {name: arr.reshape(n, s) for name, arr in (("r", returns), ("a", attainment), ("k", aki))}
    counts = bootstrap_counts(n, settings.n_bootstrap, boot_rng)
    pick = boot_rng.integers(0, s, size=(settings.n_bootstrap, n))

    def interval(values: np.ndarray) -> Interval:
        chosen = values[np.arange(n)[None, :], pick]  # (B, n): one twin of each resampled stay
        return percentile_interval((counts * chosen).sum(axis=1) / n, settings.confidence)

    per_stay = grid["r"].mean(axis=1)
    prior = "Goti 2018 prior" if settings.model == GOTI_2018 else "Goti 2018 refitted to the logged levels"
    model_note = (
        f"twin: {prior} and vanco_pk kidney/infection dynamics; its interval omits the error of "
        "that model where the true patients differ from it"
    )
    return TwinEstimate(
        value=float(per_stay.mean()),
        interval=interval(grid["r"]),
        attainment=float(grid["a"].mean()),
        attainment_interval=interval(grid["a"]),
        aki_rate=float(grid["k"].mean()),
        aki_interval=interval(grid["k"]),
        per_stay=per_stay,
        posterior=posterior,
        n_twins=total,
        note=model_note,
    )
