"""Two-compartment vancomycin pharmacokinetics (Goti et al. 2018), solved in closed form.

The model is linear, so every quantity the simulator and the dosing policies need (the
concentration at any time, the AUC over any window, the state at the end of an interval)
has an exact solution in exponentials. Everything here is vectorised over patients: a
parameter of shape ``(P,)`` describes ``P`` patients at once.

Amounts are in mg, volumes in L, clearances in L/h, times in h, concentrations in mg/L.

References
----------
Goti V, Chaturvedula A, Fossler MJ, Mok S, Jacob JT. Hospitalized patients with and without
hemodialysis have markedly different vancomycin pharmacokinetics: a population
pharmacokinetic model-based analysis. Ther Drug Monit 2018;40(2):212-221 (Table 2).
Cockcroft DW, Gault MH. Prediction of creatinine clearance from serum creatinine.
Nephron 1976;16:31-41.
Gibaldi M, Perrier D. Pharmacokinetics, 2nd ed. Marcel Dekker 1982, ch. 2 (two-compartment
infusion solution).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from vanco_pk.targets import MAX_INFUSION_RATE_MG_PER_MIN

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
    "typical_parameters",
]


@dataclass(frozen=True)
class GotiModel:
    """Population model of Goti et al. 2018 (Ther Drug Monit 40:212), Table 2.

    ``CL = cl * (CrCL / crcl_ref) ** crcl_exponent * dialysis_cl_factor ** DIAL``,
    ``V1 = v1 * (WT / weight_ref) * dialysis_v1_factor ** DIAL``, ``V2 = v2``, ``Q = q``;
    between-patient variability is log-normal with variances ``omega2_*`` (no variability
    on Q); measured levels carry a combined residual error (``prop_error`` is the SD of the
    proportional part, ``add_error_mg_l`` the SD of the additive part). CrCL is the
    Cockcroft-Gault estimate with total body weight, truncated at ``crcl_cap`` mL/min as in
    the original analysis.
    """

    cl: float = 4.5
    v1: float = 58.4
    v2: float = 38.4
    q: float = 6.5
    crcl_ref: float = 120.0
    crcl_exponent: float = 0.8
    weight_ref: float = 70.0
    dialysis_cl_factor: float = 0.7
    dialysis_v1_factor: float = 0.5
    crcl_cap: float = 150.0
    omega2_cl: float = 0.1584
    omega2_v1: float = 0.6659
    omega2_v2: float = 0.326
    prop_error: float = 0.227
    add_error_mg_l: float = 3.4

    def __post_init__(self) -> None:
        # Variances and error SDs may be 0 (a deterministic model); the rest must be positive.
        may_be_zero = ("omega2_cl", "omega2_v1", "omega2_v2", "prop_error", "add_error_mg_l")
        for f in fields(self):
            value = getattr(self, f.name)
            low_ok = value >= 0 if f.name in may_be_zero else value > 0
            if not (np.isfinite(value) and low_ok):
                raise ValueError(
                    f"GotiModel.{f.name} = {value!r} must be finite and > 0 (>= 0 for variances and errors)"
                )

    @property
    def omega(self) -> np.ndarray:
        """Between-patient standard deviations of log CL, log V1, log V2."""
        return np.sqrt([self.omega2_cl, self.omega2_v1, self.omega2_v2])


#: The published model; policies assume it, the simulator may draw patients from another.
GOTI_2018 = GotiModel()
#: Between-patient variances of log CL, log V1, log V2 (Goti 2018).
OMEGA2: dict[str, float] = {"cl": GOTI_2018.omega2_cl, "v1": GOTI_2018.omega2_v1, "v2": GOTI_2018.omega2_v2}
#: Residual error of a measured level: SD of the proportional part and of the additive part (mg/L).
PROPORTIONAL_ERROR = GOTI_2018.prop_error
ADDITIVE_ERROR_MG_L = GOTI_2018.add_error_mg_l
#: Shortest infusion (h); longer doses run at the 10 mg/min limit.
MIN_INFUSION_H = 1.0


def cockcroft_gault(
    age: np.ndarray | float,
    weight_kg: np.ndarray | float,
    sex: np.ndarray | float,
    creatinine_mg_dl: np.ndarray | float,
    cap: float | None = GOTI_2018.crcl_cap,
) -> np.ndarray:
    """Cockcroft-Gault creatinine clearance in mL/min (total body weight, x0.85 if female).

    ``sex`` is 0 for male, 1 for female. ``cap`` truncates the result (Goti 2018 used 150
    mL/min); ``None`` leaves it uncapped.
    """
    age = np.asarray(age, dtype=np.float64)
    weight = np.asarray(weight_kg, dtype=np.float64)
    scr = np.asarray(creatinine_mg_dl, dtype=np.float64)
    if np.any(~(scr > 0)):
        raise ValueError("cockcroft_gault: creatinine_mg_dl must be > 0 mg/dL (found a value <= 0 or NaN)")
    crcl = (140.0 - age) * weight / (72.0 * scr) * np.where(np.asarray(sex) == 1, 0.85, 1.0)
    crcl = np.maximum(crcl, 0.0)
    return crcl if cap is None else np.minimum(crcl, cap)


@dataclass(frozen=True)
class PKParams:
    """Individual two-compartment parameters, one entry per patient (any broadcastable shape).

    Attributes
    ----------
    cl : clearance, L/h
    v1 : central volume, L
    v2 : peripheral volume, L
    q : inter-compartmental clearance, L/h
    """

    cl: np.ndarray
    v1: np.ndarray
    v2: np.ndarray
    q: np.ndarray = field(default_factory=lambda: np.asarray(GOTI_2018.q))

    def __post_init__(self) -> None:
        for f in fields(self):
            value = np.asarray(getattr(self, f.name), dtype=np.float64)
            if not np.all(np.isfinite(value) & (value > 0)):
                bad = np.flatnonzero(~(np.isfinite(value) & (value > 0)).ravel())[:5]
                raise ValueError(
                    f"PKParams.{f.name} must be finite and > 0; bad value(s) at flat index {bad.tolist()}"
                )
            object.__setattr__(self, f.name, value)

    @property
    def shape(self) -> tuple[int, ...]:
        return np.broadcast_shapes(self.cl.shape, self.v1.shape, self.v2.shape, self.q.shape)

    def __getitem__(self, index) -> PKParams:
        shape = self.shape
        return PKParams(*(np.broadcast_to(getattr(self, f.name), shape)[index] for f in fields(self)))

    def modes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Micro-constants ``k12, k21`` and the disposition rates ``alpha > beta`` (1/h)."""
        k10 = self.cl / self.v1
        k12 = self.q / self.v1
        k21 = self.q / self.v2
        total = k10 + k12 + k21
        alpha = 0.5 * (total + np.sqrt(total * total - 4.0 * k10 * k21))
        beta = k10 * k21 / alpha  # avoids the cancellation of (total - sqrt(...)) / 2
        return k12, k21, alpha, beta


