"""Dose in mg from a model: grid index for discrete models, first action column for continuous ones."""

import numpy as np
from vanco_pk.targets import DOSE_GRID_MG

from vanco_offline.algos.dosing import action_to_mg, predict_dose_mg


class _Algo:
    """The d3rlpy surface predict_dose_mg reads: action type, predict, sample_action."""

    def __init__(self, kind: str, greedy: np.ndarray, sampled: np.ndarray):
        self.kind, self.greedy, self.sampled, self.seen = kind, greedy, sampled, None

    def get_action_type(self):
        return type("ActionSpace", (), {"name": self.kind})()

    def predict(self, x):
        self.seen = x
        return self.greedy

    def sample_action(self, x):
        self.seen = x
        return self.sampled


def test_discrete_actions_index_the_dose_grid():
    algo = _Algo("DISCRETE", np.array([0, 4, len(DOSE_GRID_MG) - 1]), np.array([1, 1, 1]))
    np.testing.assert_array_equal(predict_dose_mg(algo, np.zeros((3, 5))), DOSE_GRID_MG[[0, 4, -1]])
    sampled = predict_dose_mg(algo, np.zeros((3, 5)), sample=True)
    np.testing.assert_array_equal(sampled, DOSE_GRID_MG[[1, 1, 1]])
    assert algo.seen.dtype == np.float32


def test_continuous_actions_are_doses_and_one_observation_is_a_batch_of_one():
    algo = _Algo("CONTINUOUS", np.array([[1234.5]], dtype=np.float32), np.array([[10.0]]))
    dose = predict_dose_mg(algo, np.ones(7))
    assert algo.seen.shape == (1, 7)
    assert dose.dtype == np.float64 and dose.tolist() == [1234.5]
    assert action_to_mg(np.array([[250.0, 9.0], [500.0, 9.0]]), discrete=False).tolist() == [250.0, 500.0]
