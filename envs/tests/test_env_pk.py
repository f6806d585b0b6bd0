"""The environments' pk_features option and exposure reward."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from vanco_pk.env import VancoPKEnv
from vanco_pk.exposure import PK_FEATURES, ExposureTracker
from vanco_pk.simulator import EXTENDED_FEATURES
from vanco_pk.targets import FEATURES, exposure_auc_reward, reward
from vanco_pk.vector import VancoPKDiscreteVectorEnv, VancoPKVectorEnv


@pytest.mark.parametrize("env_id", ["vanco_pk:VancoPK-v0", "vanco_pk:VancoPKDiscrete-v0"])
def test_check_env_passes_with_pk_features_and_the_exposure_reward(env_id):
    env = gym.make(env_id, pk_features=True, extended_obs=True, reward="exposure", scenario="ideal")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*symmetric and normalized space.*")
        check_env(env.unwrapped)


def test_pk_features_are_the_trackers_fed_the_chart_and_the_reward_scores_its_auc():
    env = VancoPKEnv(pk_features=True, reward="exposure", level_missing_prob=0.3)
    assert env.observation_names == (*FEATURES, *PK_FEATURES)
    obs, info = env.reset(seed=5)
    assert obs.shape == (10,) and env.observation_space.contains(obs)
    tracker = ExposureTracker()
    tracker.reset(info["covariates"])
    scr = env.simulator.raw_observation()[0, 1]  # float64, as the env feeds it
    tracker.observe(info["time_h"], scr, np.nan)
    np.testing.assert_array_equal(obs[7:], tracker.features()[0].astype(np.float32))
    raw = env.simulator.raw_observation()[0]
    differs = []
    for dose in (2000.0, 1000.0, 1250.0, 0.0, 1500.0):
        obs, r, _, _, info = env.step(np.array([dose]))
        tracker.record(dose)
        scr = env.simulator.raw_observation()[0, 1]
        tracker.observe(info["time_h"], scr, info["raw_level"] if info["level_measured"] else np.nan)
        np.testing.assert_array_equal(obs[7:], tracker.features()[0].astype(np.float32))
        after = env.simulator.raw_observation()[0]
        expected = exposure_auc_reward(raw[None], dose, after[None], next_auc24=tracker.auc24())[0]
        assert r == pytest.approx(expected, abs=1e-12)
        differs.append(r != pytest.approx(float(reward(raw[None], dose, after[None])[0])))
        raw = after
    assert any(differs)  # the estimated AUC, not the trough, is scored


def test_vector_env_with_pk_features_equals_single_envs_across_autoreset():
    options = {"episode_days": 2, "level_missing_prob": 0.3, "pk_features": True, "extended_obs": True}
    vector = VancoPKVectorEnv(4, reward="exposure", **options)
    singles = [VancoPKEnv(reward="exposure", **options) for _ in range(4)]
    assert vector.observation_names == (*EXTENDED_FEATURES, *PK_FEATURES)
    obs, _ = vector.reset(seed=30)
    np.testing.assert_array_equal(obs, np.stack([e.reset(seed=30 + i)[0] for i, e in enumerate(singles)]))
    rng = np.random.default_rng(1)
    ended = np.zeros(4, dtype=bool)
    for _ in range(9):
        action = rng.uniform(0.0, 3000.0, (4, 1))
        obs, r, _, truncated, _ = vector.step(action)
        for i, env in enumerate(singles):
            expected, expected_r = (env.reset()[0], 0.0) if ended[i] else env.step(action[i])[:2]
            np.testing.assert_allclose(obs[i], expected, rtol=1e-6)
            assert r[i] == pytest.approx(expected_r, abs=1e-9)
        ended = truncated


def test_pk_observations_stay_in_the_space_under_extreme_dosing():
    envs = VancoPKDiscreteVectorEnv(64, pk_features=True, decision_interval_h=6)
    obs, _ = envs.reset(seed=2)
    assert envs.observation_space.contains(obs)
    for _ in range(envs.world.n_steps):
        obs, r, _, _, _ = envs.step(np.full(64, 12))
        assert envs.observation_space.contains(obs) and np.all(np.isfinite(r))
