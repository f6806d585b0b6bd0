"""Two-compartment vancomycin pharmacokinetics (Goti et al. 2018), solved in closed form.

The model is linear, so every quantity the simulator and the dosing policies need (the
concentration at any time, the AUC over any window, the steady state of a regimen, the
state at the end of an interval) has an exact solution in exponentials. Everything here is
vectorised over patients: a parameter of shape ``(P,)`` describes ``P`` patients at once.
The model itself (parameters, covariates, residual error) is in :mod:`vanco_pk.pk_model`
and re-exported here, so ``vanco_pk.pk`` is the one module to import.

Amounts are in mg, volumes in L, clearances in L/h, times in h, concentrations in mg/L.

References
----------
Goti V et al. Ther Drug Monit 2018;40(2):212-221 (the model, Table 2).
Gibaldi M, Perrier D. Pharmacokinetics, 2nd ed. Marcel Dekker 1982, ch. 2 and 3
(two-compartment infusion solution, superposition, steady state).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vanco_pk.pk_model import (
    ADDITIVE_ERROR_MG_L,
    GOTI_2018,
    MIN_INFUSION_H,
    OMEGA2,
    PROPORTIONAL_ERROR,
    GotiModel,
    PKParams,
    cockcroft_gault,
    individual_parameters,
    infusion_duration_h,
    measured_level,
    typical_parameters,
)

__all__ = [
    "ADDITIVE_ERROR_MG_L",
    "GOTI_2018",
    "MIN_INFUSION_H",
    "OMEGA2",
    "PROPORTIONAL_ERROR",
    "GotiModel",
    "IntervalExposure",
    "PKParams",
    "auc24",
    "cockcroft_gault",
    "concentrations",
    "cumulative_auc",
    "individual_parameters",
    "infusion_duration_h",
    "interval_auc",
    "measured_level",
    "propagate",
    "steady_state_auc24",
    "steady_state_concentrations",
    "typical_parameters",
]


def steady_state_auc24(daily_dose_mg: np.ndarray | float, cl: np.ndarray | float) -> np.ndarray:
    """AUC over 24 h at steady state, mg*h/L: the daily dose divided by clearance."""
    return np.asarray(daily_dose_mg, dtype=np.float64) / np.asarray(cl, dtype=np.float64)


# --- superposition of infusions -------------------------------------------------------------


def _regimen(params, dose_times_h, doses_mg, infusion_h, t_eval_h):
    times = np.asarray(dose_times_h, dtype=np.float64)
    doses = np.asarray(doses_mg, dtype=np.float64)
    t_inf = np.asarray(infusion_h, dtype=np.float64)
    t_eval = np.asarray(t_eval_h, dtype=np.float64)
    for name, arr in (("dose_times_h", times), ("doses_mg", doses), ("t_eval_h", t_eval)):
        if arr.ndim == 0:
            raise ValueError(f"{name} must have at least one dimension (doses or times on the last axis)")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
    if np.any(doses < 0):
        raise ValueError("doses_mg must be >= 0 mg")
    if not np.all(np.isfinite(t_inf) & (t_inf > 0)):
        raise ValueError("infusion_h must be finite and > 0 h for every dose")
    try:
        np.broadcast_shapes(times.shape, doses.shape, t_inf.shape)
    except ValueError:
        raise ValueError(
            f"dose_times_h {times.shape}, doses_mg {doses.shape} and infusion_h {t_inf.shape} "
            "must broadcast together (doses on the last axis)"
        ) from None
    _, k21, alpha, beta = params.modes()
    lam = np.stack([alpha, beta], axis=-1)[..., None, None, :]  # (..., 1, 1, mode)
    other = np.stack([beta, alpha], axis=-1)[..., None, None, :]
    # Share of a unit central input that decays with each mode (central amount, zero start).
    weight = (k21[..., None, None, None] - lam) / (other - lam)
    delta = t_eval[..., None, :, None] - times[..., :, None, None]  # (..., dose, time, 1)
    rate = (doses / t_inf)[..., :, None, None]
    t_inf = np.broadcast_to(t_inf, np.broadcast_shapes(t_inf.shape, doses.shape))[..., :, None, None]
    return lam, weight, delta, rate, t_inf


def concentrations(
    params: PKParams,
    dose_times_h: np.ndarray,
    doses_mg: np.ndarray,
    infusion_h: np.ndarray | float,
    t_eval_h: np.ndarray,
) -> np.ndarray:
    """Central concentrations (mg/L) of a regimen of IV infusions, by superposition.

    Parameters
    ----------
    params : PKParams
        Parameters of shape ``B_p`` (scalar for one patient, ``(P,)`` for ``P`` patients).
    dose_times_h, doses_mg : array of shape ``(..., D)``
        Start time and amount of each infusion; leading axes broadcast against ``B_p``.
    infusion_h : float or array broadcastable to ``doses_mg``
        Duration of each infusion, > 0 h (see :func:`infusion_duration_h`).
    t_eval_h : array of shape ``(..., T)``
        Times at which to evaluate; leading axes broadcast against ``B_p``.

    Returns
    -------
    numpy.ndarray of shape ``broadcast(B_p, dose batch, time batch) + (T,)``
        A patient starts drug-free; doses before ``t`` contribute, later ones do not.
    """
    lam, weight, delta, rate, t_inf = _regimen(params, dose_times_h, doses_mg, infusion_h, t_eval_h)
    after_end = np.maximum(delta - t_inf, 0.0)
    infused = np.clip(delta, 0.0, t_inf)
    # Each mode contributes weight/lam * e^{-lam (delta - T)+} * (1 - e^{-lam min(delta, T)+}).
    central = (weight / lam * np.exp(-lam * after_end) * -np.expm1(-lam * infused)).sum(-1)
    return (rate[..., 0] * central).sum(-2) / params.v1[..., None]


def cumulative_auc(
    params: PKParams,
    dose_times_h: np.ndarray,
    doses_mg: np.ndarray,
    infusion_h: np.ndarray | float,
    t_eval_h: np.ndarray,
) -> np.ndarray:
    """Area under the central concentration curve from time 0 (drug-free) to each ``t_eval_h``.

    Same shapes as :func:`concentrations`; mg*h/L.
    """
    lam, weight, delta, rate, t_inf = _regimen(params, dose_times_h, doses_mg, infusion_h, t_eval_h)

    def ramp(x):  # integral over [0, x] of (1 - e^{-lam u}), zero for x <= 0
        x = np.maximum(x, 0.0)
        return (lam * x + np.expm1(-lam * x)) / lam

    central = (weight / lam * (ramp(delta) - ramp(delta - t_inf))).sum(-1)
    return (rate[..., 0] * central).sum(-2) / params.v1[..., None]


def auc24(
    params: PKParams,
    dose_times_h: np.ndarray,
    doses_mg: np.ndarray,
    infusion_h: np.ndarray | float,
    t_end_h: np.ndarray,
) -> np.ndarray:
    """AUC over the 24 h ending at each ``t_end_h`` (mg*h/L); same shapes as :func:`concentrations`."""
    t_end = np.asarray(t_end_h, dtype=np.float64)
    end = cumulative_auc(params, dose_times_h, doses_mg, infusion_h, t_end)
    return end - cumulative_auc(params, dose_times_h, doses_mg, infusion_h, t_end - 24.0)


def steady_state_concentrations(
    params: PKParams,
    dose_mg: np.ndarray | float,
    infusion_h: np.ndarray | float,
    tau_h: np.ndarray | float,
    t_after_dose_h: np.ndarray,
) -> np.ndarray:
    """Concentrations (mg/L) at steady state of ``dose_mg`` every ``tau_h`` h.

    ``t_after_dose_h`` (shape ``(..., T)``, each in [0, tau]) counts from the start of a
    dose; ``t = tau`` is the steady-state trough. ``dose_mg``, ``infusion_h`` (<= tau) and
    ``tau_h`` broadcast against the parameters. The sum of the infinite series of past doses
    is taken in closed form, so this is exact however slowly the patient accumulates.
    """
    t = np.asarray(t_after_dose_h, dtype=np.float64)[..., None]  # (..., T, mode)
    tau = np.asarray(tau_h, dtype=np.float64)[..., None, None]
    t_inf = np.asarray(infusion_h, dtype=np.float64)[..., None, None]
    if np.any(t_inf > tau) or np.any(~(t_inf > 0)) or np.any((t < 0) | (t > tau)):
        raise ValueError("need 0 < infusion_h <= tau_h and 0 <= t_after_dose_h <= tau_h")
    _, k21, alpha, beta = params.modes()
    lam = np.stack([alpha, beta], axis=-1)[..., None, :]
    other = np.stack([beta, alpha], axis=-1)[..., None, :]
    weight = (k21[..., None, None] - lam) / (other - lam)
    # The current dose (possibly still infusing) plus all complete earlier doses.
    current = np.exp(-lam * np.maximum(t - t_inf, 0.0)) * -np.expm1(-lam * np.minimum(t, t_inf))
    earlier = -np.expm1(-lam * t_inf) * np.exp(-lam * (t - t_inf + tau)) / -np.expm1(-lam * tau)
    rate = np.asarray(dose_mg, dtype=np.float64)[..., None, None] / t_inf
    return (rate * weight / lam * (current + earlier)).sum(-1) / params.v1[..., None]


# --- one decision interval, from an arbitrary state -------------------------------------------


def _project(k12, k21, lam, other, a1, a2):
    """Components of the state (a1, a2) along the mode with rate ``lam`` (the other is ``other``)."""
    denom = other - lam
    return ((k21 - lam) * a1 + k21 * a2) / denom, (k12 * a1 + (other - k21) * a2) / denom


@dataclass(frozen=True)
class IntervalExposure:
    """Result of :func:`propagate` over one interval (arrays over patients).

    Attributes
    ----------
    central_mg, peripheral_mg : amounts at the end of the interval
    auc : area under the concentration curve over the interval, mg*h/L
    peak : concentration at the end of the infusion, or at the start if that is higher
        (a zero dose), mg/L
    trough : concentration at the end of the interval, mg/L
    """

    central_mg: np.ndarray
    peripheral_mg: np.ndarray
    auc: np.ndarray
    peak: np.ndarray
    trough: np.ndarray


def _free_decay(k12, k21, alpha, beta, a1, a2, s):
    """Central and peripheral amount, and the central-amount integral, after ``s`` h without input."""
    pa1, pa2 = _project(k12, k21, alpha, beta, a1, a2)
    pb1, pb2 = _project(k12, k21, beta, alpha, a1, a2)
    ea, eb = np.exp(-alpha * s), np.exp(-beta * s)
    integral = pa1 * -np.expm1(-alpha * s) / alpha + pb1 * -np.expm1(-beta * s) / beta
    return pa1 * ea + pb1 * eb, pa2 * ea + pb2 * eb, integral


def _infusing(k12, k21, alpha, beta, a1, a2, rate, s):
    """As :func:`_free_decay` while infusing at ``rate`` mg/h into the central compartment."""
    c1, c2, integral = _free_decay(k12, k21, alpha, beta, a1, a2, s)
    for lam, other in ((alpha, beta), (beta, alpha)):
        q1, q2 = _project(k12, k21, lam, other, rate, 0.0)
        grow = -np.expm1(-lam * s) / lam
        c1 = c1 + q1 * grow
        c2 = c2 + q2 * grow
        integral = integral + q1 * (lam * s + np.expm1(-lam * s)) / (lam * lam)
    return c1, c2, integral


def propagate(
    params: PKParams,
    central_mg: np.ndarray,
    peripheral_mg: np.ndarray,
    dose_mg: np.ndarray,
    infusion_h: np.ndarray,
    interval_h: float,
) -> IntervalExposure:
    """Advance the compartments over one interval that starts with an infusion of ``dose_mg``.

    The infusion lasts ``infusion_h`` (<= ``interval_h``); all arrays broadcast over patients.
    """
    k12, k21, alpha, beta = params.modes()
    t_inf = np.asarray(infusion_h, dtype=np.float64)
    if np.any(t_inf > interval_h) or np.any(~(t_inf > 0)):
        raise ValueError(f"infusion_h must be in (0, interval_h={interval_h}] h")
    rate = np.asarray(dose_mg, dtype=np.float64) / t_inf
    e1, e2, auc_inf = _infusing(k12, k21, alpha, beta, central_mg, peripheral_mg, rate, t_inf)
    f1, f2, auc_free = _free_decay(k12, k21, alpha, beta, e1, e2, interval_h - t_inf)
    v1 = params.v1
    return IntervalExposure(
        central_mg=f1,
        peripheral_mg=f2,
        auc=(auc_inf + auc_free) / v1,
        peak=np.maximum(e1, central_mg) / v1,
        trough=f1 / v1,
    )


def interval_auc(
    params: PKParams,
    central_mg: np.ndarray,
    peripheral_mg: np.ndarray,
    dose_mg: np.ndarray,
    infusion_h: np.ndarray,
    until_h: np.ndarray | float,
) -> np.ndarray:
    """AUC (mg*h/L) over ``[0, until_h]`` of an interval that starts as in :func:`propagate`."""
    k12, k21, alpha, beta = params.modes()
    t_inf = np.asarray(infusion_h, dtype=np.float64)
    until = np.asarray(until_h, dtype=np.float64)
    rate = np.asarray(dose_mg, dtype=np.float64) / t_inf
    during = np.minimum(until, t_inf)
    e1, e2, auc_inf = _infusing(k12, k21, alpha, beta, central_mg, peripheral_mg, rate, during)
    _, _, auc_free = _free_decay(k12, k21, alpha, beta, e1, e2, np.maximum(until - t_inf, 0.0))
    return (auc_inf + auc_free) / params.v1
