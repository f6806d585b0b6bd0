"""Kidney function: exposure-driven vancomycin injury, creatinine and urea kinetics, KDIGO AKI.

Creatinine follows the one-compartment kinetics used to derive the kinetic GFR,
``V_cr dSCr/dt = G - CLcr * SCr`` with ``V_cr`` = total body water (0.6 L/kg) and a
generation rate ``G`` that keeps the baseline creatinine at steady state (Chiou & Hsu 1975;
Bjornsson 1979; Chen 2013). Urea (BUN) follows the same kinetics with half of the
creatinine clearance, because about half of filtered urea is reabsorbed.

Injury is a fraction ``D`` of the native GFR that is lost:
``dD/dt = k_inj * s * x * (D_max - D) - k_rec * D``, where ``x`` is the relative excess of
exposure over its toxic threshold, ``max(AUC24 / 600 - 1, trough / 20 - 1, 0)``, and ``s``
the patient's sensitivity (median 1). Below AUC24 600 mg*h/L and trough 20 mg/L there is no
injury; the thresholds are those of the 2020 consensus guideline (Rybak 2020), from the
exposure-toxicity studies of Lodise 2009 (trough), Neely 2018 and Zasowski 2018 (AUC).
``k_inj`` and the recovery half-life are plausible assumptions, calibrated so that a typical
patient held at AUC24 ~900 meets the KDIGO definition within 2-4 days (vancomycin AKI
appears after several days of high exposure) and recovers over 1-2 weeks after exposure
stops. Clearance of the drug follows GFR (CL ~ CrCL^0.8 in Goti 2018), so injury feeds back
into exposure; creatinine lags GFR by hours to days, as it does at the bedside.

Patients on dialysis: their baseline creatinine clearance is split into a native part
(``dialysis_native_fraction``) that can be injured and an extracorporeal part that cannot.

References
----------
Chiou WL, Hsu FH. Pharmacokinetics of creatinine in man and its implications in the
monitoring of renal function and in dosage regimen modifications in patients with renal
insufficiency. J Clin Pharmacol 1975;15:427-434.
Bjornsson TD. Use of serum creatinine concentrations to determine renal function.
Clin Pharmacokinet 1979;4:200-222.
Chen S. Retooling the creatinine clearance equation to estimate kinetic GFR when the
plasma creatinine is changing acutely. J Am Soc Nephrol 2013;24:877-888.
Lodise TP et al. Relationship between initial vancomycin concentration-time profile and
nephrotoxicity among hospitalized patients. Clin Infect Dis 2009;49:507-514.
Neely MN et al. Prospective trial on the use of trough concentration versus area under the
curve to determine therapeutic vancomycin dosing. Antimicrob Agents Chemother 2018;62:e02042-17.
Zasowski EJ et al. Identification of vancomycin exposure-toxicity thresholds in
hospitalized patients receiving intravenous vancomycin. Antimicrob Agents Chemother 2018;62:e01684-17.
Rybak MJ et al. Am J Health Syst Pharm 2020;77:835-864.
KDIGO Clinical Practice Guideline for Acute Kidney Injury. Kidney Int Suppl 2012;2:1-138.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vanco_pk.targets import AKI_ABSOLUTE_RISE_MG_DL, AKI_RELATIVE_RISE
from vanco_pk.validation import check_positive

__all__ = [
    "DEFAULT_KIDNEY",
    "KidneyParams",
    "KidneyState",
    "baseline_kidney",
    "exposure_excess",
    "kdigo_stage",
    "kidney_step",
]

_ML_MIN_TO_L_H = 0.06


@dataclass(frozen=True)
class KidneyParams:
    """Parameters of the kidney model (see the module docstring for sources).

    Attributes
    ----------
    creatinine_volume_l_per_kg : creatinine distribution volume (total body water), L/kg
    urea_clearance_fraction : urea clearance as a fraction of creatinine clearance
    auc_threshold : AUC24 (mg*h/L) above which exposure injures the kidney
    trough_threshold : trough (mg/L) above which exposure injures the kidney
    injury_rate_per_h : injury rate per unit of relative excess exposure (assumption)
    max_injury : largest fraction of native GFR that can be lost (assumption)
    recovery_half_life_h : half-life of injury once exposure stops (assumption, 4 days)
    dialysis_native_fraction : share of a dialysis patient's baseline clearance that is native
    """

    creatinine_volume_l_per_kg: float = 0.6
    urea_clearance_fraction: float = 0.5
    auc_threshold: float = 600.0
    trough_threshold: float = 20.0
    injury_rate_per_h: float = 0.012
    max_injury: float = 0.85
    recovery_half_life_h: float = 96.0
    dialysis_native_fraction: float = 0.3

    def __post_init__(self) -> None:
        check_positive(self)
        for name in ("urea_clearance_fraction", "max_injury", "dialysis_native_fraction"):
            if getattr(self, name) > 1:
                raise ValueError(f"KidneyParams.{name} must be <= 1")

    @property
    def recovery_rate_per_h(self) -> float:
        return float(np.log(2.0) / self.recovery_half_life_h)


DEFAULT_KIDNEY = KidneyParams()


@dataclass
class KidneyState:
    """Kidney state of ``P`` patients (arrays of shape ``(P,)``).

    Attributes
    ----------
    injury : fraction of native GFR lost
    creatinine : serum creatinine, mg/dL (true)
    bun : blood urea nitrogen, mg/dL (true)
    native_gfr0 : baseline native GFR, mL/min
    rrt_clearance : creatinine clearance by renal replacement therapy, mL/min (0 if none)
    creatinine0, bun0 : baseline values, mg/dL
    volume_l : creatinine / urea distribution volume, L
    """

    injury: np.ndarray
    creatinine: np.ndarray
    bun: np.ndarray
    native_gfr0: np.ndarray
    rrt_clearance: np.ndarray
    creatinine0: np.ndarray
    bun0: np.ndarray
    volume_l: np.ndarray

    @property
    def gfr(self) -> np.ndarray:
        """Native glomerular filtration rate, mL/min."""
        return self.native_gfr0 * (1.0 - self.injury)

    @property
    def clearance(self) -> np.ndarray:
        """Total creatinine clearance (native + dialysis), mL/min: what drives drug CL."""
        return self.gfr + self.rrt_clearance


def baseline_kidney(
    crcl_ml_min: np.ndarray,
    creatinine_mg_dl: np.ndarray,
    bun_ratio: np.ndarray,
    weight_kg: np.ndarray,
    dialysis: np.ndarray,
    params: KidneyParams = DEFAULT_KIDNEY,
) -> KidneyState:
    """Uninjured kidney at steady state: the baseline creatinine clearance is the patient's CrCL."""
    crcl = np.asarray(crcl_ml_min, dtype=np.float64)
    on_rrt = np.asarray(dialysis) == 1
    native = np.where(on_rrt, params.dialysis_native_fraction * crcl, crcl)
    creatinine = np.asarray(creatinine_mg_dl, dtype=np.float64).copy()
    bun = np.asarray(bun_ratio, dtype=np.float64) * creatinine
    return KidneyState(
        injury=np.zeros_like(crcl),
        creatinine=creatinine,
        bun=bun,
        native_gfr0=native,
        rrt_clearance=crcl - native,
        creatinine0=creatinine.copy(),
        bun0=bun.copy(),
        volume_l=params.creatinine_volume_l_per_kg * np.asarray(weight_kg, dtype=np.float64),
    )


