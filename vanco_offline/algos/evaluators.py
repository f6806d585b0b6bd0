"""Training diagnostics as d3rlpy evaluators: ``evaluator(algo, dataset) -> float``.

Pass them to ``fit(..., evaluators={"greedy_q": GreedyQEvaluator(), ...})``; each runs on
all transitions of the dataset (or of ``episodes`` if given, e.g. a held-out split).
:func:`standard_evaluators` returns the full set under the names used in the logs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import EpisodeBase, ReplayBufferBase

from vanco_offline.algos.fast.sampler import FlatTransitions

__all__ = [
    "ActionSaturationEvaluator",
    "GreedyQEvaluator",
    "MeanRewardEvaluator",
    "MeanValueEvaluator",
    "MonteCarloReturnEvaluator",
    "PolicyImprovementEvaluator",
    "standard_evaluators",
]

_CHUNK = 4096  # rows per predict call: bounded memory on large datasets


def _flat(dataset: ReplayBufferBase, episodes: Sequence[EpisodeBase] | None) -> FlatTransitions:
    if episodes is not None:
        return FlatTransitions.from_episodes(episodes)
    return FlatTransitions.from_episodes(dataset.episodes)


def _chunked(fn: Any, *arrays: np.ndarray) -> np.ndarray:
    n = len(arrays[0])
    return np.concatenate([np.asarray(fn(*(a[i : i + _CHUNK] for a in arrays))) for i in range(0, n, _CHUNK)])


def _logged_actions(algo: Any, flat: FlatTransitions) -> np.ndarray:
    if algo.get_action_type() == ActionSpace.DISCRETE:
        return flat.actions.reshape(-1).astype(np.int64)
    return flat.actions


def _greedy_and_logged_q(algo: Any, flat: FlatTransitions) -> tuple[np.ndarray, np.ndarray]:
    greedy = _chunked(algo.predict, flat.observations)
    q_greedy = _chunked(algo.predict_value, flat.observations, greedy)
    q_logged = _chunked(algo.predict_value, flat.observations, _logged_actions(algo, flat))
    return q_greedy, q_logged


@dataclasses.dataclass(frozen=True)
class GreedyQEvaluator:
    """Mean learned Q of the greedy policy's action, ``mean Q(s, pi(s))`` over the data's states."""

    episodes: Sequence[EpisodeBase] | None = None

    def __call__(self, algo: Any, dataset: ReplayBufferBase) -> float:
        flat = _flat(dataset, self.episodes)
        greedy = _chunked(algo.predict, flat.observations)
        return float(np.mean(_chunked(algo.predict_value, flat.observations, greedy)))


@dataclasses.dataclass(frozen=True)
class MeanValueEvaluator:
    """Mean of the learned state value V(s) over the data's states (VancoIQL and DiscreteVancoIQL)."""

    episodes: Sequence[EpisodeBase] | None = None

    def __call__(self, algo: Any, dataset: ReplayBufferBase) -> float:
        if not hasattr(algo, "predict_state_value"):
            raise ValueError(
                f"MeanValueEvaluator needs an algorithm with a state-value network (VancoIQL, "
                f"DiscreteVancoIQL); {type(algo).__name__} has no predict_state_value"
            )
        flat = _flat(dataset, self.episodes)
        return float(np.mean(_chunked(algo.predict_state_value, flat.observations)))


@dataclasses.dataclass(frozen=True)
class MonteCarloReturnEvaluator:
    """Mean discounted return-to-go of the logged data, over the same states as :class:`MeanValueEvaluator`.

    The data's own value of its states, comparable with mean V and greedy Q: rewards go
    through the algorithm's reward scaler (as in training) and are discounted by
    ``gamma`` (default: the algorithm's). Returns of episodes cut by a timeout are
    truncated, not bootstrapped.
    """

    gamma: float | None = None
    episodes: Sequence[EpisodeBase] | None = None

    def __call__(self, algo: Any, dataset: ReplayBufferBase) -> float:
        gamma = algo.gamma if self.gamma is None else self.gamma
        flat = _flat(dataset, self.episodes)
        scaler = algo.reward_scaler
        returns = np.empty(len(flat))
        for e, episode in enumerate(flat.episodes):
            rewards = np.asarray(episode.rewards, dtype=np.float64).reshape(-1)
            if scaler:
                rewards = np.asarray(scaler.transform_numpy(rewards.reshape(-1, 1)), np.float64).reshape(-1)
            rtg = np.empty_like(rewards)
            acc = 0.0
            for t in range(len(rewards) - 1, -1, -1):
                acc = rewards[t] + gamma * acc
                rtg[t] = acc
            rows = flat.episode_index == e
            returns[rows] = rtg[flat.step_index[rows]]
        return float(returns.mean())


