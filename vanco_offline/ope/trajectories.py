"""Logged stays as padded arrays: the common input of every estimator.

The estimand is the expected discounted return of a stay *as recorded*: a terminal stay
ends in an absorbing state worth 0, and a stay that simply stops (timeout: end of the
record, or the end of the simulated horizon) ends there too. This is what importance
sampling can estimate from the data, and what the simulator's ground truth computes over
the same horizon. FQE is trained for the same quantity (it does not bootstrap past the
last recorded transition; see :mod:`vanco_offline.ope.fqe`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from d3rlpy.dataset import ReplayBufferBase
from vanco_pk.targets import DOSE_GRID_MG

from vanco_offline.data import ConversionResult

__all__ = ["Trajectories", "to_trajectories"]


@dataclasses.dataclass(frozen=True)
class Trajectories:
    """``n`` logged stays padded to the longest, ``H`` decision steps.

    Attributes
    ----------
    observations : ndarray of shape (n, H, d), float32
        State at each decision step; padded steps repeat the stay's last state.
    actions : ndarray of shape (n, H), int64
        Index of the logged action on the action grid (the 250 mg dose grid for doses);
        a continuous dose counts as the grid level it rounds to (its bin). 0 where padded.
    raw_actions : ndarray of shape (n, H), float64
        The logged action as the dataset holds it (mg for continuous, index for discrete).
    rewards : ndarray of shape (n, H), float64
        0 where padded.
    mask : ndarray of shape (n, H), bool
        True for the logged transitions of each stay (a prefix of each row).
    terminal : ndarray of shape (n,), bool
        Whether the stay ended in a terminal state (else it was cut off: timeout).
    behavior_prob : ndarray of shape (n, H) or None
        Logged probability of each logged action (1 where padded).
    stay_ids : list
        Stay id of each row.
    action_values : ndarray of shape (K,)
        Value of each action index in the dataset's own units: dose in mg for a continuous
        dataset (the grid), the index itself for a discrete one.
    continuous : bool
        Whether the dataset's actions are continuous (doses in mg).
    """

    observations: np.ndarray
    actions: np.ndarray
    raw_actions: np.ndarray
    rewards: np.ndarray
    mask: np.ndarray
    terminal: np.ndarray
    behavior_prob: np.ndarray | None
    stay_ids: list[Any]
    action_values: np.ndarray
    continuous: bool

    def __post_init__(self) -> None:
        n, horizon = self.mask.shape
        if self.observations.ndim != 3 or self.observations.shape[:2] != (n, horizon):
            raise ValueError(f"observations must have shape (n, H, d) = ({n}, {horizon}, d)")
        for name in ("actions", "raw_actions", "rewards"):
            if getattr(self, name).shape != (n, horizon):
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected ({n}, {horizon})")
        if self.terminal.shape != (n,) or len(self.stay_ids) != n:
            raise ValueError(f"terminal and stay_ids need one entry per stay ({n})")
        if not np.all(self.mask[:, :1]):
            raise ValueError("every stay needs at least one transition")
        lengths = self.mask.sum(axis=1)
        if not np.array_equal(self.mask, np.arange(horizon)[None, :] < lengths[:, None]):
            raise ValueError("mask must mark a prefix of each stay (steps 0 .. length-1)")
        if np.any((self.actions < 0) | (self.actions >= self.n_actions)):
            raise ValueError(f"actions must be indices 0 .. {self.n_actions - 1} of the action grid")
        if self.behavior_prob is not None:
            if self.behavior_prob.shape != (n, horizon):
                raise ValueError(
                    f"behavior_prob has shape {self.behavior_prob.shape}, expected ({n}, {horizon})"
                )
            check_probabilities(self.behavior_prob[self.mask], "behavior_prob", self.locate)

    @property
    def n_stays(self) -> int:
        return self.mask.shape[0]

    @property
    def horizon(self) -> int:
        return self.mask.shape[1]

    @property
    def n_actions(self) -> int:
        return len(self.action_values)

    @property
    def lengths(self) -> np.ndarray:
        return self.mask.sum(axis=1)

    @property
    def n_transitions(self) -> int:
        return int(self.mask.sum())

    def locate(self, flat_index: int) -> str:
        """'stay X, step t' of the ``flat_index``-th logged transition (mask order)."""
        stay, step = np.argwhere(self.mask)[flat_index]
        return f"stay {self.stay_ids[stay]!r} (episode {stay}), step {step}"

    def returns(self, gamma: float) -> np.ndarray:
        """Discounted return of each stay, shape (n,)."""
        return (self.rewards * gamma ** np.arange(self.horizon)).sum(axis=1)

    def step_index(self) -> np.ndarray:
        """Decision step of every (stay, step) cell, shape (n, H)."""
        return np.broadcast_to(np.arange(self.horizon), self.mask.shape)

    def previous_actions(self) -> np.ndarray:
        """Grid index of the previous logged action of each step (-1 at a stay's first step)."""
        previous = np.full(self.mask.shape, -1, dtype=np.int64)
        previous[:, 1:] = self.actions[:, :-1]
        return previous

    def subset(self, index: np.ndarray | Sequence[int]) -> Trajectories:
        """The stays at ``index`` (with repetition allowed: bootstrap resamples)."""
        index = np.asarray(index, dtype=np.int64)
        prob = None if self.behavior_prob is None else self.behavior_prob[index]
        return dataclasses.replace(
            self,
            observations=self.observations[index],
            actions=self.actions[index],
            raw_actions=self.raw_actions[index],
            rewards=self.rewards[index],
            mask=self.mask[index],
            terminal=self.terminal[index],
            behavior_prob=prob,
            stay_ids=[self.stay_ids[i] for i in index.tolist()],
        )


def check_probabilities(prob: np.ndarray, name: str, locate: Any = None) -> None:
    """Raise ValueError unless every value is a probability in (0, 1]."""
    prob = np.asarray(prob, dtype=np.float64)
    bad = ~((prob > 0.0) & (prob <= 1.0))  # NaN fails both comparisons
    if bad.any():
        first = int(np.flatnonzero(bad.ravel())[0])
        where = locate(first) if locate is not None else f"entry {first}"
        raise ValueError(
            f"{name} must be a probability in (0, 1] for every logged action; {int(bad.sum())} value(s) "
            f"are not, first {prob.ravel()[first]!r} at {where}. A probability of 0 means the behaviour "
            "policy could not have taken the logged action (fix the logging); a value above 1 looks like "
            "a density: IS on the dose grid needs the probability of the logged grid level"
        )


def to_trajectories(
    data: ConversionResult | ReplayBufferBase | Trajectories,
    *,
    action_grid: np.ndarray | None = None,
    behavior_prob: Sequence[np.ndarray] | None = None,
) -> Trajectories:
    """Padded arrays of a converted dataset's stays.

    Parameters
    ----------
    data : ConversionResult, d3rlpy ReplayBuffer/MDPDataset, or Trajectories
        A ``ConversionResult`` contributes its stay ids and logged ``behavior_prob``.
    action_grid : ndarray, optional
        For a continuous dataset, the action levels whose bins the logged actions are
        assigned to (default the 250 mg dose grid, 0..3000 mg); ignored for a discrete one.
    behavior_prob : sequence of arrays, optional
        Per episode, the behaviour probability of each transition (overrides the
        ``ConversionResult``'s).

    Raises
    ------
    ValueError
        Mismatched lengths, probabilities outside (0, 1], or logged actions off the grid.
    """
    if isinstance(data, Trajectories):
        return data
    if isinstance(data, ConversionResult):
        dataset = data.dataset
        stay_ids: list[Any] = list(data.stay_ids)
        if behavior_prob is None:
            behavior_prob = data.behavior_probs
    elif isinstance(data, ReplayBufferBase):
        dataset = data
        stay_ids = list(range(len(dataset.episodes)))
    else:
        raise ValueError(
            f"data must be a ConversionResult, a d3rlpy MDPDataset/ReplayBuffer or Trajectories, "
            f"got {type(data).__name__}"
        )
    episodes = dataset.episodes
    if not episodes:
        raise ValueError("the dataset has no episodes")
    continuous = dataset.dataset_info.action_space.name == "CONTINUOUS"
    if continuous:
        grid = np.asarray(DOSE_GRID_MG if action_grid is None else action_grid, dtype=np.float64)
        if grid.ndim != 1 or len(grid) < 2 or np.any(np.diff(grid) <= 0):
            raise ValueError("action_grid must be a strictly increasing 1-d array of at least 2 levels")
    else:
        grid = np.arange(dataset.dataset_info.action_size, dtype=np.float64)
    lengths = np.array([e.transition_count for e in episodes])
    if np.any(lengths == 0):
        raise ValueError(f"episode {int(np.argmin(lengths))} has no transition")
    n, horizon = len(episodes), int(lengths.max())
    dim = np.asarray(episodes[0].observations).shape[1:]
    if len(dim) != 1:
        raise ValueError(f"OPE needs vector observations, got shape {dim}")
    observations = np.zeros((n, horizon, dim[0]), dtype=np.float32)
    raw = np.zeros((n, horizon))
    rewards = np.zeros((n, horizon))
    for i, (episode, length) in enumerate(zip(episodes, lengths.tolist(), strict=True)):
        obs = np.asarray(episode.observations[:length], dtype=np.float32)
        observations[i, :length] = obs
        observations[i, length:] = obs[-1]
        raw[i, :length] = np.asarray(episode.actions[:length]).reshape(length, -1)[:, 0]
        rewards[i, :length] = np.asarray(episode.rewards[:length]).reshape(length)
    mask = np.arange(horizon)[None, :] < lengths[:, None]
    actions = _grid_index(raw, grid, continuous)
    actions[~mask] = 0
    if not continuous:
        off = mask & ((raw != np.rint(raw)) | (raw < 0) | (raw >= len(grid)))
        if off.any():
            stay, step = np.argwhere(off)[0]
            raise ValueError(
                f"discrete action {raw[stay, step]!r} of stay {stay_ids[stay]!r}, step {step} is not an "
                f"index 0 .. {len(grid) - 1}"
            )
    prob = None
    if behavior_prob is not None:
        if len(behavior_prob) != n:
            raise ValueError(f"behavior_prob has {len(behavior_prob)} episodes, the dataset {n}")
        prob = np.ones((n, horizon))
        for i, (p, length) in enumerate(zip(behavior_prob, lengths.tolist(), strict=True)):
            p = np.asarray(p, dtype=np.float64).reshape(-1)
            if len(p) != length:
                raise ValueError(
                    f"behavior_prob of stay {stay_ids[i]!r} (episode {i}) has {len(p)} values for "
                    f"{length} transitions: give one probability per logged transition"
                )
            prob[i, :length] = p
    return Trajectories(
        observations=observations,
        actions=actions,
        raw_actions=raw,
        rewards=rewards,
        mask=mask,
        terminal=np.array([bool(e.terminated) for e in episodes]),
        behavior_prob=prob,
        stay_ids=stay_ids,
        action_values=grid,
        continuous=continuous,
    )


def _grid_index(raw: np.ndarray, grid: np.ndarray, continuous: bool) -> np.ndarray:
    if not continuous:
        return np.clip(np.rint(raw), 0, len(grid) - 1).astype(np.int64)
    # Bins are centred on the levels: the edges are the midpoints between neighbours.
    edges = (grid[1:] + grid[:-1]) / 2.0
    return np.searchsorted(edges, raw, side="right").astype(np.int64)
