"""Reward variants of the training data that the benchmark measures.

Not part of the project's data layer: the candidate rewards whose effect the benchmark
measures (``--reward-variant``), so that a change to the shared reward
(``vanco_pk.targets``) is made with a measured reason. The observation options (covariates,
previous dose, PK features) are the data layer's own (``vanco_offline.data.convert``).

Trough variants keep the project's kidney and infection terms and change only the exposure
term of the next measured trough ``L`` (mg/L): +1 inside ``[low, high]``,
``-(low - L) / below_scale`` below, ``max(-(L - high) / 5, -3)`` above (the project's
reward is ``low=10, high=20, below_scale=10``).

``exposure`` is the project's exposure reward (``reward="exposure"`` of the converter: the
estimated AUC24 of the next row, :data:`vanco_pk.targets.EXPOSURE_AUC`); the
``exposure-*`` variants are candidate shapes of its AUC term
(:class:`vanco_pk.targets.AUCExposure`) with the same estimate and the same kidney and
infection terms, and ``exposure-hindsight`` the project's term on the hindsight AUC24 (the
stay refitted with all its levels, :mod:`vanco_offline.data.hindsight`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from vanco_pk.targets import (
    EXPOSURE_AUC,
    REWARD_ABOVE_CAP,
    REWARD_ABOVE_SCALE,
    REWARD_IN_RANGE,
    AUCExposure,
    infection_reward,
    kidney_reward,
)

__all__ = ["COMPUTED_REWARDS", "HINDSIGHT_REWARDS", "REWARD_VARIANTS", "RewardVariant", "variant_reward"]


@dataclasses.dataclass(frozen=True)
class RewardVariant:
    """Exposure term: +1 in [low, high] mg/L, -(low - L)/below_scale below, the project's penalty above."""

    low: float
    high: float
    below_scale: float

    def exposure(self, level: np.ndarray) -> np.ndarray:
        level = np.asarray(level, dtype=np.float64)
        below = -(self.low - level) / self.below_scale
        above = np.maximum(-(level - self.high) / REWARD_ABOVE_SCALE, REWARD_ABOVE_CAP)
        value = np.where(level < self.low, below, np.where(level > self.high, above, REWARD_IN_RANGE))
        return np.where(np.isnan(level), 0.0, value)


#: ``project`` is each algorithm's own reward and ``exposure`` the project's exposure reward
#: (both computed by the converter); the others are candidates.
REWARD_VARIANTS: dict[str, RewardVariant | AUCExposure | None] = {
    "project": None,
    "exposure": EXPOSURE_AUC,
    # Under-dosing penalised as steeply as over-dosing (treatment failure is not cheaper).
    "symmetric": RewardVariant(10.0, 20.0, 5.0),
    # The same, with the band's lower edge at 12.5 mg/L, nearer the trough of AUC 500.
    "symmetric-12.5": RewardVariant(12.5, 20.0, 5.0),
    # The guideline's band for serious infection (15-20 mg/L), the project's slopes.
    "serious": RewardVariant(15.0, 20.0, 10.0),
    # Candidate AUC terms: linear, -1 per 200 mg*h/L outside 400-600, capped at -3 ...
    "exposure-linear": AUCExposure(scale=200.0, log=False),
    # ... and log-symmetric but twice as steep as the project's (-1 per factor 1.22).
    "exposure-steep": AUCExposure(scale=math.log(1.5) / 2.0),
    # The project's AUC term on the hindsight AUC24 (every level of the stay refits it,
    # vanco_offline.data.hindsight) instead of the filtered estimate of the decision.
    "exposure-hindsight": EXPOSURE_AUC,
}
#: Variants whose AUC is the hindsight estimate (:mod:`vanco_offline.data.hindsight`).
HINDSIGHT_REWARDS: tuple[str, ...] = ("exposure-hindsight",)
#: Variants the converter computes itself (``convert(reward=...)``), by the reward name it takes.
COMPUTED_REWARDS: dict[str, str] = {"exposure": "exposure"}


def variant_reward(table, name: str):
    """A copy of a dosing table whose ``reward`` column is the variant's reward of each step.

    The reward of row ``t`` uses rows ``t`` and ``t + 1`` of the same stay (NaN on each
    stay's last row, the final observation), with the level as written (NaN while never
    measured: no exposure term) for a trough variant, or the estimated AUC24 of row ``t + 1``
    (:func:`vanco_offline.data.pk_feature_table`) for an AUC variant, exactly as the
    converter computes the project's rewards.
    """
    if name not in REWARD_VARIANTS:
        raise ValueError(f"unknown reward variant {name!r}; choose from {list(REWARD_VARIANTS)}")
    variant = REWARD_VARIANTS[name]
    if variant is None:
        return table
    stay = table["stay_id"].to_numpy()
    last = np.r_[stay[1:] != stay[:-1], True]
    if np.any(stay[:-1][~last[:-1]] != stay[1:][~last[:-1]]):
        raise ValueError("variant_reward: rows of a stay must be contiguous")

    def nxt(values: np.ndarray) -> np.ndarray:
        return np.r_[np.asarray(values, np.float64)[1:], np.nan]

    def now(column: str) -> np.ndarray:
        return table[column].to_numpy(np.float64)

    if isinstance(variant, AUCExposure):
        from vanco_offline.data import pk_feature_table

        if name in HINDSIGHT_REWARDS:
            from vanco_offline.data.hindsight import hindsight_auc_table

            auc = hindsight_auc_table(table).to_numpy()
        else:
            auc = pk_feature_table(table)["pk_auc24"].to_numpy()
        exposure = np.where(last, 0.0, variant(np.nan_to_num(nxt(auc))))
    else:
        exposure = variant.exposure(nxt(now("vanco_level")))
    reward = (
        exposure
        + kidney_reward(now("creatinine"), nxt(now("creatinine")))
        + infection_reward(now("wbc"), nxt(now("wbc")), now("temperature"), nxt(now("temperature")))
    )
    reward[last] = np.nan
    out = table.copy()
    out["reward"] = reward
    return out
