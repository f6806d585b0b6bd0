"""Torch side of DiscreteVancoIQL: IQL over the dose grid (``critic_losses``, ``actor_loss``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from d3rlpy.algos.qlearning.torch.utility import DiscreteQFunctionMixin
from d3rlpy.models.torch import CategoricalPolicy, DiscreteEnsembleQFunctionForwarder, ValueFunction
from d3rlpy.optimizers import OptimizerWrapper
from d3rlpy.torch_utility import Modules
from d3rlpy.types import TorchObservation
from torch import nn

from vanco_offline.algos.torch.common import (
    IQLImplBase,
    batch_mean,
    expectile_loss,
    min_q,
    sum_losses,
)

__all__ = ["DECISION_RULES", "DiscreteVancoIQLImpl", "DiscreteVancoIQLModules", "choose_level"]

#: Decision rules of the greedy action, see ``DiscreteVancoIQLConfig.decision_rule``.
DECISION_RULES = ("mode", "mean", "median")


def choose_level(logits: torch.Tensor, rule: str) -> torch.Tensor:
    """The level index (int64, shape (batch,)) that ``rule`` picks from a categorical policy's logits.

    ``mode``: the most probable level. ``mean``: the level nearest the policy's mean level
    (the grid is evenly spaced, so the grid dose nearest its mean dose), halves rounded to
    even as ``torch.round`` and ONNX ``Round`` do. ``median``: the lowest level whose
    cumulative probability reaches 1/2. Only tensor operations that trace to ONNX, so the
    exported policy decides as ``predict`` does.
    """
    if rule == "mode":
        return logits.argmax(dim=1)
    probs = torch.softmax(logits, dim=1)
    n_levels = probs.shape[1]
    if rule == "mean":
        levels = torch.arange(n_levels, dtype=probs.dtype, device=probs.device)
        return (probs * levels).sum(dim=1).round().long()
    if rule == "median":
        below = (probs.cumsum(dim=1) < 0.5).long().sum(dim=1)
        # The last cumulative sum is ~1, so at most n_levels - 1 sums are below 1/2; the
        # clamp only guards against a policy whose probabilities do not sum to one.
        return below.clamp(max=n_levels - 1)
    raise ValueError(f"decision_rule={rule!r} is not one of {list(DECISION_RULES)}")


@dataclasses.dataclass(frozen=True)
class DiscreteVancoIQLModules(Modules):
    policy: CategoricalPolicy
    q_funcs: nn.ModuleList
    targ_q_funcs: nn.ModuleList
    value_func: ValueFunction
    actor_optim: OptimizerWrapper
    critic_optim: OptimizerWrapper


class DiscreteVancoIQLImpl(DiscreteQFunctionMixin, IQLImplBase):
    _modules: DiscreteVancoIQLModules
    _q_func_forwarder: DiscreteEnsembleQFunctionForwarder
    _targ_q_func_forwarder: DiscreteEnsembleQFunctionForwarder

    def __init__(self, *, decision_rule: str = "mode", **iql: Any):
        """``decision_rule``: one of :data:`DECISION_RULES`; ``iql``: :class:`IQLImplBase`'s arguments."""
        super().__init__(**iql)
        if decision_rule not in DECISION_RULES:
            raise ValueError(f"decision_rule={decision_rule!r} is not one of {list(DECISION_RULES)}")
        self._decision_rule = decision_rule

    def critic_losses(self, nets: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Each Q head regresses Q(s, a_logged) on r + gamma * V(s'); V regresses on the
        # minimum target Q of the logged dose level by the expectile loss.
        obs = batch.observations
        actions = _level_index(batch.actions)
        with torch.no_grad():
            v_next = nets.value_func(batch.next_observations)
            y = batch.rewards + self._gamma**batch.intervals * v_next * (1 - batch.terminals)
            q_target = min_q(nets.targ_q_funcs, obs).gather(-1, actions)
        q_loss = sum_losses(
            batch_mean((q_func(obs).q_value.gather(-1, actions) - y) ** 2) for q_func in nets.q_funcs
        )
        v_loss = expectile_loss(q_target - nets.value_func(obs), self._expectile)
        return q_loss, v_loss, q_target

    def actor_loss(self, nets: Any, batch: Any, q_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # A categorical policy over the dose levels by advantage-weighted cross-entropy
        # with the logged level (discrete advantage-weighted regression).
        obs = batch.observations
        actions = _level_index(batch.actions)
        with torch.no_grad():
            weights = self._weighting.weights(q_target - nets.value_func(obs))
        log_probs = F.log_softmax(nets.policy(obs).logits, dim=-1).gather(-1, actions)
        return self._weighting.loss(weights, log_probs), weights

    def inner_predict_best_action(self, x: TorchObservation) -> torch.Tensor:
        # d3rlpy's predict and save_policy (TorchScript) and save_policy_onnx all trace or
        # call this, so the rule applied here is the one every export carries.
        return choose_level(self._modules.policy(x).logits, self._decision_rule)

    def inner_sample_action(self, x: TorchObservation) -> torch.Tensor:
        return self._modules.policy(x).sample()

    def predict_action_probabilities(self, x: TorchObservation) -> torch.Tensor:
        """The policy's probability of each dose level, shape (batch, levels)."""
        with torch.no_grad():
            self._modules.set_eval()
            return self._modules.policy(x).probs


def _level_index(actions: torch.Tensor) -> torch.Tensor:
    # d3rlpy keeps discrete actions as float (N, 1) in mini-batches; a stack of seeds
    # has them as (seeds, N, 1).
    index = actions.long()
    return index.view(-1, 1) if index.dim() <= 2 else index
