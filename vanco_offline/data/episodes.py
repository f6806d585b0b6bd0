"""d3rlpy episodes and datasets, with the stay id and behaviour probabilities of each episode."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import Episode, InfiniteBuffer, MDPDataset, ReplayBuffer

from vanco_offline.data.options import ActionKind
from vanco_offline.data.report import ConversionReport
from vanco_offline.data.schema import ACTION_SIZE_DISCRETE

__all__ = ["ConversionResult", "make_dataset"]


def make_dataset(episodes: Sequence[Episode], action: ActionKind) -> MDPDataset:
    """An ``MDPDataset`` holding ``episodes`` as given, with an explicit action space.

    ``MDPDataset.__init__`` only accepts flat arrays that it splits again row by row in
    Python (1.7 s per million rows) and it cannot express our terminal episodes, whose last
    table row is the absorbing observation and not a step. So the episodes are built
    directly and handed to ``ReplayBuffer.__init__``, which ``MDPDataset`` merely wraps;
    passing every signature and the action space avoids d3rlpy's guessing (integer-valued mg
    doses would otherwise be taken for discrete actions).
    """
    if not episodes:
        raise ValueError("no episodes to build a dataset from")
    first = episodes[0]
    dataset = MDPDataset.__new__(MDPDataset)
    ReplayBuffer.__init__(
        dataset,
        InfiniteBuffer(),
        episodes=episodes,
        observation_signature=first.observation_signature,
        action_signature=first.action_signature,
        reward_signature=first.reward_signature,
        action_space=ActionSpace.DISCRETE if action == "discrete" else ActionSpace.CONTINUOUS,
        action_size=ACTION_SIZE_DISCRETE if action == "discrete" else 1,
    )
    if len(dataset.episodes) != len(episodes):
        # d3rlpy registers an episode only through its transitions: one with none vanishes.
        raise ValueError(
            f"{len(episodes) - len(dataset.episodes)} episode(s) have no transition; "
            "an episode needs at least two observations, or one terminal step"
        )
    return dataset


@dataclasses.dataclass
class ConversionResult:
    """A converted dataset and what belongs to each of its episodes.

    Attributes
    ----------
    dataset : d3rlpy.dataset.MDPDataset
        Explicit action space: continuous doses in mg, float32 of shape (N, 1); or dose-grid
        indices (int64, shape (N, 1), ``action_size=13``).
    report : ConversionReport or None
        The conversion report (None for a subset made by a split).
    stay_ids : list
        The stay id of each episode, in ``dataset.episodes`` order.
    behavior_probs : list of numpy.ndarray or None
        Per episode, the logged ``behavior_prob`` of each transition: array ``i`` has
        ``dataset.episodes[i].transition_count`` entries in step order. None when the table
        had no ``behavior_prob`` column. :meth:`flat_behavior_prob` concatenates them in
        transition order.
    observation_names : tuple of str
        Names of the observation columns, in order.
    action : {"continuous", "discrete"}
    """

    dataset: MDPDataset
    report: ConversionReport | None
    stay_ids: list[Any]
    behavior_probs: list[np.ndarray] | None
    observation_names: tuple[str, ...]
    action: ActionKind

    def __post_init__(self) -> None:
        episodes = self.dataset.episodes
        if len(self.stay_ids) != len(episodes):
            raise ValueError(f"{len(self.stay_ids)} stay ids for {len(episodes)} episodes")
        if self.behavior_probs is not None:
            lengths = [len(p) for p in self.behavior_probs]
            if lengths != [e.transition_count for e in episodes]:
                raise ValueError("behavior_probs must hold one value per transition of each episode")

    def flat_behavior_prob(self) -> np.ndarray:
        """All behaviour probabilities in transition order (episode by episode, step by step)."""
        if self.behavior_probs is None:
            raise ValueError("this dataset has no behavior_prob (the table had no 'behavior_prob' column)")
        return np.concatenate(self.behavior_probs) if self.behavior_probs else np.zeros(0)

    def subset(self, episode_indices: Sequence[int]) -> ConversionResult:
        """The episodes at ``episode_indices`` (same objects, no copy), with their stay ids."""
        episodes = self.dataset.episodes
        chosen = [int(i) for i in episode_indices]
        return ConversionResult(
            dataset=make_dataset([episodes[i] for i in chosen], self.action),
            report=None,
            stay_ids=[self.stay_ids[i] for i in chosen],
            behavior_probs=None if self.behavior_probs is None else [self.behavior_probs[i] for i in chosen],
            observation_names=self.observation_names,
            action=self.action,
        )
