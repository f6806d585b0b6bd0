"""Infection model: exposure-dependent kill, exact burden dynamics, signs, and its use in the env."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from vanco_pk import infection as inf
from vanco_pk.env import VancoPKEnv
from vanco_pk.patients import Covariates, Patients


def _days_to_resolve(auc24, burden0=0.5, days=7):
    burden = np.array([burden0])
    for step in range(days * 2):
        burden = inf.burden_step(burden, np.array([auc24]), np.ones(1), 12.0)
        if burden[0] < inf.DEFAULT_INFECTION.resolved_burden:
            return (step + 1) / 2
    return None


def test_kill_rate_rises_with_exposure_toward_emax():
    kill = inf.kill_rate(np.array([0.0, 250.0, 350.0, 500.0, 5000.0]))
    assert kill[0] == 0.0
    assert np.all(np.diff(kill) > 0)
    assert kill[2] == pytest.approx(inf.DEFAULT_INFECTION.emax_per_h / 2)
    assert kill[-1] == pytest.approx(inf.DEFAULT_INFECTION.emax_per_h, rel=1e-3)


def test_burden_step_is_the_exact_solution_of_the_logistic_kill_model():
    p = inf.DEFAULT_INFECTION
    for auc24, b0, scale in [(0.0, 0.3, 1.0), (250.0, 0.6, 1.3), (500.0, 0.5, 0.8), (310.0, 0.4, 1.0)]:
        g = p.growth_rate_per_h * scale
        k = inf.kill_rate(auc24) + p.immune_clearance_per_h
        ref = solve_ivp(
            lambda t, b, g=g, k=k: g * b * (1 - b) - k * b, (0, 12.0), [b0], rtol=1e-11, atol=1e-13
        )
        got = inf.burden_step(np.array([b0]), np.array([auc24]), np.array([scale]), 12.0)
        assert got[0] == pytest.approx(ref.y[0, -1], rel=1e-8)


def test_infection_resolves_at_target_exposure_and_lingers_at_half():
    for auc24 in (400.0, 500.0, 600.0):
        for burden0 in (0.2, 0.5, 0.8):
            assert 1.5 <= _days_to_resolve(auc24, burden0) <= 5.0
    assert _days_to_resolve(250.0, 0.5) is None
    burden = np.array([0.5])
    for _ in range(14):
        burden = inf.burden_step(burden, np.array([0.0]), np.ones(1), 12.0)
    assert burden[0] > 0.85  # untreated, it worsens toward severe sepsis


def test_signs_follow_the_burden_and_stay_physiological():
    base = [np.array([7.0]), np.array([36.8]), np.array([80.0]), np.array([125.0])]
    calm = inf.vital_signs(np.array([0.0]), *base, np.zeros((1, 4)))
    sick = inf.vital_signs(np.array([0.8]), *base, np.zeros((1, 4)))
    assert [float(x[0]) for x in calm] == [7.0, 36.8, 80.0, 125.0]
    assert sick[0][0] > 11.0 and sick[1][0] > 38.5 and sick[2][0] > 100.0 and sick[3][0] < 105.0
    wild = inf.vital_signs(np.array([1.0]), *base, np.full((1, 4), 60.0))
    assert wild[0][0] == inf.WBC_LIMITS[1] and wild[1][0] == inf.TEMPERATURE_LIMITS[1]


def test_in_the_env_target_dosing_clears_the_infection_faster_than_half():
    patient = Patients.typical(Covariates(70.0, 50.0, 0, 175.0, 0, 1.0))
    outcomes = {}
    for name, (load, dose) in {"target": (2000.0, 1000.0), "half": (1000.0, 500.0)}.items():
        env = VancoPKEnv(patients=patient)
        env.reset(seed=1)
        infos = [env.step(np.array([load if k == 0 else dose]))[4] for k in range(env.world.n_steps)]
        obs = env.simulator.raw_observation()[0]
        resolved = [i["time_h"] for i in infos if i["infection_resolved"]]
        outcomes[name] = (resolved[0] / 24 if resolved else None, infos[-1]["burden"], obs)
    target_day, target_burden, target_obs = outcomes["target"]
    half_day, half_burden, half_obs = outcomes["half"]
    assert target_day is not None and target_day <= 5.0
    assert half_day is None and half_burden > 5 * inf.DEFAULT_INFECTION.resolved_burden
    assert target_burden < half_burden
    # Same seed, same noise: the signs differ only through the burden.
    wbc, temperature = 2, 4
    assert target_obs[wbc] < half_obs[wbc] - 1.0
    assert target_obs[temperature] < half_obs[temperature]


def test_infection_params_are_validated():
    with pytest.raises(ValueError, match="emax_per_h"):
        inf.InfectionParams(emax_per_h=np.nan)
    with pytest.raises(ValueError, match="ec50_auc_mic"):
        inf.InfectionParams(ec50_auc_mic=0.0)
