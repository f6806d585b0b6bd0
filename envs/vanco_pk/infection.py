"""Infection: a bacterial burden killed by vancomycin exposure, and the signs that follow it.

The burden ``B`` (fraction of the carrying capacity, 0-1) grows logistically and is killed
by the drug and by the host:
``dB/dt = g * B * (1 - B) - (E_max * X^h / (EC50^h + X^h) + k_immune) * B``,
where ``X`` is the exposure of the interval as AUC24/MIC (the interval AUC scaled to 24 h;
vancomycin kills in an AUC/MIC-dependent way, Moise-Broder 2004, Rybak 2020). With a
constant exposure over an interval this is a Bernoulli equation with an exact solution.

White cells, temperature, heart rate and systolic pressure are the patient's baselines
moved in proportion to the burden, plus independent noise at each observation.

Parameters are plausible assumptions, not fitted values, chosen so that: with AUC24/MIC
400-600 (the target) an infection starting at B0 = 0.2-0.8 falls below ``resolved_burden``
in 2.5-4.5 days, as S. aureus bacteraemia clears in a median 3-8 days on adequate therapy;
at half the target (AUC 250) it settles around B = 0.25-0.3 and never resolves; untreated
it grows toward 0.9 (severe sepsis: WBC ~18, temperature ~39.5 C, tachycardia,
hypotension). EC50 (350) lies below the 400 target and the curve is steep (Hill 3), so the
target sits on the shoulder of the exposure-response curve, where hollow-fibre and animal
models of vancomycin against S. aureus put the AUC/MIC ~400 breakpoint.

References
----------
Moise-Broder PA, Forrest A, Birmingham MC, Schentag JJ. Pharmacodynamics of vancomycin and
other antimicrobials in patients with Staphylococcus aureus lower respiratory tract
infections. Clin Pharmacokinet 2004;43:925-942.
Rybak MJ et al. Am J Health Syst Pharm 2020;77:835-864 (AUC/MIC 400-600 target).
Fowler VG Jr et al. Clinical identifiers of complicated Staphylococcus aureus bacteremia.
Arch Intern Med 2003;163:2066-2072 (duration of bacteraemia on therapy).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from vanco_pk.targets import MIC_MG_PER_L
from vanco_pk.validation import check_positive

__all__ = ["DEFAULT_INFECTION", "InfectionParams", "burden_step", "kill_rate", "vital_signs"]


@dataclass(frozen=True)
class InfectionParams:
    """Parameters of the infection model (plausible assumptions, see the module docstring).

    Attributes
    ----------
    growth_rate_per_h : bacterial growth rate at low burden (times the patient's growth scale)
    immune_clearance_per_h : kill rate by the host alone
    emax_per_h, ec50_auc_mic, hill : sigmoid Emax kill by AUC24/MIC
    mic_mg_l : MIC of the pathogen
    resolved_burden : burden below which the infection counts as resolved
    wbc_per_burden, temperature_per_burden, heart_rate_per_burden, sbp_per_burden :
        change of each sign from the patient's baseline at full burden
    wbc_noise_sd, temperature_noise_sd, heart_rate_noise_sd, sbp_noise_sd : observation noise
    """

    growth_rate_per_h: float = 0.05
    immune_clearance_per_h: float = 0.005
    emax_per_h: float = 0.12
    ec50_auc_mic: float = 350.0
    hill: float = 3.0
    mic_mg_l: float = MIC_MG_PER_L
    resolved_burden: float = 0.02
    wbc_per_burden: float = 12.0
    temperature_per_burden: float = 3.0
    heart_rate_per_burden: float = 30.0
    sbp_per_burden: float = -30.0
    wbc_noise_sd: float = 0.8
    temperature_noise_sd: float = 0.2
    heart_rate_noise_sd: float = 5.0
    sbp_noise_sd: float = 7.0

    def __post_init__(self) -> None:
        check_positive(self, [f.name for f in fields(self) if f.name != "sbp_per_burden"], allow_zero=True)
        if not np.isfinite(self.sbp_per_burden):
            raise ValueError(f"InfectionParams.sbp_per_burden = {self.sbp_per_burden!r} must be finite")
        if self.ec50_auc_mic <= 0 or self.mic_mg_l <= 0:
            raise ValueError("InfectionParams.ec50_auc_mic and mic_mg_l must be > 0")


DEFAULT_INFECTION = InfectionParams()

# Physiological limits of the signs (the noise is not allowed to leave them).
WBC_LIMITS = (0.5, 60.0)
TEMPERATURE_LIMITS = (34.0, 42.5)
HEART_RATE_LIMITS = (30.0, 220.0)
SBP_LIMITS = (50.0, 220.0)


def kill_rate(auc_mic: np.ndarray, params: InfectionParams = DEFAULT_INFECTION) -> np.ndarray:
    """Drug kill rate (1/h) at an exposure of ``auc_mic`` (AUC24/MIC)."""
    x = np.maximum(np.asarray(auc_mic, dtype=np.float64), 0.0) ** params.hill
    return params.emax_per_h * x / (params.ec50_auc_mic**params.hill + x)


def burden_step(
    burden: np.ndarray,
    auc24_mg_h_l: np.ndarray,
    growth_scale: np.ndarray,
    dt_h: float,
    params: InfectionParams = DEFAULT_INFECTION,
) -> np.ndarray:
    """Burden after ``dt_h`` hours at a constant exposure ``auc24_mg_h_l`` (24-h-scaled AUC)."""
    g = params.growth_rate_per_h * growth_scale
    net = g - kill_rate(auc24_mg_h_l / params.mic_mg_l, params) - params.immune_clearance_per_h
    rt = net * dt_h
    # (e^{rt} - 1) / r, taken to its limit t where the net rate is zero.
    safe = np.where(np.abs(rt) < 1e-12, 1.0, net)
    growth_integral = np.where(np.abs(rt) < 1e-12, dt_h, np.expm1(rt) / safe)
    return burden * np.exp(rt) / (1.0 + g * burden * growth_integral)


def vital_signs(
    burden: np.ndarray,
    wbc_base: np.ndarray,
    temperature_base: np.ndarray,
    heart_rate_base: np.ndarray,
    sbp_base: np.ndarray,
    z: np.ndarray,
    params: InfectionParams = DEFAULT_INFECTION,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """WBC (10^9/L), temperature (C), heart rate (bpm), SBP (mmHg); ``z`` is (..., 4) standard normals."""
    p = params
    wbc = wbc_base + p.wbc_per_burden * burden + p.wbc_noise_sd * z[..., 0]
    temp = temperature_base + p.temperature_per_burden * burden + p.temperature_noise_sd * z[..., 1]
    hr = heart_rate_base + p.heart_rate_per_burden * burden + p.heart_rate_noise_sd * z[..., 2]
    sbp = sbp_base + p.sbp_per_burden * burden + p.sbp_noise_sd * z[..., 3]
    return (
        np.clip(wbc, *WBC_LIMITS),
        np.clip(temp, *TEMPERATURE_LIMITS),
        np.clip(hr, *HEART_RATE_LIMITS),
        np.clip(sbp, *SBP_LIMITS),
    )
