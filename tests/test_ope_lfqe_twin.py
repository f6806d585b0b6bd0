"""Linear FQE refitted per resample, and the PK digital twin, against exact or simulated truth."""

from __future__ import annotations

import numpy as np
import pytest
from tabular_mdp import TabularMDP
from vanco_pk.policies import make_policy

from vanco_offline.data import convert
from vanco_offline.data.cohort import generate_cohort
from vanco_offline.ope import IntervalSettings, SimulatorTruth, TwinSettings, simulate_value, twin_estimate
from vanco_offline.ope.bootstrap import bootstrap_counts, percentile_interval
from vanco_offline.ope.linear_fqe import LinearFQESettings, fit_linear_fqe
from vanco_offline.ope.policy import ReferencePolicy
from vanco_offline.ope.trajectories import to_trajectories


def test_linear_fqe_is_exact_in_the_tabular_case_and_its_refit_interval_covers():
    # Two actions and one-hot states: the features span every Q, so the fit is tabular FQE.
    mdp = TabularMDP.random(n_states=5, n_actions=2, horizon=5, seed=1)
    rng = np.random.default_rng(0)
    mu, pi = rng.dirichlet(np.full(2, 3.0), size=5), rng.dirichlet(np.full(2, 3.0), size=5)
    truth = mdp.value(pi, 0.95)
    hits = 0
    for seed in range(20):
        traj = mdp.sample(mu, 300, seed=100 + seed)
        fit = fit_linear_fqe(
            traj,
            mdp.policy_pmf(pi, traj),
            0.95,
            LinearFQESettings(history=0, ridge=1e-6),
            bootstrap_counts(traj.n_stays, 200, seed),
        )
        hits += percentile_interval(fit.replicates).covers(truth)
    assert hits >= 16  # 95 % nominal; measured 95 % over 40 data sets


def test_the_twin_of_the_logged_stays_recovers_a_policys_value_and_attainment():
    table = generate_cohort(60, "clinician", seed=0)
    result = convert(table, "discrete", fill_unmeasured_level=True, covariates=True)
    traj = to_trajectories(result)
    policy = ReferencePolicy(make_policy("oracle"))
    est = twin_estimate(
        policy,
        table,
        traj.stay_ids,
        0.99,
        TwinSettings(n_draws=3, n_bootstrap=200),
        result.observation_names,
        traj.horizon,
    )
    truth = simulate_value(policy, 0.99, SimulatorTruth(n_patients=300, batch=300))
    assert est.posterior.draws.shape == (60, 3, 2) and np.all(est.posterior.n_levels > 0)
    assert est.interval.covers(truth.value)
    assert abs(est.attainment - truth.attainment) < 0.1


def test_evaluate_compares_a_policy_with_references_on_the_same_twins():
    # evaluate(references=...) is twin_estimate of both on one kidney (from_logs) and their
    # paired_difference, with the simulator's difference of the two truths.
    from vanco_offline.ope import evaluate, paired_difference
    from vanco_offline.ope.twin import from_logs

    table = generate_cohort(12, "clinician", seed=3)
    result = convert(table, "discrete", fill_unmeasured_level=True, covariates=True)
    traj = to_trajectories(result)
    truth = SimulatorTruth(n_patients=40, batch=40)
    settings = TwinSettings(n_draws=2, n_bootstrap=50, seed=3)
    oracle, mipd = make_policy("oracle"), make_policy("mipd")
    report = evaluate(
        oracle,
        result,
        estimators=("twin",),
        table=table,
        twin=settings,
        truth=truth,
        references={"MIPD": mipd},
        intervals=IntervalSettings(n_bootstrap=50),
        seed=3,
    )
    shared = from_logs(settings, table, traj.stay_ids)
    names = result.observation_names
    mine = twin_estimate(ReferencePolicy(oracle), table, traj.stay_ids, 0.99, shared, names, traj.horizon)
    theirs = twin_estimate(ReferencePolicy(mipd, name="MIPD"), table, traj.stay_ids, 0.99, shared, names)
    true = {
        metric: getattr(simulate_value(ReferencePolicy(oracle), 0.99, truth), metric)
        - getattr(simulate_value(ReferencePolicy(mipd), 0.99, truth), metric)
        for metric in ("value", "attainment")
    }
    assert report.twin.value == mine.value
    assert [(d.metric, d.policy, d.reference) for d, _ in report.differences] == [
        ("value", "oracle", "MIPD"),
        ("attainment", "oracle", "MIPD"),
    ]
    for diff, true_diff in report.differences:
        expected = paired_difference(mine, theirs, diff.metric, "oracle", "MIPD")
        assert (diff.value, diff.interval) == (expected.value, expected.interval)
        assert true_diff == true[diff.metric]
    assert "paired difference, value oracle - MIPD" in str(report)
    # An EvaluatedPolicy given as a reference is named by its key, like any other.
    again = evaluate(
        oracle,
        result,
        estimators=("twin",),
        table=table,
        twin=settings,
        references={"MIPD": ReferencePolicy(mipd, name="something else")},
        intervals=IntervalSettings(n_bootstrap=50),
        seed=3,
    )
    assert [(d.reference, d.value, t) for d, t in again.differences] == [
        ("MIPD", d.value, None) for d, _ in report.differences
    ]
    with pytest.raises(ValueError, match="references are compared on the twins"):
        evaluate(oracle, result, estimators=("wis",), references={"MIPD": mipd})
