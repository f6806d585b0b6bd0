"""The Goti et al. 2018 population model of vancomycin: parameters, covariates, residual error.

Amounts are in mg, volumes in L, clearances in L/h, times in h, concentrations in mg/L.
The solutions of the model are in :mod:`vanco_pk.pk`, which re-exports everything here.

References
----------
Goti V, Chaturvedula A, Fossler MJ, Mok S, Jacob JT. Hospitalized patients with and without
hemodialysis have markedly different vancomycin pharmacokinetics: a population
pharmacokinetic model-based analysis. Ther Drug Monit 2018;40(2):212-221 (Table 2).
Cockcroft DW, Gault MH. Prediction of creatinine clearance from serum creatinine.
Nephron 1976;16:31-41.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from vanco_pk.targets import MAX_INFUSION_RATE_MG_PER_MIN
from vanco_pk.validation import check_positive

__all__ = [
    "ADDITIVE_ERROR_MG_L",
    "GOTI_2018",
    "MIN_INFUSION_H",
    "OMEGA2",
    "PROPORTIONAL_ERROR",
    "GotiModel",
    "PKParams",
    "cockcroft_gault",
    "individual_parameters",
    "infusion_duration_h",
    "measured_level",
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
        check_positive(
            self, allow_zero=("omega2_cl", "omega2_v1", "omega2_v2", "prop_error", "add_error_mg_l")
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
