"""A local population PK model: the Goti 2018 structure refitted to a hospital's own levels.

Bayesian dosing software doses every patient through a published population model, the
prior of its MAP fits (:mod:`vanco_pk.estimation`). When a hospital's patients are not the
published population, the prior is wrong for all of them in the same direction, and the few
levels drawn per patient correct it only slowly. The logs of a hospital hold the levels of
all its past patients; refitting the population model's typical values and variances to
them ("continuous learning" of the MIPD model, Hughes et al., Clin Pharmacol Ther 2021;
109:233) gives a prior that is the hospital's own.

The fit maximises the marginal likelihood of the logged levels over the population
parameters ``theta`` (typical CL, V1, V2, the between-patient variances of CL and V1 and the
proportional residual error), each patient's ``eta`` integrated out by the Laplace
approximation (NONMEM's LAPLACIAN; Wang, J Pharmacokinet Pharmacodyn 2007;34:575):

.. math::

    -\\log p(y \\mid \\theta) \\approx \\sum_i f_i(\\hat\\eta_i) + \\tfrac12 \\log\\det H_i
        + \\tfrac12 \\log\\det \\Omega,
    \\qquad f_i(\\eta) = \\sum_j \\Big[\\frac{(y_{ij} - \\hat y_{ij}(\\eta))^2}{2\\sigma_{ij}^2}
        + \\log \\sigma_{ij}\\Big] + \\tfrac12 \\eta^\\top \\Omega^{-1} \\eta,

with :math:`\\hat\\eta_i` the MAP estimate (:func:`vanco_pk.estimation.map_estimate`),
:math:`H_i` the Hessian of :math:`f_i` there and :math:`\\sigma_{ij}^2 = (\\text{prop}\\,
\\hat y_{ij})^2 + \\text{add}^2`. A patient without a level contributes 0 whatever
``theta``. The outer problem is solved by Nelder-Mead (:func:`scipy.optimize.minimize`) on
the logarithms of the parameters, from the published model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from vanco_pk.estimation import DoseHistory, _take, map_estimate, map_hessian, map_objective
from vanco_pk.pk import GOTI_2018, GotiModel

__all__ = [
    "FITTED_PARAMETERS",
    "MODEL_FIELDS",
    "PARAMETERS",
    "PopulationFit",
    "fit_population",
    "marginal_objective",
]

#: The population parameters the fit may estimate: fields of :class:`vanco_pk.pk.GotiModel`, and
#: ``volume``, one factor on V1 and V2 together (troughs tell the total volume, hardly its split).
PARAMETERS: tuple[str, ...] = (
    "cl",
    "volume",
    "v1",
    "v2",
    "omega2_cl",
    "omega2_v1",
    "prop_error",
    "crcl_exponent",
    "crcl_cap",
    "dialysis_cl_factor",
)
#: The fields of :class:`vanco_pk.pk.GotiModel` a fit may change.
MODEL_FIELDS: tuple[str, ...] = tuple(p for p in PARAMETERS if p != "volume")
#: What :func:`fit_population` estimates by default: everything, V1 and V2 through ``volume``.
FITTED_PARAMETERS: tuple[str, ...] = tuple(p for p in PARAMETERS if p not in ("v1", "v2"))


@dataclasses.dataclass(frozen=True)
class PopulationFit:
    """The refitted model and how it was obtained.

    Attributes
    ----------
    model : the refitted population model (the start's other fields unchanged)
    start : the model the fit started from (the prior of the dosing software)
    objective, start_objective : the Laplace objective at the fit and at the start (lower is better)
    patients, levels : patients with at least one level, and levels, that informed the fit
    evaluations : objective evaluations used
    """

    model: GotiModel
    start: GotiModel
    objective: float
    start_objective: float
    patients: int
    levels: int
    evaluations: int

    def changes(self) -> dict[str, tuple[float, float]]:
        """``{field: (start value, fitted value)}`` of the model fields a fit may change."""
        return {p: (getattr(self.start, p), getattr(self.model, p)) for p in MODEL_FIELDS}


def _levels(history: DoseHistory) -> np.ndarray:
    """Levels that inform the fit (troughs and peaks after the first decision: the first carries no dose)."""
    drawn = np.isfinite(history.level[:, 1:])
    return drawn if history.peak is None else drawn | np.isfinite(history.peak[:, 1:])


def _log_det_hessian(history: DoseHistory, eta: np.ndarray, model: GotiModel) -> np.ndarray:
    """log det of the Hessian of the MAP objective at ``eta`` (P, 2), floored at the prior's."""
    det = np.linalg.det(map_hessian(history, eta, model))
    # The prior's curvature bounds each eigenvalue from below at the mode.
    floor = 1.0 / np.array([model.omega2_cl, model.omega2_v1]).max()
    return np.log(np.maximum(det, floor**2))


def marginal_objective(
    histories: Sequence[DoseHistory], model: GotiModel, eta0: Sequence[np.ndarray] | None = None
) -> tuple[float, list[np.ndarray]]:
    """The Laplace approximation of ``-log p(levels | model)`` (up to a constant) and each group's MAP etas.

    Parameters
    ----------
    histories : the patients, in groups of equal stay length (one :class:`DoseHistory` each)
    model : the population model to score
    eta0 : per group, a starting point for the MAP fits (the previous evaluation's estimates)
    """
    total = 0.0
    etas = []
    log_det_omega = np.log(model.omega2_cl) + np.log(model.omega2_v1)
    for g, history in enumerate(histories):
        informed = _levels(history).any(axis=1)
        start = None if eta0 is None else eta0[g]
        eta = map_estimate(
            history, model, eta0=start, max_iter=20, tol=1e-4, grid=0 if start is not None else 7
        ).eta
        etas.append(eta)
        if not informed.any():
            continue
        sub = _take(history, informed)
        e = eta[informed]
        value = map_objective(sub, e, model, log_sigma=True) + 0.5 * _log_det_hessian(sub, e, model)
        total += float(np.sum(value + 0.5 * log_det_omega))
    return total, etas


def _with(model: GotiModel, parameters: Sequence[str], log_values: np.ndarray) -> GotiModel:
    values = dict(zip(parameters, np.exp(log_values).tolist(), strict=True))
    scale = values.pop("volume", 1.0)
    values.setdefault("v1", model.v1 * scale)
    values.setdefault("v2", model.v2 * scale)
    return dataclasses.replace(model, **values)


def _start_values(model: GotiModel, parameters: Sequence[str]) -> np.ndarray:
    return np.log([1.0 if p == "volume" else getattr(model, p) for p in parameters])


def fit_population(
    histories: Sequence[DoseHistory],
    start: GotiModel = GOTI_2018,
    parameters: Sequence[str] = FITTED_PARAMETERS,
    max_evaluations: int = 300,
    min_patients: int = 20,
) -> PopulationFit:
    """Refit :data:`FITTED_PARAMETERS` of ``start`` to the levels of ``histories`` (Laplace, Nelder-Mead).

    Parameters
    ----------
    histories : the logged patients, grouped by stay length (:class:`DoseHistory` each)
    start : the published model (the dosing software's prior) the fit starts from
    parameters : what to estimate, a subset of :data:`PARAMETERS` (the others stay at ``start``)
    max_evaluations : Nelder-Mead's budget of objective evaluations
    min_patients : fewer patients with a level than this is an error (a population model
        from a handful of patients is the handful, not the population)

    Raises
    ------
    ValueError
        Too few patients with a level.
    """
    from scipy.optimize import minimize

    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown or not parameters:
        raise ValueError(
            f"fit_population: parameters {list(parameters)}; choose a subset of {list(PARAMETERS)}"
        )
    parameters = tuple(parameters)
    histories = [h for h in histories if h.n_patients]
    patients = sum(int(_levels(h).any(axis=1).sum()) for h in histories)
    levels = sum(int(_levels(h).sum()) for h in histories)
    if patients < min_patients:
        raise ValueError(
            f"fit_population: only {patients} patient(s) have a level after their first dose; a local "
            f"population model needs at least {min_patients}"
        )
    start_objective, etas = marginal_objective(histories, start)
    state = {"etas": etas, "evaluations": 1}

    def objective(log_values: np.ndarray) -> float:
        model = _with(start, parameters, log_values)
        value, new = marginal_objective(histories, model, state["etas"])
        state["evaluations"] += 1
        if np.isfinite(value):
            state["etas"] = new
            return value
        return np.inf

    x0 = _start_values(start, parameters)
    result = minimize(
        objective,
        x0,
        method="Nelder-Mead",
        options={
            "maxfev": max_evaluations,
            "xatol": 1e-3,
            "fatol": 1e-3,
            "initial_simplex": x0 + np.vstack([np.zeros(len(x0)), 0.3 * np.eye(len(x0))]),
        },
    )
    best = _with(start, parameters, result.x) if result.fun < start_objective else start
    return PopulationFit(
        model=best,
        start=start,
        objective=float(min(result.fun, start_objective)),
        start_objective=float(start_objective),
        patients=patients,
        levels=levels,
        evaluations=state["evaluations"],
    )


def model_with(
    values: Mapping[str, float] | Sequence[tuple[str, float]] | None, base: GotiModel = GOTI_2018
) -> GotiModel:
    """``base`` with the fields in ``values`` replaced (None or empty: ``base`` itself).

    Raises
    ------
    ValueError
        A field that is not one of :data:`MODEL_FIELDS`, or a value the model rejects.
    """
    if not values:
        return base
    items = dict(values)
    unknown = sorted(set(items) - set(MODEL_FIELDS))
    if unknown:
        raise ValueError(
            f"pk_model: unknown population-model field(s) {unknown}; choose from {list(MODEL_FIELDS)}"
        )
    try:
        return dataclasses.replace(base, **{k: float(v) for k, v in items.items()})
    except (TypeError, ValueError) as error:
        raise ValueError(f"pk_model: {error}") from None


def model_values(model: GotiModel) -> dict[str, float]:
    """The :data:`MODEL_FIELDS` of ``model`` as plain floats (the inverse of :func:`model_with`)."""
    return {name: float(getattr(model, name)) for name in MODEL_FIELDS}
