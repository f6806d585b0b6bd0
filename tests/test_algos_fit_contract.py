"""VancoIQL's device-side fit keeps d3rlpy's contract: TransitionMiniBatch to update, tuple observations."""

from __future__ import annotations

import dataclasses
from unittest import mock

import d3rlpy
import numpy as np
import pytest
import torch
from d3rlpy.constants import ActionSpace, LoggingStrategy
from d3rlpy.dataset import MDPDataset, TransitionMiniBatch
from d3rlpy.logging import NoopAdapterFactory
from d3rlpy.models import VectorEncoderFactory
from d3rlpy.models.encoders import EncoderFactory
from d3rlpy.models.torch import Encoder, EncoderWithAction
from d3rlpy.preprocessing import MinMaxActionScaler
from torch import nn

from vanco_offline.algos import DiscreteVancoIQLConfig, FlatTransitions, VancoIQLConfig
from vanco_offline.algos.fast.device_sampler import DeviceMiniBatch, TorchTransitionSampler
from vanco_offline.algos.fast.graph import GraphedUpdate

BATCH = 16
_QUIET = dict(show_progress=False, logger_adapter=NoopAdapterFactory())


def _arrays(n_episodes: int = 12, length: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = n_episodes * length
    terminals = np.zeros(n, np.float32)
    terminals[length - 1 :: length] = 1.0
    obs = rng.normal(size=(n, 5)).astype(np.float32)
    actions = rng.uniform(0, 3000, (n, 1)).astype(np.float32)
    rewards = rng.normal(size=(n, 1)).astype(np.float32)
    return obs, actions, rewards, terminals


def _dataset() -> MDPDataset:
    obs, actions, rewards, terminals = _arrays()
    return MDPDataset(obs, actions, rewards, terminals, action_space=ActionSpace.CONTINUOUS)


def _config(**kwargs) -> VancoIQLConfig:
    enc = VectorEncoderFactory([8, 8])
    options = dict(
        actor_encoder_factory=enc,
        critic_encoder_factory=enc,
        value_encoder_factory=enc,
        batch_size=BATCH,
        action_scaler=MinMaxActionScaler(minimum=np.array([0.0]), maximum=np.array([3000.0])),
    )
    return VancoIQLConfig(**(options | kwargs))


def test_fit_hands_update_transition_minibatches_of_the_batch_size():
    dataset = _dataset()
    d3rlpy.seed(0)
    algo = _config().create()
    algo.build_with_dataset(dataset)
    spy = mock.Mock(wraps=algo.update)
    algo.update = spy
    algo.fit(dataset, n_steps=5, n_steps_per_epoch=5, **_QUIET)
    assert spy.call_count == 5
    rows = {tuple(r) for r in FlatTransitions.from_dataset(dataset).observations.tolist()}
    for call in spy.call_args_list:
        (batch,) = call.args
        assert isinstance(batch, TransitionMiniBatch)
        assert len(batch.observations) == BATCH and batch.actions.shape == (BATCH, 1)
        assert batch.observations.dtype == np.float32 and len(batch.transitions) == BATCH
        # The numpy rows are the dataset's own (unscaled) transitions, as d3rlpy's sampler gives.
        assert all(tuple(r) in rows for r in batch.observations.tolist())
        assert batch.actions.max() > 1.0  # doses in mg: the action scaler is not applied yet
    # What update returned reads as d3rlpy's dict of floats.
    losses = algo.update(call.args[0])
    assert all(isinstance(losses[k], float) for k in losses)


def test_a_device_minibatch_equals_d3rlpys_update_of_the_same_rows():
    dataset = _dataset()
    results = []
    for as_numpy in (False, True):
        d3rlpy.seed(1)
        algo = _config(observation_scaler=d3rlpy.preprocessing.StandardObservationScaler()).create()
        batches = []
        original = algo.update

        def update(batch, original=original, as_numpy=as_numpy, batches=batches):
            if as_numpy:  # the same rows, through d3rlpy's numpy conversion and scalers
                batch = TransitionMiniBatch(
                    **{f.name: getattr(batch, f.name) for f in dataclasses.fields(TransitionMiniBatch)}
                )
            batches.append(batch)
            return original(batch)

        algo.update = update
        algo.fit(dataset, n_steps=4, n_steps_per_epoch=4, **_QUIET)
        assert isinstance(batches[0], TransitionMiniBatch)
        assert isinstance(batches[0], DeviceMiniBatch) != as_numpy
        results.append(torch.cat([p.detach().flatten() for p in algo.impl.policy.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-6, atol=1e-7)


def _join_net(shapes, extra: int = 0) -> nn.Module:
    return nn.Sequential(nn.Linear(sum(s[0] for s in shapes) + extra, 8), nn.ReLU())


class _JoinEncoder(Encoder):
    def __init__(self, shapes):
        super().__init__()
        self._net = _join_net(shapes)

    def forward(self, x):
        return self._net(torch.cat(list(x), dim=1))


class _JoinEncoderWithAction(EncoderWithAction):
    def __init__(self, shapes, action_size):
        super().__init__()
        self._net = _join_net(shapes, action_size)

    def forward(self, x, action):
        return self._net(torch.cat([*x, action], dim=1))


@dataclasses.dataclass()
class _JoinEncoderFactory(EncoderFactory):
    def create(self, observation_shape):
        return _JoinEncoder(observation_shape)

    def create_with_action(self, observation_shape, action_size, discrete_action=False):
        return _JoinEncoderWithAction(observation_shape, action_size)

    @staticmethod
    def get_type() -> str:
        return "test_join"


def test_fit_trains_on_tuple_observations():
    obs, actions, rewards, terminals = _arrays()
    dataset = MDPDataset(
        [obs[:, :3], obs[:, 3:]], actions, rewards, terminals, action_space=ActionSpace.CONTINUOUS
    )
    enc = _JoinEncoderFactory()
    d3rlpy.seed(0)
    algo = _config().create()
    algo = dataclasses.replace(
        algo.config, actor_encoder_factory=enc, critic_encoder_factory=enc, value_encoder_factory=enc
    ).create()
    results = algo.fit(dataset, n_steps=6, n_steps_per_epoch=3, **_QUIET)
    assert len(results) == 2 and np.isfinite(results[-1][1]["critic_loss"])
    dose = algo.predict([obs[:2, :3], obs[:2, 3:]])
    assert dose.shape == (2, 1) and np.all((dose >= 0.0) & (dose <= 3000.0))  # mg, unscaled
    # The data checks still run: a dose outside the action scaler's range is refused.
    bad = actions.copy()
    bad[3] = 5000.0
    bad_dataset = MDPDataset(
        [obs[:, :3], obs[:, 3:]], bad, rewards, terminals, action_space=ActionSpace.CONTINUOUS
    )
    with pytest.raises(ValueError, match="outside \\[-1, 1\\]"):
        algo.fit(bad_dataset, n_steps=2, n_steps_per_epoch=2, **_QUIET)


def test_losses_are_read_from_the_device_only_at_logging_intervals(monkeypatch):
    dataset = _dataset()
    reads = []
    for name in ("item", "tolist", "cpu", "numpy", "__float__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            reads.append(1)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    seen = []
    d3rlpy.seed(0)
    algo = _config().create()
    results = algo.fit(
        dataset,
        n_steps=40,
        n_steps_per_epoch=40,
        logging_strategy=LoggingStrategy.STEPS,
        logging_steps=20,
        callback=lambda _algo, _epoch, step: seen.append((step, len(reads))),
        **_QUIET,
    )
    monkeypatch.undo()
    steps_with_reads = [
        step for (step, n), (_, before) in zip(seen[1:], seen[:-1], strict=True) if n > before
    ]
    assert steps_with_reads == [20, 40], seen
    assert np.isfinite(results[-1][1]["critic_loss"])


@pytest.mark.parametrize("make_config", [_config, lambda **kw: _discrete_config(**kw)])
def test_the_captured_update_body_equals_the_eager_update(make_config):
    # On the CPU torch has no graphs: the capture path runs its body eagerly, and the body
    # (static index buffer, gather, update) must give the eager update's numbers exactly.
    dataset = _dataset() if make_config is _config else _discrete_dataset()
    algos = []
    for _ in range(2):
        d3rlpy.seed(2)
        algo = make_config(compile_graph=True).create()
        algo.build_with_dataset(dataset)
        algos.append(algo)
    assert not algos[0].compiled  # d3rlpy compiles only on CUDA devices
    sampler = TorchTransitionSampler(
        FlatTransitions.from_dataset(dataset), "cpu:0", 3, action_scaler=algos[0].action_scaler
    )
    graphed = GraphedUpdate(algos[1].impl, sampler, BATCH)
    assert not graphed.capture
    for _ in range(3):
        idx = sampler.sample_indices(BATCH)
        eager = algos[0].impl.update(sampler.gather(idx), 0)
        captured = graphed(idx)
        assert dict(eager) == dict(captured)
    for a, b in zip(algos[0].impl.policy.parameters(), algos[1].impl.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    # compile_graph=True is accepted and trains (eagerly, as d3rlpy does, on the CPU).
    results = make_config(compile_graph=True).create().fit(dataset, n_steps=3, n_steps_per_epoch=3, **_QUIET)
    assert np.isfinite(results[-1][1]["critic_loss"])


def _discrete_dataset() -> MDPDataset:
    obs, actions, rewards, terminals = _arrays()
    levels = np.floor(actions / 3000.0 * 12).clip(0, 12).astype(np.int64)
    return MDPDataset(obs, levels, rewards, terminals, action_space=ActionSpace.DISCRETE, action_size=13)


def _discrete_config(**kwargs) -> DiscreteVancoIQLConfig:
    enc = VectorEncoderFactory([8, 8])
    return DiscreteVancoIQLConfig(
        actor_encoder_factory=enc,
        critic_encoder_factory=enc,
        value_encoder_factory=enc,
        batch_size=BATCH,
        **kwargs,
    )
