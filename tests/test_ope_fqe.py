"""FQE through d3rlpy: converges on a tabular problem, and the action feed equals d3rlpy's own FQE."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from d3rlpy.algos import DiscreteCQLConfig
from d3rlpy.ope import DiscreteFQE
from d3rlpy.preprocessing import StandardObservationScaler
from tabular_mdp import TabularMDP

from vanco_offline.ope import FQESettings
from vanco_offline.ope.feed import FQEInputs, TransitionTable
from vanco_offline.ope.fqe import TargetActionFeed, fit_fqe, fqe_config
from vanco_offline.ope.threads import single_thread

GAMMA = 0.95
MDP = TabularMDP.random(n_states=5, n_actions=3, horizon=5, seed=1)
_rng = np.random.default_rng(0)
MU = _rng.dirichlet(np.full(3, 3.0), size=5)
PI = _rng.dirichlet(np.full(3, 3.0), size=5)
SMALL = FQESettings(
    n_steps=1000, batch_size=128, hidden_units=(64,), target_update_interval=100, learning_rate=1e-3
)


def _fqe_value(traj, settings=SMALL) -> float:
    pmf = MDP.policy_pmf(PI, traj)
    fitted = fit_fqe(traj, pmf, GAMMA, settings)
    q0 = fitted.q_values(traj, np.arange(traj.n_stays), np.zeros(traj.n_stays, dtype=np.int64))
    return float((q0 * pmf[:, 0]).sum(axis=1).mean())


@pytest.mark.slow
def test_fqe_converges_to_the_exact_value_with_more_data():
    truth = MDP.value(PI, GAMMA)
    small = abs(_fqe_value(MDP.sample(MU, 60, seed=11)) - truth)
    large = abs(_fqe_value(MDP.sample(MU, 20_000, seed=12)) - truth)
    assert large < small / 3
    assert large < 0.05


@pytest.mark.slow
def test_fqe_on_continuous_doses_matches_the_discrete_fit():
    traj = MDP.sample(MU, 20_000, seed=12)
    doses = np.array([0.0, 500.0, 1000.0])
    continuous = dataclasses.replace(
        traj, raw_actions=doses[traj.actions], action_values=doses, continuous=True
    )
    # Q(s, a) of a dose is a regression in a, a little harder than one output per action.
    settings = dataclasses.replace(SMALL, n_steps=1500)
    assert abs(_fqe_value(continuous, settings) - MDP.value(PI, GAMMA)) < 0.06


def test_fqe_is_seeded():
    traj = MDP.sample(MU, 300, seed=2)
    settings = dataclasses.replace(SMALL, n_steps=200)
    assert _fqe_value(traj, settings) == _fqe_value(traj, settings)


def test_action_feed_reproduces_d3rlpys_own_fqe_for_a_markov_algorithm():
    # A d3rlpy algorithm acts on the observation alone, so d3rlpy's FQE can ask it directly.
    # Feeding its precomputed actions must give the very same Q-function, update for update.
    traj = MDP.sample(MU, 300, seed=4)
    obs = traj.observations[traj.mask]
    scaler = StandardObservationScaler(mean=obs.mean(axis=0), std=obs.std(axis=0))
    torch.manual_seed(0)
    algo = DiscreteCQLConfig(observation_scaler=scaler).create()
    algo.create_impl((MDP.n_states,), MDP.n_actions)
    greedy = algo.predict(traj.observations.reshape(-1, MDP.n_states)).reshape(traj.mask.shape)
    pmf = np.eye(MDP.n_actions)[greedy]
    settings = FQESettings(
        n_steps=150,
        batch_size=64,
        hidden_units=(16,),
        time_feature=False,
        history=False,
        reward_scale=1.0,
        seed=3,
    )
    ours = fit_fqe(traj, pmf, GAMMA, settings, algo=algo)

    config = fqe_config(algo, continuous=False, gamma=GAMMA, settings=settings)
    assert config.observation_scaler is scaler  # the pitfall of DESIGN.md: FQE gets the algo's scaler
    torch.manual_seed(settings.seed)
    stock = DiscreteFQE(algo=algo, config=config)
    stock.create_impl((MDP.n_states,), MDP.n_actions)
    table = TransitionTable(traj, pmf, FQEInputs())
    rng = np.random.default_rng(settings.seed)
    with single_thread():
        for _ in range(settings.n_steps):
            stock.update(table.sample(rng, settings.batch_size))
    x = np.eye(MDP.n_states, dtype=np.float32)
    for a in range(MDP.n_actions):
        action = np.full(MDP.n_states, a)
        np.testing.assert_allclose(
            ours.fqe.predict_value(x, action), stock.predict_value(x, action), rtol=1e-6
        )


def test_action_feed_refuses_calls_it_was_not_set_up_for():
    feed = TargetActionFeed()
    with pytest.raises(RuntimeError, match="outside an update"):
        feed.predict_best_action(torch.zeros(2, 3))
    feed.expect(torch.zeros(2, 3), torch.ones(2, 1))
    with pytest.raises(RuntimeError, match="not the batch's"):
        feed.predict_best_action(torch.ones(2, 3))
    with pytest.raises(RuntimeError, match="no policy"):
        feed.predict(np.zeros((1, 3)))


def test_bad_fqe_settings_and_shapes_are_rejected():
    with pytest.raises(ValueError, match="n_steps"):
        FQESettings(n_steps=0)
    with pytest.raises(ValueError, match="reward_scale"):
        FQESettings(reward_scale=-1.0)
    traj = MDP.sample(MU, 20, seed=1)
    with pytest.raises(ValueError, match="target_pmf has shape"):
        fit_fqe(traj, np.ones((20, 5, 4)) / 4, GAMMA, SMALL)
