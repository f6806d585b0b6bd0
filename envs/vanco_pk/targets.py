"""Clinical targets, the dose grid and the reward: defined once, shared by simulator and data.

Everything here is a plain function of numpy arrays so that the same reward can be
computed inside the simulator and from a logged table of dosing steps.

References
----------
Rybak MJ et al. Therapeutic monitoring of vancomycin for serious MRSA infections: a revised
consensus guideline (ASHP/IDSA/PIDS/SIDP). Am J Health Syst Pharm 2020;77:835-864.
KDIGO Clinical Practice Guideline for Acute Kidney Injury. Kidney Int Suppl 2012;2:1-138.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The seven state features of the data schema, in observation order.
FEATURES: tuple[str, ...] = (
    "vanco_level",  # mg/L, last measured trough
    "creatinine",  # mg/dL
    "wbc",  # 10^9/L
    "bun",  # mg/dL
    "temperature",  # degrees C
    "sbp",  # mmHg
    "heart_rate",  # bpm
)
FEATURE_UNITS: dict[str, str] = {
    "vanco_level": "mg/L",
    "creatinine": "mg/dL",
    "wbc": "10^9/L",
    "bun": "mg/dL",
    "temperature": "degC",
    "sbp": "mmHg",
    "heart_rate": "bpm",
}
#: Decimals a chart keeps of each value (what labs, monitors and charts report): every
#: policy sees, and every dosing table holds, the values rounded so (:func:`chart_round`).
CHART_DECIMALS: dict[str, int] = {
    "vanco_level": 1,
    "creatinine": 2,
    "wbc": 1,
    "bun": 1,
    "temperature": 1,
    "sbp": 0,
    "heart_rate": 0,
    "weight_kg": 1,
    "age": 0,
    "height_cm": 0,
}


def chart_round(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` of column ``name`` as a chart reports them (:data:`CHART_DECIMALS`; others as is)."""
    values = np.asarray(values, dtype=np.float64)
    return np.round(values, CHART_DECIMALS[name]) if name in CHART_DECIMALS else values


#: Optional patient covariates that extend the observation, in this order.
#: ``sex`` is 0 for male, 1 for female; ``dialysis`` is 0/1.
COVARIATES: tuple[str, ...] = ("weight_kg", "age", "sex", "height_cm", "dialysis")

LEVEL, CREATININE, WBC, BUN, TEMPERATURE, SBP, HEART_RATE = range(7)

# Dosing limits and grid.
DOSE_MAX_MG = 3000.0
DOSE_STEP_MG = 250.0
DOSE_GRID_MG: np.ndarray = np.arange(0.0, DOSE_MAX_MG + DOSE_STEP_MG / 2, DOSE_STEP_MG)
MAX_INFUSION_RATE_MG_PER_MIN = 10.0
LOADING_DOSE_MG_PER_KG = (20.0, 35.0)

# Exposure targets (MIC 1 mg/L, so AUC24/MIC equals AUC24 in mg*h/L).
MIC_MG_PER_L = 1.0
AUC24_TARGET = (400.0, 600.0)
AUC24_GOAL = 500.0
#: The log-midpoint of the AUC24 range, sqrt(400 x 600) ~ 490, rounded: the a-priori target of
#: the simple Bayesian baseline ("the refitted prior at AUC 490"), fixed before any test.
AUC24_LOG_MIDPOINT = 490.0
TROUGH_TARGET = (10.0, 20.0)
TROUGH_TARGET_SERIOUS = (15.0, 20.0)
WBC_NORMAL = (4.0, 11.0)
TEMPERATURE_NORMAL = (36.0, 38.0)

#: The one definition of "AUC 400-600 attainment" used by every table (bench policies,
#: fidelity, the offline benchmark): see :func:`auc_attainment`.
ATTAINMENT_FROM_H = 24.0
ATTAINMENT_DEFINITION = (
    "AUC 400-600 attainment: share of 12-h decision intervals from 24 h to day 7 whose true "
    "AUC over the last 24 h (AUC24, mg*h/L, MIC 1 mg/L) is in 400-600"
)


