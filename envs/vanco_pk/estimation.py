"""Bayesian MAP estimation of a patient's CL and V1 from measured levels, and the AUC dose rule.

The prior is the population model of :mod:`vanco_pk.pk` (Goti 2018): the typical CL from
the Cockcroft-Gault creatinine clearance of the creatinine observed at the start of each
dosing interval (so CL may change over the stay, as in MIPD software with time-varying
covariates), the typical V1 from weight, both with log-normal between-patient variability
``omega^2``; V2 and Q stay at their typical values (troughs carry little information on
them). The likelihood is the model's combined residual error of a measured level,
``sd^2 = (prop * C)^2 + add^2``. A level is a trough drawn at the end of the interval, just
before the next decision; a peak (optional) is drawn inside the same interval,
``peak_offset_h`` hours after the end of the infusion, and is predicted by the closed-form
two-compartment solution at that time (:func:`vanco_pk.pk.propagate` over the partial
interval). A peak and a trough from one interval (the AUC-guided pair of Rybak 2020) carry
information on V1 that a trough alone does not.

The objective is minimised per patient by a damped Newton method on ``(eta_cl, eta_v1)``
with finite-difference derivatives, vectorised over patients so that a cohort of 1,000 is
refitted in milliseconds; each patient's iterations depend on its own data only, so the
estimate does not depend on which other patients share the batch. The tests check it
against ``scipy.optimize.minimize`` on the same objective.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from vanco_pk.pk import (
    GOTI_2018,
    GotiModel,
    PKParams,
    cockcroft_gault,
    infusion_duration_h,
    interval_auc,
    propagate,
)
from vanco_pk.targets import AUC24_GOAL, DOSE_GRID_MG

__all__ = [
    "DoseHistory",
    "MAPResult",
    "auc_target_dose",
    "forward_auc",
    "history_from_policy",
    "map_estimate",
    "map_hessian",
    "map_objective",
    "predicted_state",
    "trailing_auc",
]

# Finite-difference step in log-parameter units and the candidate Newton step lengths.
_H = 1e-3
_ALPHAS = np.array([1.0, 0.5, 0.25, 0.125, 0.0625, 0.0])
_MAX_STEP = 1.0
_ETA_LIMIT_SD = 4.0
_MIN_CRCL = 1.0  # mL/min: keeps CL positive for an anuric creatinine


@dataclass(frozen=True)
class DoseHistory:
    """What a clinician knows of ``P`` patients after ``T`` decisions (arrays over patients).

    Attributes
    ----------
    weight_kg, age, sex, dialysis : arrays (P,)
    time_h : (P, T) decision times; row ``k`` is the start of interval ``k``
    dose_mg : (P, T) dose given at each decision (the last one may be NaN: not given yet)
    creatinine : (P, T) serum creatinine observed at each decision, mg/dL
    level : (P, T) trough drawn at each decision (end of the previous interval), NaN if none
    peak : (P, T), optional
        peak drawn inside the previous interval (reported at the decision with its trough),
        NaN if none; ``None``: no peaks
    peak_offset_h : (P, T), optional
        documented hours from the end of that interval's infusion to the peak draw (needed
        where ``peak`` is finite; the draw must fall inside the interval)
    """

    weight_kg: np.ndarray
    age: np.ndarray
    sex: np.ndarray
    dialysis: np.ndarray
    time_h: np.ndarray
    dose_mg: np.ndarray
    creatinine: np.ndarray
    level: np.ndarray
    peak: np.ndarray | None = None
    peak_offset_h: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = np.shape(self.time_h)
        names = ["dose_mg", "creatinine", "level"]
        if self.peak is not None:
            names.append("peak")
            if self.peak_offset_h is None:
                raise ValueError("DoseHistory.peak needs peak_offset_h (hours after the end of the infusion)")
            names.append("peak_offset_h")
        for name in names:
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(
                    f"DoseHistory.{name} has shape {np.shape(getattr(self, name))}; expected {shape}"
                )
        if len(shape) != 2 or shape[1] < 1:
            raise ValueError(f"DoseHistory.time_h must have shape (patients, decisions >= 1); got {shape}")
        gaps = np.diff(self.time_h, axis=1)
        given = self.dose_mg[:, :-1]
        if np.any(~(np.isfinite(given) & (given >= 0))):
            p, k = (int(v[0]) for v in np.nonzero(~(np.isfinite(given) & (given >= 0))))
            raise ValueError(
                f"DoseHistory.dose_mg[{p}, {k}] = {given[p, k]!r}: every past dose must be >= 0 mg"
            )
        if np.any(~(gaps > 0)):
            raise ValueError("DoseHistory.time_h must increase within every patient")
        short = infusion_duration_h(np.nan_to_num(given)) > gaps
        if np.any(short):
            p, k = (int(v[0]) for v in np.nonzero(short))
            raise ValueError(
                f"patient {p}: the {given[p, k]:g} mg dose at {self.time_h[p, k]:g} h needs "
                f"{float(infusion_duration_h(given[p, k])):.1f} h at 10 mg/min but the next decision is "
                f"{gaps[p, k]:g} h later"
            )
        if self.peak is not None:
            self._check_peaks(given, gaps)

    def _check_peaks(self, given: np.ndarray, gaps: np.ndarray) -> None:
        peak, offset = self.peak[:, 1:], self.peak_offset_h[:, 1:]
        has = np.isfinite(peak)
        if np.any(np.isfinite(self.peak[:, 0])):
            p = int(np.flatnonzero(np.isfinite(self.peak[:, 0]))[0])
            raise ValueError(f"DoseHistory.peak[{p}, 0]: no interval precedes the first decision")
        if np.any(has & (peak < 0)):
            p, k = (int(v[0]) for v in np.nonzero(has & (peak < 0)))
            raise ValueError(f"DoseHistory.peak[{p}, {k + 1}] = {peak[p, k]!r}: a level is >= 0 mg/L")
        t = infusion_duration_h(np.nan_to_num(given)) + offset
        bad = has & ~(np.isfinite(offset) & (offset >= 0) & (t < gaps))
        if np.any(bad):
            p, k = (int(v[0]) for v in np.nonzero(bad))
            raise ValueError(
                f"DoseHistory.peak_offset_h[{p}, {k + 1}] = {offset[p, k]!r}: the peak must be drawn >= 0 h "
                f"after the end of the infusion and before the next decision ({gaps[p, k]:g} h)"
            )

    @property
    def n_patients(self) -> int:
        return self.time_h.shape[0]

    def typical(self, model: GotiModel = GOTI_2018) -> tuple[np.ndarray, np.ndarray]:
        """Typical CL (P, T), from the creatinine at each decision, and typical V1 (P,)."""
        crcl = cockcroft_gault(
            self.age[:, None], self.weight_kg[:, None], self.sex[:, None], self.creatinine, cap=model.crcl_cap
        )
        dial = self.dialysis
        cl = model.cl * (np.maximum(crcl, _MIN_CRCL) / model.crcl_ref) ** model.crcl_exponent
        cl = cl * (model.dialysis_cl_factor**dial)[:, None]
        v1 = model.v1 * self.weight_kg / model.weight_ref * model.dialysis_v1_factor**dial
        return cl, v1


def _simulate(history: DoseHistory, eta: np.ndarray, model: GotiModel, upto: int):
    """Troughs at decisions 1..upto, peaks in the intervals before them (where ``history.peak`` is
    finite, else NaN) and the amounts at decision ``upto``; eta is (P, S, 2)."""
    cl_typ, v1_typ = history.typical(model)
    shape = eta.shape[:2]
    v1 = v1_typ[:, None] * np.exp(eta[..., 1])
    v2 = np.full(shape, model.v2)
    q = np.full(shape, model.q)
    a1 = np.zeros(shape)
    a2 = np.zeros(shape)
    troughs = np.zeros((*shape, upto))
    peaks = np.full((*shape, upto), np.nan)
    for k in range(upto):
        params = PKParams(cl_typ[:, k, None] * np.exp(eta[..., 0]), v1, v2, q)
        dose = np.broadcast_to(history.dose_mg[:, k, None], shape)
        t_inf = infusion_duration_h(dose)
        gap = np.broadcast_to((history.time_h[:, k + 1] - history.time_h[:, k])[:, None], shape)
        if history.peak is not None and np.any(np.isfinite(history.peak[:, k + 1])):
            has = np.isfinite(history.peak[:, k + 1])[:, None]
            t_peak = np.where(has, t_inf + np.nan_to_num(history.peak_offset_h[:, k + 1])[:, None], gap)
            at = propagate(params, a1, a2, dose, t_inf, t_peak).trough
            peaks[..., k] = np.where(has, at, np.nan)
        out = propagate(params, a1, a2, dose, t_inf, gap)
        a1, a2 = out.central_mg, out.peripheral_mg
        troughs[..., k] = out.trough
    return troughs, peaks, a1, a2


def _level_nll(obs: np.ndarray, pred: np.ndarray, model: GotiModel) -> np.ndarray:
    var = (model.prop_error * pred) ** 2 + model.add_error_mg_l**2
    return np.where(np.isnan(obs), 0.0, 0.5 * (np.nan_to_num(obs) - np.nan_to_num(pred)) ** 2 / var)


def map_objective(
    history: DoseHistory, eta: np.ndarray, model: GotiModel = GOTI_2018, log_sigma: bool = False
) -> np.ndarray:
    """Negative log posterior (up to a constant) at ``eta`` of shape (P, 2) or (P, S, 2).

    ``log_sigma=True`` adds each level's ``log sigma`` (its residual SD at the prediction), the
    term the MAP fit can drop but a likelihood over the residual error itself needs
    (:mod:`vanco_pk.population`).
    """
    eta = np.asarray(eta, dtype=np.float64)
    squeeze = eta.ndim == 2
    eta = eta[:, None] if squeeze else eta
    upto = history.time_h.shape[1] - 1
    drawn: list[tuple[np.ndarray, np.ndarray]] = []
    if upto:
        pred, peaks, _, _ = _simulate(history, eta, model, upto)
        drawn.append((history.level[:, None, 1:], pred))
        if history.peak is not None:
            drawn.append((history.peak[:, None, 1:], np.nan_to_num(peaks)))
        nll = _level_nll(*drawn[0], model).sum(axis=-1)
        for obs, at in drawn[1:]:
            nll = nll + _level_nll(obs, at, model).sum(axis=-1)
    else:
        nll = np.zeros(eta.shape[:2])
    prior = 0.5 * (eta[..., 0] ** 2 / model.omega2_cl + eta[..., 1] ** 2 / model.omega2_v1)
    out = nll + prior
    if log_sigma:
        for obs, at in drawn:
            var = (model.prop_error * at) ** 2 + model.add_error_mg_l**2
            out = out + np.where(np.isfinite(obs), 0.5 * np.log(var), 0.0).sum(axis=-1)
    return out[:, 0] if squeeze else out


def map_hessian(
    history: DoseHistory, eta: np.ndarray, model: GotiModel = GOTI_2018, h: float = _H
) -> np.ndarray:
    """The Hessian (P, 2, 2) of :func:`map_objective` at ``eta`` (P, 2), by central differences
    of step ``h`` in log-parameter units (the Laplace approximation's curvature at the MAP)."""
    stencil = np.array([[0, 0], [h, 0], [-h, 0], [0, h], [0, -h], [h, h], [-h, -h]])
    f = map_objective(history, np.asarray(eta, np.float64)[:, None, :] + stencil[None], model)
    f0 = f[:, 0]
    h11 = (f[:, 1] - 2 * f0 + f[:, 2]) / h**2
    h22 = (f[:, 3] - 2 * f0 + f[:, 4]) / h**2
    h12 = (f[:, 5] - f[:, 1] - f[:, 3] + 2 * f0 - f[:, 2] - f[:, 4] + f[:, 6]) / (2 * h**2)
    return np.stack([np.stack([h11, h12], -1), np.stack([h12, h22], -1)], -2)


@dataclass(frozen=True)
class MAPResult:
    """MAP estimates of ``P`` patients: ``eta`` (P, 2) log-deviations of CL and V1 from typical,
    ``cl`` (L/h, at the last decision's creatinine) and ``v1`` (L), the objective, the Newton
    iterations used and whether the step fell below the tolerance."""

    eta: np.ndarray
    cl: np.ndarray
    v1: np.ndarray
    objective: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray


def map_estimate(
    history: DoseHistory,
    model: GotiModel = GOTI_2018,
    eta0: np.ndarray | None = None,
    max_iter: int = 50,
    tol: float = 1e-7,
    grid: int = 7,
) -> MAPResult:
    """MAP estimate of each patient's CL and V1 given the doses and measured troughs (and peaks).

    Parameters
    ----------
    history : DoseHistory
        Doses, creatinine and levels up to the current decision; a patient without a level
        gets the population prediction (eta = 0).
    model : GotiModel
        Prior and residual error (the published Goti 2018 model by default).
    eta0 : array (P, 2), optional
        Starting point (the previous estimate, when refitting after a new level).
    max_iter, tol : Newton iterations and the step size (log units) that counts as converged.
    grid : int
        Newton starts from the best of ``eta0`` and a ``grid x grid`` lattice over +-2.5 SD
        (0: from ``eta0`` only). Troughs can be explained by a small or a large V1, so the
        posterior may have two modes; the lattice keeps Newton out of the wrong one.
    """
    n = history.n_patients
    limit = _ETA_LIMIT_SD * np.sqrt([model.omega2_cl, model.omega2_v1])
    eta = np.zeros((n, 2)) if eta0 is None else np.clip(np.asarray(eta0, np.float64).copy(), -limit, limit)
    iterations = np.zeros(n, dtype=np.int64)
    # Without a level the posterior is the prior, whose mode is eta = 0.
    done = ~np.any(np.isfinite(history.level[:, 1:]), axis=1)
    if history.peak is not None:
        done &= ~np.any(np.isfinite(history.peak[:, 1:]), axis=1)
    eta[done] = 0.0
    active = np.flatnonzero(~done)
    if grid > 0 and active.size:
        axis = np.linspace(-2.5, 2.5, grid)
        lattice = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
        lattice = lattice * np.sqrt([model.omega2_cl, model.omega2_v1])
        starts = np.concatenate(
            [eta[active, None, :], np.broadcast_to(lattice, (active.size, *lattice.shape))], 1
        )
        f = map_objective(_take(history, active), starts, model)
        eta[active] = starts[np.arange(active.size), np.argmin(f, axis=1)]
    h = _H
    stencil = np.array([[0, 0], [h, 0], [-h, 0], [0, h], [0, -h], [h, h], [-h, -h]])
    for _ in range(max_iter):
        active = np.flatnonzero(~done)
        if active.size == 0:
            break
        sub = _take(history, active)
        x = eta[active]
        f = map_objective(sub, x[:, None, :] + stencil[None], model)
        f0 = f[:, 0]
        g = np.stack([(f[:, 1] - f[:, 2]) / (2 * h), (f[:, 3] - f[:, 4]) / (2 * h)], axis=1)
        h11 = (f[:, 1] - 2 * f0 + f[:, 2]) / h**2
        h22 = (f[:, 3] - 2 * f0 + f[:, 4]) / h**2
        h12 = (f[:, 5] - f[:, 1] - f[:, 3] + 2 * f0 - f[:, 2] - f[:, 4] + f[:, 6]) / (2 * h**2)
        # Shift the Hessian to positive definite (Levenberg) where the objective is not convex.
        lam_min = 0.5 * (h11 + h22) - np.sqrt(0.25 * (h11 - h22) ** 2 + h12**2)
        shift = np.maximum(0.0, 1e-3 - lam_min)
        a, b, d = h11 + shift, h12, h22 + shift
        det = a * d - b * b
        step = -np.stack([(d * g[:, 0] - b * g[:, 1]) / det, (a * g[:, 1] - b * g[:, 0]) / det], axis=1)
        norm = np.linalg.norm(step, axis=1)
        step *= np.minimum(1.0, _MAX_STEP / np.maximum(norm, 1e-300))[:, None]
        trial = np.clip(x[:, None, :] + _ALPHAS[None, :, None] * step[:, None, :], -limit, limit)
        ft = map_objective(sub, trial, model)
        best = np.argmin(np.where(np.isfinite(ft), ft, np.inf), axis=1)
        new = trial[np.arange(active.size), best]
        moved = np.max(np.abs(new - x), axis=1)
        eta[active] = new
        iterations[active] += 1
        done[active] = moved < tol
    final = map_objective(history, eta, model)
    cl_typ, v1_typ = history.typical(model)
    return MAPResult(
        eta=eta,
        cl=cl_typ[:, -1] * np.exp(eta[:, 0]),
        v1=v1_typ * np.exp(eta[:, 1]),
        objective=final,
        iterations=iterations,
        converged=done,
    )


def predicted_state(
    history: DoseHistory, eta: np.ndarray, model: GotiModel = GOTI_2018
) -> tuple[PKParams, np.ndarray, np.ndarray]:
    """Individual parameters at the last decision and the drug amounts (central, peripheral) then."""
    upto = history.time_h.shape[1] - 1
    eta = np.asarray(eta, dtype=np.float64)
    if upto:
        _, _, a1, a2 = _simulate(history, eta[:, None], model, upto)
        a1, a2 = a1[:, 0], a2[:, 0]
    else:
        a1 = a2 = np.zeros(history.n_patients)
    cl_typ, v1_typ = history.typical(model)
    n = history.n_patients
    params = PKParams(
        cl_typ[:, -1] * np.exp(eta[:, 0]),
        v1_typ * np.exp(eta[:, 1]),
        np.full(n, model.v2),
        np.full(n, model.q),
    )
    return params, a1, a2


def trailing_auc(
    history: DoseHistory, eta: np.ndarray, model: GotiModel = GOTI_2018, window_h: float = 24.0
) -> np.ndarray:
    """AUC (mg*h/L) over the ``window_h`` hours before the last decision, from the doses given.

    The patients' individual parameters are ``eta`` (P, 2) on top of the typical values of
    each interval (CL from that interval's creatinine), exactly as in the MAP likelihood;
    time before the first decision counts as drug-free, so early in a stay this is the AUC
    of a shorter exposure (as the simulator's ``info["auc24"]`` is).
    """
    eta = np.asarray(eta, dtype=np.float64)
    n = history.n_patients
    upto = history.time_h.shape[1] - 1
    total = np.zeros(n)
    if upto == 0:
        return total
    cl_typ, v1_typ = history.typical(model)
    v1 = v1_typ * np.exp(eta[:, 1])
    v2 = np.full(n, model.v2)
    q = np.full(n, model.q)
    a1 = np.zeros(n)
    a2 = np.zeros(n)
    start = history.time_h[:, -1] - window_h
    for k in range(upto):
        params = PKParams(cl_typ[:, k] * np.exp(eta[:, 0]), v1, v2, q)
        dose = history.dose_mg[:, k]
        t_inf = infusion_duration_h(dose)
        gap = history.time_h[:, k + 1] - history.time_h[:, k]
        # The part of this interval inside the window: from `skip` hours after its start to its end.
        skip = np.clip(start - history.time_h[:, k], 0.0, gap)
        out = propagate(params, a1, a2, dose, t_inf, gap)
        if np.any(skip < gap):
            before = interval_auc(params, a1, a2, dose, t_inf, skip)
            total = total + np.where(skip < gap, out.auc - before, 0.0)
        a1, a2 = out.central_mg, out.peripheral_mg
    return total


def forward_auc(
    params: PKParams,
    central_mg: np.ndarray,
    peripheral_mg: np.ndarray,
    doses_mg: np.ndarray,
    interval_h: float,
    horizon_h: float = 24.0,
) -> np.ndarray:
    """AUC (mg*h/L) over the next ``horizon_h`` of each candidate dose repeated every ``interval_h``.

    ``params``, ``central_mg`` and ``peripheral_mg`` have shape (P,); ``doses_mg`` shape (D,);
    the result has shape (P, D). Clearance is held at its current value over the horizon.
    """
    doses = np.asarray(doses_mg, dtype=np.float64)[None, :]
    shape = (len(np.atleast_1d(central_mg)), doses.shape[1])
    p = PKParams(
        *(np.broadcast_to(np.asarray(v)[:, None], shape) for v in (params.cl, params.v1, params.v2, params.q))
    )
    a1 = np.broadcast_to(np.asarray(central_mg, np.float64)[:, None], shape)
    a2 = np.broadcast_to(np.asarray(peripheral_mg, np.float64)[:, None], shape)
    dose = np.broadcast_to(doses, shape)
    t_inf = np.minimum(infusion_duration_h(dose), interval_h)
    total = np.zeros(shape)
    start = 0.0
    while start < horizon_h - 1e-9:
        length = min(interval_h, horizon_h - start)
        if length < interval_h:
            total = total + interval_auc(p, a1, a2, dose, t_inf, length)
            break
        out = propagate(p, a1, a2, dose, t_inf, interval_h)
        total = total + out.auc
        a1, a2 = out.central_mg, out.peripheral_mg
        start += interval_h
    return total


def auc_target_dose(
    params: PKParams,
    central_mg: np.ndarray,
    peripheral_mg: np.ndarray,
    interval_h: float,
    target_auc: float = AUC24_GOAL,
    horizon_h: float = 24.0,
    grid: np.ndarray = DOSE_GRID_MG,
) -> np.ndarray:
    """Index into ``grid`` of the dose whose predicted AUC over the next ``horizon_h`` is nearest
    ``target_auc``, the dose being repeated at every decision of the horizon (ties: lower dose)."""
    auc = forward_auc(params, central_mg, peripheral_mg, grid, interval_h, horizon_h)
    return np.argmin(np.abs(auc - target_auc), axis=1)


def _take(history: DoseHistory, index: np.ndarray) -> DoseHistory:
    return DoseHistory(
        *(None if (v := getattr(history, f)) is None else v[index] for f in history.__dataclass_fields__)
    )


def history_from_policy(
    covariates: Mapping[str, np.ndarray], memory: Mapping[str, np.ndarray]
) -> DoseHistory:
    """A :class:`DoseHistory` from a policy's covariates and :meth:`DosingPolicy.history`."""
    obs = memory["observations"]
    return DoseHistory(
        weight_kg=covariates["weight_kg"],
        age=covariates["age"],
        sex=covariates["sex"],
        dialysis=covariates["dialysis"],
        time_h=memory["time_h"],
        dose_mg=memory["dose_mg"],
        creatinine=obs[..., 1],
        level=memory["level"],
        peak=memory.get("peak"),
        peak_offset_h=memory.get("peak_offset_h"),
    )
