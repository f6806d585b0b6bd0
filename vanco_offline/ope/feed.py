"""How d3rlpy's FQE gets the evaluated policy's next actions: a batch-synchronised feed.

See :mod:`vanco_offline.ope.fqe` for why. :class:`TransitionTable` holds the logged
transitions in FQE's input space and draws mini-batches whose next actions are sampled
from the evaluated policy's distribution at the next logged step; :class:`TargetActionFeed`
hands exactly those actions to d3rlpy's FQE when its update asks the "algorithm" for them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from d3rlpy.dataset import TransitionMiniBatch
from d3rlpy.ope import FQEConfig

from vanco_offline.ope.trajectories import Trajectories

__all__ = ["FQEInputs", "TargetActionFeed", "TransitionTable", "scaled_next"]


class TargetActionFeed:
    """Stands in for the evaluated algorithm inside d3rlpy's FQE update.

    d3rlpy's FQE calls ``algo.impl.predict_best_action(next_observations)`` once per update.
    :func:`fit_fqe` sets the batch's next actions with :meth:`expect` right before each
    update; the call returns them after checking that it was given that batch's (scaled)
    next observations.
    """

    def __init__(self) -> None:
        self._actions: torch.Tensor | None = None
        self._observations: torch.Tensor | None = None

    @property
    def impl(self) -> TargetActionFeed:
        return self

    def expect(self, next_observations: torch.Tensor, next_actions: torch.Tensor) -> None:
        self._observations, self._actions = next_observations, next_actions

    def predict_best_action(self, x: torch.Tensor) -> torch.Tensor:
        actions, expected = self._actions, self._observations
        self._actions = self._observations = None
        if actions is None or expected is None:
            raise RuntimeError("TargetActionFeed was asked for actions outside an update set up by fit_fqe")
        if x.shape != expected.shape or not torch.equal(x, expected):
            raise RuntimeError(
                "TargetActionFeed was asked for the actions of observations that are not the batch's"
            )
        return actions

    def predict(self, x: Any) -> Any:
        raise RuntimeError("this FQE evaluates precomputed actions; it has no policy to predict with")

    sample_action = predict


class TransitionTable:
    """The logged transitions as FQE sees them, and mini-batches drawn from them.

    A stay's last transition is terminal for FQE (the estimand ends with the record; see
    :mod:`vanco_offline.ope.trajectories`); FQE's input at each step is :class:`FQEInputs`.
    """

    def __init__(self, trajectories: Trajectories, target_pmf: np.ndarray, inputs: FQEInputs):
        traj = trajectories
        stay, step = np.nonzero(traj.mask)
        last = step + 1 >= traj.lengths[stay]
        next_step = np.where(last, step, step + 1)
        self.observations = inputs.build(traj, stay, step)
        self.next_observations = inputs.build(traj, stay, next_step)
        # The next action only matters where there is a next state; elsewhere any will do.
        self.next_cdf = np.cumsum(target_pmf[stay, next_step], axis=1)
        column = traj.raw_actions[stay, step] if traj.continuous else traj.actions[stay, step]
        self.actions = column.astype(np.float32).reshape(-1, 1)
        self.rewards = traj.rewards[stay, step].astype(np.float32).reshape(-1, 1)
        self.terminals = last.astype(np.float32).reshape(-1, 1)
        self.action_values = traj.action_values
        self.continuous = traj.continuous

    def sample(self, rng: np.random.Generator, batch_size: int) -> TransitionMiniBatch:
        """A mini-batch (uniform over transitions) with next actions drawn from the policy."""
        size = min(batch_size, len(self.actions))
        index = rng.integers(0, len(self.actions), size=size)
        u = rng.random(size)[:, None]
        choice = np.minimum((u >= self.next_cdf[index]).sum(axis=1), self.next_cdf.shape[1] - 1)
        next_actions = self.action_values[choice] if self.continuous else choice
        return TransitionMiniBatch(
            observations=self.observations[index],
            actions=self.actions[index],
            rewards=self.rewards[index],
            next_observations=self.next_observations[index],
            next_actions=next_actions.astype(np.float32).reshape(-1, 1),
            terminals=self.terminals[index],
            intervals=np.ones((size, 1), dtype=np.float32),
            transitions=[],
        )


@dataclasses.dataclass(frozen=True)
class FQEInputs:
    """What FQE's Q-function sees at a logged step.

    The observation; with ``step_scale``, the decision step over ``step_scale``; for each of
    the last ``history`` steps, the logged dose then (-1 before the stay's first step) and
    the change of every observation column since then. The history makes the state closer
    to Markov: a level after a known dose tells the patient's clearance, which a single
    observation does not, and which the history-using policies (MIPD, the oracle through
    its choices) exploit.
    """

    step_scale: float | None = None
    history: int = 0

    def build(self, trajectories: Trajectories, stay: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Inputs of the (stay, step) cells, float32 of shape (m, width)."""
        traj = trajectories
        columns = [traj.observations[stay, step].astype(np.float32)]
        if self.step_scale is not None:
            columns.append((np.asarray(step, dtype=np.float32) / self.step_scale).reshape(-1, 1))
        step = np.asarray(step)
        for lag in range(1, int(self.history) + 1):
            before = step < lag
            back = np.where(before, 0, step - lag)
            dose = np.where(before, -1.0, traj.action_values[traj.actions[stay, back]])
            change = traj.observations[stay, step] - traj.observations[stay, back]
            change = np.where(before[:, None], 0.0, change)
            columns += [dose.astype(np.float32).reshape(-1, 1), change.astype(np.float32)]
        return np.concatenate(columns, axis=1)


def scaled_next(batch: TransitionMiniBatch, config: FQEConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's next observations and next actions as FQE's update will see them."""
    observations = torch.from_numpy(np.asarray(batch.next_observations))
    actions = torch.from_numpy(batch.next_actions)
    if config.observation_scaler is not None:
        observations = config.observation_scaler.transform(observations)
    if config.action_scaler is not None:
        actions = config.action_scaler.transform(actions)
    return observations, actions
