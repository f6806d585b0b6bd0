"""The scenario system: icu determinism, no truth in observations, sampling protocols, AKI hazard, IOV."""

import dataclasses

import numpy as np
import pytest
from vanco_pk import LevelRequest, make_policy
from vanco_pk.env import VancoPKEnv, charted_level
from vanco_pk.patients import Covariates, Patients
from vanco_pk.policies import TRUTH_KEYS
from vanco_pk.scenario import ICU, IDEAL, Scenario, get_scenario, protocol_for
from vanco_pk.scenario_rules import aki_hazard_per_day
from vanco_pk.targets import COVARIATES
from vanco_pk.vector import VancoPKVectorEnv

TYPICAL = Patients.typical(Covariates(70.0, 50.0, 0, 175.0, 0, 1.0))


def _levels_at(scenario, doses, n=3, seed=0, **kwargs):
    """Times (h) at which each patient got a level under fixed ``doses`` (one per step)."""
    env = VancoPKVectorEnv(n, scenario=scenario, **kwargs)
    env.reset(seed=seed)
    times = [[] for _ in range(n)]
    for dose in doses:
        *_, info = env.step(np.full((n, 1), dose))
        for i in np.flatnonzero(info["level_measured"]):
            times[i].append(float(info["time_h"][i]))
    return times


def test_get_scenario_names_dicts_and_errors():
    assert get_scenario() is ICU and get_scenario("ideal") is IDEAL and Scenario() == IDEAL
    custom = get_scenario({"base": "icu", "sampling": "auc_guided", "iov_cl_sd": 0.0})
    assert custom.sampling == "auc_guided" and custom.iov_cl_sd == 0.0 and custom.true_model == "thai_icu"
    with pytest.raises(ValueError, match="unknown scenario"):
        get_scenario("hospital")
    with pytest.raises(ValueError, match="unknown field"):
        get_scenario({"sampling_rate": 1})
    with pytest.raises(ValueError, match=r"Scenario\.sampling"):
        Scenario(sampling="daily")
    with pytest.raises(ValueError, match=r"Scenario\.iov_cl_sd"):
        Scenario(iov_cl_sd=-0.1)
    assert not IDEAL.extra_draws and ICU.extra_draws
    assert protocol_for(ICU, "auc_guided") == "auc_guided"
    assert protocol_for(IDEAL, "auc_guided") == "every_decision"


def test_icu_is_deterministic_by_seed_and_vector_matches_single():
    def run(seed):
        env = VancoPKVectorEnv(4, scenario="icu", extended_obs=True)
        obs, info = env.reset(seed=seed)
        out = [obs]
        for dose in (2000.0, 1000.0, 1000.0, 0.0, 1500.0, 1000.0):
            obs, reward, _, _, info = env.step(np.full((4, 1), dose))
            out += [obs, reward, info["auc24"], info["creatinine_true"], info["aki_events"]]
        return out

    a, b, c = run(5), run(5), run(6)
    assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[-3], c[-3])
    single = VancoPKEnv(scenario="icu", extended_obs=True)
    obs, _ = single.reset(seed=7)  # sub-environment 2 of seed 5
    np.testing.assert_array_equal(obs, a[0][2])


