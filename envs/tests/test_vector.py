"""The native vector env: Gymnasium 1.0 API, autoreset, and agreement with single envs."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from vanco_pk.env import VancoPKDiscreteEnv, VancoPKEnv
from vanco_pk.patients import Covariates, Patients
from vanco_pk.vector import VancoPKDiscreteVectorEnv, VancoPKVectorEnv


def test_make_vec_uses_the_native_vector_env():
    envs = gym.make_vec("vanco_pk:VancoPK-v0", num_envs=64, vectorization_mode="vector_entry_point")
    assert isinstance(envs, VancoPKVectorEnv) and isinstance(envs, gym.vector.VectorEnv)
    assert envs.observation_space.shape == (64, 7) and envs.action_space.shape == (64, 1)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (64, 7) and envs.observation_space.contains(obs)
    assert info["auc24"].shape == (64,) and info["_auc24"].all()
    assert info["covariates"]["weight_kg"].shape == (64,) and info["_covariates"].all()
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert reward.shape == terminated.shape == truncated.shape == (64,)
    discrete = gym.make_vec("vanco_pk:VancoPKDiscrete-v0", num_envs=3, extended_obs=True)
    assert isinstance(discrete, VancoPKDiscreteVectorEnv)
    assert discrete.action_space == gym.spaces.MultiDiscrete([13, 13, 13])
    assert discrete.reset(seed=0)[0].shape == (3, 14)


@pytest.mark.parametrize(
    ("vector_cls", "single_cls", "actions"),
    [
        (VancoPKVectorEnv, VancoPKEnv, lambda rng: rng.uniform(-200.0, 3500.0, (5, 1)).astype(np.float32)),
        (VancoPKDiscreteVectorEnv, VancoPKDiscreteEnv, lambda rng: rng.integers(0, 13, 5)),
    ],
)
def test_n_patients_together_equal_n_single_envs_across_autoreset(vector_cls, single_cls, actions):
    options = {"episode_days": 2, "level_missing_prob": 0.3, "extended_obs": True}
    vector = vector_cls(5, **options)
    singles = [single_cls(**options) for _ in range(5)]
    obs, info = vector.reset(seed=100)
    np.testing.assert_array_equal(obs, np.stack([e.reset(seed=100 + i)[0] for i, e in enumerate(singles)]))
    rng = np.random.default_rng(0)
    ended = np.zeros(5, dtype=bool)
    for _ in range(11):  # two episodes of 4 decisions and their autoresets
        action = actions(rng)
        obs, reward, terminated, truncated, info = vector.step(action)
        for i, env in enumerate(singles):
            if ended[i]:
                expected_obs, expected_reward, expected_trunc = env.reset()[0], 0.0, False
                expected_info = {"time_h": 0.0, "action_clipped": False}
            else:
                expected_obs, expected_reward, _, expected_trunc, expected_info = env.step(action[i])
            np.testing.assert_array_equal(obs[i], expected_obs)
            assert reward[i] == expected_reward and truncated[i] == expected_trunc
            assert info["time_h"][i] == expected_info["time_h"]
            assert info["action_clipped"][i] == expected_info["action_clipped"]
        assert not terminated.any()
        ended = truncated | terminated


def test_autoreset_starts_a_new_patient_on_the_next_step():
    envs = VancoPKVectorEnv(2, episode_days=1)
    _, first = envs.reset(seed=0)
    dose = np.full((2, 1), 1000.0)
    assert not envs.step(dose)[3].any()
    truncated = envs.step(dose)[3]
    assert truncated.all()
    obs, reward, terminated, truncated, info = envs.step(dose)
    np.testing.assert_array_equal(reward, 0.0)
    assert not truncated.any() and not terminated.any()
    np.testing.assert_array_equal(info["time_h"], 0.0)
    np.testing.assert_array_equal(obs[:, 0], 0.0)  # a new, vancomycin-naive patient
    assert not np.array_equal(info["covariates"]["weight_kg"], first["covariates"]["weight_kg"])


def test_seed_list_and_reproducible_reset():
    envs = VancoPKVectorEnv(3)
    a, _ = envs.reset(seed=[5, 9, 2])
    b, _ = envs.reset(seed=[5, 9, 2])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[1], VancoPKEnv().reset(seed=9)[0])
    with pytest.raises(ValueError, match="one per sub-environment"):
        envs.reset(seed=[1, 2])


def test_fixed_patients_one_per_sub_environment_or_shared():
    cohort = Covariates([50.0, 70.0, 120.0], 50.0, 0, 175.0, 0, 1.0)
    envs = VancoPKVectorEnv(3, patients=cohort, scenario="ideal")
    _, info = envs.reset(seed=0)
    np.testing.assert_array_equal(info["covariates"]["weight_kg"], [50.0, 70.0, 120.0])
    # ideal: no inter-occasion variability, so identical patients have identical CL
    typical = Patients.typical(Covariates(70.0, 50.0, 0, 175.0, 0, 1.0))
    shared = VancoPKVectorEnv(4, patients=typical, scenario="ideal")
    _, info = shared.reset(seed=0)
    assert np.all(info["cl"] == info["cl"][0])
    with pytest.raises(ValueError, match="one per sub-environment"):
        VancoPKVectorEnv(2, patients=cohort)


def test_vector_actions_are_checked_and_clipped_per_patient():
    envs = VancoPKVectorEnv(3)
    with pytest.raises(ResetNeeded):
        envs.step(np.zeros((3, 1)))
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"action\[1\] is NaN"):
        envs.step(np.array([[100.0], [np.nan], [0.0]]))
    with pytest.raises(ValueError, match="3 dose"):
        envs.step(np.zeros((2, 1)))
    *_, info = envs.step(np.array([[-1.0], [1000.0], [9000.0]]))
    np.testing.assert_array_equal(info["action_clipped"], [True, False, True])
    np.testing.assert_array_equal(info["dose_mg"], [0.0, 1000.0, 3000.0])
    with pytest.raises(ValueError, match="num_envs"):
        VancoPKVectorEnv(0)


@pytest.mark.parametrize("misspecification", [None, "severe"])
def test_observations_stay_in_the_space_under_extreme_dosing(misspecification):
    envs = VancoPKVectorEnv(256, extended_obs=True, decision_interval_h=6, misspecification=misspecification)
    obs, _ = envs.reset(seed=3)
    rng = np.random.default_rng(3)
    aki_share = 0.0
    for _ in range(2 * envs.world.n_steps + 2):
        # Mostly the maximum dose every 6 h: the worst overdose the action space allows.
        actions = np.where(rng.random((256, 1)) < 0.8, 3000.0, rng.uniform(0.0, 3000.0, (256, 1)))
        obs, reward, _, _, info = envs.step(actions)
        assert envs.observation_space.contains(obs)
        assert np.all(np.isfinite(reward)) and np.all(np.isfinite(info["auc24"]))
        aki_share = max(aki_share, info["aki_so_far"].mean())
    assert aki_share > 0.9
