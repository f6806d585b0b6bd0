"""The one world object: its checks, the misspecification as a shift of the true model, the envs."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from vanco_pk import World
from vanco_pk.env import VancoPKEnv
from vanco_pk.patients import MISSPECIFICATIONS
from vanco_pk.policies import make_policy
from vanco_pk.scenario import ICU, IDEAL, THAI_ICU
from vanco_pk.simulate import simulate
from vanco_pk.vector import VancoPKVectorEnv
from vanco_pk.world import misspecified


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decision_interval_h": 4}, "decision_interval_h = 4.0 must be between 6 and 72"),
        ({"episode_days": 1.2}, "whole number"),
        ({"measurement_noise": "high"}, "World.measurement_noise = 'high' must be a number"),
        ({"level_missing_prob": 1.0}, r"level_missing_prob = 1.0 must be in \[0, 1\)"),
        ({"reward": "sparse"}, "unknown reward 'sparse'"),
        ({"scenario": "icu"}, "World.scenario must be a Scenario"),
    ],
)
def test_a_bad_world_is_a_one_line_error(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        World(**kwargs)
    assert "\n" not in str(err.value)


def test_make_takes_the_envs_options_and_refuses_the_agents():
    world = World.make(scenario="ideal", kidney_params=World().kidney, level_missing_prob=0.2)
    assert world == World(scenario=IDEAL, level_missing_prob=0.2)
    for option in ("extended_obs", "pk_features", "pk_model", "patients"):
        with pytest.raises(ValueError, match=rf"\['{option}'\] shape the agent's observation"):
            World.make(**{option: True})
    with pytest.raises(ValueError, match=r"unknown world option\(s\) \['interval'\]"):
        World.make(interval=8)
    with pytest.raises(ValueError, match="unknown misspecification 'wild'"):
        World.make(misspecification="wild")
    # One world, given once: either world= or its options.
    with pytest.raises(ValueError, match=r"give either world= or its options \['scenario'\], not both"):
        VancoPKEnv(world=world, scenario="icu")
    with pytest.raises(ValueError, match=r"world must be a vanco_pk\.World"):
        VancoPKEnv(world={"scenario": "ideal"})


def test_the_misspecification_is_one_shift_of_the_scenarios_true_model():
    mild = World.make(misspecification="mild")
    assert mild.scenario.model == MISSPECIFICATIONS["mild"].true_model(THAI_ICU)
    assert dataclasses.replace(mild.scenario, true_model=ICU.true_model) == ICU  # nothing else moves
    assert World.make(misspecification="none").scenario is ICU
    assert misspecified(IDEAL, None) is IDEAL
    # The env's option and the world it builds are the same world.
    env = VancoPKEnv(misspecification="severe", scenario="ideal")
    assert env.world == World(scenario=misspecified(IDEAL, "severe"))
    assert env.simulator.truth == env.world.scenario.model


# Numbers of the simulator before the world object (SimulatorConfig.misspecification shifted the
# truth inside the simulator): the same seed must give the same numbers, bit for bit.
BEFORE = {
    ("mild", "icu"): (
        [3.307618619278628, 0.7962522216997463, 3.4947401199744594],
        [559.8465659551271, 966.738561519925, 533.9296710833203],
    ),
    ("mild", "ideal"): (
        [1.5972372183170542, 0.8398740428910907, 2.5561439707237352],
        [826.4771833622256, 1168.5421960987699, 575.7473073681599],
    ),
    ("severe", "icu"): (
        [2.3187383627282805, 0.8481809611208976, 2.7109597669584673],
        [734.6241640839265, 898.0858076138671, 615.8621012753954],
    ),
    ("severe", "ideal"): (
        [1.0160016698795413, 0.7967328375441813, 2.0411894193472597],
        [937.2253463420506, 1088.6152659070385, 595.1328172331096],
    ),
}


@pytest.mark.parametrize(("misspecification", "scenario"), sorted(BEFORE))
def test_misspecified_worlds_give_the_numbers_they_gave_before(misspecification, scenario):
    cl, auc24 = BEFORE[misspecification, scenario]
    by_option = VancoPKVectorEnv(3, misspecification=misspecification, scenario=scenario)
    by_world = VancoPKVectorEnv(3, world=World.make(scenario=scenario, misspecification=misspecification))
    for envs in (by_option, by_world):
        info = envs.reset(seed=3)[1]
        assert info["cl"].tolist() == cl
        for _ in range(5):
            info = envs.step(np.full((3, 1), 1000.0, np.float32))[4]
        assert info["auc24"].tolist() == auc24


def test_gymnasium_make_and_simulate_build_the_same_world():
    env = gym.make("VancoPK-v0", scenario="ideal", decision_interval_h=8)
    assert env.unwrapped.world == World(scenario=IDEAL, decision_interval_h=8.0)
    world = World.make(scenario="ideal", level_missing_prob=0.3, episode_days=3)
    trace = simulate(make_policy("mipd"), 4, 5, world=world)
    assert trace.dose_mg.shape == (world.n_steps, 5) and trace.interval_h == 12.0
    assert trace.level_measured.mean() < 1.0  # the world's missing levels, not the default world's
    assert simulate(make_policy("mipd"), 4, 5).dose_mg.shape == (World().n_steps, 5)
