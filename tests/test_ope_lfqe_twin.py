"""Linear FQE refitted per resample, and the PK digital twin, against exact or simulated truth."""

from __future__ import annotations

import numpy as np
from tabular_mdp import TabularMDP
from vanco_pk.policies import make_policy

from vanco_offline.data import convert
from vanco_offline.data.cohort import generate_cohort
from vanco_offline.ope import SimulatorTruth, TwinSettings, simulate_value, twin_estimate
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
