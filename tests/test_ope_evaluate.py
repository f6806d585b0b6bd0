"""evaluate() on a simulated cohort: reference policies replayed, d3rlpy algorithms, truth, report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from d3rlpy.algos import DiscreteCQLConfig
from vanco_pk.policies import make_policy
from vanco_pk.world import World

from vanco_offline.data import convert
from vanco_offline.data.cohort import generate_cohort
from vanco_offline.ope import BehaviorSettings, FQESettings, IntervalSettings, SimulatorTruth, evaluate
from vanco_offline.ope.behavior import fit_behavior_model
from vanco_offline.ope.report import coverage_label
from vanco_offline.ope.trajectories import to_trajectories

TINY_FQE = FQESettings(n_steps=100, batch_size=64, hidden_units=(16,))


@pytest.fixture(scope="module")
def cohort():
    table = generate_cohort(40, "clinician", seed=3)
    result = convert(table, "discrete", fill_unmeasured_level=True, covariates=True)
    behavior = fit_behavior_model(to_trajectories(result), n_folds=3, classifier="logistic")
    return table, result, behavior


def test_the_behaviour_policy_replayed_gets_weights_of_exactly_one(cohort):
    table, result, behavior = cohort
    report = evaluate(
        make_policy("clinician"),
        result,
        table=table,
        estimators=("pdis", "wis", "wdr"),
        behavior=BehaviorSettings(model=behavior),
        fqe=TINY_FQE,
        intervals=IntervalSettings(200),
    )
    assert report.behavior_source == "logged behavior_prob"
    weights = report.estimates["pdis"].weights
    assert weights.mean_weight == pytest.approx(1.0, abs=1e-9)
    assert weights.ess == pytest.approx(result.report.stays, rel=1e-9)
    # With weights of 1, PDIS and WIS are the logged average return.
    assert report.value("pdis") == pytest.approx(report.logged_return.value, rel=1e-9)
    assert report.value("wis") == pytest.approx(report.logged_return.value, rel=1e-9)
    assert "clinician" in str(report) and "wdr" in report.table()


@pytest.mark.slow
def test_a_greedy_algorithm_is_evaluated_greedy_and_softened_only_for_importance_sampling(cohort):
    _, result, behavior = cohort
    torch.manual_seed(0)
    algo = DiscreteCQLConfig().create()
    algo.build_with_dataset(result.dataset)
    report = evaluate(
        algo,
        result,
        behavior=BehaviorSettings(model=behavior),
        fqe=TINY_FQE,
        intervals=IntervalSettings(100),
        truth=SimulatorTruth(n_patients=60, batch=60),
        seed=1,
    )
    assert report.policy == "DiscreteCQL"
    assert report.softened_policy.endswith("softened: 0.9 x policy + 0.1 x uniform dose")
    assert any("deterministic" in note for note in report.notes)
    assert report.greedy_q is not None and np.isfinite(report.greedy_q)
    assert report.truth is not None and report.truth.horizon == 14 and report.truth.n_patients == 60
    # The greedy policy and its softened version are different policies with different truths.
    assert report.truth_softened is not None and report.truth_softened.value != report.truth.value
    assert 0.0 <= report.support.conditional_mass <= 1.0
    for name in ("fqe", "lfqe", "pdis", "wis", "wpdis", "dr", "wdr"):
        est = report.estimates[name]
        assert np.isfinite(est.value) and est.interval.low <= est.interval.high
        assert est.softened == (name not in ("fqe", "lfqe"))
        assert report.truth_for(name) is (report.truth_softened if est.softened else report.truth)
    assert "twin" not in report.estimates  # no table, no twin
    table = report.table()
    assert "softened" in table
    for name in ("fqe", "lfqe", "wis", "wdr"):  # every interval says its measured coverage, or none
        assert coverage_label(name) in table and coverage_label(name) != ""
    again = evaluate(
        algo,
        result,
        behavior=BehaviorSettings(model=behavior),
        fqe=TINY_FQE,
        intervals=IntervalSettings(100),
        estimators=("fqe", "wdr"),
        seed=1,
    )
    assert again.value("fqe") == report.value("fqe") and again.value("wdr") == report.value("wdr")


def test_the_behaviour_model_stands_in_when_the_data_have_no_behaviour_prob(cohort):
    table, _, behavior = cohort
    result = convert(
        table.drop(columns="behavior_prob"), "discrete", fill_unmeasured_level=True, covariates=True
    )
    report = evaluate(
        make_policy("random"),
        result,
        table=table,
        estimators=("pdis", "wis"),
        behavior=BehaviorSettings(model=behavior),
        intervals=IntervalSettings(50),
    )
    assert report.behavior_source.startswith("fitted behaviour model")
    assert report.calibration.log_loss < report.calibration.baseline_log_loss


def test_replaying_a_reference_policy_needs_the_covariates(cohort):
    table, _, behavior = cohort
    bare = convert(table, "discrete", fill_unmeasured_level=True)
    with pytest.raises(ValueError, match=r"needs each patient.s.*table=table"):
        evaluate(
            make_policy("clinician"), bare, estimators=("pdis",), behavior=BehaviorSettings(model=behavior)
        )


def test_bad_options_and_mismatched_inputs_raise(cohort):
    table, result, behavior = cohort
    policy = make_policy("random")
    with pytest.raises(ValueError, match="unknown estimator"):
        evaluate(policy, result, table=table, estimators=("is",))
    with pytest.raises(ValueError, match="gamma"):
        evaluate(policy, result, table=table, gamma=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        evaluate(policy, result, table=table, epsilon=1.0)
    with pytest.raises(ValueError, match=r"simulator runs 6 decisions .* 14"):
        evaluate(
            policy,
            result,
            table=table,
            estimators=("pdis",),
            behavior=BehaviorSettings(model=behavior),
            intervals=IntervalSettings(10),
            truth=SimulatorTruth(n_patients=4, world=World(episode_days=3)),
        )
    with pytest.raises(ValueError, match=r"stay .* has 3 values for 14 transitions"):
        to_trajectories(result, behavior_prob=[np.full(3, 0.5)] * result.report.stays)
    with pytest.raises(ValueError, match=r"probability in \(0, 1\]"):
        to_trajectories(result, behavior_prob=[np.full(14, 1.5)] * result.report.stays)
    other = generate_cohort(40, "random", seed=9)
    with pytest.raises(ValueError, match="differ from the dataset's"):
        evaluate(
            make_policy("clinician"),
            result,
            table=other,
            estimators=("pdis",),
            behavior=BehaviorSettings(model=behavior),
        )


def test_bench_ope_rejects_bad_sizes_before_any_work():
    import argparse

    from vanco_bench import ope as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    for argv, message in (
        (["--quick", "--stays", "1"], "--stays must be at least 2"),
        (["--quick", "--gamma", "0"], "--gamma"),
        (["--quick", "--epsilon", "1"], "--epsilon"),
        (["--quick", "--fqe-history", "-1"], "--fqe-history"),
        (["--quick", "--data-preset", "seven_features", "--reward", "exposure"], "--data-preset"),
    ):
        with pytest.raises(ValueError, match=message):
            bench.run(parser.parse_args(argv))
