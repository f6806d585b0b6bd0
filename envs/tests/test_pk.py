"""Closed-form Goti 2018 PK against its ODE, identities and input checks."""

import numpy as np
import pytest
from vanco_pk import pk
from vanco_pk.pk_reference import ode_concentrations, ode_propagate


def _random_patient(rng):
    return pk.PKParams(rng.uniform(0.3, 9.0), rng.uniform(8.0, 250.0), rng.uniform(10.0, 120.0),
                       rng.uniform(2.0, 12.0))


def _random_regimen(rng):
    n = int(rng.integers(1, 9))
    times = np.sort(rng.uniform(0.0, 96.0, n))
    doses = rng.uniform(0.0, 3000.0, n)
    return times, doses, pk.infusion_duration_h(doses)


def test_closed_form_matches_solve_ivp_on_random_regimens():
    rng = np.random.default_rng(20240601)
    worst_c = worst_auc = 0.0
    for _ in range(6):
        params = _random_patient(rng)
        times, doses, t_inf = _random_regimen(rng)
        # Include dose starts and infusion ends, where the solution has kinks.
        t_eval = np.sort(np.concatenate([rng.uniform(0.0, 150.0, 25), times[:2], times[:2] + t_inf[:2]]))
        ref_c, ref_auc = ode_concentrations(params, times, doses, t_inf, t_eval)
        c = pk.concentrations(params, times, doses, t_inf, t_eval)
        auc = pk.cumulative_auc(params, times, doses, t_inf, t_eval)
        live = ref_c > 1e-6  # before the first dose both are exactly zero
        assert np.all(c[~live] < 1e-6)
        worst_c = max(worst_c, np.max(np.abs(c[live] - ref_c[live]) / ref_c[live], initial=0.0))
        live = ref_auc > 1e-6
        worst_auc = max(worst_auc, np.max(np.abs(auc[live] - ref_auc[live]) / ref_auc[live], initial=0.0))
    assert worst_c < 1e-4
    assert worst_auc < 1e-4


def test_interval_propagation_matches_ode_and_superposition():
    rng = np.random.default_rng(7)
    params = pk.PKParams(rng.uniform(0.5, 8, 5), rng.uniform(15, 150, 5), rng.uniform(15, 80, 5), 6.5)
    a1, a2 = rng.uniform(0, 800, 5), rng.uniform(0, 800, 5)
    ode = ode_propagate(params, a1, a2, 1500.0, 2.5, 12.0)
    exact = pk.propagate(params, a1, a2, 1500.0, 2.5, 12.0)
    for got, ref in zip((exact.central_mg, exact.peripheral_mg, exact.auc, exact.trough), ode, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-7)
    # Chaining intervals from a drug-free start equals the superposition of the doses.
    doses = np.array([2000.0, 1000.0, 0.0, 1250.0])
    t_inf = pk.infusion_duration_h(doses)
    c1 = c2 = np.zeros(5)
    total_auc = np.zeros(5)
    for k, dose in enumerate(doses):
        step = pk.propagate(params, c1, c2, dose, t_inf[k], 12.0)
        c1, c2, total_auc = step.central_mg, step.peripheral_mg, total_auc + step.auc
    times = 12.0 * np.arange(4)
    np.testing.assert_allclose(step.trough, pk.concentrations(params, times, doses, t_inf, [48.0])[:, 0])
    np.testing.assert_allclose(total_auc, pk.cumulative_auc(params, times, doses, t_inf, [48.0])[:, 0])
    until = np.array([0.5, 3.0, 12.0])
    partial = pk.interval_auc(params, 0.0, 0.0, 2000.0, t_inf[0], until[:, None])
    np.testing.assert_allclose(partial.T, pk.cumulative_auc(params, [0.0], [2000.0], t_inf[0], until))


def test_steady_state_auc24_is_daily_dose_over_clearance():
    rng = np.random.default_rng(3)
    params = pk.PKParams(rng.uniform(0.8, 8.0, 20), rng.uniform(15, 200, 20), rng.uniform(15, 100, 20), 6.5)
    beta = params.modes()[3]
    days = int(np.ceil(30.0 / beta.min() / 24.0))  # e^-30 of the slowest phase left
    times = np.arange(0.0, days * 24.0, 12.0)
    doses = np.full(times.shape, 1250.0)
    got = pk.auc24(params, times, doses, pk.infusion_duration_h(1250.0), [days * 24.0])[:, 0]
    np.testing.assert_allclose(got, pk.steady_state_auc24(2500.0, params.cl), rtol=1e-8)
    # A single dose's total exposure is dose / CL as well.
    one = pk.cumulative_auc(params, [0.0], [1000.0], 1.0, [days * 24.0])[:, 0]
    np.testing.assert_allclose(one, 1000.0 / params.cl, rtol=1e-8)


