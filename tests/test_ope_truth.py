"""The simulator's truth on the default data: PK features, the previous dose, the exposure reward."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest
import torch
from d3rlpy.algos import DiscreteCQLConfig
from vanco_pk.exposure import PK_FEATURES
from vanco_pk.world import World

from vanco_offline.data import convert
from vanco_offline.data.cohort import cohort_seeds, generate_cohort
from vanco_offline.ope import (
    BehaviorSettings,
    FQESettings,
    IntervalSettings,
    SimulatorTruth,
    evaluate,
    simulate_value,
)
from vanco_offline.ope.behavior import fit_behavior_model
from vanco_offline.ope.policy import AlgoPolicy
from vanco_offline.ope.trajectories import to_trajectories

GAMMA = 0.99
SEED = 5
N = 6
# Missing levels make the tracker's features differ from a level-every-step chart.
WORLD = World(level_missing_prob=0.3)
PK_DATA = {"covariates": True, "last_dose": True, "pk_features": True}


@pytest.fixture(scope="module")
def table():
    return generate_cohort(N, "clinician", seed=SEED, world=WORLD)


class ScriptedAlgo:
    """Stands in for a d3rlpy algorithm: gives each patient its logged dose, step by step, and
    keeps every observation it is asked about (the input a trained algorithm would get)."""

    impl = object()

    def __init__(self, actions: np.ndarray, discrete: bool):
        self.actions, self.discrete, self.step, self.seen = actions, discrete, 0, []

    def get_action_type(self):
        return type("ActionSpace", (), {"name": "DISCRETE" if self.discrete else "CONTINUOUS"})

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(np.array(x))
        action = self.actions[:, self.step]
        self.step += 1
        return action if self.discrete else action.reshape(-1, 1).astype(np.float32)


def _replay(result, reward: str, discrete: bool = True):
    """Roll the logged doses out again on the logged patients; the observations fed and the truth."""
    traj = to_trajectories(result)
    algo = ScriptedAlgo(traj.actions if discrete else traj.raw_actions, discrete)
    truth = SimulatorTruth(
        patient_seeds=cohort_seeds(SEED, N)[0], batch=N, world=dataclasses.replace(WORLD, reward=reward)
    )
    value = simulate_value(AlgoPolicy(algo), GAMMA, truth, result.observation_names)
    return traj, np.stack(algo.seen, axis=1), value


@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_the_truth_rollout_feeds_a_policy_the_converted_observation_of_the_same_stay(table, action):
    result = convert(table, action, fill_unmeasured_level=True, reward="exposure", **PK_DATA)
    assert result.observation_names[-4:] == ("last_dose_mg", *PK_FEATURES)
    traj, seen, value = _replay(result, "exposure", discrete=action == "discrete")
    assert seen.shape == traj.observations.shape
    np.testing.assert_array_equal(seen, traj.observations)
    assert value.horizon == traj.horizon and value.n_patients == N


def test_the_truth_scores_the_reward_the_data_were_converted_with(table):
    trough = convert(table, "discrete", fill_unmeasured_level=True, **PK_DATA)
    exposure = convert(table, "discrete", fill_unmeasured_level=True, reward="exposure", **PK_DATA)
    traj, _, default_value = _replay(trough, "default")
    # Same patients, same doses: the environment's default reward is the table's reward column.
    np.testing.assert_allclose(default_value.returns, traj.returns(GAMMA), atol=1e-3)
    traj, _, exposure_value = _replay(exposure, "exposure")
    # The converter scores the AUC estimated from the rounded chart, the environment from the
    # unrounded one: close on average, not equal (docs/ope.md gives the size on 300 stays).
    difference = exposure_value.returns - traj.returns(GAMMA)
    assert abs(difference.mean()) < 0.1
    assert np.abs(exposure_value.returns - default_value.returns).max() > 1.0


@pytest.mark.slow
def test_evaluate_takes_data_with_pk_features_and_the_exposure_reward(table):
    result = convert(table, "discrete", fill_unmeasured_level=True, reward="exposure", **PK_DATA)
    traj = to_trajectories(result)
    torch.manual_seed(0)
    algo = DiscreteCQLConfig().create()
    algo.build_with_dataset(result.dataset)
    behavior = fit_behavior_model(traj, n_folds=3, classifier="logistic")
    report = evaluate(
        algo,
        result,
        behavior=BehaviorSettings(model=behavior),
        fqe=FQESettings(n_steps=60, batch_size=32, hidden_units=(16,)),
        intervals=IntervalSettings(50),
        truth=SimulatorTruth(n_patients=8, batch=8, world=dataclasses.replace(WORLD, reward="exposure")),
    )
    assert report.truth is not None and report.truth.n_patients == 8
    assert report.logged_return.value == pytest.approx(traj.returns(GAMMA).mean())
    for est in report.estimates.values():
        assert np.isfinite(est.value) and est.interval.low <= est.interval.high


def test_simulator_truth_rejects_bad_patient_seeds_and_options():
    with pytest.raises(ValueError, match="patient_seeds needs at least 2"):
        SimulatorTruth(patient_seeds=(3,))
    with pytest.raises(ValueError, match="non-negative"):
        SimulatorTruth(patient_seeds=(3, -1))
    with pytest.raises(ValueError, match=r"must be a vanco_pk\.World"):
        SimulatorTruth(world={"scenario": "ideal"})
    # The policy's observation is rebuilt from the data's columns: the world cannot carry the env's.
    with pytest.raises(ValueError, match=r"\['extended_obs'\] shape the agent's observation"):
        World.make(extended_obs=True)
    assert SimulatorTruth(patient_seeds=[7, 8, 9]).n_patients == 3


def _args(*argv: str) -> argparse.Namespace:
    from vanco_bench import ope as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


def test_bench_ope_data_options_follow_the_flags_and_a_presets_data_section():
    from vanco_bench.ope.options import conversion_options, parse

    from vanco_offline.configs import load_preset
    from vanco_offline.data import ConversionOptions

    seven = ConversionOptions(action="discrete", fill_unmeasured_level=True, covariates=True)
    assert conversion_options(_args()) == seven  # the seven-feature run, the table's reward
    flags = conversion_options(_args("--last-dose", "--pk-features", "--reward", "exposure"))
    assert flags == dataclasses.replace(seven, last_dose=True, pk_features=True, reward="exposure")
    run = parse(_args("--last-dose", "--pk-features", "--reward", "exposure", "--scenario", "ideal"))
    assert run.world() == World.make(scenario="ideal", reward="exposure")
    # A preset's data section is the project's one spec, with discrete doses.
    default = load_preset("default").data.conversion_options()
    assert conversion_options(_args("--data-preset", "default")) == dataclasses.replace(
        default, action="discrete"
    )
    assert conversion_options(_args("--data-preset", "seven_features")).reward == "default"
    with pytest.raises(ValueError, match=r"--data-preset seven_features .* 'default' reward"):
        conversion_options(_args("--data-preset", "seven_features", "--reward", "exposure"))
    with pytest.raises(ValueError, match="unknown preset"):
        conversion_options(_args("--data-preset", "no_such_preset"))
