"""Vectorised uniform transition sampling over precomputed flat arrays.

d3rlpy's ``ReplayBuffer.sample_transition_batch`` builds each mini-batch one transition
at a time in Python, a large part of an IQL step on small networks (docs/benchmark.md,
"Training speed"). Here the transitions are laid out once as flat arrays in the buffer's
own order, and a mini-batch is one random index vector and a few fancy-indexing
operations. The distribution is d3rlpy's: uniform over the buffer's transitions, with
the transition content that ``BasicTransitionPicker`` gives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np
from d3rlpy.dataset import (
    BasicTransitionPicker,
    EpisodeBase,
    PartialTrajectory,
    ReplayBufferBase,
    Transition,
    TransitionMiniBatch,
)

__all__ = ["FastReplayBuffer", "FlatTransitions", "has_tuple_observations", "seed_from_global_numpy"]


@dataclasses.dataclass(frozen=True)
class FlatTransitions:
    """All transitions of a replay buffer as float32 arrays, row ``i`` = the buffer's transition ``i``.

    Attributes follow ``d3rlpy.dataset.TransitionMiniBatch``; ``episode_index`` and
    ``step_index`` say where each row came from (position in ``episodes`` and step
    within the episode).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    next_actions: np.ndarray
    terminals: np.ndarray
    intervals: np.ndarray
    episode_index: np.ndarray
    step_index: np.ndarray
    episodes: Sequence[EpisodeBase]

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @classmethod
    def from_dataset(
        cls, dataset: ReplayBufferBase, join_tuple_observations: bool = False
    ) -> FlatTransitions:
        """Flatten ``dataset`` (a d3rlpy ``ReplayBuffer``/``MDPDataset``).

        With ``join_tuple_observations`` the parts of a tuple observation are flattened and
        joined side by side into one row (for checking the data; nothing trains on that
        layout).

        Raises
        ------
        ValueError
            If the dataset is empty, has tuple observations (unless joined), or uses a transition picker
            other than d3rlpy's ``BasicTransitionPicker`` (multi-step or frame-stacked
            transitions are not reproduced here).
        """
        picker = dataset.transition_picker
        if type(picker) is not BasicTransitionPicker:
            raise ValueError(
                f"the dataset uses transition picker {type(picker).__name__}; the flat sampler (used by "
                "FastReplayBuffer and by VancoIQL's fit) reproduces only d3rlpy's single-step "
                "BasicTransitionPicker. Build the dataset without a custom transition_picker"
            )
        count = dataset.transition_count
        if count == 0:
            raise ValueError("the dataset has no transitions (every episode has fewer than 2 steps?)")
        buffer = dataset.buffer
        # Walk the buffer once to get its index -> (episode, step) map; consecutive entries
        # of one episode become one vectorised slice.
        runs: list[tuple[EpisodeBase, int, int]] = []
        for i in range(count):
            episode, step = buffer[i]
            if runs and runs[-1][0] is episode and runs[-1][2] == step:
                runs[-1] = (episode, runs[-1][1], step + 1)
            else:
                runs.append((episode, step, step + 1))
        return cls._from_runs(runs, join_tuple_observations)

    @classmethod
    def from_episodes(cls, episodes: Sequence[EpisodeBase]) -> FlatTransitions:
        """Flatten all transitions of ``episodes`` (as d3rlpy's ``BasicTransitionPicker`` sees them)."""
        runs = [(episode, 0, episode.transition_count) for episode in episodes if episode.transition_count]
        if not runs:
            raise ValueError("the episodes have no transitions (every episode has fewer than 2 steps?)")
        return cls._from_runs(runs)

    @classmethod
    def _from_runs(
        cls, runs: list[tuple[EpisodeBase, int, int]], join_tuple: bool = False
    ) -> FlatTransitions:
        episodes: list[EpisodeBase] = []
        position: dict[int, int] = {}
        parts: dict[str, list[np.ndarray]] = {k: [] for k in _FIELDS}
        for episode, start, stop in runs:
            if not isinstance(episode.observations, np.ndarray) and not join_tuple:
                raise ValueError(
                    "tuple observations are not supported by the flat sampler (VancoIQL's fit trains "
                    "on them with d3rlpy's own sampler)"
                )
            if id(episode) not in position:
                position[id(episode)] = len(episodes)
                episodes.append(episode)
            _append_run(parts, episode, start, stop, position[id(episode)])
        arrays = {k: np.concatenate(v, axis=0) for k, v in parts.items()}
        return cls(episodes=episodes, **arrays)

    def batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The rows ``indices`` of the float arrays, keyed like ``TransitionMiniBatch`` fields."""
        return {k: getattr(self, k)[indices] for k in _BATCH_FIELDS}


_BATCH_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "next_actions",
    "terminals",
    "intervals",
)
_FIELDS = (*_BATCH_FIELDS, "episode_index", "step_index")


def _append_run(
    parts: dict[str, list[np.ndarray]], episode: EpisodeBase, start: int, stop: int, position: int
) -> None:
    obs = observation_rows(episode.observations)
    actions = np.asarray(episode.actions, dtype=np.float32)
    n = stop - start
    size = episode.size()
    # BasicTransitionPicker: the last step of a terminated episode has a zero next
    # observation and next action and terminal=1; every other step looks one step ahead.
    last_is_terminal = bool(episode.terminated) and stop == size
    ahead = np.arange(start + 1, stop + 1)
    if last_is_terminal:
        ahead[-1] = start  # placeholder row, zeroed below
    next_obs = obs[ahead].copy()
    next_actions = actions[ahead].copy()
    terminals = np.zeros((n, 1), dtype=np.float32)
    if last_is_terminal:
        next_obs[-1] = 0.0
        next_actions[-1] = 0.0
        terminals[-1] = 1.0
    parts["observations"].append(obs[start:stop])
    parts["actions"].append(actions[start:stop])
    parts["rewards"].append(np.asarray(episode.rewards[start:stop], dtype=np.float32))
    parts["next_observations"].append(next_obs)
    parts["next_actions"].append(next_actions)
    parts["terminals"].append(terminals)
    parts["intervals"].append(np.ones((n, 1), dtype=np.float32))
    parts["episode_index"].append(np.full(n, position, dtype=np.int64))
    parts["step_index"].append(np.arange(start, stop, dtype=np.int64))


def has_tuple_observations(dataset: ReplayBufferBase) -> bool:
    """True when the dataset's observations are tuples of arrays (d3rlpy's tuple observations)."""
    episodes = dataset.episodes
    return bool(episodes) and not isinstance(episodes[0].observations, np.ndarray)


def observation_rows(observations: Any) -> np.ndarray:
    """Observations as one float32 array; the parts of a tuple observation flattened side by side."""
    if isinstance(observations, np.ndarray):
        return np.asarray(observations, dtype=np.float32)
    parts = [np.asarray(o, dtype=np.float32) for o in observations]
    return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)


def seed_from_global_numpy() -> int:
    """A seed drawn from numpy's global RNG, which ``d3rlpy.seed`` sets.

    d3rlpy's own sampler draws from that RNG; seeding our Generators from it keeps "same
    d3rlpy.seed, same mini-batches" true without a separate seed argument.
    """
    return int(np.random.randint(0, 2**31 - 1))  # noqa: NPY002  (the global RNG on purpose)


class _LazyTransitions(Sequence[Transition]):
    """``TransitionMiniBatch.transitions`` built only if an algorithm reads them (returns-to-go)."""

    def __init__(self, flat: FlatTransitions, indices: np.ndarray):
        self._flat = flat
        self._indices = indices
        self._picker = BasicTransitionPicker()

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        row = self._indices[i]
        episode = self._flat.episodes[self._flat.episode_index[row]]
        return self._picker(episode, int(self._flat.step_index[row]))


class FastReplayBuffer(ReplayBufferBase):
    """A read-only view of a d3rlpy replay buffer with vectorised mini-batch sampling.

    Works with any d3rlpy Q-learning algorithm: ``IQL().fit(FastReplayBuffer(dataset), ...)``.
    Everything except ``sample_transition_batch`` is delegated to ``dataset``.

    Parameters
    ----------
    dataset : d3rlpy.dataset.ReplayBufferBase
        The offline dataset (e.g. an ``MDPDataset``).
    seed : int, optional
        Seed of the sampler's ``numpy.random.Generator``; by default drawn from numpy's
        global RNG, so ``d3rlpy.seed(n)`` makes the sampling reproducible.
    flat : FlatTransitions, optional
        ``FlatTransitions.from_dataset(dataset)`` if already computed.
    """

    def __init__(
        self, dataset: ReplayBufferBase, seed: int | None = None, flat: FlatTransitions | None = None
    ):
        self._dataset = dataset
        self._flat = FlatTransitions.from_dataset(dataset) if flat is None else flat
        self._rng = np.random.default_rng(seed_from_global_numpy() if seed is None else seed)

    @property
    def flat(self) -> FlatTransitions:
        return self._flat

    @property
    def dataset(self) -> ReplayBufferBase:
        return self._dataset

    def sample_indices(self, batch_size: int) -> np.ndarray:
        return self._rng.integers(0, len(self._flat), size=batch_size)

    def sample_transition_batch(self, batch_size: int) -> TransitionMiniBatch:
        indices = self.sample_indices(batch_size)
        return TransitionMiniBatch(
            **self._flat.batch(indices), transitions=_LazyTransitions(self._flat, indices)
        )

    def sample_transition(self) -> Transition:
        return self._dataset.sample_transition()

    # Read-only delegation: the flat arrays are a snapshot, so appending would desynchronise them.
    def append(self, observation: Any, action: Any, reward: Any) -> None:
        raise TypeError("FastReplayBuffer is read-only; append to the wrapped dataset and wrap it again")

    def append_episode(self, episode: EpisodeBase) -> None:
        raise TypeError("FastReplayBuffer is read-only; append to the wrapped dataset and wrap it again")

    def clip_episode(self, terminated: bool) -> None:
        raise TypeError("FastReplayBuffer is read-only")

    def sample_trajectory(self, length: int) -> PartialTrajectory:
        return self._dataset.sample_trajectory(length)

    def sample_trajectory_batch(self, batch_size: int, length: int) -> Any:
        return self._dataset.sample_trajectory_batch(batch_size, length)

    def dump(self, f: BinaryIO) -> None:
        self._dataset.dump(f)

    @classmethod
    def from_episode_generator(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("build a d3rlpy ReplayBuffer first, then wrap it in FastReplayBuffer")

    @classmethod
    def load(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("load a d3rlpy ReplayBuffer first, then wrap it in FastReplayBuffer")

    @property
    def episodes(self) -> Sequence[EpisodeBase]:
        return self._dataset.episodes

    def size(self) -> int:
        return self._dataset.size()

    @property
    def buffer(self) -> Any:
        return self._dataset.buffer

    @property
    def transition_count(self) -> int:
        return self._dataset.transition_count

    @property
    def transition_picker(self) -> Any:
        return self._dataset.transition_picker

    @property
    def trajectory_slicer(self) -> Any:
        return self._dataset.trajectory_slicer

    @property
    def dataset_info(self) -> Any:
        return self._dataset.dataset_info
