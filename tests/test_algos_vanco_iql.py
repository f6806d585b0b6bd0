"""VancoIQL behaves like a d3rlpy algorithm: save/load, export, fit with logging, scalers, seeds, errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import d3rlpy
import numpy as np
import onnxruntime
import pytest
import torch
from d3rlpy.base import LearnableConfig
from d3rlpy.logging import FileAdapterFactory, NoopAdapterFactory
from d3rlpy.models import VectorEncoderFactory
from d3rlpy.preprocessing import MinMaxActionScaler, StandardObservationScaler, StandardRewardScaler
from d3rlpy.serializable_config import CONFIG_STORAGE
from torch.distributions import Normal

from vanco_offline.algos import DiscreteVancoIQLConfig, FastReplayBuffer, VancoIQLConfig
from vanco_offline.algos.evaluators import standard_evaluators
from vanco_offline.algos.fast.fitting import fit_threads
from vanco_offline.data import convert, generate_cohort

SMALL = VectorEncoderFactory([16, 16])


def _cohort(n_stays: int, seed: int):
    """Clinician-dosed stays from the vanco_pk simulator, doses in mg (15 observations a stay)."""
    return convert(generate_cohort(n_stays, seed=seed), "continuous", fill_unmeasured_level=True).dataset


@pytest.fixture(scope="module")
def dataset():
    return _cohort(30, seed=1)


@pytest.fixture(scope="module")
def observations(dataset):
    return np.concatenate([e.observations for e in dataset.episodes])[:50]


def _clinical() -> MinMaxActionScaler:
    return MinMaxActionScaler(minimum=np.array([0.0]), maximum=np.array([3000.0]))


def _config(**kwargs) -> VancoIQLConfig:
    defaults = dict(
        actor_encoder_factory=SMALL,
        critic_encoder_factory=SMALL,
        value_encoder_factory=SMALL,
        batch_size=32,
        observation_scaler=StandardObservationScaler(),
        action_scaler=_clinical(),
    )
    return VancoIQLConfig(**{**defaults, **kwargs})


def _fit(algo, dataset, n_steps=20, **kwargs):
    return algo.fit(
        dataset,
        n_steps=n_steps,
        n_steps_per_epoch=kwargs.pop("n_steps_per_epoch", n_steps),
        show_progress=False,
        logger_adapter=kwargs.pop("logger_adapter", NoopAdapterFactory()),
        **kwargs,
    )


def test_both_configs_are_registered_once_under_unique_names():
    registry = CONFIG_STORAGE[LearnableConfig].config_list
    assert registry["vanco_iql"] is VancoIQLConfig
    assert registry["discrete_vanco_iql"] is DiscreteVancoIQLConfig
    assert list(registry).count("vanco_iql") == 1
    with pytest.raises(AssertionError, match="already registered"):
        d3rlpy.base.register_learnable(VancoIQLConfig)


@pytest.mark.slow
def test_save_then_load_learnable_in_a_fresh_process_predicts_the_same(dataset, observations, tmp_path):
    d3rlpy.seed(0)
    algo = _config().create()
    _fit(algo, dataset)
    path, obs_path, out_path = tmp_path / "model.d3", tmp_path / "obs.npy", tmp_path / "out.json"
    algo.save(str(path))
    np.save(obs_path, observations)
    code = (
        "import json, sys, numpy as np, vanco_offline, d3rlpy\n"
        f"algo = d3rlpy.load_learnable({str(path)!r})\n"
        f"obs = np.load({str(obs_path)!r})\n"
        "act = algo.predict(obs)\n"
        "out = {'type': type(algo).__name__, 'act': act.tolist(), 'q': algo.predict_value(obs, act).tolist(),"
        " 'v': algo.predict_state_value(obs).tolist()}\n"
        f"json.dump(out, open({str(out_path)!r}, 'w'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    loaded = json.loads(out_path.read_text())
    assert loaded["type"] == "VancoIQL"
    act = algo.predict(observations)
    np.testing.assert_array_equal(np.asarray(loaded["act"], np.float32), act)
    np.testing.assert_array_equal(np.asarray(loaded["q"], np.float32), algo.predict_value(observations, act))
    np.testing.assert_array_equal(np.asarray(loaded["v"], np.float32), algo.predict_state_value(observations))
    # The optimizer state is checkpointed too: training resumes identically.
    again = d3rlpy.load_learnable(str(path))
    batch = FastReplayBuffer(dataset, seed=0).sample_transition_batch(32)
    assert again.update(batch) == algo.update(batch)


def test_save_policy_torchscript_and_onnx_give_the_same_doses(dataset, observations, tmp_path):
    d3rlpy.seed(0)
    algo = _config().create()
    _fit(algo, dataset, n_steps=10)
    expected = algo.predict(observations)
    assert expected.shape == (len(observations), 1)
    assert np.all((expected >= 0.0) & (expected <= 3000.0))
    algo.save_policy(str(tmp_path / "policy.pt"))
    algo.save_policy(str(tmp_path / "policy.onnx"))
    scripted = torch.jit.load(str(tmp_path / "policy.pt"))
    with torch.no_grad():
        scripted_out = scripted(torch.from_numpy(observations)).numpy()
    np.testing.assert_allclose(scripted_out, expected, rtol=1e-5, atol=1e-3)
    session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"))
    onnx_out = session.run(None, {"input_0": observations})[0]
    np.testing.assert_allclose(onnx_out, expected, rtol=1e-5, atol=1e-3)


def test_fit_logs_losses_and_evaluators_to_files(dataset, tmp_path):
    seen = []

    def records_its_dataset(algo, data):
        seen.append(data)
        return 0.0

    d3rlpy.seed(0)
    algo = _config().create()
    evaluators = {**standard_evaluators(), "dataset_check": records_its_dataset}
    results = _fit(
        algo,
        dataset,
        n_steps=20,
        n_steps_per_epoch=10,
        experiment_name="vanco",
        with_timestamp=False,
        logger_adapter=FileAdapterFactory(root_dir=str(tmp_path)),
        evaluators=evaluators,
    )
    assert [epoch for epoch, _ in results] == [1, 2]
    metrics = results[-1][1]
    for name in (*standard_evaluators(), "critic_loss", "actor_loss", "weight_mean"):
        assert math.isfinite(metrics[name]), name
        assert (tmp_path / "vanco" / f"{name}.csv").exists(), name
    assert (tmp_path / "vanco" / "params.json").exists()
    assert (tmp_path / "vanco" / "model_20.d3").exists()
    # Evaluators get the user's dataset, not fit's internal sampling view.
    assert seen == [dataset, dataset]


def test_build_with_dataset_then_predict_and_reward_scaler(dataset, observations):
    algo = _config(reward_scaler=StandardRewardScaler(), observation_scaler=None).create()
    algo.build_with_dataset(dataset)
    assert algo.predict(observations).shape == (len(observations), 1)
    assert algo.predict_state_value(observations).shape == (len(observations),)
    sampled = algo.sample_action(observations)
    assert np.all((sampled >= 0.0) & (sampled <= 3000.0))
    results = _fit(algo, dataset, n_steps=10)
    assert algo.reward_scaler.built and math.isfinite(results[-1][1]["critic_loss"])


def test_same_seed_same_numbers_and_another_seed_differs(dataset, observations):
    def run(seed):
        d3rlpy.seed(seed)
        algo = _config().create()
        losses = _fit(algo, dataset)[-1][1]
        return losses["critic_loss"], algo.predict(observations)

    (loss_a, act_a), (loss_b, act_b), (_, act_c) = run(0), run(0), run(1)
    assert loss_a == loss_b
    np.testing.assert_array_equal(act_a, act_b)
    assert not np.array_equal(act_a, act_c)


def test_raw_mg_doses_are_refused_with_the_fix_in_the_message(dataset):
    algo = _config(action_scaler=None).create()
    fix = r"MinMaxActionScaler\(minimum=\[0.0\], maximum=\[3000.0\]\)"
    with pytest.raises(ValueError, match=r"outside \[-1, 1\].*" + fix):
        _fit(algo, dataset)
    assert algo.impl is None  # refused before building anything


def test_a_nan_observation_is_reported_with_its_episode_and_step(dataset):
    episodes = dataset.episodes
    obs = np.concatenate([e.observations for e in episodes]).copy()
    obs[17, 3] = np.nan  # episode 1 (15 steps each), step 2
    broken = d3rlpy.dataset.MDPDataset(
        observations=obs,
        actions=np.concatenate([e.actions for e in episodes]),
        rewards=np.concatenate([e.rewards for e in episodes]),
        terminals=np.concatenate([np.eye(1, e.size(), e.size() - 1).reshape(-1) for e in episodes]),
        action_space=d3rlpy.constants.ActionSpace.CONTINUOUS,
    )
    with pytest.raises(ValueError, match="NaN or infinite observations; the first is episode 1, step 2"):
        _fit(_config(observation_scaler=None).create(), broken)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"expectile": 1.5}, r"expectile=1.5 is invalid; it must be in \(0, 1\)"),
        ({"gamma": float("nan")}, r"gamma=nan is invalid; it must be in \[0, 1\]"),
        ({"max_weight": 0.0}, r"max_weight=0.0 is invalid"),
        ({"batch_size": 0}, r"batch_size=0 is invalid"),
    ],
)
def test_invalid_options_name_the_option_and_the_valid_range(option, message):
    with pytest.raises(ValueError, match=message):
        VancoIQLConfig(**option)


def test_fewer_steps_than_one_epoch_is_an_error_not_a_silent_no_op(dataset):
    with pytest.raises(ValueError, match="n_steps must be >= n_steps_per_epoch"):
        _config().create().fit(dataset, n_steps=5, n_steps_per_epoch=10, show_progress=False)


def test_small_networks_fit_on_one_thread_and_restore_the_setting(dataset):
    assert fit_threads(_config()) == 1
    assert fit_threads(VancoIQLConfig()) is None  # d3rlpy's default [256, 256]
    seen = []
    torch.set_num_threads(2)
    try:
        _fit(_config().create(), dataset, n_steps=2, callback=lambda *_: seen.append(torch.get_num_threads()))
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_the_policy_is_d3rlpys_gaussian_around_tanh_mu():
    rng = np.random.default_rng(0)
    obs = torch.from_numpy(rng.normal(size=(64, 7)).astype(np.float32))
    actions = torch.from_numpy(rng.uniform(-0.95, 0.95, size=(64, 1)).astype(np.float32))
    d3rlpy.seed(0)
    algo = _config(observation_scaler=None).create()
    algo.build_with_dataset(_cohort(2, seed=0))
    impl = algo.impl
    out = impl.modules.policy(obs)
    expected = Normal(torch.tanh(out.mu), out.logstd.exp()).log_prob(actions)
    torch.testing.assert_close(impl.log_prob(impl.modules, obs, actions), expected)
    torch.testing.assert_close(impl.inner_predict_best_action(obs), torch.tanh(out.mu))


def test_advantage_weights_and_actor_loss():
    # weights = min(exp(beta * A), w_max), A = min target Q - V; loss = -mean(weights * log pi).
    d3rlpy.seed(0)
    algo = _config(observation_scaler=None, weight_temp=1.0, max_weight=10.0).create()
    algo.build_with_dataset(_cohort(2, seed=0))
    impl = algo.impl
    q_target = torch.tensor([[-2.0], [0.0], [1.0], [3.0]])
    batch = SimpleNamespace(observations=torch.zeros(4, 7), actions=torch.zeros(4, 1))
    nets = SimpleNamespace(value_func=lambda x: torch.zeros(len(x), 1), policy=impl.modules.policy)
    weights = impl.advantage_weights(nets, batch, q_target)
    torch.testing.assert_close(weights, torch.tensor([[math.exp(-2)], [1.0], [math.e], [10.0]]))
    loss, returned = impl.actor_loss(nets, batch, q_target)
    torch.testing.assert_close(returned, weights)
    expected = -(weights * impl.log_prob(nets, batch.observations, batch.actions)).mean()
    torch.testing.assert_close(loss, expected)


def test_a_model_saved_with_a_retired_option_loads_only_with_the_value_now_implemented():
    from d3rlpy.base import LearnableConfigWithShape

    saved = json.loads(LearnableConfigWithShape((7,), 1, VancoIQLConfig()).serialize())
    params = saved["config"]["params"]
    params.update(policy_head="tanh_mean", min_logstd=-5.0, state_dependent_std=False)
    assert LearnableConfigWithShape.deserialize(json.dumps(saved)).config == VancoIQLConfig()
    params["policy_head"] = "plain"
    with pytest.raises(ValueError, match=r"policy_head='plain', which this version no longer implements"):
        LearnableConfigWithShape.deserialize(json.dumps(saved))