def test_vectorised_over_patients_equals_one_by_one():
    rng = np.random.default_rng(11)
    params = pk.PKParams(rng.uniform(1, 6, 4), rng.uniform(20, 90, 4), rng.uniform(20, 60, 4), 6.5)
    times, doses = np.array([0.0, 12.0, 24.0]), np.array([2000.0, 1000.0, 1000.0])
    t_eval = np.linspace(0.0, 48.0, 17)
    together = pk.concentrations(params, times, doses, 1.5, t_eval)
    assert together.shape == (4, 17)
    for i in range(4):
        np.testing.assert_allclose(together[i], pk.concentrations(params[i], times, doses, 1.5, t_eval))
    per_patient_times = np.stack([times + shift for shift in (0.0, 1.0, 2.0, 3.0)])
    shifted = pk.concentrations(params, per_patient_times, doses, 1.5, t_eval + 3.0)
    np.testing.assert_allclose(shifted[3], together[3])


def test_cockcroft_gault_and_typical_parameters_follow_goti():
    assert pk.cockcroft_gault(50, 70, 0, 1.0) == pytest.approx(87.5)
    assert pk.cockcroft_gault(50, 70, 1, 1.0) == pytest.approx(87.5 * 0.85)
    assert pk.cockcroft_gault(20, 120, 0, 0.5) == 150.0  # truncated as in Goti 2018
    assert pk.cockcroft_gault(20, 120, 0, 0.5, cap=None) == pytest.approx(400.0)
    typical = pk.typical_parameters(70.0, 120.0, 0)
    assert (typical.cl, typical.v1, typical.v2, typical.q) == pytest.approx((4.5, 58.4, 38.4, 6.5))
    dialysis = pk.typical_parameters(140.0, 60.0, 1)
    assert dialysis.cl == pytest.approx(4.5 * 0.5**0.8 * 0.7)
    assert dialysis.v1 == pytest.approx(58.4 * 2 * 0.5)
    individual = pk.individual_parameters(typical, np.array([np.log(2.0), 0.0, np.log(0.5)]))
    assert (individual.cl, individual.v1, individual.v2) == pytest.approx((9.0, 58.4, 19.2))


def test_infusion_respects_ten_mg_per_minute():
    np.testing.assert_allclose(pk.infusion_duration_h([0.0, 500.0, 600.0, 1500.0, 3000.0]), [1, 1, 1, 2.5, 5])


def test_measured_level_uses_the_goti_residual_error():
    rng = np.random.default_rng(5)
    z = rng.standard_normal((2, 200_000))
    levels = pk.measured_level(20.0, z[0], z[1])
    expected_sd = np.hypot(0.227 * 20.0, 3.4)
    assert levels.std() == pytest.approx(expected_sd, rel=0.02)
    assert np.all(pk.measured_level(0.5, z[0], z[1]) >= 0.0)
    np.testing.assert_array_equal(pk.measured_level(17.0, z[0], z[1], noise_scale=0.0), 17.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"doses_mg": [-1.0]}, "doses_mg must be >= 0"),
        ({"doses_mg": [np.nan]}, "doses_mg contains NaN"),
        ({"infusion_h": 0.0}, "infusion_h must be finite and > 0"),
        ({"t_eval_h": 5.0}, "t_eval_h must have at least one dimension"),
        ({"dose_times_h": [0.0, 12.0], "doses_mg": [1.0, 2.0, 3.0]}, "must broadcast together"),
    ],
)
def test_bad_regimens_raise_clear_errors(kwargs, message):
    args = {"dose_times_h": [0.0], "doses_mg": [1000.0], "infusion_h": 1.0, "t_eval_h": [1.0, 2.0]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pk.concentrations(pk.PKParams(4.0, 50.0, 40.0, 6.5), **args)


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match=r"PKParams.cl must be finite and > 0.*\[1\]"):
        pk.PKParams(np.array([1.0, -2.0]), 50.0, 40.0, 6.5)
    with pytest.raises(ValueError, match="creatinine_mg_dl must be > 0"):
        pk.cockcroft_gault(50, 70, 0, 0.0)
    with pytest.raises(ValueError, match=r"GotiModel\.cl"):
        pk.GotiModel(cl=-1.0)


def test_steady_state_concentrations_equal_a_long_regimen():
    rng = np.random.default_rng(8)
    params = pk.PKParams(rng.uniform(0.8, 8, 5), rng.uniform(15, 200, 5), rng.uniform(15, 100, 5), 6.5)
    beta = params.modes()[3]
    days = int(np.ceil(40.0 / beta.min() / 24.0))
    doses = np.array([500.0, 1000.0, 1500.0, 2000.0, 3000.0])
    tau = np.array([8.0, 12.0, 24.0, 12.0, 48.0])
    t_inf = pk.infusion_duration_h(doses)
    t_after = np.array([0.0, 0.5, 2.0, 4.0, 8.0])  # within every tau, inside and after infusions
    got = pk.steady_state_concentrations(params, doses, t_inf, tau, t_after)
    for i in range(5):
        times = np.arange(0.0, days * 24.0, tau[i])
        regimen = np.full(times.shape, doses[i])
        ref = pk.concentrations(params[i], times, regimen, t_inf[i], times[-1] + t_after)
        np.testing.assert_allclose(got[i], ref, rtol=1e-9)
    trough = pk.steady_state_concentrations(params[1], 1000.0, 1.0, 12.0, [12.0])
    assert trough == pytest.approx(pk.steady_state_concentrations(params[1], 1000.0, 1.0, 12.0, [0.0]))
    with pytest.raises(ValueError, match="infusion_h <= tau_h"):
        pk.steady_state_concentrations(params, 1000.0, 13.0, 12.0, [0.0])
