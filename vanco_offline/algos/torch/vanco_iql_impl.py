"""Torch side of VancoIQL and ResidualVancoIQL: the IQL losses, one short method each.

Implicit Q-learning (Kostrikov et al. 2021), as d3rlpy's ``IQLImpl``:

- **Q loss**: each critic regresses :math:`Q_i(s, a)` on :math:`y = r + \\gamma^{k} V(s')(1 - d)`.
- **V loss**: expectile regression of :math:`V(s)` on :math:`\\min_i \\bar Q_i(s, a)` (target critics),
  :math:`L = |\\tau - 1(u < 0)|\\,u^2`, :math:`u = \\min_i \\bar Q_i(s, a) - V(s)`.
- **Actor loss**: advantage-weighted log-likelihood of the logged action,
  :math:`-\\,\\mathrm{mean}\\big(\\min(e^{\\beta A}, w_{max}) \\log\\pi(a \\mid s)\\big)`,
  :math:`A = \\min_i \\bar Q_i(s, a) - V(s)` with V after its step.

:class:`IQLImplBase` holds the step (Q and V share one optimizer step, then the policy, then
the target critics) and the losses that do not depend on the action type;
:class:`VancoIQLImpl` reads Q at a continuous dose and scores it under the Gaussian policy
:math:`\\mathcal{N}(\\tanh\\mu(s), \\sigma^2)`; :class:`ResidualVancoIQLImpl` moves that
policy's location to :math:`\\text{prior}(s) + \\rho\\tanh\\mu(s)`. Every loss is written
against ``nets`` (the impl's modules, or the stacked weights of several seeds, see
:mod:`vanco_offline.algos.fast.seeds`) and reduces through :func:`batch_mean`, so the same
code trains one model (bit for bit d3rlpy's ``IQL``) or a stack of seeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from d3rlpy.algos.qlearning.base import QLearningAlgoImplBase
from d3rlpy.algos.qlearning.torch.utility import ContinuousQFunctionMixin
from d3rlpy.models.torch import ContinuousEnsembleQFunctionForwarder, Policy, ValueFunction
from d3rlpy.optimizers import OptimizerWrapper
from d3rlpy.torch_utility import Modules, TorchMiniBatch, hard_sync
from d3rlpy.types import Shape, TorchObservation
from torch import nn

__all__ = [
    "LOSS_NAMES",
    "DeviceLosses",
    "IQLImplBase",
    "IQLModules",
    "ResidualVancoIQLImpl",
    "VancoIQLImpl",
    "batch_mean",
    "expectile_loss",
    "flat_observation",
    "min_q",
    "normal_log_prob",
    "soft_update",
]

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))

#: The metrics of one IQL update, in the order of :attr:`DeviceLosses.stacked`.
LOSS_NAMES = ("critic_loss", "q_loss", "v_loss", "actor_loss", "weight_mean", "weight_clip_rate")


def batch_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean over a mini-batch: of all elements of (batch, n); per seed of (seeds, batch, n)."""
    return x.mean() if x.dim() <= 2 else x.mean(dim=(-2, -1))


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric squared loss ``|tau - 1(diff < 0)| * diff**2`` averaged over the batch."""
    # The operations and their order are d3rlpy's IQLImpl.compute_value_loss (bit-identical).
    weight = (expectile - (diff < 0.0).float()).abs().detach()
    return batch_mean(weight * (diff**2))


def normal_log_prob(x: torch.Tensor, loc: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density summed over the last axis, keeping it.

    The expression and the broadcasting of ``torch.distributions.Normal.log_prob`` (so the
    value and its gradient are bit-identical), without building the distribution object,
    whose argument validation costs more than the arithmetic at these network sizes.
    """
    # Normal broadcasts loc and scale first: a shared (1, n) log-std is expanded to the
    # batch before the arithmetic, so its gradient sums over the batch in the same order.
    loc, std = torch.broadcast_tensors(loc, std)
    var = std**2
    log_prob = -((x - loc) ** 2) / (2 * var) - std.log() - _LOG_SQRT_2PI
    return log_prob.sum(dim=-1, keepdim=True)


