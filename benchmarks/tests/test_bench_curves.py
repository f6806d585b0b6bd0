"""Validation vs test patients in the benchmarks, and the learning curves of ``bench curves``."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from vanco_bench import curves, offline
from vanco_bench.curves import checkpoints, learning_curve, pick_budget
from vanco_bench.offline.grid import TEST_SEED, VALIDATION_SEED, CellTask, DatasetSettings
from vanco_bench.policies import team_policy_options
from vanco_pk.patients import MISSPECIFICATIONS
from vanco_pk.scenario import THAI_ICU, get_scenario
from vanco_pk.world import World, misspecified


def _offline_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    offline.add_arguments(parser)
    return parser.parse_args(["--quick", *argv])


def test_checkpoints_are_log_spaced_and_the_budget_is_the_best_validation_one():
    assert checkpoints(10000) == [1000, 2000, 5000, 10000]
    assert checkpoints(30000, first=2000) == [2000, 5000, 10000, 20000, 30000]
    assert checkpoints(1000) == [1000]
    with pytest.raises(ValueError, match="first"):
        checkpoints(500)
    assert pick_budget([1000, 2000, 5000], [0.60, 0.64, 0.64]) == 2000
    with pytest.raises(ValueError, match="one attainment per checkpoint"):
        pick_budget([1000, 2000], [0.5])


def test_choices_are_scored_on_validation_patients_and_tables_on_test_patients():
    assert VALIDATION_SEED != TEST_SEED and offline.TUNE_EVAL_SEED == VALIDATION_SEED
    assert {t.eval_seed for t in offline.build_tasks(_offline_args())} == {TEST_SEED}
    algos = ("--algos", "ResidualVancoIQL", "VancoIQL", "IQL", "CQL", "mipd")
    tasks = offline.build_tasks(
        _offline_args("--validation", *algos, "--set", "residual_scale=0.2", "weight_temp=1")
    )
    assert {t.eval_seed for t in tasks} == {VALIDATION_SEED}
    by = {t.algo: dict(t.overrides) for t in tasks}
    assert by["ResidualVancoIQL"] == {"residual_scale": 0.2, "weight_temp": 1}
    assert by["VancoIQL"] == {"weight_temp": 1} and by["IQL"] == {"weight_temp": 1}
    assert by["CQL"] == {} and by["mipd"] == {}
    with pytest.raises(ValueError, match="no chosen learned algorithm has these config fields"):
        offline.build_tasks(_offline_args("--set", "nonsense=1"))
    with pytest.raises(ValueError, match="give KEY=VALUE"):
        offline.build_tasks(_offline_args("--set", "weight_temp"))
    parser = argparse.ArgumentParser()
    curves.add_arguments(parser)
    assert {t.eval_seed for t in curves.build_tasks(parser.parse_args([]))} == {VALIDATION_SEED}


@pytest.mark.slow
def test_a_learning_curve_scores_each_checkpoint_of_one_training_run():
    task = CellTask(
        DatasetSettings.make("medium", "tiny", n_stays=8, scenario="ideal"),
        "VancoIQL",
        0,
        n_steps=20,
        batch_size=32,
        eval_patients=4,
        eval_seed=VALIDATION_SEED,
    )
    curve = learning_curve(task, [10, 20])
    assert curve.steps == [10, 20]
    assert all(len(values) == 2 for values in curve.scores.values())
    assert all(0.0 <= a <= 1.0 for a in curve.scores["attainment"])
    assert curve.budget in (10, 20)


def test_a_dataset_can_live_in_a_world_with_sparse_levels_and_a_misspecified_prior():
    spec = DatasetSettings.make("medium", "small", level_missing_prob=0.8, misspecification="severe")
    # The world of the data: the icu truth shifted once by the severe misspecification.
    assert spec.world == World(
        scenario=misspecified(get_scenario("icu"), "severe"), measurement_noise=1.0, level_missing_prob=0.8
    )
    assert spec.world.scenario.model == MISSPECIFICATIONS["severe"].true_model(THAI_ICU)
    assert spec.label == "medium-small (levels missing 0.8, prior severely misspecified)"
    ideal = DatasetSettings.make("medium", "small", scenario="ideal")
    assert ideal.label == "medium-small (ideal)" and ideal.world.level_missing_prob == 0.3
    assert DatasetSettings.make("medium", "small").world.level_missing_prob == 0.0  # the protocol's
    same = DatasetSettings.make("medium", "small", misspecification="none")
    assert same == DatasetSettings.make("medium", "small")
    with pytest.raises(ValueError, match="unknown misspecification 'awful'"):
        DatasetSettings.make("medium", "small", misspecification="awful")
    with pytest.raises(ValueError, match="unknown scenario 'mars'"):
        DatasetSettings.make("medium", "small", scenario="mars")
    with pytest.raises(ValueError, match=r"level_missing_prob = 1.0 must be in \[0, 1\)"):
        DatasetSettings.make("medium", "small", level_missing_prob=1.0)
    tasks = offline.build_tasks(_offline_args("--misspecification", "mild", "--level-missing-prob", "0.5"))
    assert {t.dataset.misspecification for t in tasks} == {"mild"}
    mild = MISSPECIFICATIONS["mild"].true_model(THAI_ICU)
    assert {t.dataset.world.scenario.model for t in tasks} == {mild}
    # MIPD with the true prior doses through the shifted truth, whatever the command.
    true = dataclasses.replace(tasks[0], algo="mipd_true").reference()[1]["model"]
    assert true == dataclasses.replace(mild, prop_error=0.075, add_error_mg_l=1.0)
    assert team_policy_options("mipd (true prior)", tasks[0].dataset.world)["model"] == true