@dataclasses.dataclass(frozen=True)
class MeanRewardEvaluator:
    """Mean logged reward per transition (unscaled): how the data's behaviour policy scores."""

    episodes: Sequence[EpisodeBase] | None = None

    def __call__(self, algo: Any, dataset: ReplayBufferBase) -> float:
        return float(np.mean(_flat(dataset, self.episodes).rewards))


@dataclasses.dataclass(frozen=True)
class PolicyImprovementEvaluator:
    """Relative improvement of the greedy policy over the logged actions, judged by the learned Q.

    ``(mean Q(s, pi(s)) - mean Q(s, a_logged)) / |mean Q(s, a_logged)|``. A large value is
    as much a warning as a promise: it is the critic's opinion about actions it may never
    have seen (a critic trained on unscaled doses can rate the maximum dose best).
    """

    episodes: Sequence[EpisodeBase] | None = None

    def __call__(self, algo: Any, dataset: ReplayBufferBase) -> float:
        q_greedy, q_logged = _greedy_and_logged_q(algo, _flat(dataset, self.episodes))
        base = float(np.mean(q_logged))
        return (float(np.mean(q_greedy)) - base) / max(abs(base), 1e-8)


@dataclasses.dataclass(frozen=True)
class ActionSaturationEvaluator:
    """Fraction of greedy actions at the bounds of what the policy can output.

    Continuous: within ``tolerance`` x (high - low) of ``low`` or ``high``. By default
    the bounds are the policy's output range [-1, 1] mapped through the algorithm's
    action scaler: with ``MinMaxActionScaler(0, 3000)`` that is 0 and 3000 mg; without
    an action scaler it is -1 and 1 (where a tanh policy fit to unscaled doses ends up). Discrete:
    the first or last dose level.
    """

    low: float | None = None
    high: float | None = None
    tolerance: float = 0.01
    episodes: Sequence[EpisodeBase] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.tolerance < 0.5:
            raise ValueError(f"ActionSaturationEvaluator: tolerance={self.tolerance} must be in [0, 0.5)")
        if (self.low is None) != (self.high is None):
            raise ValueError("ActionSaturationEvaluator: give both low and high, or neither")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"ActionSaturationEvaluator: low={self.low} must be below high={self.high}")

    def __call__(self, algo: Any, dataset: ReplayBufferBase) -> float:
        flat = _flat(dataset, self.episodes)
        greedy = _chunked(algo.predict, flat.observations)
        if algo.get_action_type() == ActionSpace.DISCRETE:
            n_levels = algo.action_size
            return float(np.mean((greedy == 0) | (greedy == n_levels - 1)))
        low, high = self._bounds(algo, greedy.shape[1])
        margin = self.tolerance * (high - low)
        at_bound = (greedy <= low + margin) | (greedy >= high - margin)
        return float(np.mean(at_bound.any(axis=1)))

    def _bounds(self, algo: Any, action_size: int) -> tuple[np.ndarray, np.ndarray]:
        if self.low is not None and self.high is not None:
            return np.full(action_size, self.low), np.full(action_size, self.high)
        unit = np.stack([-np.ones(action_size), np.ones(action_size)]).astype(np.float32)
        scaler = algo.action_scaler
        ends = np.asarray(scaler.reverse_transform_numpy(unit)) if scaler else unit
        return ends[0].astype(np.float64), ends[1].astype(np.float64)


def standard_evaluators(episodes: Sequence[EpisodeBase] | None = None) -> dict[str, Any]:
    """All six diagnostics under their log names, for ``fit(evaluators=...)``."""
    return {
        "greedy_q": GreedyQEvaluator(episodes),
        "mean_v": MeanValueEvaluator(episodes),
        "mc_return": MonteCarloReturnEvaluator(episodes=episodes),
        "mean_reward": MeanRewardEvaluator(episodes),
        "relative_improvement": PolicyImprovementEvaluator(episodes),
        "action_saturation": ActionSaturationEvaluator(episodes=episodes),
    }