def exposure_excess(
    auc24: np.ndarray, trough: np.ndarray, params: KidneyParams = DEFAULT_KIDNEY
) -> np.ndarray:
    """Relative excess of exposure over the toxic thresholds (0 at or below both)."""
    return np.maximum(np.maximum(auc24 / params.auc_threshold, trough / params.trough_threshold) - 1.0, 0.0)


def _solute_step(conc, conc0, clearance0, clearance, volume, dt):
    """Exact one-compartment kinetics with constant clearance; generation keeps ``conc0`` steady."""
    cl = np.maximum(clearance, 1e-9) * _ML_MIN_TO_L_H
    steady = conc0 * clearance0 * _ML_MIN_TO_L_H / cl
    return steady + (conc - steady) * np.exp(-cl * dt / volume)


def kidney_step(
    state: KidneyState,
    auc24: np.ndarray,
    trough: np.ndarray,
    sensitivity: np.ndarray,
    dt_h: float,
    params: KidneyParams = DEFAULT_KIDNEY,
) -> KidneyState:
    """Advance the kidney over ``dt_h`` hours of the given exposure (constant within the step)."""
    drive = params.injury_rate_per_h * sensitivity * exposure_excess(auc24, trough, params)
    rate = drive + params.recovery_rate_per_h
    steady = drive * params.max_injury / rate
    decay = np.exp(-rate * dt_h)
    injury = steady + (state.injury - steady) * decay
    # Creatinine sees the mean clearance of the step (injury moves over days, a step is hours).
    mean_injury = steady + (state.injury - steady) * -np.expm1(-rate * dt_h) / (rate * dt_h)
    clearance = state.native_gfr0 * (1.0 - mean_injury) + state.rrt_clearance
    clearance0 = state.native_gfr0 + state.rrt_clearance
    f_urea = params.urea_clearance_fraction
    volume = state.volume_l
    return KidneyState(
        injury=injury,
        creatinine=_solute_step(state.creatinine, state.creatinine0, clearance0, clearance, volume, dt_h),
        bun=_solute_step(state.bun, state.bun0, f_urea * clearance0, f_urea * clearance, volume, dt_h),
        native_gfr0=state.native_gfr0,
        rrt_clearance=state.rrt_clearance,
        creatinine0=state.creatinine0,
        bun0=state.bun0,
        volume_l=state.volume_l,
    )


def kdigo_stage(creatinine: np.ndarray, baseline: np.ndarray, recent_min: np.ndarray) -> np.ndarray:
    """KDIGO 2012 AKI stage (0-3) from serum creatinine alone.

    Stage 1: >= 1.5 x baseline, or a rise >= 0.3 mg/dL over ``recent_min`` (the lowest value
    in the preceding 48 h); stage 2: >= 2.0 x baseline; stage 3: >= 3.0 x baseline, or
    >= 4.0 mg/dL with an acute rise. Urine output and the start of dialysis are not modelled,
    so a patient already on dialysis is staged by creatinine like everyone else.
    """
    ratio = creatinine / baseline
    # The tolerance keeps a rise of exactly 0.3 mg/dL an AKI despite float rounding.
    aki = (ratio >= AKI_RELATIVE_RISE) | (creatinine - recent_min >= AKI_ABSOLUTE_RISE_MG_DL - 1e-9)
    stage = np.where(aki, 1, 0)
    stage = np.where(ratio >= 2.0, 2, stage)
    return np.where((ratio >= 3.0) | (aki & (creatinine >= 4.0)), 3, stage)
