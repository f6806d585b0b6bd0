"""A small tabular MDP whose policy values are known exactly, to check the OPE estimators (test helper).

The simulator's ground truth is itself an estimate from rollouts; here the value of any
policy follows from backward induction, so an estimator's error is measured against the
exact answer.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vanco_offline.ope.trajectories import Trajectories

__all__ = ["TabularMDP"]


@dataclasses.dataclass(frozen=True)
class TabularMDP:
    """Finite-horizon MDP with ``S`` states, ``K`` actions and an absorbing terminal state.

    Attributes
    ----------
    transition : ndarray of shape (S, K, S)
        ``P(s' | s, a)``.
    reward : ndarray of shape (S, K)
        Mean reward of taking ``a`` in ``s``; observed with Gaussian noise ``reward_noise``.
    initial : ndarray of shape (S,)
        Initial state distribution.
    horizon : int
        Decisions per episode (a timeout after the last one).
    terminal : int
        State that ends the episode when entered (value 0).
    reward_noise : float
    """

    transition: np.ndarray
    reward: np.ndarray
    initial: np.ndarray
    horizon: int
    terminal: int
    reward_noise: float = 0.5

    @property
    def n_states(self) -> int:
        return self.reward.shape[0]

    @property
    def n_actions(self) -> int:
        return self.reward.shape[1]

    @classmethod
    def random(
        cls,
        n_states: int = 5,
        n_actions: int = 3,
        horizon: int = 5,
        seed: int = 0,
        terminal_prob: float = 0.05,
    ) -> TabularMDP:
        """A random MDP whose last state is terminal, entered with probability ~``terminal_prob``."""
        rng = np.random.default_rng(seed)
        transition = rng.dirichlet(np.ones(n_states - 1), size=(n_states, n_actions)) * (1 - terminal_prob)
        transition = np.concatenate([transition, np.full((n_states, n_actions, 1), terminal_prob)], axis=2)
        reward = rng.normal(0.0, 1.0, size=(n_states, n_actions))
        reward[-1] = 0.0
        initial = np.append(rng.dirichlet(np.ones(n_states - 1)), 0.0)
        return cls(transition, reward, initial, horizon, n_states - 1)

    def value(self, policy: np.ndarray, gamma: float) -> float:
        """Exact expected discounted return of the stationary ``policy`` (S, K)."""
        v = np.zeros(self.n_states)
        for _ in range(self.horizon):
            q = self.reward + gamma * self.transition @ v
            v = (policy * q).sum(axis=1)
            v[self.terminal] = 0.0
        return float(self.initial @ v)

    def q_values(self, policy: np.ndarray, gamma: float) -> np.ndarray:
        """Exact ``Q(s, t, a)`` of ``policy``, shape (H, S, K)."""
        out = np.zeros((self.horizon, self.n_states, self.n_actions))
        v = np.zeros(self.n_states)
        for t in reversed(range(self.horizon)):
            q = self.reward + gamma * self.transition @ v
            q[self.terminal] = 0.0
            out[t] = q
            v = (policy * q).sum(axis=1)
        return out

    def sample(self, policy: np.ndarray, n_episodes: int, seed: int, log_probs: bool = True) -> Trajectories:
        """``n_episodes`` episodes of ``policy``; observations are one-hot states."""
        rng = np.random.default_rng(seed)
        h, s_count = self.horizon, self.n_states
        states = np.zeros((n_episodes, h), dtype=np.int64)
        actions = np.zeros((n_episodes, h), dtype=np.int64)
        rewards = np.zeros((n_episodes, h))
        mask = np.zeros((n_episodes, h), dtype=bool)
        state = rng.choice(s_count, size=n_episodes, p=self.initial)
        alive = np.ones(n_episodes, dtype=bool)
        terminal = np.zeros(n_episodes, dtype=bool)
        for t in range(h):
            action = _draw(policy[state], rng)
            states[:, t], actions[:, t], mask[:, t] = state, action, alive
            noise = rng.normal(0.0, self.reward_noise, size=n_episodes)
            rewards[:, t] = np.where(alive, self.reward[state, action] + noise, 0.0)
            state = np.where(alive, _draw(self.transition[state, action], rng), state)
            ended = alive & (state == self.terminal)
            terminal |= ended
            alive &= ~ended
        actions[~mask] = 0
        # Padded steps repeat the last logged state, as Trajectories expects.
        lengths = mask.sum(axis=1)
        states = np.where(mask, states, states[np.arange(n_episodes), lengths - 1][:, None])
        observations = np.eye(s_count, dtype=np.float32)[states]
        prob = np.where(mask, policy[states, actions], 1.0) if log_probs else None
        return Trajectories(
            observations=observations,
            actions=actions,
            raw_actions=actions.astype(np.float64),
            rewards=rewards,
            mask=mask,
            terminal=terminal,
            behavior_prob=prob,
            stay_ids=list(range(n_episodes)),
            action_values=np.arange(self.n_actions, dtype=np.float64),
            continuous=False,
        )

    def policy_pmf(self, policy: np.ndarray, trajectories: Trajectories) -> np.ndarray:
        """A stationary policy's action distribution at every logged step, shape (n, H, K)."""
        states = trajectories.observations.argmax(axis=2)
        return policy[states]


def _draw(pmf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(len(pmf))[:, None]
    return np.minimum((u >= np.cumsum(pmf, axis=1)).sum(axis=1), pmf.shape[1] - 1)