def min_q(q_funcs: Iterable[Any], *inputs: torch.Tensor) -> torch.Tensor:
    """Elementwise minimum of ``q_func(*inputs).q_value`` over the ensemble ``q_funcs``.

    ``inputs`` is ``(obs, actions)`` for continuous Q-functions and ``(obs,)`` for discrete
    ones (then the result has one column per dose level).
    """
    q_funcs = list(q_funcs)
    value = q_funcs[0](*inputs).q_value
    for q_func in q_funcs[1:]:
        value = torch.minimum(value, q_func(*inputs).q_value)
    return value


def soft_update(targets: Sequence[nn.Parameter], sources: Sequence[nn.Parameter], tau: float) -> None:
    """Polyak averaging ``target <- (1 - tau) * target + tau * source`` over parameter lists.

    One multi-tensor kernel per operation; the arithmetic of d3rlpy's ``soft_sync``.
    """
    with torch.no_grad():
        torch._foreach_mul_(targets, 1.0 - tau)
        torch._foreach_add_(targets, torch._foreach_mul(sources, tau))


def flat_observation(x: TorchObservation) -> torch.Tensor:
    """A batch of observations as one (batch, elements) tensor; a tuple's arrays joined in order."""
    if isinstance(x, torch.Tensor):
        return x.reshape(x.shape[0], -1)
    return torch.cat([part.reshape(part.shape[0], -1) for part in x], dim=1)


class DeviceLosses(Mapping[str, float]):
    """An update's metrics as d3rlpy's ``dict[str, float]``, kept on the device until read.

    ``stacked`` is one tensor (one entry per name). Looking up a metric copies all of them
    to the host once (a device sync); a training loop that only adds ``stacked`` to a
    running sum on the device and reads the sum at its logging interval never waits for
    the device. Every ``Mapping`` method (``values()``, ``items()``, ...) returns floats,
    as d3rlpy's ``update`` contract asks.
    """

    __slots__ = ("_floats", "names", "stacked")

    def __init__(self, names: Sequence[str], stacked: torch.Tensor):
        self.names = tuple(names)
        self.stacked = stacked
        self._floats: dict[str, float] | None = None

    def _read(self) -> dict[str, float]:
        if self._floats is None:
            self._floats = dict(zip(self.names, self.stacked.tolist(), strict=True))
        return self._floats

    def __getitem__(self, name: str) -> float:
        return self._read()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"DeviceLosses({self._read()!r})"


@dataclasses.dataclass(frozen=True)
class IQLModules(Modules):
    """The networks and optimizers of an IQL-family impl (d3rlpy checkpoints them)."""

    policy: Policy
    q_funcs: nn.ModuleList
    targ_q_funcs: nn.ModuleList
    value_func: ValueFunction
    actor_optim: OptimizerWrapper
    critic_optim: OptimizerWrapper


