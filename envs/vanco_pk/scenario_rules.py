"""The parts of a :class:`vanco_pk.scenario.Scenario` that the simulator applies each step.

Pure numpy functions of the scenario, the state and standard-normal draws (the simulator
draws nothing itself): which levels are ordered, augmented renal clearance, dialysis
clearance of the drug, inter-occasion variability and the graded AKI hazard. Their sources
are in ``docs/simulator.md``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.special import ndtr

from vanco_pk.patients import Covariates, ICUPopulation, Patients, _trunc_lognormal
from vanco_pk.scenario import SAMPLING_PROTOCOLS, Scenario

__all__ = [
    "N_WORLD_PATIENT_DRAWS",
    "N_WORLD_STEP_DRAWS",
    "aki_hazard_per_day",
    "apply_arc",
    "dialysis_drug_clearance",
    "levels_ordered",
    "scenario_population",
]

#: Extra standard normals per patient (ARC flag, ARC factor, CRRT vs IHD, IHD schedule) and
#: per observation (AKI event, IOV, draw-time error, creatinine assay error, and a peak's
#: draw-time error and two assay errors).
N_WORLD_PATIENT_DRAWS = 4
N_WORLD_STEP_DRAWS = 7
_ML_MIN_TO_L_H = 0.06
_MAX_DRAW_EARLY_H = 2.0


def scenario_population(population: ICUPopulation, scenario: Scenario) -> ICUPopulation:
    """The patient generator with the scenario's creatinine range and spread."""
    changes = {}
    if scenario.creatinine_range is not None:
        changes["creatinine_range"] = tuple(scenario.creatinine_range)
    if scenario.creatinine_log_sd is not None:
        changes["creatinine_log_sd"] = scenario.creatinine_log_sd
    return replace(population, **changes) if changes else population


def arc_factor(scenario: Scenario, age: np.ndarray, z: np.ndarray) -> np.ndarray:
    """GFR multiplier per patient: 1, or a truncated log-normal factor for those with ARC.

    ``z`` holds two standard normals per patient (the ARC draw, the factor draw).
    """
    prob = np.where(
        age < 50,
        scenario.arc_prob_young,
        np.where(age <= 65, scenario.arc_prob_middle, scenario.arc_prob_old),
    )
    has_arc = ndtr(z[:, 0]) < prob
    median, log_sd, low, high = scenario.arc_factor
    return np.where(has_arc, _trunc_lognormal(z[:, 1], median, log_sd, low, high), 1.0)


def apply_arc(patients: Patients, factor: np.ndarray) -> Patients:
    """Patients whose baseline creatinine is lower by ``factor`` (steady state at a higher GFR)."""
    if np.all(factor == 1.0):
        return patients
    cov = patients.covariates
    scr = np.maximum(cov.creatinine / factor, 0.2)
    new = Covariates(cov.weight_kg, cov.age, cov.sex, cov.height_cm, cov.dialysis, scr)
    return replace(patients, covariates=new)


def levels_ordered(
    scenario: Scenario,
    protocol: np.ndarray,
    step_count: np.ndarray,
    ever_level: np.ndarray,
    hours_since_level: np.ndarray,
    doses_since_change: np.ndarray,
    level_since_change: np.ndarray,
) -> np.ndarray:
    """Whether each patient's protocol orders a trough at the current decision (before any request).

    ``protocol`` holds one index into :data:`vanco_pk.scenario.SAMPLING_PROTOCOLS` per patient.
    """
    code = {name: i for i, name in enumerate(SAMPLING_PROTOCOLS)}
    trough = protocol == code["trough_guided"]
    auc = protocol == code["auc_guided"]
    first = np.where(trough, scenario.trough_first_decision, scenario.auc_first_decision)
    every = np.where(trough, scenario.trough_every_h, scenario.auc_every_h)
    first_due = ~ever_level & (step_count >= first)
    repeat = ever_level & (hours_since_level >= every - 1e-9)
    after_change = trough & ever_level & ~level_since_change & (doses_since_change >= 3)
    scheduled = (trough | auc) & (first_due | repeat | after_change)
    return (protocol == code["every_decision"]) | scheduled


def draw_time_early_h(scenario: Scenario, z: np.ndarray, room_h: np.ndarray) -> np.ndarray:
    """Hours the real draw precedes the documented time, ``|N(0, sd)|`` capped at 2 h and ``room_h``."""
    early = np.abs(z) * scenario.draw_time_sd_h
    return np.clip(np.minimum(early, _MAX_DRAW_EARLY_H), 0.0, np.maximum(room_h, 0.0))


def dialysis_drug_clearance(
    scenario: Scenario,
    on_dialysis: np.ndarray,
    on_crrt: np.ndarray,
    weight_kg: np.ndarray,
    ihd_phase_h: np.ndarray,
    start_h: np.ndarray,
    interval_h: float,
) -> np.ndarray:
    """Extracorporeal vancomycin clearance (L/h) averaged over ``[start_h, start_h + interval_h]``.

    CRRT: effluent rate x weight x sieving coefficient, continuous. Intermittent HD: the
    dialyser clearance during sessions of ``ihd_session_h`` every ``ihd_every_h`` hours
    (the first at ``ihd_phase_h``), times the share of the interval spent on dialysis.
    """
    crrt = scenario.crrt_effluent_ml_kg_h * weight_kg * scenario.crrt_sieving / 1000.0
    every, length = scenario.ihd_every_h, scenario.ihd_session_h
    # Overlap of the interval with the sessions (at most two sessions can touch it).
    first_k = np.floor((start_h - ihd_phase_h - length) / every) + 1
    overlap = np.zeros_like(start_h)
    for j in range(int(np.ceil(interval_h / every)) + 2):
        s = ihd_phase_h + (first_k + j) * every
        overlap += np.clip(np.minimum(s + length, start_h + interval_h) - np.maximum(s, start_h), 0.0, None)
    ihd = scenario.ihd_clearance_ml_min * _ML_MIN_TO_L_H * overlap / interval_h
    return np.where(on_dialysis, np.where(on_crrt, crrt, ihd), 0.0)


def aki_hazard_per_day(scenario: Scenario, auc24: np.ndarray) -> np.ndarray:
    """Graded AKI hazard (1/day): sepsis baseline + vancomycin, log-linear in the true AUC24.

    ``h = sepsis_aki_per_day + vanco_aki_per_day * exp(vanco_aki_slope * (AUC24 - 600) / 100)``
    while the patient has drug on board (AUC24 > 0), else the sepsis baseline alone.
    """
    auc = np.asarray(auc24, dtype=np.float64)
    drug = scenario.vanco_aki_per_day * np.exp(scenario.vanco_aki_slope * (auc - 600.0) / 100.0)
    return scenario.sepsis_aki_per_day + np.where(auc > 0, drug, 0.0)


def aki_events(scenario: Scenario, auc24: np.ndarray, interval_h: float, z: np.ndarray) -> np.ndarray:
    """Whether an AKI event starts in each patient's interval (one standard normal each)."""
    p = -np.expm1(-aki_hazard_per_day(scenario, auc24) * interval_h / 24.0)
    return ndtr(z) < p
