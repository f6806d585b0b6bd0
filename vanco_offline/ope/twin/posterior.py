"""Each logged stay's chart, the posterior over its PK parameters, and its twins."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from vanco_pk.estimation import DoseHistory, map_estimate, map_hessian, map_objective
from vanco_pk.patients import N_PATIENT_DRAWS, Covariates, Patients
from vanco_pk.pk import GotiModel

from vanco_offline.data.options import CarryForward
from vanco_offline.data.pk_replay import table_chart
from vanco_offline.ope.twin.settings import TWIN_COVARIATES, TwinSettings

__all__ = [
    "PKPosterior",
    "StayTwins",
    "make_twins",
    "pk_posterior",
    "stay_histories",
    "stay_twins",
    "twin_streams",
]

_DEFAULT_HEIGHT_CM = 170.0
_HESSIAN_STEP = 1e-2
#: The twins' creatinine rule: the stay's last value, however old.
_CREATININE_CARRIED = CarryForward(max_age_h=np.inf, columns=("creatinine",))


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


def stay_histories(table: Any, stay_ids: Sequence[Any]) -> tuple[DoseHistory, Covariates, np.ndarray]:
    """The chart of each stay (all its rows, :meth:`~vanco_offline.data.pk_replay.StayChart.padded`)
    as :class:`DoseHistory` rows, the twins' covariates and each stay's number of rows.

    A creatinine not measured at a decision is the stay's last one (a real chart has gaps);
    every stay needs one on its first row.
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
    history, lengths = table_chart(table, stay_ids, impute=_CREATININE_CARRIED).padded(stay_ids)
    first = np.array([np.min(groups[s]) for s in stay_ids])
    height = (
        table["height_cm"].to_numpy(np.float64)[first]
        if "height_cm" in table
        else np.full(len(stay_ids), _DEFAULT_HEIGHT_CM)
    )
    covariates = Covariates(
        weight_kg=history.weight_kg,
        age=history.age,
        sex=history.sex,
        height_cm=np.nan_to_num(height, nan=_DEFAULT_HEIGHT_CM),
        dialysis=history.dialysis,
        creatinine=history.creatinine[:, 0],
    )
    return history, covariates, lengths


def pk_posterior(
    history: DoseHistory, n_draws: int, rng: np.random.Generator, settings: TwinSettings | None = None
) -> PKPosterior:
    """MAP, Laplace and importance-resampled posterior draws of every stay's ``(eta_CL, eta_V1)``."""
    settings = TwinSettings() if settings is None else settings
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


def make_twins(
    covariates: Covariates,
    first_bun: np.ndarray,
    draws: np.ndarray,
    rng: np.random.Generator,
    models: Sequence[GotiModel],
) -> Patients:
    """One simulated patient per posterior draw (stay-major order: stay 0's draws first).

    ``models[j]`` is the population model draw ``j`` was drawn under and is simulated in: the
    simulator scales ``pk_z`` by its omegas, so each draw's eta is written in those units.
    """
    n, s, _ = draws.shape
    if len(models) != s:
        raise ValueError(f"make_twins: {len(models)} population models for {s} draws per stay")
    index = np.repeat(np.arange(n), s)
    cov = covariates[index]
    base = Patients.from_normals(rng.standard_normal((n * s, N_PATIENT_DRAWS)), covariates=cov)
    eta = draws.reshape(n * s, 2)
    omega_cl = np.tile([np.sqrt(m.omega2_cl) for m in models], n)
    omega_v1 = np.tile([np.sqrt(m.omega2_v1) for m in models], n)
    pk_z = np.column_stack([eta[:, 0] / omega_cl, eta[:, 1] / omega_v1, base.pk_z[:, 2]])
    ratio = np.clip(first_bun[index] / covariates.creatinine[index], 8.0, 30.0)
    ratio = np.where(np.isfinite(ratio), ratio, base.bun_ratio)
    return dataclasses.replace(base, pk_z=pk_z, bun_ratio=ratio)


@dataclasses.dataclass(frozen=True)
class StayTwins:
    """The twins of the logged stays (stay-major: stay ``i``'s draw ``j`` is twin ``i * S + j``).

    Attributes
    ----------
    history : the stays' charts (:func:`stay_histories`), padded to the longest
    lengths : (n,) rows of each stay
    posterior : the PK posterior of each stay
    patients : the ``n * S`` simulated patients
    seeds : (n * S,) environment seed of each twin
    """

    history: DoseHistory
    lengths: np.ndarray
    posterior: PKPosterior
    patients: Patients
    seeds: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(stays, draws per stay)``."""
        return self.posterior.draws.shape[:2]


def twin_streams(seed: int) -> tuple[np.random.SeedSequence, list[np.random.Generator]]:
    """The root seed sequence of a twin run and its posterior, trait and bootstrap generators."""
    root = np.random.SeedSequence([seed, 0x7717])
    return root, [np.random.default_rng(s) for s in root.spawn(3)]


def stay_twins(table: Any, stay_ids: Sequence[Any], settings: TwinSettings) -> StayTwins:
    """Charts, posteriors and twins of ``stay_ids`` (the same for the same ``settings.seed``).

    With ``settings.refitted_from``, draw ``j`` of a stay comes from its posterior under the
    ``j``-th of :meth:`TwinSettings.draw_models`; ``posterior``'s MAP and Laplace fields are
    those under ``settings.model``.
    """
    root, (post_rng, trait_rng, _) = twin_streams(settings.seed)
    history, covariates, lengths = stay_histories(table, stay_ids)
    posterior = pk_posterior(history, settings.n_draws, post_rng, settings)
    if settings.refitted_from is not None:
        # Draw j from the posterior under draw j's population model (TwinSettings.draw_models).
        draws = [
            pk_posterior(history, 1, post_rng, dataclasses.replace(settings, model=model)).draws[:, 0]
            for model in settings.draw_models()
        ]
        posterior = dataclasses.replace(posterior, draws=np.stack(draws, axis=1))
    groups = table.groupby("stay_id", sort=False).indices
    first_bun = (
        table["bun"].to_numpy(np.float64)[[np.sort(groups[s])[0] for s in stay_ids]]
        if "bun" in table
        else np.full(len(stay_ids), np.nan)
    )
    patients = make_twins(covariates, first_bun, posterior.draws, trait_rng, settings.draw_models())
    total = len(stay_ids) * settings.n_draws
    seeds = root.generate_state(total, dtype=np.uint32).astype(np.int64)
    return StayTwins(history, lengths, posterior, patients, seeds)
