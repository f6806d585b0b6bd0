"""DiscreteVancoIQL: IQL over the dose grid, with d3rlpy's interface."""

from __future__ import annotations

import d3rlpy
import numpy as np
import onnxruntime
import pytest
import torch
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import MDPDataset
from d3rlpy.logging import NoopAdapterFactory
from d3rlpy.models import VectorEncoderFactory
from d3rlpy.preprocessing import MinMaxActionScaler, StandardObservationScaler
from vanco_pk.targets import DOSE_GRID_MG

from vanco_offline.algos import DiscreteVancoIQLConfig
from vanco_offline.algos.evaluators import standard_evaluators
from vanco_offline.algos.synthetic import make_dosing_dataset

SMALL = VectorEncoderFactory([16, 16])
N_LEVELS = len(DOSE_GRID_MG)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def dataset():
    return make_dosing_dataset(n_stays=30, action="discrete", seed=2)


@pytest.fixture(scope="module")
def observations(dataset):
    return np.concatenate([e.observations for e in dataset.episodes])[:40]


def _config(**kwargs) -> DiscreteVancoIQLConfig:
    defaults = dict(
        actor_encoder_factory=SMALL,
        critic_encoder_factory=SMALL,
        value_encoder_factory=SMALL,
        batch_size=32,
        observation_scaler=StandardObservationScaler(),
    )
    return DiscreteVancoIQLConfig(**{**defaults, **kwargs})


def _fit(algo, dataset, n_steps=20, **kwargs):
    return algo.fit(
        dataset,
        n_steps=n_steps,
        n_steps_per_epoch=n_steps,
        show_progress=False,
        logger_adapter=NoopAdapterFactory(),
        **kwargs,
    )


def test_fit_predict_and_evaluators_on_the_dose_grid(dataset, observations):
    d3rlpy.seed(0)
    algo = _config().create()
    metrics = _fit(algo, dataset, evaluators=standard_evaluators())[-1][1]
    assert np.isfinite([metrics[k] for k in ("critic_loss", "actor_loss", "greedy_q", "mean_v")]).all()
    assert 0.0 <= metrics["action_saturation"] <= 1.0
    levels = algo.predict(observations)
    assert levels.shape == (len(observations),) and levels.dtype.kind == "i"
    assert levels.min() >= 0 and levels.max() < N_LEVELS
    probs = algo.predict_action_probabilities(observations)
    assert probs.shape == (len(observations), N_LEVELS)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(levels, probs.argmax(axis=1))  # greedy = most probable level
    sampled = algo.sample_action(observations)
    assert sampled.min() >= 0 and sampled.max() < N_LEVELS
    assert algo.predict_value(observations, levels).shape == (len(observations),)


def test_the_policy_learns_the_advantage_weighted_level():
    # One state; level 3 earns 1, every other level 0. The behaviour picks uniformly, so
    # behaviour cloning would be indifferent; advantage weighting must pick level 3.
    rng = np.random.default_rng(0)
    n = 1200
    actions = rng.integers(0, N_LEVELS, n)
    data = MDPDataset(
        observations=np.ones((n, 2), np.float32),
        actions=actions,
        rewards=(actions == 3).astype(np.float32).reshape(-1, 1),
        terminals=np.ones(n, np.float32),
        action_space=ActionSpace.DISCRETE,
        action_size=N_LEVELS,
    )
    d3rlpy.seed(0)
    fast = dict(actor_learning_rate=3e-3, critic_learning_rate=3e-3)
    algo = _config(observation_scaler=None, weight_temp=10.0, **fast).create()
    _fit(algo, data, n_steps=300)
    assert algo.predict(np.ones((1, 2), np.float32))[0] == 3
    assert algo.predict_action_probabilities(np.ones((1, 2), np.float32))[0, 3] > 0.5
    d3rlpy.seed(0)
    cloning = _config(observation_scaler=None, weight_temp=0.0, **fast).create()
    _fit(cloning, data, n_steps=300)
    assert cloning.predict_action_probabilities(np.ones((1, 2), np.float32))[0, 3] < 0.2


def test_save_load_and_onnx_export_give_the_same_levels(dataset, observations, tmp_path):
    d3rlpy.seed(0)
    algo = _config().create()
    _fit(algo, dataset, n_steps=10)
    algo.save(str(tmp_path / "model.d3"))
    loaded = d3rlpy.load_learnable(str(tmp_path / "model.d3"))
    assert type(loaded).__name__ == "DiscreteVancoIQL"
    np.testing.assert_array_equal(loaded.predict(observations), algo.predict(observations))
    algo.save_policy(str(tmp_path / "policy.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"))
    np.testing.assert_array_equal(session.run(None, {"input_0": observations})[0], algo.predict(observations))


def test_actions_that_are_not_grid_indices_are_refused(dataset):
    episodes = dataset.episodes
    actions = np.concatenate([e.actions for e in episodes]).astype(np.float32).reshape(-1)
    actions[20] = 2.5  # episode 1, step 5
    broken = MDPDataset(
        observations=np.concatenate([e.observations for e in episodes]),
        actions=actions.reshape(-1, 1),
        rewards=np.concatenate([e.rewards for e in episodes]),
        terminals=np.concatenate([np.eye(1, e.size(), e.size() - 1).reshape(-1) for e in episodes]),
        action_space=ActionSpace.DISCRETE,
        action_size=N_LEVELS,
    )
    message = r"not dose-level indices in 0\.\.12; the first is 2\.5 in episode 1, step 5"
    with pytest.raises(ValueError, match=message):
        _fit(_config().create(), broken)


def test_an_action_scaler_is_refused():
    with pytest.raises(ValueError, match="action_scaler must be None"):
        DiscreteVancoIQLConfig(action_scaler=MinMaxActionScaler(minimum=np.zeros(1), maximum=np.ones(1)))
