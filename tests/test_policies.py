"""Reference dosing policies: the common protocol, pmfs on the grid, seeding, replay, clinician rules."""

import gymnasium as gym
import numpy as np
import pytest
from vanco_pk.env import charted_level
from vanco_pk.policies import (
    POLICIES,
    TRUTH_KEYS,
    ClinicianPolicy,
    make_policy,
    nomogram_regimen,
    replay,
)
from vanco_pk.targets import COVARIATES, DOSE_GRID_MG
from vanco_pk.vector import VancoPKVectorEnv

PATIENT = {"weight_kg": 70.0, "age": 50.0, "sex": 0, "height_cm": 175.0, "dialysis": 0}


def _rollout(name, n=6, seed=3, **options):
    """Doses and pmfs of a policy over one episode of ``n`` simulated patients."""
    env = VancoPKVectorEnv(num_envs=n, level_missing_prob=0.3)
    obs, info = env.reset(seed=seed)
    policy = make_policy(name, **options)
    policy.reset(info["covariates"], seed=seed)
    doses, pmfs = [], []
    for _ in range(env.world.n_steps):
        features = obs.astype(np.float64)
        features[:, 0] = charted_level(info)
        pmfs.append(policy.action_probs(features, info))
        doses.append(policy.act(features, info))
        obs, _, _, _, info = env.step(doses[-1].reshape(n, 1))
    return np.array(doses), np.array(pmfs), policy


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_gives_grid_doses_from_a_normalised_pmf(name):
    doses, pmfs, policy = _rollout(name)
    assert pmfs.shape == (14, 6, len(DOSE_GRID_MG))
    np.testing.assert_allclose(pmfs.sum(axis=-1), 1.0, atol=1e-12)
    assert np.all(pmfs >= 0)
    assert np.all(np.isin(doses, DOSE_GRID_MG))
    index = np.rint(doses / 250).astype(int)
    chosen = np.take_along_axis(pmfs, index[..., None], axis=-1)[..., 0]
    assert np.all(chosen > 0)  # a sampled dose always has positive probability
    if policy.deterministic:
        assert np.all(pmfs.max(axis=-1) == 1.0)
    # The memory holds the doses given.
    np.testing.assert_array_equal(policy.history()["dose_mg"], doses.T)


@pytest.mark.parametrize("name", ["clinician", "random"])
def test_same_seed_same_doses_other_seed_other_doses(name):
    a, _, _ = _rollout(name, seed=3)
    b, _, _ = _rollout(name, seed=3)
    np.testing.assert_array_equal(a, b)
    env = VancoPKVectorEnv(num_envs=6, level_missing_prob=0.3)
    obs, info = env.reset(seed=3)
    policy = make_policy(name)
    policy.reset(info["covariates"], seed=99)  # same patients, other policy stream
    other = []
    for _ in range(env.world.n_steps):
        features = obs.astype(np.float64)
        features[:, 0] = charted_level(info)
        other.append(policy.act(features, info))
        obs, _, _, _, info = env.step(other[-1].reshape(6, 1))
    assert not np.array_equal(a, np.array(other))


@pytest.mark.parametrize("name", ["clinician", "mipd"])
def test_a_patient_gets_the_same_pmfs_alone_or_in_a_batch(name):
    _, pmfs, policy = _rollout(name, n=6, seed=3)
    doses = policy.history()["dose_mg"]
    obs = policy.history()["observations"]
    times = policy.history()["time_h"]
    alone = replay(
        make_policy(name),
        {c: v[2:3] for c, v in policy.covariates.items()},
        obs[2:3],
        doses[2:3],
        time_h=times[2:3],
        level_measured=np.isfinite(policy.history()["level"][2:3]),
    )
    np.testing.assert_array_equal(alone[0], pmfs[:, 2])


