"""The flat sampler reproduces d3rlpy's transitions and its uniform distribution over them."""

from __future__ import annotations

import d3rlpy
import numpy as np
import pytest
import torch
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import MDPDataset, MultiStepTransitionPicker, TransitionMiniBatch
from d3rlpy.logging import NoopAdapterFactory
from d3rlpy.models import VectorEncoderFactory
from d3rlpy.preprocessing import MinMaxActionScaler, StandardObservationScaler, StandardRewardScaler
from d3rlpy.torch_utility import TorchMiniBatch
from scipy import stats

from vanco_offline.algos import FastReplayBuffer, FlatTransitions
from vanco_offline.algos.fast.device_sampler import TorchTransitionSampler


def _dataset(n_episodes: int = 60, seed: int = 0) -> MDPDataset:
    """Episodes of 3..20 steps, some terminal and some cut by a timeout; obs[:, 0] is the row id."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 21, n_episodes)
    n = int(lengths.sum())
    obs = rng.normal(size=(n, 7)).astype(np.float32)
    obs[:, 0] = np.arange(n)
    ends = np.cumsum(lengths) - 1
    terminals = np.zeros(n, np.float32)
    timeouts = np.zeros(n, np.float32)
    terminal_episode = rng.random(n_episodes) < 0.5
    terminals[ends[terminal_episode]] = 1.0
    timeouts[ends[~terminal_episode]] = 1.0
    return MDPDataset(
        observations=obs,
        actions=rng.uniform(0, 3000, (n, 1)).astype(np.float32),
        rewards=rng.normal(size=(n, 1)).astype(np.float32),
        terminals=terminals,
        timeouts=timeouts,
        action_space=ActionSpace.CONTINUOUS,
    )


def test_every_row_is_the_transition_d3rlpy_picks_for_that_buffer_index():
    dataset = _dataset()
    flat = FlatTransitions.from_dataset(dataset)
    assert len(flat) == dataset.transition_count
    picker = dataset.transition_picker
    for i in range(dataset.transition_count):
        episode, step = dataset.buffer[i]
        t = picker(episode, step)
        assert flat.episodes[flat.episode_index[i]] is episode and flat.step_index[i] == step
        np.testing.assert_array_equal(flat.observations[i], t.observation)
        np.testing.assert_array_equal(flat.actions[i], t.action)
        np.testing.assert_array_equal(flat.rewards[i], t.reward)
        np.testing.assert_array_equal(flat.next_observations[i], t.next_observation)
        np.testing.assert_array_equal(flat.next_actions[i], t.next_action)
        assert flat.terminals[i, 0] == t.terminal and flat.intervals[i, 0] == t.interval


def test_sampling_is_uniform_over_transitions_like_d3rlpys():
    dataset = _dataset(n_episodes=30)
    # Row ids of the transitions; a timeout episode's last step is not a transition.
    ids = FlatTransitions.from_dataset(dataset).observations[:, 0].astype(int)
    d3rlpy.seed(1)
    fast = FastReplayBuffer(dataset)
    n_batches = 120
    ours = np.concatenate([fast.sample_transition_batch(256).observations[:, 0] for _ in range(n_batches)])
    theirs = np.concatenate(
        [dataset.sample_transition_batch(256).observations[:, 0] for _ in range(n_batches)]
    )
    for drawn in (ours, theirs):
        assert set(drawn.astype(int)) <= set(ids)
    ours_counts = np.array([np.sum(ours == i) for i in ids])
    theirs_counts = np.array([np.sum(theirs == i) for i in ids])
    # Both uniform over the transitions, and not distinguishable from each other.
    assert stats.chisquare(ours_counts).pvalue > 1e-3
    assert stats.chisquare(theirs_counts).pvalue > 1e-3
    assert stats.chi2_contingency(np.stack([ours_counts, theirs_counts])).pvalue > 1e-3


def test_same_d3rlpy_seed_gives_the_same_batches():
    dataset = _dataset()
    d3rlpy.seed(3)
    a = FastReplayBuffer(dataset).sample_transition_batch(32)
    d3rlpy.seed(3)
    b = FastReplayBuffer(dataset).sample_transition_batch(32)
    np.testing.assert_array_equal(a.observations, b.observations)
    c = FastReplayBuffer(dataset, seed=4).sample_transition_batch(32)
    assert not np.array_equal(a.observations, c.observations)


def test_torch_batches_equal_d3rlpys_conversion_of_the_same_rows():
    dataset = _dataset()
    flat = FlatTransitions.from_dataset(dataset)
    obs_scaler = StandardObservationScaler(mean=flat.observations.mean(0), std=flat.observations.std(0))
    act_scaler = MinMaxActionScaler(minimum=np.array([0.0]), maximum=np.array([3000.0]))
    rew_scaler = StandardRewardScaler(mean=0.1, std=2.0)
    sampler = TorchTransitionSampler(flat, "cpu:0", 5, obs_scaler, act_scaler, rew_scaler)
    idx = sampler.sample_indices(64)
    assert idx.dtype == torch.int64 and idx.device == sampler.observations.device
    batch = sampler.gather(idx)
    rows = idx.numpy()
    # Same seed, same device-side draws.
    same = TorchTransitionSampler(flat, "cpu:0", 5, obs_scaler, act_scaler, rew_scaler)
    assert torch.equal(same.sample_indices(64), idx)
    reference = TorchMiniBatch.from_batch(
        TransitionMiniBatch(**flat.batch(rows), transitions=[]),
        gamma=0.99,
        compute_returns_to_go=False,
        device="cpu:0",
        observation_scaler=obs_scaler,
        action_scaler=act_scaler,
        reward_scaler=rew_scaler,
    )
    for field in ("observations", "actions", "rewards", "next_observations", "next_actions"):
        assert torch.equal(getattr(batch, field), getattr(reference, field)), field
    for field in ("terminals", "intervals"):
        assert torch.equal(getattr(batch, field), getattr(reference, field)), field


def test_lazy_transitions_are_d3rlpys_transitions():
    dataset = _dataset()
    batch = FastReplayBuffer(dataset, seed=2).sample_transition_batch(8)
    for i, transition in enumerate(batch.transitions):
        np.testing.assert_array_equal(transition.observation, batch.observations[i])
        np.testing.assert_array_equal(transition.next_observation, batch.next_observations[i])
        assert transition.rewards_to_go.shape[1] == 1


def test_d3rlpy_iql_trains_on_the_fast_buffer(tmp_path):
    dataset = _dataset()
    enc = VectorEncoderFactory([16, 16])
    iql = d3rlpy.algos.IQLConfig(
        actor_encoder_factory=enc,
        critic_encoder_factory=enc,
        value_encoder_factory=enc,
        action_scaler=MinMaxActionScaler(minimum=np.array([0.0]), maximum=np.array([3000.0])),
    ).create()
    results = iql.fit(
        FastReplayBuffer(dataset, seed=0),
        n_steps=20,
        n_steps_per_epoch=10,
        show_progress=False,
        logger_adapter=NoopAdapterFactory(),
    )
    assert len(results) == 2 and np.isfinite(results[-1][1]["critic_loss"])


def test_unsupported_datasets_are_refused_with_the_reason():
    rng = np.random.default_rng(0)
    multi = MDPDataset(
        observations=rng.normal(size=(20, 3)).astype(np.float32),
        actions=rng.normal(size=(20, 1)).astype(np.float32),
        rewards=np.zeros((20, 1), np.float32),
        terminals=np.eye(1, 20, 19).reshape(-1).astype(np.float32),
        transition_picker=MultiStepTransitionPicker(n_steps=3, gamma=0.99),
        action_space=ActionSpace.CONTINUOUS,
    )
    with pytest.raises(ValueError, match="MultiStepTransitionPicker"):
        FlatTransitions.from_dataset(multi)
    with pytest.raises(TypeError, match="read-only"):
        FastReplayBuffer(_dataset()).append(np.zeros(7), np.zeros(1), 0.0)
