"""Torch side of DiscreteVancoIQL: IQL over the dose grid.

The losses are :class:`~vanco_offline.algos.torch.vanco_iql_impl.IQLImplBase`'s with Q read
at the logged dose level and a categorical policy: the actor loss is the advantage-weighted
cross-entropy with the logged level (discrete advantage-weighted regression). The greedy
level is the one nearest the policy's mean level (:func:`mean_level`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from d3rlpy.algos.qlearning.torch.utility import DiscreteQFunctionMixin
from d3rlpy.models.torch import DiscreteEnsembleQFunctionForwarder
from d3rlpy.types import TorchObservation

from vanco_offline.algos.torch.vanco_iql_impl import IQLImplBase

__all__ = ["DiscreteVancoIQLImpl", "mean_level"]


def mean_level(logits: torch.Tensor) -> torch.Tensor:
    """The level (int64, shape (batch,)) nearest the mean level of a categorical policy's logits.

    On an evenly spaced grid that is the grid dose nearest the policy's mean dose. Halves
    round to even, as ``torch.round`` and ONNX ``Round`` do; only operations that trace to
    ONNX, so an exported policy decides as ``predict`` does.
    """
    probs = torch.softmax(logits, dim=1)
    levels = torch.arange(probs.shape[1], dtype=probs.dtype, device=probs.device)
    return (probs * levels).sum(dim=1).round().long()


class DiscreteVancoIQLImpl(DiscreteQFunctionMixin, IQLImplBase):
    _q_func_forwarder: DiscreteEnsembleQFunctionForwarder
    _targ_q_func_forwarder: DiscreteEnsembleQFunctionForwarder

    def q_at(
        self, q_funcs: Iterable[Any], obs: TorchObservation, actions: torch.Tensor
    ) -> list[torch.Tensor]:
        levels = _level_index(actions)
        return [q_func(obs).q_value.gather(-1, levels) for q_func in q_funcs]

    def log_prob(self, nets: Any, obs: TorchObservation, actions: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(nets.policy(obs).logits, dim=-1).gather(-1, _level_index(actions))

    def inner_predict_best_action(self, x: TorchObservation) -> torch.Tensor:
        # predict, save_policy (TorchScript and ONNX) and the bundle all go through here.
        return mean_level(self._modules.policy(x).logits)

    def inner_sample_action(self, x: TorchObservation) -> torch.Tensor:
        return self._modules.policy(x).sample()

    def predict_action_probabilities(self, x: TorchObservation) -> torch.Tensor:
        """The policy's probability of each dose level, shape (batch, levels)."""
        with torch.no_grad():
            self._modules.set_eval()
            return self._modules.policy(x).probs


def _level_index(actions: torch.Tensor) -> torch.Tensor:
    # d3rlpy keeps discrete actions as float (N, 1) in mini-batches; stacked seeds as (seeds, N, 1).
    index = actions.long()
    return index.view(-1, 1) if index.dim() <= 2 else index