def typical_parameters(
    weight_kg: np.ndarray | float,
    crcl_ml_min: np.ndarray | float,
    dialysis: np.ndarray | float,
    model: GotiModel = GOTI_2018,
) -> PKParams:
    """Population-typical parameters for the given covariates (no between-patient deviation)."""
    weight = np.asarray(weight_kg, dtype=np.float64)
    crcl = np.minimum(np.asarray(crcl_ml_min, dtype=np.float64), model.crcl_cap)
    dial = np.asarray(dialysis, dtype=np.float64)
    if np.any(~(crcl > 0)):
        raise ValueError("typical_parameters: crcl_ml_min must be > 0 mL/min")
    cl = model.cl * (crcl / model.crcl_ref) ** model.crcl_exponent * model.dialysis_cl_factor**dial
    v1 = model.v1 * (weight / model.weight_ref) * model.dialysis_v1_factor**dial
    shape = np.broadcast_shapes(cl.shape, v1.shape)
    return PKParams(cl, v1, np.full(shape, model.v2), np.full(shape, model.q))


def individual_parameters(typical: PKParams, eta: np.ndarray) -> PKParams:
    """Apply log-normal deviations ``eta[..., 0:3]`` (log CL, log V1, log V2) to typical values."""
    eta = np.asarray(eta, dtype=np.float64)
    if eta.shape[-1] != 3:
        raise ValueError(f"eta must have a last axis of 3 (log CL, log V1, log V2); got shape {eta.shape}")
    return PKParams(
        typical.cl * np.exp(eta[..., 0]),
        typical.v1 * np.exp(eta[..., 1]),
        typical.v2 * np.exp(eta[..., 2]),
        np.broadcast_to(typical.q, np.broadcast_shapes(typical.q.shape, eta.shape[:-1])),
    )


def infusion_duration_h(dose_mg: np.ndarray | float) -> np.ndarray:
    """Infusion time that respects the 10 mg/min limit, never shorter than one hour."""
    rate_mg_h = MAX_INFUSION_RATE_MG_PER_MIN * 60.0
    return np.maximum(MIN_INFUSION_H, np.asarray(dose_mg, dtype=np.float64) / rate_mg_h)


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


def measured_level(
    true_mg_l: np.ndarray,
    z_proportional: np.ndarray,
    z_additive: np.ndarray,
    noise_scale: float = 1.0,
    model: GotiModel = GOTI_2018,
) -> np.ndarray:
    """A measured level from the true one and two standard-normal draws (combined error, >= 0)."""
    true = np.asarray(true_mg_l, dtype=np.float64)
    noisy = true * (1.0 + noise_scale * model.prop_error * z_proportional)
    return np.maximum(noisy + noise_scale * model.add_error_mg_l * z_additive, 0.0)