def test_replay_feeds_the_memory_the_logged_dose_not_the_policy_choice():
    policy = ClinicianPolicy(error_prob=0.0, dose_sd=0.0)
    obs = np.array([np.nan, 1.0, 8.0, 15.0, 37.0, 120.0, 80.0])
    # Logged: no loading dose at t=0 (held); the clinician still owes the loading dose at 12 h.
    pmf = replay(
        policy, {k: np.array([v]) for k, v in PATIENT.items()}, np.stack([obs, obs])[None], [[0.0, 0.0]]
    )
    assert DOSE_GRID_MG[pmf[0, 0].argmax()] == 1750.0  # 25 mg/kg x 70 kg
    assert DOSE_GRID_MG[pmf[0, 1].argmax()] == 1750.0
    # Logged loading dose given: at 12 h the nomogram maintenance follows (CrCL ~87: 15 mg/kg q12h).
    pmf = replay(
        policy, {k: np.array([v]) for k, v in PATIENT.items()}, np.stack([obs, obs])[None], [[1750.0, 0]]
    )
    assert DOSE_GRID_MG[pmf[0, 1].argmax()] == 1000.0


def _clinician_stay(levels, doses, **options):
    """Replay a clinician on a stay with the given trough at each step (NaN = none)."""
    steps = len(levels)
    obs = np.tile([np.nan, 1.0, 8.0, 15.0, 37.0, 120.0, 80.0], (steps, 1))
    carried = np.array(levels, dtype=float)
    for k in range(1, steps):
        carried[k] = carried[k] if np.isfinite(carried[k]) else carried[k - 1]
    obs[:, 0] = carried
    policy = ClinicianPolicy(**{"error_prob": 0.0, "dose_sd": 0.0, "miss_prob": 0.0, **options})
    return replay(
        policy,
        {k: np.array([v]) for k, v in PATIENT.items()},
        obs[None],
        np.array([doses], dtype=float),
        level_measured=np.isfinite(np.array(levels, dtype=float))[None],
    )[0]


def test_clinician_adjusts_proportionally_after_three_doses_and_holds_a_toxic_trough():
    nan = np.nan
    # Load, three maintenance doses of 1000 mg, then a trough of 10 mg/L: 1000 x 17.5/10 = 1750.
    pmf = _clinician_stay([nan, 8.0, 9.0, 9.5, 10.0], [1750, 1000, 1000, 1000, 0])
    assert DOSE_GRID_MG[pmf[4].argmax()] == 1750.0
    # An earlier low trough (before the fourth dose) is not acted upon.
    assert DOSE_GRID_MG[pmf[2].argmax()] == 1000.0
    # A trough of 30 mg/L holds the dose; the next level <= 25 resumes at 1000 x 17.5/30 -> 500.
    pmf = _clinician_stay([nan, 8.0, 30.0, 31.0, 22.0], [1750, 1000, 0, 0, 0])
    assert pmf[2, 0] == 1.0 and pmf[3, 0] == 1.0
    assert DOSE_GRID_MG[pmf[4].argmax()] == 500.0
    # Before the first maintenance dose too; then the nomogram dose follows.
    pmf = _clinician_stay([nan, 30.0, 22.0], [1750, 0, 0])
    assert pmf[1, 0] == 1.0 and DOSE_GRID_MG[pmf[2].argmax()] == 1000.0
    # A missed adjustment keeps the regimen with probability miss_prob.
    pmf = _clinician_stay([nan, 8.0, 9.0, 9.5, 10.0], [1750, 1000, 1000, 1000, 0], miss_prob=0.3)
    assert pmf[4, 4] == pytest.approx(0.3) and pmf[4, 7] == pytest.approx(0.7)


def test_clinician_noise_spreads_prescriptions_and_errors_cover_the_grid():
    policy = ClinicianPolicy()  # dose_sd 0.1, error_prob 0.02
    policy.reset(PATIENT, seed=0)
    pmf = policy.action_probs(np.array([np.nan, 1.0, 8.0, 15.0, 37.0, 120.0, 80.0]), {"time_h": 0.0})
    assert pmf.shape == (13,)
    assert np.all(pmf >= 0.02 / 13)  # every dose possible (importance sampling needs support)
    assert pmf[7] == pmf.max() and 0.4 < pmf[7] < 0.9  # 1750 mg, spread to 1500 and 2000
    assert pmf[6] > 0.05 and pmf[8] > 0.05