class IQLImplBase(QLearningAlgoImplBase):
    """The IQL step and the losses that do not depend on the action type.

    A subclass says how to read Q at the logged action (:meth:`q_at`), how likely the
    policy finds it (:meth:`log_prob`), and how to act.
    """

    _modules: IQLModules

    def __init__(
        self,
        observation_shape: Shape,
        action_size: int,
        modules: IQLModules,
        q_func_forwarder: object,
        targ_q_func_forwarder: object,
        gamma: float,
        tau: float,
        expectile: float,
        weight_temp: float,
        max_weight: float,
        device: str,
    ):
        super().__init__(
            observation_shape=observation_shape, action_size=action_size, modules=modules, device=device
        )
        self._q_func_forwarder = q_func_forwarder
        self._targ_q_func_forwarder = targ_q_func_forwarder
        self._gamma = gamma
        self._tau = tau
        self._expectile = expectile
        self._weight_temp = weight_temp
        self._max_weight = max_weight
        hard_sync(modules.targ_q_funcs, modules.q_funcs)
        self._q_params = list(modules.q_funcs.parameters())
        self._targ_q_params = list(modules.targ_q_funcs.parameters())

    # --- what a subclass defines ----------------------------------------------------------

    def q_at(
        self, q_funcs: Iterable[Any], obs: TorchObservation, actions: torch.Tensor
    ) -> list[torch.Tensor]:
        """Each critic's Q at the logged actions, shape (batch, 1) each."""
        raise NotImplementedError

    def log_prob(self, nets: Any, obs: TorchObservation, actions: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of the logged actions under ``nets.policy``, shape (batch, 1)."""
        raise NotImplementedError

    # --- the losses -----------------------------------------------------------------------

    def td_target(self, nets: Any, batch: Any) -> torch.Tensor:
        """:math:`y = r + \\gamma^{k} V(s')(1 - d)` (no gradient)."""
        with torch.no_grad():
            v_next = nets.value_func(batch.next_observations)
            return batch.rewards + self._gamma**batch.intervals * v_next * (1 - batch.terminals)

    def target_q(self, nets: Any, batch: Any) -> torch.Tensor:
        """:math:`\\min_i \\bar Q_i(s, a)` of the target critics (no gradient).

        The target critics do not move until the end of the update, so this one value
        serves the V loss and the actor's advantage (d3rlpy computes it twice).
        """
        with torch.no_grad():
            values = self.q_at(nets.targ_q_funcs, batch.observations, batch.actions)
            value = values[0]
            for other in values[1:]:
                value = torch.minimum(value, other)
            return value

    def q_loss(self, nets: Any, batch: Any, y: torch.Tensor) -> torch.Tensor:
        """Sum over the critics of the mean squared TD error."""
        # Summed from the first critic on (d3rlpy starts from a tensor 0.0: the same sum bit
        # for bit, without a host-to-device copy that a CUDA graph could not capture).
        losses = [
            batch_mean((q - y) ** 2) for q in self.q_at(nets.q_funcs, batch.observations, batch.actions)
        ]
        total = losses[0]
        for loss in losses[1:]:
            total = total + loss
        return total

    def value_loss(self, nets: Any, batch: Any, q_target: torch.Tensor) -> torch.Tensor:
        """Expectile regression of V on the minimum target Q."""
        return expectile_loss(q_target - nets.value_func(batch.observations), self._expectile)

    def critic_losses(self, nets: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(q_loss, v_loss, q_target)``; Q and V share one optimizer step."""
        q_target = self.target_q(nets, batch)
        return (
            self.q_loss(nets, batch, self.td_target(nets, batch)),
            self.value_loss(nets, batch, q_target),
            q_target,
        )

    def advantage_weights(self, nets: Any, batch: Any, q_target: torch.Tensor) -> torch.Tensor:
        """:math:`\\min(e^{\\beta A}, w_{max})`, :math:`A = \\min_i \\bar Q_i(s, a) - V(s)` (no gradient)."""
        with torch.no_grad():
            advantage = q_target - nets.value_func(batch.observations)
            return (self._weight_temp * advantage).exp().clamp(max=self._max_weight)

    def actor_loss(self, nets: Any, batch: Any, q_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(actor_loss, weights)``: the advantage-weighted negative log-likelihood and its weights."""
        weights = self.advantage_weights(nets, batch, q_target)
        return -batch_mean(weights * self.log_prob(nets, batch.observations, batch.actions)), weights

    # --- the step -------------------------------------------------------------------------

    def inner_update(self, batch: TorchMiniBatch, grad_step: int) -> DeviceLosses:
        """One IQL step: Q and V together, then the policy (with V after its step), then the target Q."""
        m = self._modules
        q_loss, v_loss, q_target = self.critic_losses(m, batch)
        # set_to_none skips zero-filling every gradient; backward then writes them fresh.
        m.critic_optim.optim.zero_grad(set_to_none=True)
        critic_loss = q_loss + v_loss
        critic_loss.backward()
        m.critic_optim.step()
        actor_loss, weights = self.actor_loss(m, batch, q_target)
        m.actor_optim.optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        m.actor_optim.step()
        soft_update(self._targ_q_params, self._q_params, self._tau)
        with torch.no_grad():
            clip_rate = (weights >= self._max_weight).float().mean()
            metrics = [critic_loss, q_loss, v_loss, actor_loss, weights.mean(), clip_rate]
            stacked = torch.stack([value.detach() for value in metrics])
        return DeviceLosses(LOSS_NAMES, stacked)

    # --- read-outs ------------------------------------------------------------------------

    def predict_state_value(self, x: TorchObservation) -> torch.Tensor:
        """V(s) from the expectile value network, shape (batch,)."""
        with torch.no_grad():
            self._modules.set_eval()
            return self._modules.value_func(x).reshape(-1)

    @property
    def policy(self) -> nn.Module:
        return self._modules.policy

    @property
    def policy_optim(self) -> torch.optim.Optimizer:
        return self._modules.actor_optim.optim

    @property
    def q_function(self) -> nn.ModuleList:
        return self._modules.q_funcs

    @property
    def q_function_optim(self) -> torch.optim.Optimizer:
        return self._modules.critic_optim.optim


class VancoIQLImpl(ContinuousQFunctionMixin, IQLImplBase):
    """IQL for a continuous dose: d3rlpy IQL's policy :math:`\\mathcal{N}(\\tanh\\mu(s), \\sigma^2)`."""

    _q_func_forwarder: ContinuousEnsembleQFunctionForwarder
    _targ_q_func_forwarder: ContinuousEnsembleQFunctionForwarder

    def q_at(
        self, q_funcs: Iterable[Any], obs: TorchObservation, actions: torch.Tensor
    ) -> list[torch.Tensor]:
        return [q_func(obs, actions).q_value for q_func in q_funcs]

    def location(self, nets: Any, x: TorchObservation) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy's mean action and log standard deviation under ``nets``."""
        out = nets.policy(x)
        return out.squashed_mu, out.logstd

    def log_prob(self, nets: Any, obs: TorchObservation, actions: torch.Tensor) -> torch.Tensor:
        loc, logstd = self.location(nets, obs)
        return normal_log_prob(actions, loc, logstd.exp())

    def inner_predict_best_action(self, x: TorchObservation) -> torch.Tensor:
        return self.location(self._modules, x)[0].clamp(-1.0, 1.0)

    def inner_sample_action(self, x: TorchObservation) -> torch.Tensor:
        loc, logstd = self.location(self._modules, x)
        return (loc + logstd.exp() * torch.randn_like(loc)).clamp(-1.0, 1.0)


class ResidualVancoIQLImpl(VancoIQLImpl):
    """VancoIQL with the policy's location at :math:`\\text{prior}(s) + \\rho\\tanh\\mu(s)`.

    The prior is the observation element ``prior_index`` (of the observation flattened per
    sample) mapped affinely to the scaled dose and clipped to ``[low, high]``
    (:meth:`set_prior`). With ``q_candidates = K >= 2`` the greedy action is the one of ``K``
    evenly spaced doses in :math:`\\text{prior}(s) \\pm \\rho` with the highest minimum Q.
    """

    def set_prior(
        self,
        index: int,
        slope: float,
        intercept: float,
        low: float,
        high: float,
        scale: float,
        q_candidates: int = 0,
    ) -> None:
        """Where the prior dose is read and how it maps to the scaled dose; the residual's bound."""
        self._prior_index = index
        self._prior_slope = slope
        self._prior_intercept = intercept
        self._prior_low = low
        self._prior_high = high
        self._residual_scale = scale
        self._q_candidates = int(q_candidates)

    def prior(self, x: TorchObservation) -> torch.Tensor:
        """The prior dose in action-scaler units, shape (batch, 1) ((seeds, batch, 1) for stacked seeds)."""
        i = self._prior_index
        if isinstance(x, torch.Tensor) and len(self._observation_shape) == 1:
            column = x[..., i : i + 1]
        else:
            column = flat_observation(x)[:, i : i + 1]
        return (column * self._prior_slope + self._prior_intercept).clamp(self._prior_low, self._prior_high)

    def location(self, nets: Any, x: TorchObservation) -> tuple[torch.Tensor, torch.Tensor]:
        out = nets.policy(x)
        return self.prior(x) + self._residual_scale * out.squashed_mu, out.logstd

    def inner_predict_best_action(self, x: TorchObservation) -> torch.Tensor:
        if not self._q_candidates:
            return super().inner_predict_best_action(x)
        k = self._q_candidates
        prior = self.prior(x)
        offsets = torch.linspace(-self._residual_scale, self._residual_scale, k, device=prior.device)
        candidates = (prior + offsets[None, :]).clamp(-1.0, 1.0)  # (batch, K)
        if isinstance(x, torch.Tensor):
            repeated: TorchObservation = x.repeat_interleave(k, dim=0)
        else:
            repeated = [part.repeat_interleave(k, dim=0) for part in x]
        q = min_q(self._modules.q_funcs, repeated, candidates.reshape(-1, 1)).reshape(-1, k)
        return candidates.gather(1, q.argmax(dim=1, keepdim=True))
