"""Torch side of DiscreteVancoIQL: IQL over the dose grid, the whole update in ``inner_update``."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from d3rlpy.algos.qlearning.torch.utility import DiscreteQFunctionMixin
from d3rlpy.models.torch import CategoricalPolicy, DiscreteEnsembleQFunctionForwarder, ValueFunction
from d3rlpy.optimizers import OptimizerWrapper
from d3rlpy.torch_utility import Modules, TorchMiniBatch
from d3rlpy.types import Shape, TorchObservation
from torch import nn

from vanco_offline.algos.torch.common import AdvantageWeighting, IQLImplBase, expectile_loss

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

    def __init__(
        self,
        observation_shape: Shape,
        action_size: int,
        modules: DiscreteVancoIQLModules,
        q_func_forwarder: DiscreteEnsembleQFunctionForwarder,
        targ_q_func_forwarder: DiscreteEnsembleQFunctionForwarder,
        gamma: float,
        tau: float,
        expectile: float,
        weighting: AdvantageWeighting,
        device: str,
        decision_rule: str = "mode",
    ):
        super().__init__(
            observation_shape,
            action_size,
            modules,
            q_func_forwarder,
            targ_q_func_forwarder,
            gamma,
            tau,
            expectile,
            weighting,
            device,
        )
        if decision_rule not in DECISION_RULES:
            raise ValueError(f"decision_rule={decision_rule!r} is not one of {list(DECISION_RULES)}")
        self._decision_rule = decision_rule

    def inner_update(self, batch: TorchMiniBatch, grad_step: int) -> dict[str, float]:
        m = self._modules
        obs = batch.observations
        # d3rlpy keeps discrete actions as float (N, 1) in mini-batches.
        actions = batch.actions.long().view(-1, 1)

        # Critic: each Q head regresses Q(s, a_logged) on r + gamma * V(s'); V regresses
        # on the minimum target Q of the logged dose level by the expectile loss.
        with torch.no_grad():
            v_next = m.value_func(batch.next_observations)
            y = batch.rewards + self._gamma**batch.intervals * v_next * (1 - batch.terminals)
            q_target = self._min_target_q(obs).gather(1, actions)
        m.critic_optim.optim.zero_grad(set_to_none=True)
        q_loss = torch.tensor(0.0, dtype=torch.float32, device=y.device)
        for q_func in m.q_funcs:
            q_taken = q_func(obs).q_value.gather(1, actions)
            q_loss += ((q_taken - y) ** 2).mean()
        v_loss = expectile_loss(q_target - m.value_func(obs), self._expectile)
        critic_loss = q_loss + v_loss
        critic_loss.backward()
        m.critic_optim.step()

        # Actor: a categorical policy over the dose levels by advantage-weighted
        # cross-entropy with the logged level (discrete advantage-weighted regression).
        with torch.no_grad():
            weights = self._weighting.weights(q_target - m.value_func(obs))
        m.actor_optim.optim.zero_grad(set_to_none=True)
        logits = m.policy(obs).logits
        log_probs = F.log_softmax(logits, dim=1).gather(1, actions)
        actor_loss = self._weighting.loss(weights, log_probs)
        actor_loss.backward()
        m.actor_optim.step()

        return self._finish_update(critic_loss, q_loss, v_loss, actor_loss, weights)

    def _min_target_q(self, obs: TorchObservation) -> torch.Tensor:
        q_funcs = self._modules.targ_q_funcs
        value = q_funcs[0](obs).q_value
        for q_func in q_funcs[1:]:
            value = torch.minimum(value, q_func(obs).q_value)
        return value

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
