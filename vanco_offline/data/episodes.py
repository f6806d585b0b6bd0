"""d3rlpy episodes and datasets, with the stay id and behaviour probabilities of each episode."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import Episode, EpisodeBase, MDPDataset, ReplayBuffer
from vanco_pk.pk import GOTI_2018, GotiModel

from vanco_offline.data.options import ActionKind, ConversionSettings
from vanco_offline.data.report import ConversionReport
from vanco_offline.data.schema import ACTION_SIZE_DISCRETE

__all__ = ["CompactBuffer", "ConversionResult", "make_dataset"]


class CompactBuffer:
    """d3rlpy ``BufferProtocol`` storing transitions as per-episode counts, not tuples.

    d3rlpy's ``InfiniteBuffer`` keeps one ``(episode, index)`` tuple per transition. For a
    million-row table those million long-lived tuples make Python's garbage collector
    rescan them again and again (``vanco-offline bench convert`` measures both).
    Transitions must be appended episode by episode with indices 0, 1, 2, ... (what
    ``ReplayBuffer.append_episode`` and d3rlpy's online writer do).
    """

    def __init__(self) -> None:
        self._episodes: list[EpisodeBase] = []
        self._counts: list[int] = []
        self._count = 0
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None

    def append(self, episode: EpisodeBase, index: int) -> None:
        if not self._episodes or episode is not self._episodes[-1]:
            self._episodes.append(episode)
            self._counts.append(0)
        if index != self._counts[-1]:
            raise ValueError(
                f"CompactBuffer needs transitions in order: got index {index}, expected {self._counts[-1]}"
            )
        self._counts[-1] += 1
        self._count += 1
        self._lookup = None

    @property
    def episodes(self) -> Sequence[EpisodeBase]:
        return self._episodes

    @property
    def transition_count(self) -> int:
        return self._count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> tuple[EpisodeBase, int]:
        if self._lookup is None:
            counts = np.asarray(self._counts, dtype=np.int64)
            episode = np.repeat(np.arange(len(counts)), counts)
            first = np.cumsum(counts) - counts
            self._lookup = (episode, np.arange(self._count) - first[episode])
        episode, offset = self._lookup
        if index < 0:
            index += self._count
        return self._episodes[episode[index]], int(offset[index])


def make_dataset(episodes: Sequence[Episode], action: ActionKind) -> MDPDataset:
    """An ``MDPDataset`` holding ``episodes`` as given, with an explicit action space.

    ``MDPDataset.__init__`` only accepts flat arrays that it splits again row by row in
    Python (1.5 s per million rows, ``vanco-offline bench convert``) and it cannot express
    our terminal episodes, whose last table row is the absorbing observation and not a
    step. So the episodes are built directly and handed, in a :class:`CompactBuffer`, to
    ``ReplayBuffer.__init__``, which ``MDPDataset`` merely wraps; passing every signature
    and the action space avoids d3rlpy's guessing (integer-valued mg doses would otherwise
    be taken for discrete actions).
    """
    if not episodes:
        raise ValueError("no episodes to build a dataset from")
    first = episodes[0]
    dataset = MDPDataset.__new__(MDPDataset)
    ReplayBuffer.__init__(
        dataset,
        CompactBuffer(),
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
    options : ConversionSettings or None
        The conversion's specification (None for a dataset read back from a file); its
        ``population_model`` is the prior of the PK features.
    """

    dataset: MDPDataset
    report: ConversionReport | None
    stay_ids: list[Any]
    behavior_probs: list[np.ndarray] | None
    observation_names: tuple[str, ...]
    action: ActionKind
    options: ConversionSettings | None = None

    def __post_init__(self) -> None:
        episodes = self.dataset.episodes
        if len(self.stay_ids) != len(episodes):
            raise ValueError(f"{len(self.stay_ids)} stay ids for {len(episodes)} episodes")
        if self.behavior_probs is not None:
            lengths = [len(p) for p in self.behavior_probs]
            if lengths != [e.transition_count for e in episodes]:
                raise ValueError("behavior_probs must hold one value per transition of each episode")

    @property
    def population_model(self) -> GotiModel:
        """The population prior of the PK features (Goti 2018 unless the options say otherwise)."""
        return GOTI_2018 if self.options is None else self.options.population_model

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
            options=self.options,
        )