def test_no_field_of_the_true_patient_reaches_an_observation_or_a_non_oracle_policy():
    env = VancoPKVectorEnv(6, scenario="icu", extended_obs=True, pk_features=True)
    obs, info = env.reset(seed=1)
    policies = {name: make_policy(name) for name in ("clinician", "mipd", "fixed", "random")}
    for pol in policies.values():
        pol.reset({c: info["covariates"][c] for c in COVARIATES}, seed=3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, _, _, _, info = env.step(np.full((6, 1), 1000.0))
        sim = env.simulator
        before = env._observation()
        # Shuffle every true quantity across patients: what is observed must not move.
        truth = ("cl", "v1", "v2", "q", "a1", "a2", "auc24", "trough", "peak", "burden", "iov", "cl_coef")
        for name in truth:
            setattr(sim, name, getattr(sim, name)[rng.permutation(6)])
        sim.kidney.injury = sim.kidney.injury[rng.permutation(6)]
        np.testing.assert_array_equal(env._observation(), before)
        features = np.asarray(obs, np.float64)[:, :7].copy()
        features[:, 0] = charted_level(info)
        seen = {"time_h": info["time_h"], "level_measured": info["level_measured"]}
        shuffled = {**seen, **{k: np.asarray(info[k])[rng.permutation(6)] for k in TRUTH_KEYS}}
        truthful = {**seen, **{k: np.asarray(info[k]) for k in TRUTH_KEYS}}
        for pol in policies.values():
            pmf = pol.action_probs(features, shuffled)
            np.testing.assert_array_equal(pmf, pol.action_probs(features, truthful))
            pol.act(features, seen)


def test_trough_guided_protocol_levels_before_the_4th_dose_then_every_48_h_and_after_a_change():
    steady = _levels_at({"base": "icu", "sampling": "trough_guided"}, [1000.0] * 14)
    assert all(t == [36.0, 84.0, 132.0] for t in steady)
    # A new dose at 36 h (just after the first trough): a trough before its 4th dose (72 h,
    # earlier than the 48-h repeat), then every 48 h. A change at 72 h, after the 84-h
    # trough was already due, adds nothing.
    changed = _levels_at({"base": "icu", "sampling": "trough_guided"}, [1000.0] * 3 + [1500.0] * 11)
    assert all(t == [36.0, 72.0, 120.0, 168.0] for t in changed)
    late = _levels_at({"base": "icu", "sampling": "trough_guided"}, [1000.0] * 6 + [1500.0] * 8)
    assert all(t == [36.0, 84.0, 132.0] for t in late)
    auc = _levels_at({"base": "icu", "sampling": "auc_guided"}, [1000.0] * 14)
    assert all(t == [24.0, 96.0, 168.0] for t in auc)
    assert all(t == [12.0 * k for k in range(1, 15)] for t in _levels_at("ideal", [1000.0] * 14))


def test_levels_on_request_with_the_wrapper_and_draw_time_error():
    scenario = {"base": "icu", "sampling": "on_request", "level_prop_error": 0.0, "level_add_error_mg_l": 0.0}
    env = LevelRequest(VancoPKEnv(scenario=scenario, patients=TYPICAL))
    env.reset(seed=0)
    assert env.action_space.shape == (2,)
    measured = []
    for k in range(6):
        _, _, _, _, info = env.step(np.array([1000.0, 1.0 if k in (2, 4) else 0.0]))
        measured.append(info["level_measured"])
        if info["level_measured"]:
            # Drawn up to 2 h before the documented time: at or above the true trough, exactly
            # (no assay error here) the concentration then.
            assert 0.0 <= info["draw_early_h"] <= 2.0
            assert info["raw_level"] >= info["trough"] - 1e-9
    assert measured == [False, False, True, False, True, False]


def test_aki_hazard_rises_with_exposure_and_more_drug_gives_more_aki():
    auc = np.linspace(0.0, 1200.0, 50)
    hazard = aki_hazard_per_day(ICU, auc)
    assert np.all(np.diff(hazard[1:]) > 0) and hazard[0] == ICU.sepsis_aki_per_day
    assert aki_hazard_per_day(ICU, np.array([500.0]))[0] > ICU.sepsis_aki_per_day  # present in range
    events = {}
    for dose in (500.0, 1500.0):
        env = VancoPKVectorEnv(300, scenario="icu")
        env.reset(seed=2)
        for _ in range(14):
            *_, info = env.step(np.full((300, 1), dose))
        events[dose] = np.mean(info["aki_events"] > 0)
    assert events[500.0] < events[1500.0]


def test_inter_occasion_variability_has_the_specified_variance_and_holds_within_an_occasion():
    quiet = dataclasses.replace(ICU, sepsis_aki_per_day=0.0, vanco_aki_per_day=0.0)
    env = VancoPKVectorEnv(400, scenario=quiet, patients=TYPICAL)
    env.reset(seed=0)
    factors = []
    for _ in range(14):
        env.step(np.full((400, 1), 1000.0))
        factors.append(np.log(env.simulator.iov.copy()))
    factors = np.array(factors)
    np.testing.assert_array_equal(factors[1:13:2], factors[2:14:2])  # constant over each 24-h occasion
    per_occasion = factors[1::2]  # one value per patient and occasion
    # 400 x 7 draws: the SD of a sample SD is ~1.3 %, so 6 % is a loose bound.
    assert abs(per_occasion.std() - ICU.iov_cl_sd) < 0.06 * ICU.iov_cl_sd


def test_auc_guided_draws_a_peak_with_the_first_trough_and_mipd_fits_it():
    n = 4
    env = VancoPKVectorEnv(n, scenario={"base": "icu", "sampling": "auc_guided"})
    _, info = env.reset(seed=2)
    mipd = make_policy("mipd")
    mipd.reset({c: info["covariates"][c] for c in COVARIATES})
    peaks = []
    for _ in range(10):
        mipd.action_probs(env.simulator.raw_observation(), info)
        mipd.record(np.full(n, 1000.0))
        *_, info = env.step(np.full((n, 1), 1000.0))
        peaks.append(info["peak_measured"].copy())
        if info["peak_measured"].any():
            # The pair comes from one interval: the peak ordered 1 h after the infusion, charted at
            # its real collection time (the draw-time error makes it earlier, never later).
            assert np.all(info["level_measured"][info["peak_measured"]])
            offsets = info["peak_offset_h"][info["peak_measured"]]
            assert np.all((offsets >= 0) & (offsets <= ICU.auc_peak_offset_h))
            assert np.any(offsets < ICU.auc_peak_offset_h)
            drawn = info["peak_measured"]
            assert np.all(info["peak_level"][drawn] > info["raw_level"][drawn])
    # Only at the first level (24 h = step 2); the repeat at 96 h is a trough alone.
    assert np.array_equal(np.flatnonzero(np.any(peaks, axis=1)), [1])
    mipd.action_probs(env.simulator.raw_observation(), info)
    memory = mipd.history()
    assert np.isfinite(memory["peak"][:, 2]).all() and np.isnan(np.delete(memory["peak"], 2, axis=1)).all()
    assert mipd.tracker.history().peak is not None
    # The trough-guided protocol draws no peak.
    env = VancoPKVectorEnv(n, scenario={"base": "icu", "sampling": "trough_guided"})
    env.reset(seed=2)
    for _ in range(6):
        *_, info = env.step(np.full((n, 1), 1000.0))
        assert not info["peak_measured"].any()
