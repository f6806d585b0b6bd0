"""The seed's diagnostics as d3rlpy evaluators, checked against hand-computed numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import MDPDataset
from d3rlpy.preprocessing import MinMaxActionScaler, StandardRewardScaler

from vanco_offline.algos.evaluators import (
    ActionSaturationEvaluator,
    GreedyQEvaluator,
    MeanRewardEvaluator,
    MeanValueEvaluator,
    MonteCarloReturnEvaluator,
    PolicyImprovementEvaluator,
    standard_evaluators,
)


@dataclasses.dataclass
class FakeAlgo:
    """Greedy dose = 1000 * obs[:, 0]; Q(s, a) = obs[:, 1] - a / 1000; V(s) = obs[:, 1]."""

    gamma: float = 0.5
    action_scaler: object = None
    reward_scaler: object = None
    action_size: int = 1
    discrete: bool = False

    def get_action_type(self):
        return ActionSpace.DISCRETE if self.discrete else ActionSpace.CONTINUOUS

    def predict(self, x):
        if self.discrete:
            return x[:, 0].astype(np.int64)
        return (1000.0 * x[:, :1]).astype(np.float32)

    def predict_value(self, x, action):
        dose = np.asarray(action, np.float64).reshape(len(x), -1)[:, 0]
        return (x[:, 1] - dose / 1000.0).astype(np.float32)

    def predict_state_value(self, x):
        return x[:, 1].astype(np.float32)


def _dataset() -> MDPDataset:
    # Episode A (terminal): 3 steps; episode B (timeout): 3 steps, of which 2 are transitions.
    obs = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [3, 6]], np.float32)
    actions = np.array([[0], [1000], [3000], [2000], [500], [0]], np.float32)
    rewards = np.array([[1], [2], [4], [-1], [1], [8]], np.float32)
    return MDPDataset(
        observations=obs,
        actions=actions,
        rewards=rewards,
        terminals=np.array([0, 0, 1, 0, 0, 0], np.float32),
        timeouts=np.array([0, 0, 0, 0, 0, 1], np.float32),
        action_space=ActionSpace.CONTINUOUS,
    )


def test_mean_reward_and_mc_return_over_the_transitions():
    ds, algo = _dataset(), FakeAlgo()
    # Transitions: A steps 0,1,2 and B steps 0,1 (B's last step is not a transition).
    assert MeanRewardEvaluator()(algo, ds) == pytest.approx((1 + 2 + 4 - 1 + 1) / 5)
    # gamma 0.5; A: 1+1+1=3, 2+2=4, 4; B (truncated at its end): -1+0.5+2=1.5, 1+4=5.
    assert MonteCarloReturnEvaluator()(algo, ds) == pytest.approx((3 + 4 + 4 + 1.5 + 5) / 5)
    assert MonteCarloReturnEvaluator(gamma=0.0)(algo, ds) == pytest.approx((1 + 2 + 4 - 1 + 1) / 5)
    # Rewards go through the algorithm's reward scaler, as in training: (r - 1) / (2 + eps).
    scaler = StandardRewardScaler(mean=1.0, std=2.0)
    expected = ((1 + 2 + 4 - 1 + 1) / 5 - 1) / (2 + scaler.eps)
    assert MonteCarloReturnEvaluator(gamma=0.0)(FakeAlgo(reward_scaler=scaler), ds) == pytest.approx(expected)


def test_value_and_greedy_q_and_relative_improvement():
    ds, algo = _dataset(), FakeAlgo()
    states = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [0, 5]], np.float64)
    logged = np.array([0, 1000, 3000, 2000, 500], np.float64)
    assert MeanValueEvaluator()(algo, ds) == pytest.approx(states[:, 1].mean())
    q_greedy = states[:, 1] - states[:, 0]
    assert GreedyQEvaluator()(algo, ds) == pytest.approx(q_greedy.mean())
    q_logged = states[:, 1] - logged / 1000
    expected = (q_greedy.mean() - q_logged.mean()) / abs(q_logged.mean())
    assert PolicyImprovementEvaluator()(algo, ds) == pytest.approx(expected)


def test_saturation_uses_the_policy_bounds_through_the_action_scaler():
    ds = _dataset()
    # Greedy doses 0, 1000, 2000, 3000, 0 mg: three of five within 1 % of 0 or 3000 mg.
    clinical = FakeAlgo(action_scaler=MinMaxActionScaler(minimum=np.array([0.0]), maximum=np.array([3000.0])))
    assert ActionSaturationEvaluator()(clinical, ds) == pytest.approx(3 / 5)
    # Without a scaler the policy's range is [-1, 1]: 0 is inside, 1000..3000 are beyond +1.
    assert ActionSaturationEvaluator()(FakeAlgo(), ds) == pytest.approx(3 / 5)
    assert ActionSaturationEvaluator(low=0.0, high=10000.0)(FakeAlgo(), ds) == pytest.approx(2 / 5)
    discrete = FakeAlgo(discrete=True, action_size=4)  # levels 0, 1, 2, 3, 0
    assert ActionSaturationEvaluator()(discrete, ds) == pytest.approx(3 / 5)


def test_held_out_episodes_and_the_standard_set():
    ds, algo = _dataset(), FakeAlgo()
    first = ds.episodes[:1]
    assert MeanRewardEvaluator(episodes=first)(algo, ds) == pytest.approx(7 / 3)
    assert set(standard_evaluators()) == {
        "greedy_q", "mean_v", "mc_return", "mean_reward", "relative_improvement", "action_saturation"
    }


def test_bad_evaluator_arguments_and_algorithms_without_v():
    with pytest.raises(ValueError, match=r"tolerance=0\.7"):
        ActionSaturationEvaluator(tolerance=0.7)
    with pytest.raises(ValueError, match="give both low and high"):
        ActionSaturationEvaluator(low=0.0)

    class NoValue:
        pass

    with pytest.raises(ValueError, match="NoValue has no predict_state_value"):
        MeanValueEvaluator()(NoValue(), _dataset())
