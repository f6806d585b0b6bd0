"""IS / WIS / WPDIS / DR / WDR and the bootstrap, checked against a tabular MDP's exact values."""

from __future__ import annotations

import numpy as np
import pytest
from tabular_mdp import TabularMDP

from vanco_offline.ope.bootstrap import bootstrap_counts, percentile_interval
from vanco_offline.ope.estimators import estimate, importance_weights
from vanco_offline.ope.policy import ArrayPolicy
from vanco_offline.ope.trajectories import Trajectories

GAMMA = 0.95
MDP = TabularMDP.random(n_states=5, n_actions=3, horizon=5, seed=1)
_rng = np.random.default_rng(0)
MU = _rng.dirichlet(np.full(3, 3.0), size=5)  # behaviour
PI = _rng.dirichlet(np.full(3, 3.0), size=5)  # evaluated
TRUTH = MDP.value(PI, GAMMA)


def _parts(traj: Trajectories, model_bias: float = 0.0):
    """Weights and a model of Q^pi (exact, or shifted by ``model_bias`` to test robustness)."""
    pmf = MDP.policy_pmf(PI, traj)
    target = np.take_along_axis(pmf, traj.actions[..., None], axis=2)[..., 0]
    weights = importance_weights(target, traj.behavior_prob, traj.mask)
    q = (
        MDP.q_values(PI, GAMMA)[np.arange(traj.horizon)[None, :], traj.observations.argmax(axis=2)]
        + model_bias
    )
    q_logged = np.take_along_axis(q, traj.actions[..., None], axis=2)[..., 0]
    return weights, {"q_logged": q_logged, "v_states": (q * pmf).sum(axis=2)}


def _error(name: str, n: int, seed: int, model_bias: float = 0.0) -> float:
    traj = MDP.sample(MU, n, seed=seed)
    weights, model = _parts(traj, model_bias)
    extra = model if name in ("dr", "wdr") else {}
    return float(estimate(name, weights, traj.rewards, GAMMA, **extra)) - TRUTH


@pytest.mark.parametrize("name", ["pdis", "wis", "wpdis", "dr", "wdr"])
def test_estimators_converge_to_the_exact_value(name):
    # DR/WDR get a model that is wrong by +0.5 everywhere: with the true mu they must still converge.
    small = np.mean([abs(_error(name, 100, seed, model_bias=0.5)) for seed in range(8)])
    large = abs(_error(name, 40_000, seed=99, model_bias=0.5))
    assert large < small / 4
    assert large < 0.03 * (1 + abs(TRUTH))


def test_exact_model_makes_doubly_robust_nearly_exact():
    # With the exact Q only reward and transition noise remain: far less error than plain IS.
    traj = MDP.sample(MU, 2000, seed=5)
    weights, model = _parts(traj)
    dr = abs(float(estimate("wdr", weights, traj.rewards, GAMMA, **model)) - TRUTH)
    pdis = abs(float(estimate("pdis", weights, traj.rewards, GAMMA)) - TRUTH)
    assert dr < 0.05 and dr < pdis


def test_behaviour_policy_gives_weights_of_exactly_one():
    traj = MDP.sample(MU, 500, seed=3)
    pmf = MDP.policy_pmf(MU, traj)
    target = np.take_along_axis(pmf, traj.actions[..., None], axis=2)[..., 0]
    weights = importance_weights(target, traj.behavior_prob, traj.mask)
    assert np.array_equal(weights.ratios, np.ones_like(weights.ratios))
    assert np.array_equal(weights.cumulative, np.ones_like(weights.cumulative))
    diag = weights.diagnostics()
    assert diag.ess == pytest.approx(500) and diag.max_weight_share == pytest.approx(1 / 500)
    on_policy = traj.returns(GAMMA).mean()
    for name in ("pdis", "wis", "wpdis"):
        assert float(estimate(name, weights, traj.rewards, GAMMA)) == pytest.approx(on_policy, abs=1e-12)


def test_bootstrap_interval_covers_the_truth_at_about_its_nominal_rate():
    covered = {"pdis": 0, "dr": 0, "wdr": 0}
    repeats = 150
    for r in range(repeats):
        traj = MDP.sample(MU, 200, seed=1000 + r)
        weights, model = _parts(traj, model_bias=0.3)
        counts = bootstrap_counts(traj.n_stays, 300, seed=r)
        for name in covered:
            extra = model if name != "pdis" else {}
            reps = estimate(name, weights, traj.rewards, GAMMA, counts=counts, **extra)
            covered[name] += percentile_interval(reps, 0.9).covers(TRUTH)
    for name, hits in covered.items():
        # 150 draws of a 90% interval: 0.80-0.97 is about +-3 binomial standard errors.
        assert 0.80 <= hits / repeats <= 0.97, (name, hits / repeats)


