"""Mini-batches drawn on the training device, and the d3rlpy mini-batch that carries them.

:class:`TorchTransitionSampler` holds a dataset's transitions as scaled tensors on the
device and draws each mini-batch there; :class:`DeviceMiniBatch` is the
``TransitionMiniBatch`` that VancoIQL's ``fit`` hands to ``update``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from d3rlpy.dataset import TransitionMiniBatch
from d3rlpy.preprocessing import ActionScaler, ObservationScaler, RewardScaler
from d3rlpy.torch_utility import TorchMiniBatch

from vanco_offline.algos.fast.sampler import _BATCH_FIELDS, FlatTransitions, _LazyTransitions

__all__ = ["DeviceMiniBatch", "TorchTransitionSampler", "make_generator"]


class TorchTransitionSampler:
    """Mini-batches drawn on the device from the whole dataset, scaled once up front.

    The scalers are applied to the whole flat dataset once (they are element-wise, so
    the numbers equal those of scaling each mini-batch as d3rlpy does); a mini-batch is a
    ``torch.randint`` on the device and an ``index_select`` per field: no host round trip,
    no numpy-to-torch copy and no scaler call per step. The indices are uniform over the
    transitions, as d3rlpy's ``sample_transition_batch``.

    Parameters
    ----------
    flat : FlatTransitions
        The transitions.
    device : str
        Torch device of the tensors and of the index generator, e.g. ``"cpu:0"``, ``"cuda:0"``.
    seed : int
        Seed of the sampler's own ``torch.Generator`` (on ``device``).
    observation_scaler, action_scaler, reward_scaler
        The algorithm's fitted scalers (optional).
    """

    def __init__(
        self,
        flat: FlatTransitions,
        device: str,
        seed: int,
        observation_scaler: ObservationScaler | None = None,
        action_scaler: ActionScaler | None = None,
        reward_scaler: RewardScaler | None = None,
    ):
        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        self.flat = flat
        self._n = len(flat)
        self._device = device
        self._generator = make_generator(device, seed)
        obs, next_obs = tensor(flat.observations), tensor(flat.next_observations)
        actions, next_actions = tensor(flat.actions), tensor(flat.next_actions)
        rewards = tensor(flat.rewards)
        with torch.no_grad():
            if observation_scaler:
                obs, next_obs = observation_scaler.transform(obs), observation_scaler.transform(next_obs)
            if action_scaler:
                actions = action_scaler.transform(actions)
                next_actions = action_scaler.transform(next_actions)
            if reward_scaler:
                rewards = reward_scaler.transform(rewards)
        self.observations, self.next_observations = obs, next_obs
        self.actions, self.next_actions = actions, next_actions
        self.rewards = rewards
        self.terminals = tensor(flat.terminals)
        self.intervals = tensor(flat.intervals)

    def __len__(self) -> int:
        return self._n

    @property
    def device(self) -> str:
        return self._device

    def sample_indices(self, batch_size: int) -> torch.Tensor:
        """``batch_size`` row indices (int64, on the device), uniform over the transitions."""
        return torch.randint(
            0, self._n, (batch_size,), generator=self._generator, device=self.observations.device
        )

    def gather(self, idx: torch.Tensor) -> TorchMiniBatch:
        """The scaled rows ``idx`` as a ``TorchMiniBatch`` (``idx`` may be a static buffer)."""
        rewards = self.rewards.index_select(0, idx)
        return TorchMiniBatch(
            observations=self.observations.index_select(0, idx),
            actions=self.actions.index_select(0, idx),
            rewards=rewards,
            next_observations=self.next_observations.index_select(0, idx),
            next_actions=self.next_actions.index_select(0, idx),
            returns_to_go=torch.zeros_like(rewards),
            terminals=self.terminals.index_select(0, idx),
            intervals=self.intervals.index_select(0, idx),
            device=self._device,
        )

    def sample(self, batch_size: int) -> TorchMiniBatch:
        return self.gather(self.sample_indices(batch_size))

    def sample_minibatch(self, batch_size: int) -> DeviceMiniBatch:
        """A d3rlpy ``TransitionMiniBatch`` of ``batch_size`` rows that carries its device indices."""
        return DeviceMiniBatch(self, self.sample_indices(batch_size))


def make_generator(device: str, seed: int) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    kind = torch.device(device).type
    generator = torch.Generator() if kind == "cpu" else torch.Generator(device=torch.device(device))
    generator.manual_seed(int(seed))
    return generator


class DeviceMiniBatch(TransitionMiniBatch):
    """A ``TransitionMiniBatch`` whose rows were drawn on the device by a :class:`TorchTransitionSampler`.

    It is a d3rlpy mini-batch like any other: ``observations``, ``actions``, ... are the
    unscaled float32 numpy rows and ``transitions`` d3rlpy's ``Transition`` objects, built
    (with one device-to-host copy of the indices) only when read. An algorithm that owns
    ``sampler`` uses ``indices`` and :attr:`torch_batch` (the scaled rows, already on the
    device) instead, so the fast path never leaves the device.
    """

    def __init__(self, sampler: TorchTransitionSampler, indices: torch.Tensor):
        object.__setattr__(self, "sampler", sampler)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "_cache", {})

    def _rows(self) -> dict[str, Any]:
        cache = self._cache
        if not cache:
            host = self.indices.cpu().numpy()
            cache.update(self.sampler.flat.batch(host))
            cache["transitions"] = _LazyTransitions(self.sampler.flat, host)
        return cache

    @property
    def torch_batch(self) -> TorchMiniBatch:
        """The scaled rows as a ``TorchMiniBatch`` on the sampler's device."""
        return self.sampler.gather(self.indices)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __repr__(self) -> str:
        return f"DeviceMiniBatch(batch_size={len(self)}, device={self.sampler.device!r})"

    __hash__ = object.__hash__


def _row_field(name: str) -> property:
    return property(lambda self: self._rows()[name], doc=f"The unscaled ``{name}`` rows (numpy).")


for _name in (*_BATCH_FIELDS, "transitions"):
    setattr(DeviceMiniBatch, _name, _row_field(_name))
del _name
