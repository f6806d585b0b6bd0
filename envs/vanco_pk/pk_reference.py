"""The same two-compartment model integrated numerically with ``scipy.integrate.solve_ivp``.

This is the reference the closed-form solution in :mod:`vanco_pk.pk` is checked against,
and the baseline of the simulator speed benchmark. It integrates piecewise between dose
events (infusion starts and ends), where the right-hand side is discontinuous, and carries
the running AUC as a third state so that both concentrations and AUCs are compared.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.integrate import solve_ivp

from vanco_pk.pk import PKParams

__all__ = ["ode_concentrations", "ode_propagate"]

RTOL = 1e-10
ATOL = 1e-10


def _rhs(cl, v1, v2, q, rate):
    k10, k12, k21 = cl / v1, q / v1, q / v2

    def rhs(_t, y):
        a1, a2 = y[0::3], y[1::3]
        out = np.empty_like(y)
        out[0::3] = rate - (k10 + k12) * a1 + k21 * a2
        out[1::3] = k12 * a1 - k21 * a2
        out[2::3] = a1 / v1
        return out

    return rhs


def _integrate(params: PKParams, y0: np.ndarray, rate: np.ndarray, t0: float, t1: float, t_eval=None):
    if t1 <= t0:
        return y0[:, None] if t_eval is None else np.repeat(y0[:, None], len(t_eval), axis=1)
    rhs = _rhs(params.cl, params.v1, params.v2, params.q, rate)
    sol = solve_ivp(rhs, (t0, t1), y0, method="DOP853", rtol=RTOL, atol=ATOL, t_eval=t_eval)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed on [{t0}, {t1}] h: {sol.message}")
    return sol.y


def ode_concentrations(
    params: PKParams,
    dose_times_h: np.ndarray,
    doses_mg: np.ndarray,
    infusion_h: np.ndarray | float,
    t_eval_h: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Concentrations and cumulative AUC of one patient's regimen by numerical integration.

    Parameters are those of :func:`vanco_pk.pk.concentrations` for a single patient
    (scalar ``params``, 1-D regimen and times).

    Returns
    -------
    (concentration mg/L, cumulative AUC from 0 in mg*h/L), each of shape ``(T,)``.
    """
    if params.shape != ():
        raise ValueError(f"ode_concentrations takes one patient (scalar PKParams), got shape {params.shape}")
    times = np.asarray(dose_times_h, dtype=np.float64)
    doses = np.asarray(doses_mg, dtype=np.float64)
    t_inf = np.broadcast_to(np.asarray(infusion_h, dtype=np.float64), doses.shape)
    t_eval = np.asarray(t_eval_h, dtype=np.float64)
    if times.ndim != 1 or doses.shape != times.shape or t_eval.ndim != 1:
        raise ValueError("ode_concentrations takes 1-D dose_times_h, doses_mg (same length) and t_eval_h")
    if np.any(t_eval < 0):
        raise ValueError("t_eval_h must be >= 0 h (the patient is drug-free before time 0)")
    events = np.unique(np.concatenate([[0.0], times, times + t_inf, [t_eval.max(initial=0.0)]]))
    events = events[events >= 0]
    out = np.zeros((3, len(t_eval)))
    y = np.zeros(3)
    for t0, t1 in itertools.pairwise(events):
        running = (times <= t0) & (times + t_inf >= t1)
        rate = np.sum(doses[running] / t_inf[running])
        inside = (t_eval > t0) & (t_eval <= t1)
        # Evaluate inside the piece, then integrate to its end to carry the state on.
        if np.any(inside):
            out[:, inside] = _integrate(params, y, rate, t0, t1, t_eval=t_eval[inside])
        y = _integrate(params, y, rate, t0, t1)[:, -1]
    return out[0] / params.v1, out[2]


def ode_propagate(
    params: PKParams,
    central_mg: np.ndarray,
    peripheral_mg: np.ndarray,
    dose_mg: np.ndarray,
    infusion_h: np.ndarray,
    interval_h: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One interval of :func:`vanco_pk.pk.propagate` for ``P`` patients, numerically.

    All patients are stacked into one ODE system per phase (infusion, then decay): the
    fastest way to use ``solve_ivp`` on many patients, so it is a fair baseline. Patients
    must share one infusion duration per call (the benchmark gives them the same dose).

    Returns
    -------
    (central mg, peripheral mg, interval AUC mg*h/L, trough mg/L), each of shape ``(P,)``.
    """
    t_inf = np.unique(np.asarray(infusion_h, dtype=np.float64))
    if t_inf.size != 1:
        raise ValueError("ode_propagate needs one infusion duration shared by all patients")
    shape = params.shape
    y = np.zeros((*shape, 3))
    y[..., 0], y[..., 1] = central_mg, peripheral_mg
    y = y.ravel()
    rate = np.broadcast_to(np.asarray(dose_mg, dtype=np.float64) / t_inf[0], shape).ravel()
    flat = PKParams(*(np.broadcast_to(getattr(params, n), shape).ravel() for n in ("cl", "v1", "v2", "q")))
    y = _integrate(flat, y, rate, 0.0, float(t_inf[0]))[:, -1]
    y = _integrate(flat, y, np.zeros_like(rate), float(t_inf[0]), float(interval_h))[:, -1]
    a1, a2, auc = (y[k::3].reshape(shape) for k in range(3))
    return a1, a2, auc, a1 / np.broadcast_to(params.v1, shape)
