"""Stay-level train/validation/test splits and the scalers fitted on the training split."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from d3rlpy.dataset import ReplayBuffer
from d3rlpy.preprocessing import MinMaxActionScaler, StandardObservationScaler, StandardRewardScaler
from vanco_pk.targets import DOSE_MAX_MG

from vanco_offline.data.episodes import ConversionResult, make_dataset
from vanco_offline.data.schema import STAY

__all__ = ["Scalers", "fit_scalers", "split_dataset", "split_stays", "split_table"]

_Data = TypeVar("_Data", ConversionResult, ReplayBuffer)


def split_stays(
    stay_ids: Sequence[Any] | np.ndarray, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[list[Any], ...]:
    """Assign each distinct stay id to one split, at random but reproducibly.

    The assignment depends only on the set of stay ids, the fractions and the seed (ids are
    sorted first), so splitting a table and splitting its converted dataset with the same
    seed put every stay in the same split, as long as no stay was excluded in between.

    Parameters
    ----------
    stay_ids : sequence
        Stay ids (repeats allowed; each distinct id is assigned once).
    fractions : sequence of float
        Share of the stays in each split; non-negative, summing to 1.
    seed : int
        Seed of the numpy Generator that shuffles the stays.

    Returns
    -------
    tuple of lists
        The stay ids of each split, in sorted-id order within a split.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if (
        fractions.ndim != 1
        or len(fractions) == 0
        or np.any(fractions < 0)
        or not np.isclose(fractions.sum(), 1)
    ):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions.tolist()}")
    unique = pd.unique(pd.Series(np.asarray(stay_ids, dtype=object)))
    try:
        unique = np.sort(unique)
    except TypeError:
        raise ValueError(
            "stay ids of mixed types cannot be split reproducibly; make them all str or int"
        ) from None
    order = np.random.default_rng(seed).permutation(len(unique))
    bounds = np.round(np.cumsum(fractions) * len(unique)).astype(int)
    bounds[-1] = len(unique)
    pieces = np.split(order, bounds[:-1])
    for k, (piece, share) in enumerate(zip(pieces, fractions, strict=True)):
        if len(piece) == 0:
            raise ValueError(
                f"split {k} (fraction {share:g}) of {len(unique)} stays would hold no stay; "
                "use fewer splits, other fractions or more stays"
            )
    return tuple(unique[np.sort(piece)].tolist() for piece in pieces)


def split_table(
    table: pd.DataFrame, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[pd.DataFrame, ...]:
    """Split a dosing table by stay (no stay in two splits); rows keep their order."""
    if STAY not in table:
        raise ValueError(f"the table has no '{STAY}' column to split by")
    parts = split_stays(table[STAY].to_numpy(), fractions, seed)
    return tuple(table[table[STAY].isin(part)] for part in parts)


def split_dataset(
    data: _Data, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[_Data, ...]:
    """Split a converted dataset by stay, keeping stay ids and behaviour probabilities aligned.

    A :class:`ConversionResult` is split by its stay ids (the same assignment as
    :func:`split_table` with the same seed); a bare d3rlpy dataset by episode index.
    """
    if isinstance(data, ConversionResult):
        parts = split_stays(data.stay_ids, fractions, seed)
        position = {stay: i for i, stay in enumerate(data.stay_ids)}
        return tuple(data.subset(sorted(position[s] for s in part)) for part in parts)
    episodes = data.episodes
    parts = split_stays(np.arange(len(episodes)), fractions, seed)
    action = "discrete" if data.dataset_info.action_space.name == "DISCRETE" else "continuous"
    return tuple(make_dataset([episodes[i] for i in part], action) for part in parts)  # type: ignore[misc]


@dataclasses.dataclass
class Scalers:
    """d3rlpy scalers to pass to an algorithm config (and to ``FQEConfig``)."""

    observation_scaler: StandardObservationScaler
    action_scaler: MinMaxActionScaler | None
    reward_scaler: StandardRewardScaler | None


def fit_scalers(train: ConversionResult | ReplayBuffer, *, reward: bool = False) -> Scalers:
    """Scalers for training on ``train`` (fit them on the training split only).

    The observation scaler is d3rlpy's ``StandardObservationScaler`` with the mean and
    standard deviation of the training transitions' observations (what d3rlpy's own fit
    computes, vectorised). The action scaler of a continuous dataset is
    ``MinMaxActionScaler(minimum=0, maximum=3000)``: the clinical bounds, not the data's,
    so that the learned policy's dose range is exactly 0..3000 mg. Discrete datasets get no
    action scaler. With ``reward=True`` a ``StandardRewardScaler`` fitted on the training
    rewards is added.
    """
    dataset = train.dataset if isinstance(train, ConversionResult) else train
    episodes = dataset.episodes
    observations = np.concatenate([np.asarray(e.observations[: e.transition_count]) for e in episodes])
    observations = observations.astype(np.float64)
    observation_scaler = StandardObservationScaler(
        mean=observations.mean(axis=0), std=observations.std(axis=0)
    )
    action_scaler = None
    if dataset.dataset_info.action_space.name == "CONTINUOUS":
        action_scaler = MinMaxActionScaler(minimum=np.array([0.0]), maximum=np.array([DOSE_MAX_MG]))
    reward_scaler = None
    if reward:
        rewards = np.concatenate([e.rewards[: e.transition_count, 0] for e in episodes]).astype(np.float64)
        reward_scaler = StandardRewardScaler(mean=float(rewards.mean()), std=float(rewards.std()))
    return Scalers(observation_scaler, action_scaler, reward_scaler)
