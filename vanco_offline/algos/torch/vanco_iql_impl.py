"""Torch side of VancoIQL: the IQL losses (``critic_losses``, ``actor_loss``) for continuous doses.

The step itself (optimizers, target update) is ``IQLImplBase.inner_update``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from d3rlpy.algos.qlearning.torch.utility import ContinuousQFunctionMixin
from d3rlpy.models.torch import ContinuousEnsembleQFunctionForwarder, Policy, ValueFunction
from d3rlpy.optimizers import OptimizerWrapper
from d3rlpy.torch_utility import Modules
from d3rlpy.types import TorchObservation
from torch import nn

from vanco_offline.algos.torch.common import (
    IQLImplBase,
    batch_mean,
    expectile_loss,
    min_q,
    normal_log_prob,
    sum_losses,
)

__all__ = ["POLICY_HEADS", "VancoIQLImpl", "VancoIQLModules"]

#: Policy heads, see ``VancoIQLConfig.policy_head``.
POLICY_HEADS = ("tanh_mean", "tanh_squashed", "plain", "deterministic")

# d3rlpy's SquashedGaussianDistribution clamps to the same bound before atanh.
_SQUASH_BOUND = 0.999999


@dataclasses.dataclass(frozen=True)
class VancoIQLModules(Modules):
    policy: Policy
    q_funcs: nn.ModuleList
    targ_q_funcs: nn.ModuleList
    value_func: ValueFunction
    actor_optim: OptimizerWrapper
    critic_optim: OptimizerWrapper


class VancoIQLImpl(ContinuousQFunctionMixin, IQLImplBase):
    _modules: VancoIQLModules
    _q_func_forwarder: ContinuousEnsembleQFunctionForwarder
    _targ_q_func_forwarder: ContinuousEnsembleQFunctionForwarder

    def __init__(self, *, policy_head: str, **iql: Any):
        """``policy_head``: one of :data:`POLICY_HEADS`; ``iql``: the arguments of :class:`IQLImplBase`."""
        super().__init__(**iql)
        if policy_head not in POLICY_HEADS:
            raise ValueError(f"policy_head={policy_head!r} is not one of {POLICY_HEADS}")
        self._policy_head = policy_head

    def critic_losses(self, nets: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Q by TD regression to r + gamma * V(s'); V by expectile regression on the
        # minimum target Q of the logged action. Q and V share one optimizer step.
        obs, actions = batch.observations, batch.actions
        with torch.no_grad():
            v_next = nets.value_func(batch.next_observations)
            y = batch.rewards + self._gamma**batch.intervals * v_next * (1 - batch.terminals)
            # The target networks do not move until the end of this update, so this one
            # forward serves both the V loss and the actor's advantage (d3rlpy runs it twice).
            q_target = min_q(nets.targ_q_funcs, obs, actions)
        # Summed from the first head on (d3rlpy starts from a tensor 0.0: the same sum bit
        # for bit, without a host-to-device copy that a CUDA graph could not capture).
        q_loss = sum_losses(batch_mean((q_func(obs, actions).q_value - y) ** 2) for q_func in nets.q_funcs)
        v_loss = expectile_loss(q_target - nets.value_func(obs), self._expectile)
        return q_loss, v_loss, q_target

    def actor_loss(self, nets: Any, batch: Any, q_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Advantage-weighted log-likelihood of the logged action.
        obs = batch.observations
        with torch.no_grad():
            weights = self._weighting.weights(q_target - nets.value_func(obs))
        log_prob = self.log_prob(nets, obs, batch.actions)
        return self._weighting.loss(weights, log_prob), weights

    def log_prob(self, nets: Any, obs: TorchObservation, actions: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of the logged actions under ``nets.policy`` (minus squared error, deterministic head)."""
        return policy_log_prob(nets.policy(obs), actions, self._policy_head)

    def _log_prob(self, obs: TorchObservation, actions: torch.Tensor) -> torch.Tensor:
        return self.log_prob(self._modules, obs, actions)

    def inner_predict_best_action(self, x: TorchObservation) -> torch.Tensor:
        out = self._modules.policy(x)
        if self._policy_head == "plain":
            return out.mu.clamp(-1.0, 1.0)
        return out.squashed_mu

    def inner_sample_action(self, x: TorchObservation) -> torch.Tensor:
        out = self._modules.policy(x)
        if self._policy_head == "deterministic":
            return out.squashed_mu
        assert out.logstd is not None
        std = out.logstd.exp()
        if self._policy_head == "tanh_squashed":
            return torch.tanh(out.mu + std * torch.randn_like(out.mu))
        loc = out.squashed_mu if self._policy_head == "tanh_mean" else out.mu
        return (loc + std * torch.randn_like(loc)).clamp(-1.0, 1.0)


def policy_log_prob(out: Any, actions: torch.Tensor, head: str) -> torch.Tensor:
    """Log-likelihood of ``actions`` under the policy output ``out`` for ``head`` (see ``POLICY_HEADS``)."""
    if head == "deterministic":
        return -((out.squashed_mu - actions) ** 2).sum(dim=-1, keepdim=True)
    assert out.logstd is not None
    std = out.logstd.exp()
    if head == "tanh_mean":
        # d3rlpy's IQL (and the IQL paper's code): a Gaussian whose mean is tanh(mu).
        return normal_log_prob(actions, out.squashed_mu, std)
    if head == "plain":
        return normal_log_prob(actions, out.mu, std)
    # tanh_squashed: density of tanh(u), u ~ N(mu, std), at the logged action.
    clipped = actions.clamp(-_SQUASH_BOUND, _SQUASH_BOUND)
    log_det = torch.log1p(-(clipped**2)).sum(dim=-1, keepdim=True)
    return normal_log_prob(torch.atanh(clipped), out.mu, std) - log_det
