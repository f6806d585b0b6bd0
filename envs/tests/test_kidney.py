"""Kidney model: creatinine kinetics, exposure-driven injury and its feedback into PK, KDIGO."""

import numpy as np
import pytest
from vanco_pk import kidney as kd
from vanco_pk.env import VancoPKEnv
from vanco_pk.patients import Covariates, Patients

TYPICAL = Patients.typical(Covariates(70.0, 50.0, 0, 175.0, 0, 1.0))


def _state(crcl=87.5, creatinine=1.0, dialysis=0, params=kd.DEFAULT_KIDNEY):
    arrays = [np.array([x], dtype=float) for x in (crcl, creatinine, 15.0, 70.0, dialysis)]
    return kd.baseline_kidney(*arrays, params)


def _run(load_mg, dose_mg, days=7, **kwargs):
    """A typical patient on a fixed regimen; returns per-step info dicts."""
    kwargs = {"scenario": "ideal", **kwargs}  # the threshold injury model of the ideal world
    env = VancoPKEnv(patients=TYPICAL, episode_days=days, measurement_noise=0.0, **kwargs)
    env.reset(seed=0)
    infos = []
    for step in range(env.world.n_steps):
        infos.append(env.step(np.array([load_mg if step == 0 else dose_mg]))[4])
    return infos


def test_uninjured_kidney_stays_at_baseline():
    state = _state()
    for _ in range(20):
        state = kd.kidney_step(state, np.array([550.0]), np.array([17.0]), np.ones(1), 12.0)
    assert state.injury[0] == 0.0
    assert state.creatinine[0] == pytest.approx(1.0, abs=1e-12)
    assert state.bun[0] == pytest.approx(15.0, abs=1e-12)


def test_creatinine_follows_gfr_with_the_kinetic_time_constant():
    params = kd.KidneyParams(recovery_half_life_h=1e12)  # hold the injury fixed
    state = _state(params=params)
    state.injury[:] = 0.5
    volume, clearance = 0.6 * 70.0, 87.5 * 0.5 * 0.06  # L, L/h
    state = kd.kidney_step(state, np.zeros(1), np.zeros(1), np.ones(1), 24.0, params)
    expected = 2.0 + (1.0 - 2.0) * np.exp(-clearance / volume * 24.0)
    assert state.creatinine[0] == pytest.approx(expected, rel=1e-6)
    for _ in range(20):
        state = kd.kidney_step(state, np.zeros(1), np.zeros(1), np.ones(1), 24.0, params)
    assert state.creatinine[0] == pytest.approx(2.0, rel=1e-6)  # half the GFR, twice the creatinine
    assert state.bun[0] == pytest.approx(30.0, rel=1e-6)


def test_injury_recovers_with_its_half_life_once_exposure_stops():
    state = _state()
    state.injury[:] = 0.4
    state = kd.kidney_step(state, np.zeros(1), np.zeros(1), np.ones(1), 96.0)
    assert state.injury[0] == pytest.approx(0.2)


def test_only_exposure_above_the_thresholds_injures():
    excess = kd.exposure_excess(np.array([400.0, 600.0, 900.0, 500.0]), np.array([12.0, 19.9, 25.0, 30.0]))
    np.testing.assert_allclose(excess, [0.0, 0.0, 0.5, 0.5])


def test_sustained_auc_above_900_causes_aki_within_days_and_lowers_clearance():
    infos = _run(3000.0, 2000.0)
    auc = np.array([i["auc24"] for i in infos])
    assert np.all(auc[3:] > 900.0)  # from day 2 on
    onset_day = next(i["time_h"] for i in infos if i["aki"]) / 24.0
    assert 2.5 <= onset_day <= 5.0  # within days of it, as vancomycin nephrotoxicity appears
    assert infos[-1]["aki_so_far"]
    assert infos[-1]["creatinine_true"] > 1.5
    # Kidney injury feeds back: clearance falls, so the same dose gives ever higher exposure.
    assert infos[-1]["cl"] < 0.8 * infos[0]["cl"]
    assert auc[-1] > 1.3 * auc[4]


def test_auc_400_to_600_does_not_injure_a_typical_patient():
    infos = _run(2000.0, 1000.0)
    auc = np.array([i["auc24"] for i in infos])
    assert 400.0 < auc[1:].min() and auc.max() < 600.0
    assert not any(i["aki_so_far"] for i in infos)
    assert infos[-1]["creatinine_true"] == pytest.approx(1.0, abs=1e-9)
    assert infos[-1]["cl"] == pytest.approx(infos[0]["cl"])


def test_kdigo_stages():
    baseline = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0])
    creatinine = np.array([1.2, 1.3, 1.55, 2.1, 3.0, 4.1, 4.1])
    recent_min = np.array([1.0, 1.0, 1.5, 2.0, 3.0, 3.7, 4.0])
    np.testing.assert_array_equal(kd.kdigo_stage(creatinine, baseline, recent_min), [0, 1, 1, 2, 3, 3, 0])


def test_dialysis_clearance_cannot_be_injured():
    state = _state(crcl=40.0, creatinine=2.5, dialysis=1)
    assert state.native_gfr0[0] == pytest.approx(12.0) and state.rrt_clearance[0] == pytest.approx(28.0)
    for _ in range(40):
        state = kd.kidney_step(state, np.array([3000.0]), np.array([80.0]), np.ones(1), 12.0)
    assert state.injury[0] > 0.7  # the native part is nearly lost ...
    assert state.clearance[0] > 28.0  # ... the extracorporeal part is untouched


def test_kidney_params_are_validated():
    with pytest.raises(ValueError, match="injury_rate_per_h"):
        kd.KidneyParams(injury_rate_per_h=-1.0)
    with pytest.raises(ValueError, match="max_injury must be <= 1"):
        kd.KidneyParams(max_injury=1.5)
