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

from vanco_offline.algos import DiscreteVancoIQLConfig, FlatTransitions
from vanco_offline.algos.evaluators import GreedyQEvaluator, standard_evaluators
from vanco_offline.algos.torch.discrete_vanco_iql_impl import mean_level
from vanco_offline.data import convert, generate_cohort

SMALL = VectorEncoderFactory([16, 16])
N_LEVELS = len(DOSE_GRID_MG)


@pytest.fixture(scope="module")
def dataset():
    # Clinician-dosed stays from the vanco_pk simulator, doses as dose-grid indices.
    return convert(generate_cohort(30, seed=2), "discrete", fill_unmeasured_level=True).dataset


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
    # About the learned distribution (its most probable level), not how a dose is read off it.
    algo = _config(observation_scaler=None, weight_temp=10.0, **fast).create()
    _fit(algo, data, n_steps=300)
    assert algo.predict_action_probabilities(np.ones((1, 2), np.float32))[0].argmax() == 3
    assert algo.predict_action_probabilities(np.ones((1, 2), np.float32))[0, 3] > 0.5
    d3rlpy.seed(0)
    cloning = _config(observation_scaler=None, weight_temp=0.0, **fast).create()
    _fit(cloning, data, n_steps=300)
    assert cloning.predict_action_probabilities(np.ones((1, 2), np.float32))[0, 3] < 0.2


def _reference_level(probs: np.ndarray) -> np.ndarray:
    """The grid level nearest the policy's mean dose, in numpy, independently of mean_level."""
    mean_dose = probs @ DOSE_GRID_MG
    return np.abs(DOSE_GRID_MG[None, :] - mean_dose[:, None]).argmin(axis=1)


def test_the_greedy_level_is_the_one_nearest_the_mean_level():
    probs = np.zeros((3, N_LEVELS))
    probs[0, [2, 4, 9]] = [0.45, 0.15, 0.4]  # mean level 5.1 (the most probable is 2)
    probs[1, [0, 12]] = [0.3, 0.7]  # mean level 8.4
    probs[2, 5] = 1.0
    logits = torch.from_numpy(np.log(probs + 1e-12))
    assert mean_level(logits).tolist() == [5, 8, 5]


@pytest.fixture(scope="module")
def trained(dataset):
    d3rlpy.seed(0)
    algo = _config().create()
    _fit(algo, dataset, n_steps=60)
    return algo


def test_predict_is_the_level_nearest_the_policys_mean_dose(trained, dataset, observations):
    probs = trained.predict_action_probabilities(observations)
    levels = trained.predict(observations)
    np.testing.assert_array_equal(levels, _reference_level(probs.astype(np.float64)))
    nearest = np.abs(DOSE_GRID_MG[levels] - probs @ DOSE_GRID_MG)
    assert np.all(nearest <= DOSE_GRID_MG[1] / 2 + 1e-3)
    # The evaluators score the greedy dose, and predict_value is Q of the level it is given.
    states = FlatTransitions.from_dataset(dataset).observations
    expected_q = float(np.mean(trained.predict_value(states, trained.predict(states))))
    assert GreedyQEvaluator()(trained, dataset) == pytest.approx(expected_q, rel=1e-6)


def test_sample_action_samples_the_categorical_policy(trained, observations):
    state = np.repeat(observations[:1], 4000, axis=0)
    probs = trained.predict_action_probabilities(observations[:1])[0]
    torch.manual_seed(0)
    freq = np.bincount(trained.sample_action(state), minlength=N_LEVELS) / len(state)
    # 4,000 draws: every frequency within 0.035 of its probability (> 4.5 standard errors).
    np.testing.assert_allclose(freq, probs, atol=0.035)
    assert len(np.unique(trained.sample_action(state))) > 1


def test_save_load_torchscript_and_onnx_give_the_same_levels(trained, observations, tmp_path):
    expected = trained.predict(observations)
    trained.save(str(tmp_path / "model.d3"))
    loaded = d3rlpy.load_learnable(str(tmp_path / "model.d3"))
    assert type(loaded).__name__ == "DiscreteVancoIQL"
    np.testing.assert_array_equal(loaded.predict(observations), expected)
    trained.save_policy(str(tmp_path / "policy.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"))
    np.testing.assert_array_equal(session.run(None, {"input_0": observations})[0], expected)
    trained.save_policy(str(tmp_path / "policy.pt"))
    with torch.no_grad():
        scripted = torch.jit.load(str(tmp_path / "policy.pt"))(torch.from_numpy(observations)).numpy()
    np.testing.assert_array_equal(scripted, expected)


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


def test_a_model_saved_with_a_retired_decision_rule_is_refused_on_load():
    import json

    saved = json.loads(DiscreteVancoIQLConfig().serialize())
    assert (
        DiscreteVancoIQLConfig.deserialize_from_dict({**saved, "decision_rule": "mean"})
        == DiscreteVancoIQLConfig()
    )
    with pytest.raises(ValueError, match=r"decision_rule='mode', which this version no longer implements"):
        DiscreteVancoIQLConfig.deserialize_from_dict({**saved, "decision_rule": "mode"})