def auc_attainment(auc24: np.ndarray, time_h: np.ndarray) -> float:
    """Share of decisions at ``time_h >= 24`` with the true AUC24 in 400-600 (:data:`ATTAINMENT_DEFINITION`).

    ``auc24`` has shape (T, P): the true AUC24 at the end of each of T intervals, for P
    patients; ``time_h`` (T,) the end time of each interval. Before 24 h the window still
    holds drug-free time, so even a perfect first dose cannot be in range.
    """
    auc = np.asarray(auc24, dtype=np.float64)
    times = np.asarray(time_h, dtype=np.float64).reshape(-1)
    if auc.ndim != 2 or auc.shape[0] != times.size:
        raise ValueError(f"auc_attainment: auc24 must be (T, P) with T = len(time_h) = {times.size}")
    full = times >= ATTAINMENT_FROM_H
    if not np.any(full):
        raise ValueError("auc_attainment: no decision at or after 24 h")
    low, high = AUC24_TARGET
    return float(((auc[full] >= low) & (auc[full] <= high)).mean())


# KDIGO acute kidney injury: +0.3 mg/dL within 48 h, or >= 1.5 x baseline.
AKI_ABSOLUTE_RISE_MG_DL = 0.3
AKI_ABSOLUTE_WINDOW_H = 48.0
AKI_RELATIVE_RISE = 1.5

# Reward weights (DESIGN.md, Reward); change only with a measured reason.
REWARD_IN_RANGE = 1.0
REWARD_BELOW_SCALE = 10.0  # -(10 - L) / 10 below the range
REWARD_ABOVE_SCALE = 5.0  # -(L - 20) / 5 above the range
REWARD_ABOVE_CAP = -3.0
REWARD_CREATININE_JUMP = -5.0
REWARD_CREATININE_PER_0_1 = -1.0
REWARD_INFECTION_BONUS = 0.25


def dose_to_grid_index(dose_mg: np.ndarray | float) -> np.ndarray:
    """Index of the nearest dose-grid level (0 mg, 250 mg, ..., 3000 mg) for each dose."""
    dose = np.asarray(dose_mg, dtype=np.float64)
    return np.clip(np.rint(dose / DOSE_STEP_MG), 0, len(DOSE_GRID_MG) - 1).astype(np.int64)