def test_nomogram_bands_and_caps():
    dose, interval = nomogram_regimen(
        np.array([100, 50, 30, 10, 100]), np.array([70, 70, 70, 70, 200]), [0, 0, 0, 0, 0]
    )
    np.testing.assert_allclose(dose, [1050, 1050, 700, 700, 2000])
    np.testing.assert_allclose(interval, [12, 24, 24, 48, 12])
    dose, interval = nomogram_regimen(np.array([100.0]), np.array([70.0]), np.array([1]))
    assert (dose[0], interval[0]) == (700.0, 24.0)


def test_policy_in_a_single_gymnasium_env_loop():
    env = gym.make("vanco_pk:VancoPK-v0")
    policy = make_policy("clinician")
    obs, info = env.reset(seed=1)
    policy.reset(info["covariates"], seed=1)
    given = []
    while True:
        dose = policy.act(obs, info)  # info carries time_h, level_measured and dose_mg
        assert isinstance(dose, float)
        given.append(dose)
        obs, _, terminated, truncated, info = env.step([dose])
        if terminated or truncated:
            break
    assert len(given) == 14 and given[0] == min(
        3000.0, 250 * round(25 * info["covariates"]["weight_kg"] / 250)
    )


def test_bad_use_raises_clear_errors():
    with pytest.raises(ValueError, match="unknown policy 'nomogram'"):
        make_policy("nomogram")
    with pytest.raises(ValueError, match="unknown option"):
        make_policy("clinician", miss=0.1)
    with pytest.raises(ValueError, match="bad option"):
        make_policy("mipd", dose_mg=10)
    with pytest.raises(ValueError, match="not on the dose grid"):
        make_policy("fixed", dose_mg=1100)
    policy = make_policy("clinician")
    obs = np.array([np.nan, 1.0, 8.0, 15.0, 37.0, 120.0, 80.0])
    with pytest.raises(ValueError, match="call reset"):
        policy.action_probs(obs)
    with pytest.raises(ValueError, match=r"covariates\['sex'\] of patient 0"):
        policy.reset({**PATIENT, "sex": 2})
    with pytest.raises(ValueError, match="lack"):
        policy.reset({"weight_kg": 70})
    policy.reset(PATIENT, seed=0)
    with pytest.raises(ValueError, match="creatinine of patient 0"):
        policy.action_probs(np.array([np.nan, 0.0, 8.0, 15.0, 37.0, 120.0, 80.0]))
    policy.action_probs(obs, {"time_h": 0.0})
    with pytest.raises(ValueError, match="dose of the previous one is unknown"):
        policy.action_probs(obs, {"time_h": 12.0})
    with pytest.raises(ValueError, match="not on the dose grid"):
        policy.prob(obs, {"time_h": 0.0}, 1100.0)
    with pytest.raises(ValueError, match="must be a finite dose"):
        policy.record(-5.0)
    oracle = make_policy("oracle")
    oracle.reset(PATIENT)
    with pytest.raises(ValueError, match="oracle: info lacks"):
        oracle.action_probs(obs, {"time_h": 0.0})


def test_policies_read_the_schema_covariates_and_the_oracle_the_env_truth():
    assert set(PATIENT) == set(COVARIATES)
    env = VancoPKVectorEnv(num_envs=1)
    _, info = env.reset(seed=0)
    assert set(TRUTH_KEYS) <= set(info)


def test_bench_policies_prints_the_table(capsys):
    from vanco_offline.cli import main

    assert main(["bench", "policies", "--patients", "20", "--policies", "fixed", "random"]) == 0
    out = capsys.readouterr().out
    assert "AUC 400-600" in out and "\nfixed " in out and "\nrandom " in out
    assert "order on attainment:" in out
