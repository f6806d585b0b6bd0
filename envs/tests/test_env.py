"""The single-patient Gymnasium environments: API contract, seeding, options and the truth in info."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import vanco_pk
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env
from vanco_pk import pk, targets
from vanco_pk.env import VancoPKDiscreteEnv, VancoPKEnv
from vanco_pk.patients import Covariates, Patients

TYPICAL = Patients.typical(Covariates(70.0, 50.0, 0, 175.0, 0, 1.0))
INFO_KEYS = {
    "auc24", "trough", "peak", "cl", "v1", "v2", "gfr", "creatinine_true", "aki", "aki_so_far", "burden",
    "dose_mg", "action_clipped", "level_measured", "level_known", "raw_level", "time_h", "covariates",
}  # fmt: skip


def _episode(env, seed, doses):
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, info)]
    for dose in doses:
        obs, reward, terminated, _, info = env.step(dose)
        assert not terminated
        out.append((obs, reward, info))
    return out


@pytest.mark.parametrize("env_id", ["vanco_pk:VancoPK-v0", "vanco_pk:VancoPKDiscrete-v0"])
@pytest.mark.parametrize("scenario", sorted(vanco_pk.SCENARIOS))
@pytest.mark.parametrize("options", [{}, {"extended_obs": True, "pk_features": True}])
def test_check_env_passes_in_every_scenario(env_id, scenario, options):
    env = gym.make(env_id, scenario=scenario, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # The dose is in mg by contract, not rescaled to [-1, 1] as the checker recommends.
        warnings.filterwarnings("ignore", message=".*symmetric and normalized space.*")
        check_env(env.unwrapped)


def test_info_is_finite_and_flags_a_level_never_measured():
    # In icu the first level is drawn days in: until then raw_level is 0 and level_known False
    # (NaN in info would break check_env's determinism check); charted_level gives NaN.
    env = VancoPKEnv(scenario="icu")
    _, info = env.reset(seed=0)
    assert info["raw_level"] == 0.0 and not info["level_known"]
    assert np.isnan(vanco_pk.charted_level({"raw_level": np.array([0.0]), "level_known": np.array([False])}))[
        0
    ]
    truncated = False
    while not (info["level_known"] or truncated):
        _, _, _, truncated, info = env.step(np.array([1000.0]))
        assert np.isfinite(info["raw_level"])
    assert info["level_known"] and info["raw_level"] > 0.0, "no level drawn in the episode"


def test_stable_baselines3_checks_and_trains_on_both_envs():
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env as sb3_check_env
    from vanco_pk.wrappers import NormalizedDose

    for env in (NormalizedDose(VancoPKEnv()), VancoPKDiscreteEnv()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SB3's advice (e.g. on the observation bounds), not errors
            sb3_check_env(env)
        model = sb3.PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
        model.learn(total_timesteps=128)
        action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
        assert env.action_space.contains(action)


def test_spaces_and_observation_contract():
    env = VancoPKEnv()
    assert env.action_space == gym.spaces.Box(0.0, 3000.0, (1,), np.float32)
    assert VancoPKDiscreteEnv().action_space == gym.spaces.Discrete(13)
    assert env.observation_names == targets.FEATURES
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (7,) and env.observation_space.contains(obs)
    assert obs[0] == 0.0 and info["raw_level"] == 0.0 and not info["level_known"]  # vancomycin-naive
    assert INFO_KEYS <= set(info) and info["auc24"] == 0.0 and info["time_h"] == 0.0
    assert set(info["covariates"]) == {*targets.COVARIATES, "baseline_creatinine"}
    ext = VancoPKEnv(extended_obs=True, scenario="ideal")  # a level at every decision
    obs, info = ext.reset(seed=0)
    assert ext.observation_names == vanco_pk.EXTENDED_FEATURES
    assert vanco_pk.EXTENDED_FEATURES[7:] == (*targets.COVARIATES, "hours_since_level", "last_dose_mg")
    assert obs.shape == (14,) and obs[7] == pytest.approx(info["covariates"]["weight_kg"])
    obs, *_ = ext.step(np.array([1250.0]))
    assert obs[-2] == 0.0 and obs[-1] == 1250.0  # a level was just drawn; the last dose


def test_same_seed_same_episode_other_seed_other_patient():
    doses = [np.array([d]) for d in (2000.0, 1000.0, 0.0, 1500.0)]
    a = _episode(VancoPKEnv(), 7, doses)
    b = _episode(VancoPKEnv(), 7, doses)
    c = _episode(VancoPKEnv(), 8, doses)
    for (oa, ra, ia), (ob, rb, ib) in zip(a, b, strict=True):
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb and ia["auc24"] == ib["auc24"] and ia["creatinine_true"] == ib["creatinine_true"]
    assert a[0][2]["covariates"] != c[0][2]["covariates"]


def test_reward_uses_the_nan_aware_raw_observation():
    env = VancoPKEnv(level_missing_prob=0.9)
    first_level_missing = (s for s in range(50) if not _episode(env, s, [1000.0])[1][2]["level_measured"])
    obs0, _ = env.reset(seed=next(first_level_missing))
    obs1, reward, _, _, info1 = env.step(np.array([1000.0]))
    assert not info1["level_measured"] and not info1["level_known"] and obs1[0] == 0.0
    raw0, raw1 = np.asarray(obs0, float), np.asarray(obs1, float)
    raw0[0] = raw1[0] = np.nan
    # Observations are float32; the reward sees the float64 values behind them.
    assert reward == pytest.approx(float(targets.reward(raw0, 1000.0, raw1)), abs=1e-4)
    assert targets.exposure_reward(np.nan) == 0.0


def test_level_is_the_noisy_trough_carried_forward_when_missing():
    exact = VancoPKEnv(measurement_noise=0.0, patients=TYPICAL, scenario="ideal")
    exact.reset(seed=0)
    obs, _, _, _, info = exact.step(np.array([1000.0]))
    assert info["level_measured"] and obs[0] == pytest.approx(info["trough"], rel=1e-6)
    noisy = VancoPKEnv(patients=TYPICAL, scenario="ideal")
    noisy.reset(seed=0)
    levels, troughs = [], []
    for _ in range(14):
        obs, _, _, _, info = noisy.step(np.array([1000.0]))
        levels.append(obs[0])
        troughs.append(info["trough"])
    assert not np.allclose(levels, troughs, rtol=0.01)
    missing = VancoPKEnv(level_missing_prob=0.5, patients=TYPICAL, scenario="ideal")
    missing.reset(seed=0)
    previous = None
    for _ in range(14):
        obs, _, _, _, info = missing.step(np.array([1000.0]))
        if not info["level_measured"] and previous is not None:
            assert obs[0] == previous
        previous = obs[0]


def test_nan_action_raises_and_out_of_range_is_clipped_and_flagged():
    env = VancoPKEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan]))
    *_, info = env.step(np.array([-50.0]))
    assert info["action_clipped"] and info["dose_mg"] == 0.0
    *_, info = env.step(np.array([5000.0]))
    assert info["action_clipped"] and info["dose_mg"] == 3000.0 and info["infusion_h"] == 5.0
    *_, info = env.step(1500.0)
    assert not info["action_clipped"] and info["dose_mg"] == 1500.0
    with pytest.raises(ValueError, match="1 dose"):
        env.step(np.array([1.0, 2.0]))


def test_discrete_actions_index_the_dose_grid():
    env = VancoPKDiscreteEnv()
    env.reset(seed=0)
    *_, info = env.step(4)
    assert info["dose_mg"] == 1000.0
    for bad in (13, -1, 2.5):
        with pytest.raises(ValueError, match="dose-grid index"):
            env.step(bad)


def test_episode_truncates_after_its_decisions_and_must_be_reset():
    env = VancoPKEnv(decision_interval_h=8, episode_days=2)
    env.reset(seed=0)
    flags = [env.step(np.array([500.0]))[3] for _ in range(6)]
    assert flags == [False] * 5 + [True]
    with pytest.raises(ResetNeeded, match="truncated"):
        env.step(np.array([500.0]))
    with pytest.raises(ResetNeeded):
        VancoPKEnv().step(np.array([500.0]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decision_interval_h": 4}, "between 6 and 72"),
        ({"episode_days": 1.2}, "whole number"),
        ({"measurement_noise": -1.0}, "measurement_noise"),
        ({"level_missing_prob": 1.0}, r"level_missing_prob = 1.0 must be in \[0, 1\)"),
        ({"reward": "sparse"}, "unknown reward 'sparse'"),
        ({"misspecification": "wild"}, "unknown misspecification"),
        ({"patients": [70.0]}, "patients must be None"),
    ],
)
def test_bad_options_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VancoPKEnv(**kwargs)


def test_bad_reset_options_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown reset option"):
        VancoPKEnv().reset(seed=0, options={"patient": 1})
    with pytest.raises(ValueError, match="needs fixed patients"):
        VancoPKEnv().reset(seed=0, options={"patient_index": 0})
    with pytest.raises(ValueError, match=r"patient_index = 3 must be an integer in 0\.\.1"):
        two = Covariates([60.0, 90.0], 50.0, 0, 175.0, 0, 1.0)
        VancoPKEnv(patients=two).reset(options={"patient_index": 3})


def test_fixed_patients_and_covariates():
    cohort = Covariates([60.0, 90.0], [40.0, 80.0], [0, 1], [180.0, 160.0], [0, 1], [0.8, 2.4])
    env = VancoPKEnv(patients=cohort, scenario="ideal")
    _, info = env.reset(seed=3, options={"patient_index": 1})
    assert info["covariates"]["weight_kg"] == 90.0 and info["covariates"]["dialysis"] == 1.0
    # Covariates fixed, PK deviations drawn: another seed gives another CL.
    other = env.reset(seed=4, options={"patient_index": 1})[1]
    assert other["cl"] != info["cl"]
    # A fully fixed patient keeps its parameters across seeds; only the noise changes.
    fixed = VancoPKEnv(patients=TYPICAL, scenario="ideal")
    first, second = fixed.reset(seed=1)[1], fixed.reset(seed=2)[1]
    assert first["cl"] == second["cl"] == pytest.approx(float(pk.typical_parameters(70.0, 87.5, 0).cl))


def test_misspecification_changes_the_true_patients():
    base = VancoPKEnv(patients=TYPICAL).reset(seed=0)[1]
    wrong = {"cl_scale": 0.5, "v1_scale": 2.0}
    shifted = VancoPKEnv(patients=TYPICAL, misspecification=wrong).reset(seed=0)[1]
    assert shifted["cl"] == pytest.approx(0.5 * base["cl"])
    assert shifted["v1"] == pytest.approx(2.0 * base["v1"])


def test_seed_reward_option():
    env = VancoPKEnv(reward="seed")
    obs0, _ = env.reset(seed=0)
    obs1, reward, *_ = env.step(np.array([1000.0]))
    assert reward <= 0.0
    assert reward == pytest.approx(float(targets.seed_reward(obs0, 1000.0, obs1)), abs=1e-4)


@pytest.mark.parametrize(("interval", "days"), [(12.0, 3.0), (8.0, 2.0), (10.0, 5.0), (36.0, 3.0)])
def test_info_auc24_equals_the_closed_form_regimen(interval, days):
    # Doses low enough that the kidney is never injured, so CL is constant and pk.auc24 applies.
    env = VancoPKEnv(patients=TYPICAL, decision_interval_h=interval, episode_days=days, scenario="ideal")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    doses = rng.uniform(0.0, 700.0 * interval / 12.0, env.world.n_steps)
    params = pk.typical_parameters(70.0, 87.5, 0)
    times = interval * np.arange(len(doses))
    for k, dose in enumerate(doses):
        *_, info = env.step(np.array([dose]))
        expected = pk.auc24(params, times[: k + 1], doses[: k + 1], pk.infusion_duration_h(doses[: k + 1]),
                            [info["time_h"]])  # fmt: skip
        assert info["auc24"] == pytest.approx(float(expected[0]), rel=1e-9)
        assert info["kidney_injury"] == 0.0