def _distance_to_range(value: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.maximum(low - value, 0.0) + np.maximum(value - high, 0.0)


def exposure_reward(level: np.ndarray) -> np.ndarray:
    """Reward for a measured trough level in mg/L; 0 where the level is NaN (never measured)."""
    level = np.asarray(level, dtype=np.float64)
    low, high = TROUGH_TARGET
    below = -(low - level) / REWARD_BELOW_SCALE
    above = np.maximum(-(level - high) / REWARD_ABOVE_SCALE, REWARD_ABOVE_CAP)
    value = np.where(level < low, below, np.where(level > high, above, REWARD_IN_RANGE))
    return np.where(np.isnan(level), 0.0, value)


def kidney_reward(creatinine: np.ndarray, next_creatinine: np.ndarray) -> np.ndarray:
    """Penalty for a creatinine rise: -5 for a KDIGO-sized jump, else -1 per 0.1 mg/dL."""
    rise = np.asarray(next_creatinine, dtype=np.float64) - np.asarray(creatinine, np.float64)
    small = REWARD_CREATININE_PER_0_1 * np.maximum(rise, 0.0) / 0.1
    # The small tolerance keeps a rise of exactly 0.3 mg/dL (0.1 + 0.2 in floats) a jump.
    return np.where(rise >= AKI_ABSOLUTE_RISE_MG_DL - 1e-9, REWARD_CREATININE_JUMP, small)


def infection_reward(
    wbc: np.ndarray, next_wbc: np.ndarray, temperature: np.ndarray, next_temperature: np.ndarray
) -> np.ndarray:
    """+0.125 for each of WBC and temperature that is in its normal range or moved toward it.

    DESIGN.md gives +0.25 when both move toward normal; splitting it keeps the bonus earnable
    when one sign is already normal and cannot move "toward" it.
    """
    half = REWARD_INFECTION_BONUS / 2.0
    total = np.zeros(np.broadcast(wbc, next_wbc).shape)
    for now, nxt, (low, high) in (
        (wbc, next_wbc, WBC_NORMAL),
        (temperature, next_temperature, TEMPERATURE_NORMAL),
    ):
        d_now = _distance_to_range(np.asarray(now, np.float64), low, high)
        d_next = _distance_to_range(np.asarray(nxt, np.float64), low, high)
        total = total + np.where((d_next == 0.0) | (d_next < d_now), half, 0.0)
    return total


def reward(observation: np.ndarray, dose_mg: np.ndarray, next_observation: np.ndarray) -> np.ndarray:
    """The project's reward for one or many decision steps.

    Parameters
    ----------
    observation, next_observation : array of shape (..., >= 7)
        Observations whose first seven columns are :data:`FEATURES` in schema units. The
        vancomycin level of ``next_observation`` may be NaN (never measured): that step has
        no exposure term.
    dose_mg : array of shape (...)
        Dose given in the interval. Unused by the default reward (exposure is judged by the
        level it produced) but part of the signature so that alternative rewards can use it.

    Returns
    -------
    numpy.ndarray of shape (...)
        About +1 for a well-dosed step; down to -3 for a toxic level, -5 for an AKI-sized
        creatinine jump.
    """
    obs = np.asarray(observation, dtype=np.float64)
    nxt = np.asarray(next_observation, dtype=np.float64)
    _check_observation_pair(obs, nxt)
    return (
        exposure_reward(nxt[..., LEVEL])
        + kidney_reward(obs[..., CREATININE], nxt[..., CREATININE])
        + infection_reward(obs[..., WBC], nxt[..., WBC], obs[..., TEMPERATURE], nxt[..., TEMPERATURE])
    )


SEED_TROUGH_GOAL = 15.0
SEED_CREATININE_GOAL = 1.0


def seed_reward(observation: np.ndarray, dose_mg: np.ndarray, next_observation: np.ndarray) -> np.ndarray:
    """The ``seed`` reward: an error-based reward, kept to reproduce the ``seed`` preset.

    ``-(|L' - 15| / 15 + |SCr' - 1.0|)``: the negative distance of the next trough from 15 mg/L
    and of the next creatinine from 1 mg/dL. It is never positive, so every step looks bad
    and a value-based learner finds no dose that earns anything; with a learned Q that
    extrapolates upward in dose, the greedy policy goes to the maximum dose.
    A never-measured level counts as 0 mg/L (missing levels filled with zeros).
    """
    obs = np.asarray(observation, dtype=np.float64)
    nxt = np.asarray(next_observation, dtype=np.float64)
    _check_observation_pair(obs, nxt)
    level = np.nan_to_num(nxt[..., LEVEL], nan=0.0)
    return -(
        np.abs(level - SEED_TROUGH_GOAL) / SEED_TROUGH_GOAL
        + np.abs(nxt[..., CREATININE] - SEED_CREATININE_GOAL)
    )


@dataclass(frozen=True)
class AUCExposure:
    """Exposure term of an estimated AUC24 (mg*h/L): +1 in ``[low, high]``, penalised outside.

    ``log=True``: ``-ln(low / AUC) / scale`` below and ``-ln(AUC / high) / scale`` above
    (``scale`` is a factor on the log scale: ``ln(1.5)`` costs -1 at 1.5 x outside the band),
    symmetric in log-AUC, as the between-patient variability of clearance is. ``log=False``:
    ``-(low - AUC) / scale`` and ``-(AUC - high) / scale`` with ``scale`` in mg*h/L. Either
    way the penalty is capped at ``cap``.
    """

    low: float = AUC24_TARGET[0]
    high: float = AUC24_TARGET[1]
    scale: float = math.log(1.5)
    log: bool = True
    cap: float = -3.0

    def __call__(self, auc24: np.ndarray) -> np.ndarray:
        auc = np.asarray(auc24, dtype=np.float64)
        if np.any(np.isnan(auc)):
            raise ValueError(
                "the estimated AUC24 holds NaN; the exposure reward needs an estimate at every step"
            )
        with np.errstate(divide="ignore"):
            if self.log:
                below = -np.log(self.low / np.maximum(auc, 0.0)) / self.scale
                above = -np.log(np.maximum(auc, 0.0) / self.high) / self.scale
            else:
                below = -(self.low - auc) / self.scale
                above = -(auc - self.high) / self.scale
        value = np.where(auc < self.low, below, np.where(auc > self.high, above, REWARD_IN_RANGE))
        return np.maximum(value, self.cap)


#: The exposure term of ``reward="exposure"`` (chosen by measurement: docs/benchmark.md).
EXPOSURE_AUC = AUCExposure()


def exposure_auc_reward(
    observation: np.ndarray,
    dose_mg: np.ndarray,
    next_observation: np.ndarray,
    next_auc24: np.ndarray | None = None,
) -> np.ndarray:
    """The exposure reward: :data:`EXPOSURE_AUC` of the *estimated* AUC24 of the next state,
    plus the project reward's kidney and infection terms.

    ``next_auc24`` is the Bayesian estimate of the AUC over the 24 h before the next
    decision from the doses given and the levels measured so far
    (:meth:`vanco_pk.exposure.ExposureTracker.auc24`): computed from logged data only, so it
    is a reward of the data, not of the simulator's hidden truth. It must be given: the data
    layer (``convert(..., reward="exposure")``) and the environments (``reward="exposure"``)
    compute it; nothing here guesses it from the observation.
    """
    if next_auc24 is None:
        raise ValueError(
            "the 'exposure' reward scores the estimated AUC24 of the next state and needs next_auc24= "
            "(vanco_pk.exposure.ExposureTracker.auc24()); convert(..., reward='exposure') and the "
            "environments' reward='exposure' compute it from the dose and level history"
        )
    obs = np.asarray(observation, dtype=np.float64)
    nxt = np.asarray(next_observation, dtype=np.float64)
    _check_observation_pair(obs, nxt)
    auc = np.asarray(next_auc24, dtype=np.float64)
    if auc.shape != nxt.shape[:-1]:
        raise ValueError(f"next_auc24 has shape {auc.shape}; expected one estimate per step {nxt.shape[:-1]}")
    return (
        EXPOSURE_AUC(auc)
        + kidney_reward(obs[..., CREATININE], nxt[..., CREATININE])
        + infection_reward(obs[..., WBC], nxt[..., WBC], obs[..., TEMPERATURE], nxt[..., TEMPERATURE])
    )


REWARDS = {"default": reward, "seed": seed_reward, "exposure": exposure_auc_reward}
#: Rewards that need the estimated AUC24 of the next state passed as ``next_auc24=``.
AUC_REWARDS: frozenset[str] = frozenset({"exposure"})


def get_reward_function(name: str):
    """The reward function registered under ``name`` (``"default"``, ``"seed"`` or ``"exposure"``).

    The ``"exposure"`` reward (:data:`AUC_REWARDS`) takes a fourth argument, the estimated
    AUC24 of the next state, and raises ValueError without it.
    """
    try:
        return REWARDS[name]
    except KeyError:
        raise ValueError(f"unknown reward {name!r}; choose one of {sorted(REWARDS)}") from None


def _check_observation_pair(obs: np.ndarray, nxt: np.ndarray) -> None:
    for name, arr in (("observation", obs), ("next_observation", nxt)):
        if arr.shape[-1] < len(FEATURES):
            raise ValueError(
                f"{name} has {arr.shape[-1]} columns; the reward needs the {len(FEATURES)} "
                f"features {FEATURES} first"
            )
