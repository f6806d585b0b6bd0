"""Every preset's model acts in the simulator on its own columns (d3rlpy's EnvironmentEvaluator works)."""

import gymnasium as gym
import numpy as np
import pytest
from d3rlpy.metrics import EnvironmentEvaluator
from vanco_pk.env import VancoPKEnv
from vanco_pk.world import World

from vanco_offline.configs import available_presets, build_algo, load_preset
from vanco_offline.data import convert_with, generate_cohort
from vanco_offline.rollout import model_env

WORLD = World(episode_days=2.0)


@pytest.fixture(scope="module")
def cohort():
    return generate_cohort(4, seed=3, world=WORLD)


def test_the_default_models_columns_are_not_the_plain_envs(cohort):
    preset = load_preset("default")
    result = convert_with(cohort, preset.data.conversion_settings())
    plain = VancoPKEnv(extended_obs=True, pk_features=True, world=WORLD)
    assert plain.observation_space.shape != (len(result.observation_names),)
    env = model_env(result.observation_names, world=WORLD)
    assert env.observation_space.shape == (len(result.observation_names),)


@pytest.mark.parametrize("name", available_presets())
def test_environment_evaluator_scores_every_presets_model(cohort, name):
    preset = load_preset(name)
    options = preset.data.conversion_settings()
    result = convert_with(cohort, options)
    algo = build_algo(preset, result.dataset)
    algo.build_with_dataset(result.dataset)
    # The preset's conversion alone gives the environment: its columns, action and reward.
    env = model_env(options, world=WORLD)
    assert env.observation_names == result.observation_names
    assert env.unwrapped.reward_name == options.reward
    assert isinstance(env.action_space, gym.spaces.Discrete) == (options.action == "discrete")
    obs, _ = env.reset(seed=0)
    assert obs.shape == algo.impl.observation_shape and obs.dtype == np.float32
    score = EnvironmentEvaluator(env, n_trials=1)(algo, result.dataset)
    assert np.isfinite(score)


def test_a_world_with_another_reward_than_the_models_is_refused():
    options = load_preset("default").data.conversion_settings()
    assert options.reward not in (None, "seed")
    with pytest.raises(ValueError, match=r"world.reward = 'seed' but the model's conversion rewards"):
        model_env(options, world=World(reward="seed"))