def test_bootstrap_counts_are_seeded_resamples_of_stays():
    a, b = bootstrap_counts(7, 50, seed=3), bootstrap_counts(7, 50, seed=3)
    assert np.array_equal(a, b) and np.all(a.sum(axis=1) == 7)
    assert not np.array_equal(a, bootstrap_counts(7, 50, seed=4))


def test_clipping_bounds_weights_and_reports_the_share_clipped():
    traj = MDP.sample(MU, 300, seed=8)
    pmf = MDP.policy_pmf(PI, traj)
    target = np.take_along_axis(pmf, traj.actions[..., None], axis=2)[..., 0]
    free = importance_weights(target, traj.behavior_prob, traj.mask)
    clipped = importance_weights(target, traj.behavior_prob, traj.mask, clip=2.0)
    assert clipped.cumulative.max() <= 2.0
    share = float(np.mean(free.cumulative[traj.mask] > 2.0))
    assert share > 0 and clipped.diagnostics().fraction_clipped == pytest.approx(share)


def test_truncation_at_sqrt_n_times_the_mean_weight():
    traj = MDP.sample(MU, 400, seed=9)
    pmf = MDP.policy_pmf(PI, traj)
    target = np.take_along_axis(pmf, traj.actions[..., None], axis=2)[..., 0]
    free = importance_weights(target, traj.behavior_prob, traj.mask)
    cut = importance_weights(target, traj.behavior_prob, traj.mask, clip="sqrt_n")
    bound = np.sqrt(400) * free.cumulative.mean(axis=0)
    assert np.all(cut.cumulative <= bound + 1e-12)
    assert cut.clipped.any() and np.array_equal(cut.clipped, traj.mask & (free.cumulative > bound))
    with pytest.raises(ValueError, match="sqrt_n"):
        importance_weights(target, traj.behavior_prob, traj.mask, clip="sqrt")


def test_weighted_is_is_undefined_when_every_weight_vanishes():
    traj = MDP.sample(MU, 50, seed=2)
    zero = np.zeros(traj.mask.shape)
    weights = importance_weights(zero, traj.behavior_prob, traj.mask)
    assert np.isnan(estimate("wis", weights, traj.rewards, GAMMA))
    assert weights.diagnostics().zero_weight_fraction == 1.0


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1, np.nan])
def test_behaviour_probabilities_outside_0_1_are_rejected(bad):
    traj = MDP.sample(MU, 20, seed=1)
    prob = traj.behavior_prob.copy()
    prob[3, 0] = bad
    with pytest.raises(ValueError, match=r"behavior_prob must be .*\(0, 1\].*stay 3, step 0"):
        importance_weights(np.full(prob.shape, 0.5), prob, traj.mask)
    with pytest.raises(ValueError, match=r"probability in \(0, 1\].*stay 3 \(episode 3\), step 0"):
        Trajectories(**{**traj.__dict__, "behavior_prob": prob})


def test_mismatched_shapes_and_unknown_estimators_are_rejected():
    traj = MDP.sample(MU, 20, seed=1)
    with pytest.raises(ValueError, match="same shape"):
        importance_weights(np.ones((20, 4)), traj.behavior_prob, traj.mask)
    weights = importance_weights(np.ones(traj.mask.shape), traj.behavior_prob, traj.mask)
    with pytest.raises(ValueError, match="unknown estimator 'foo'"):
        estimate("foo", weights, traj.rewards, GAMMA)
    with pytest.raises(ValueError, match="needs the model"):
        estimate("wdr", weights, traj.rewards, GAMMA)
    with pytest.raises(ValueError, match="counts has 3 stays"):
        estimate("pdis", weights, traj.rewards, GAMMA, counts=np.ones(3))
    with pytest.raises(ValueError, match="clip must be"):
        importance_weights(np.ones(traj.mask.shape), traj.behavior_prob, traj.mask, clip=0.0)
    with pytest.raises(ValueError, match="prefix"):
        mask = traj.mask.copy()
        mask[0, 1] = ~mask[0, 1] if not mask[0, 2] else False
        mask[0, 2] = True
        Trajectories(**{**traj.__dict__, "mask": mask})


def test_policy_probabilities_must_be_distributions():
    traj = MDP.sample(MU, 10, seed=1)
    bad = MDP.policy_pmf(PI, traj) * 1.2
    with pytest.raises(ValueError, match="do not sum to 1"):
        ArrayPolicy(bad).logged_pmf(traj)
    with pytest.raises(ValueError, match="shape"):
        ArrayPolicy(MDP.policy_pmf(PI, traj)[:5]).logged_pmf(traj)
    with pytest.raises(ValueError, match="epsilon"):
        ArrayPolicy(MDP.policy_pmf(PI, traj), epsilon=1.0)
    soft = ArrayPolicy(MDP.policy_pmf(PI, traj), epsilon=0.3).logged_pmf(traj)
    assert np.allclose(soft, 0.7 * MDP.policy_pmf(PI, traj) + 0.1)
