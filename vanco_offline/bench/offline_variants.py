"""Variants of the training data that the benchmark measures when VancoIQL misses its target.

Not part of the project's data layer: these are the candidate fixes whose effect the
benchmark measures (``--reward-variant``, ``--last-dose``), so that a change to the shared
reward (``vanco_pk.targets``) or to the converter is made with a measured reason.

Reward variants keep the project's kidney and infection terms and change only the exposure
term of the next measured trough ``L`` (mg/L): +1 inside ``[low, high]``,
``-(low - L) / below_scale`` below, ``max(-(L - high) / 5, -3)`` above (the project's
reward is ``low=10, high=20, below_scale=10``).

``last_dose_mg`` appends the dose given at the previous decision (0 at the first) to the
observation: the one number a trough-guided clinician adjusts, which the seven features
lack.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from d3rlpy.dataset import Episode
from vanco_pk.targets import (
    REWARD_ABOVE_CAP,
    REWARD_ABOVE_SCALE,
    REWARD_IN_RANGE,
    infection_reward,
    kidney_reward,
)

__all__ = ["LAST_DOSE", "REWARD_VARIANTS", "RewardVariant", "variant_reward", "with_last_dose"]

LAST_DOSE = "last_dose_mg"


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


#: ``project`` is the shared reward (the converter computes it); the others are candidates.
REWARD_VARIANTS: dict[str, RewardVariant | None] = {
    "project": None,
    # Under-dosing penalised as steeply as over-dosing (treatment failure is not cheaper).
    "symmetric": RewardVariant(10.0, 20.0, 5.0),
    # The same, with the band's lower edge at 12.5 mg/L, nearer the trough of AUC 500.
    "symmetric-12.5": RewardVariant(12.5, 20.0, 5.0),
    # The guideline's band for serious infection (15-20 mg/L), the project's slopes.
    "serious": RewardVariant(15.0, 20.0, 10.0),
}


def variant_reward(table, name: str):
    """A copy of a dosing table whose ``reward`` column is the variant's reward of each step.

    The reward of row ``t`` uses rows ``t`` and ``t + 1`` of the same stay (NaN on each
    stay's last row, the final observation), with the level as written (NaN while never
    measured: no exposure term), exactly as the converter computes the project's reward.
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

    def nxt(column: str) -> np.ndarray:
        values = table[column].to_numpy(np.float64)
        return np.r_[values[1:], np.nan]

    def now(column: str) -> np.ndarray:
        return table[column].to_numpy(np.float64)

    reward = (
        variant.exposure(nxt("vanco_level"))
        + kidney_reward(now("creatinine"), nxt("creatinine"))
        + infection_reward(now("wbc"), nxt("wbc"), now("temperature"), nxt("temperature"))
    )
    reward[last] = np.nan
    out = table.copy()
    out["reward"] = reward
    return out


def with_last_dose(result, table):
    """The conversion ``result`` of ``table`` with :data:`LAST_DOSE` appended to every observation."""
    from vanco_offline.data.episodes import make_dataset

    dose = table["dose_mg"].to_numpy(np.float64)
    rows_of = table.groupby("stay_id", sort=False).indices
    episodes = []
    for stay, episode in zip(result.stay_ids, result.dataset.episodes, strict=True):
        rows = np.sort(rows_of[stay])[: len(episode.observations)]
        previous = np.r_[0.0, dose[rows[:-1]]].astype(np.float32)
        observations = np.concatenate([np.asarray(episode.observations), previous[:, None]], axis=1)
        episodes.append(Episode(observations, episode.actions, episode.rewards, episode.terminated))
    dataset = make_dataset(episodes, result.action)
    return dataclasses.replace(
        result, dataset=dataset, observation_names=(*result.observation_names, LAST_DOSE)
    )
