"""Clinician dosing: weight-based loading dose, CrCL nomogram, trough-guided adjustment, with noise.

What an ICU team without model-informed dosing does (Rybak 2020 consensus, trough era):

1. Loading dose 25 mg/kg actual body weight, at most 3 g.
2. Maintenance from a creatinine-clearance nomogram (Cockcroft-Gault, actual body weight),
   adapted from the UCSF adult vancomycin dosing guide for serious infections:

   ==================  ================  ========
   CrCL (mL/min)       dose (mg/kg)      interval
   ==================  ================  ========
   >= 60               15                q12h
   40-60               15                q24h
   20-40               10                q24h
   < 20                10                q48h
   on dialysis (CRRT)  10                q24h
   ==================  ================  ========

   each dose at most 2 g; a regimen more frequent than the decision interval is given as
   its equivalent dose per decision.
3. Trough-guided adjustment toward 15-20 mg/L: when a trough drawn after at least three
   doses of the current regimen (before the fourth, as recommended) is outside 15-20 mg/L,
   the dose is scaled by 17.5 / trough (linear kinetics, the pharmacist's proportional
   rule), by at most x2 or x1/2 at a time. A trough above 25 mg/L holds the due dose until
   a new level is at or below 25 mg/L (the lab calls it as a critical value, so a hold is
   never missed), then the regimen resumes scaled the same way.
   Creatinine >= 1.5 x (or +0.5 mg/dL over) its value when the regimen was set re-doses by
   the nomogram with the current CrCL.

Noise, so that the behaviour is realistic (and every dose has some probability, which
importance sampling needs): a prescribed dose (loading, nomogram, adjustment, resumption)
is the intended dose times a log-normal deviation (``dose_sd``) rounded to the nearest
``rounding_mg``, and that dose becomes the regimen the nurses continue; an indicated
adjustment is missed with probability ``miss_prob`` (the regimen continues); any single
administration is a random grid dose with probability ``error_prob`` (a wrong dose), which
does not change the regimen: a prescribed dose whose log-normal probability is below
``1e-4`` is read as such an error and the regimen becomes the prescription's most likely
dose. The pmf of each decision is exact, and every rule reads only the logged history.

Everything the rules use is in a table row (features, covariates, time) or in the memory
of doses given and levels seen, so a logged stay can be replayed.

References
----------
Rybak MJ et al. Therapeutic monitoring of vancomycin for serious methicillin-resistant
Staphylococcus aureus infections: a revised consensus guideline. Am J Health Syst Pharm
2020;77:835-864 (loading 20-35 mg/kg; 15-20 mg/kg q8-12h; troughs before the 4th dose).
UCSF Medical Center, Vancomycin adult dosing and monitoring guideline
(clinicalpharmacy.ucsf.edu/idmp/adult_guide/vanco_dosing.htm): CrCL bands, 250 mg rounding,
2 g maximum per dose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy.special import ndtr

from vanco_pk.pk import cockcroft_gault
from vanco_pk.policies.base import N_DOSES, DosingPolicy
from vanco_pk.targets import CREATININE, DOSE_GRID_MG, DOSE_MAX_MG, DOSE_STEP_MG, dose_to_grid_index
from vanco_pk.validation import check_positive

__all__ = ["NOMOGRAM", "ClinicianPolicy", "ClinicianSettings", "nomogram_regimen"]

#: (lowest CrCL in mL/min, mg/kg per dose, dosing interval in h), highest band first.
NOMOGRAM: tuple[tuple[float, float, float], ...] = (
    (60.0, 15.0, 12.0),
    (40.0, 15.0, 24.0),
    (20.0, 10.0, 24.0),
    (0.0, 10.0, 48.0),
)
#: Patients on (continuous) renal replacement therapy: mg/kg per dose, interval in h.
NOMOGRAM_DIALYSIS: tuple[float, float] = (10.0, 24.0)

# Kinds of decision (what the rules call for at this step).
LOAD, PRESCRIBE, ADJUST, RESUME, HOLD, CONTINUE = range(6)
_PRESCRIPTIONS = (LOAD, PRESCRIBE, ADJUST, RESUME)
# Below this log-normal probability a prescribed dose is read as an administration error.
_PLAUSIBLE = 1e-4


def nomogram_regimen(
    crcl_ml_min: np.ndarray, weight_kg: np.ndarray, dialysis: np.ndarray, max_dose_mg: float = 2000.0
) -> tuple[np.ndarray, np.ndarray]:
    """Maintenance dose (mg, before rounding) and interval (h) of :data:`NOMOGRAM`."""
    crcl = np.asarray(crcl_ml_min, dtype=np.float64)
    per_kg = np.full(crcl.shape, NOMOGRAM[-1][1])
    interval = np.full(crcl.shape, NOMOGRAM[-1][2])
    for low, mg_kg, hours in reversed(NOMOGRAM[:-1]):
        above = crcl >= low
        per_kg = np.where(above, mg_kg, per_kg)
        interval = np.where(above, hours, interval)
    on_rrt = np.asarray(dialysis) == 1
    per_kg = np.where(on_rrt, NOMOGRAM_DIALYSIS[0], per_kg)
    interval = np.where(on_rrt, NOMOGRAM_DIALYSIS[1], interval)
    return np.minimum(per_kg * np.asarray(weight_kg, np.float64), max_dose_mg), interval


@dataclass(frozen=True)
class ClinicianSettings:
    """Rules and noise of :class:`ClinicianPolicy` (see the module docstring).

    Attributes
    ----------
    loading_mg_per_kg, loading_max_mg : loading dose and its cap
    maintenance_max_mg : largest maintenance dose per administration (before noise)
    trough_target : trough range (mg/L) the adjustment aims at (its middle)
    hold_above_mg_l : trough above which the due dose is held
    max_change_factor : largest factor (and 1 / factor) of one adjustment
    review_after_doses : doses of a regimen before its trough is acted upon
    renal_redose_ratio, renal_redose_rise_mg_dl : creatinine change that triggers re-dosing
    dose_sd : SD of the log-normal deviation of a prescribed dose (0 = none)
    miss_prob : probability that an indicated adjustment is missed
    error_prob : probability that an administration is a random grid dose
    rounding_mg : prescriptions are rounded to a multiple of this (250 or 500)
    """

    loading_mg_per_kg: float = 25.0
    loading_max_mg: float = 3000.0
    maintenance_max_mg: float = 2000.0
    trough_target: tuple[float, float] = (15.0, 20.0)
    hold_above_mg_l: float = 25.0
    max_change_factor: float = 2.0
    review_after_doses: int = 3
    renal_redose_ratio: float = 1.5
    renal_redose_rise_mg_dl: float = 0.5
    dose_sd: float = 0.1
    miss_prob: float = 0.3
    error_prob: float = 0.02
    rounding_mg: float = 250.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "trough_target":
                low, high = value
                if not (0 < low < high):
                    raise ValueError(
                        f"ClinicianSettings.trough_target = {value!r} must be (low, high) with 0 < low < high"
                    )
                continue
            check_positive(self, [f.name], allow_zero=True)
        for name in ("miss_prob", "error_prob"):
            if getattr(self, name) >= 1:
                raise ValueError(f"ClinicianSettings.{name} = {getattr(self, name)!r} must be in [0, 1)")
        if self.max_change_factor < 1:
            raise ValueError(f"ClinicianSettings.max_change_factor = {self.max_change_factor!r} must be >= 1")
        steps = self.rounding_mg / DOSE_STEP_MG
        if self.rounding_mg <= 0 or abs(steps - round(steps)) > 1e-9 or DOSE_MAX_MG % self.rounding_mg:
            raise ValueError(
                f"ClinicianSettings.rounding_mg = {self.rounding_mg!r} must be a multiple of "
                f"{DOSE_STEP_MG:g} mg that divides {DOSE_MAX_MG:g} mg (250, 500, 750, 1000, 1500 or 3000)"
            )


class ClinicianPolicy(DosingPolicy):
    """Nomogram + trough-guided dosing with realistic noise (the default behaviour policy).

    Parameters
    ----------
    config : ClinicianSettings, optional
    interval_h : float
        Hours between decisions (the environment's ``decision_interval_h``).
    **overrides
        Fields of :class:`ClinicianSettings` (e.g. ``miss_prob=0.5``).
    """

    name = "clinician"
    sampling = "trough_guided"

    def __init__(self, config: ClinicianSettings | None = None, interval_h: float = 12.0, **overrides: Any):
        super().__init__(interval_h)
        known = {f.name for f in fields(ClinicianSettings)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"clinician: unknown option(s) {unknown}; known: {sorted(known)}")
        base = config or ClinicianSettings()
        self.config = ClinicianSettings(**{**{f: getattr(base, f) for f in known}, **overrides})
        # Bin edges of the grid levels a prescription can be rounded to.
        allowed = np.flatnonzero(np.isclose(DOSE_GRID_MG % self.config.rounding_mg, 0.0))
        mids = (DOSE_GRID_MG[allowed][1:] + DOSE_GRID_MG[allowed][:-1]) / 2.0
        self._allowed = allowed
        self._edges = np.concatenate(([0.0], mids, [np.inf]))

    def _start(self) -> None:
        n = self.n_patients
        self.loaded = np.zeros(n, dtype=bool)
        self.regimen_dose = np.zeros(n)
        self.regimen_interval = np.full(n, np.inf)
        self.regimen_scr = np.full(n, np.nan)
        self.doses_in_regimen = np.zeros(n, dtype=np.int64)
        self.last_dose_time = np.full(n, -np.inf)
        self.level_value = np.full(n, np.nan)
        self.level_time = np.full(n, -np.inf)
        self.resume_dose = np.full(n, np.nan)
        self.kind = np.full(n, CONTINUE)
        self._plan: dict[str, np.ndarray] = {}

    def _pmf(self, info: Mapping[str, Any]) -> np.ndarray:
        cfg = self.config
        cov = self.covariates
        t = self.time_now
        scr = self.obs_now[:, CREATININE]
        fresh_now = np.isfinite(self.level_now)
        self.level_value = np.where(fresh_now, self.level_now, self.level_value)
        self.level_time = np.where(fresh_now, t, self.level_time)

        crcl = cockcroft_gault(cov["age"], cov["weight_kg"], cov["sex"], scr, cap=None)
        nom_dose, nom_interval = nomogram_regimen(
            crcl, cov["weight_kg"], cov["dialysis"], cfg.maintenance_max_mg
        )
        # A regimen more frequent than the decisions is given as its equivalent per decision.
        nom_dose = np.where(
            nom_interval < self.interval_h, nom_dose * self.interval_h / nom_interval, nom_dose
        )
        nom_interval = np.maximum(nom_interval, self.interval_h)

        level = self.level_value
        fresh = self.level_time > self.last_dose_time  # a level drawn since the last dose
        low, high = cfg.trough_target
        middle = 0.5 * (low + high)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.clip(middle / level, 1.0 / cfg.max_change_factor, cfg.max_change_factor)
        on_regimen = self.loaded & (self.regimen_dose > 0)
        due_first = t - self.last_dose_time >= nom_interval - 1e-6
        due = t - self.last_dose_time >= self.regimen_interval - 1e-6
        too_high = fresh & (level > cfg.hold_above_mg_l)
        renal = (scr >= cfg.renal_redose_ratio * self.regimen_scr) | (
            scr - self.regimen_scr >= cfg.renal_redose_rise_mg_dl
        )
        off_target = (
            fresh & ((level < low) | (level > high)) & (self.doses_in_regimen >= cfg.review_after_doses)
        )

        regimen = np.where(on_regimen, self.regimen_dose, 0.0)
        # Order matters: the first rule that applies wins (np.select semantics).
        due = np.where(on_regimen, due, due_first)
        conditions = [
            ~self.loaded,
            self.loaded & due & too_high,
            self.loaded & ~on_regimen & due,
            on_regimen & due & np.isfinite(self.resume_dose),
            on_regimen & due & renal,
            on_regimen & due & off_target,
            on_regimen & due,
        ]
        kinds = [LOAD, HOLD, PRESCRIBE, RESUME, PRESCRIBE, ADJUST, CONTINUE]
        values = [
            np.minimum(cfg.loading_mg_per_kg * cov["weight_kg"], cfg.loading_max_mg),
            np.zeros(self.n_patients),
            nom_dose,
            self.resume_dose,
            nom_dose,
            np.minimum(regimen * factor, cfg.maintenance_max_mg),
            regimen,
        ]
        kind = np.select(conditions, kinds, default=CONTINUE)
        intended = np.select(conditions, values, default=0.0)
        self.kind = kind
        miss = np.where(kind == ADJUST, cfg.miss_prob, 0.0)
        prescribed = np.isin(kind, _PRESCRIPTIONS)
        spread = self._rounded_lognormal(np.where(prescribed, intended, 0.0))
        core = np.where(
            prescribed[:, None],
            (1.0 - miss)[:, None] * spread + miss[:, None] * self._point(regimen),
            self._point(intended),  # HOLD intends 0, CONTINUE the regimen when due, else 0
        )
        self._plan = {"nom_interval": nom_interval, "factor": factor, "scr": scr, "spread": spread}
        return (1.0 - cfg.error_prob) * core + cfg.error_prob / N_DOSES

    def _after_record(self, dose: np.ndarray) -> None:
        kind, plan = self.kind, self._plan
        gave = dose > 0
        rows = np.arange(self.n_patients)
        self.last_dose_time = np.where(gave, self.time_now, self.last_dose_time)
        self.loaded |= (kind == LOAD) & gave
        # The regimen the nurses continue: the dose given, unless it was a random error (not
        # plausible under the prescription's rounding noise), then the prescription's likeliest dose.
        spread = plan["spread"]
        plausible = spread[rows, dose_to_grid_index(dose)] >= _PLAUSIBLE
        missed = (kind == ADJUST) & (dose == self.regimen_dose)
        prescribed = np.where(missed | plausible, dose, DOSE_GRID_MG[spread.argmax(axis=1)])
        new_regimen = np.isin(kind, (PRESCRIBE, ADJUST, RESUME))
        self.regimen_interval = np.where(
            new_regimen & (kind == PRESCRIBE), plan["nom_interval"], self.regimen_interval
        )
        self.regimen_scr = np.where(new_regimen, plan["scr"], self.regimen_scr)
        self.resume_dose = np.where(new_regimen, np.nan, self.resume_dose)
        held = (kind == HOLD) & ~gave & (self.regimen_dose > 0)
        self.resume_dose = np.where(
            held,
            np.minimum(self.regimen_dose * plan["factor"], self.config.maintenance_max_mg),
            self.resume_dose,
        )
        self.regimen_dose = np.where(new_regimen, prescribed, self.regimen_dose)
        counted = ((kind == CONTINUE) | (kind == HOLD)) & gave & (self.regimen_dose > 0)
        self.doses_in_regimen = np.where(new_regimen, gave.astype(np.int64), self.doses_in_regimen + counted)

    def _point(self, dose: np.ndarray) -> np.ndarray:
        """Mass 1 on the allowed grid level nearest ``dose``."""
        allowed = DOSE_GRID_MG[self._allowed]
        pick = self._allowed[np.abs(np.asarray(dose)[:, None] - allowed[None, :]).argmin(axis=1)]
        out = np.zeros((len(pick), N_DOSES))
        out[np.arange(len(pick)), pick] = 1.0
        return out

    def _rounded_lognormal(self, dose: np.ndarray) -> np.ndarray:
        """pmf of ``dose * exp(dose_sd * Z)`` rounded to the nearest allowed level (0 stays 0)."""
        sd = self.config.dose_sd
        if sd == 0:
            return self._point(dose)
        positive = dose > 0
        with np.errstate(divide="ignore"):
            z = (np.log(self._edges)[None, :] - np.log(np.where(positive, dose, 1.0))[:, None]) / sd
        cdf = ndtr(z)
        mass = np.diff(cdf, axis=1)
        out = np.zeros((len(dose), N_DOSES))
        out[:, self._allowed] = mass
        return np.where(positive[:, None], out, self._point(np.zeros(len(dose))))
