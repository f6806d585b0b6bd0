"""What the continuous and discrete IQL impls share: expectile loss, advantage weights, soft update,
and the impl base that holds the hyperparameters and the read-outs (each impl keeps its own update)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from d3rlpy.algos.qlearning.base import QLearningAlgoImplBase
from d3rlpy.torch_utility import Modules, TorchMiniBatch, hard_sync
from d3rlpy.types import Shape, TorchObservation
from torch import nn

__all__ = [
    "LOSS_NAMES",
    "AdvantageWeighting",
    "DeviceLosses",
    "IQLImplBase",
    "batch_mean",
    "batch_std",
    "batch_sum",
    "expectile_loss",
    "min_q",
    "normal_log_prob",
    "soft_update",
    "sum_losses",
]

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def batch_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean over a mini-batch: of all elements of (batch, n); per seed of (seeds, batch, n).

    The losses reduce through these helpers so that the same code trains one model
    (d3rlpy's ``.mean()``, bit for bit) or a stack of seeds (one loss per seed, see
    :mod:`vanco_offline.algos.seeds`).
    """
    return x.mean() if x.dim() <= 2 else x.mean(dim=(-2, -1))


def batch_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum over a mini-batch, per seed for a (seeds, batch, n) tensor (see :func:`batch_mean`)."""
    return x.sum() if x.dim() <= 2 else x.sum(dim=(-2, -1))


def batch_std(x: torch.Tensor) -> torch.Tensor:
    """Population standard deviation over a mini-batch, per seed (kept broadcastable) for 3-D tensors."""
    return x.std(unbiased=False) if x.dim() <= 2 else x.std(dim=(-2, -1), unbiased=False, keepdim=True)


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric squared loss ``|tau - 1(diff < 0)| * diff**2`` averaged over the batch."""
    # Same operations in the same order as d3rlpy's IQLImpl.compute_value_loss, so that
    # the two produce bit-identical losses.
    weight = (expectile - (diff < 0.0).float()).abs().detach()
    return batch_mean(weight * (diff**2))


def sum_losses(losses: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of ``losses`` from the first on, left to right."""
    iterator = iter(losses)
    total = next(iterator)
    for loss in iterator:
        total = total + loss
    return total


def normal_log_prob(x: torch.Tensor, loc: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density summed over the last axis, keeping it.

    Written out instead of building ``torch.distributions.Normal`` every step: the
    distribution object validates its arguments on construction, which costs more than
    the arithmetic at the network sizes used here. The expression and the broadcasting are
    those of ``Normal`` so the result and its gradient are bit-identical.
    """
    # Normal broadcasts loc and scale against each other first; a shared (1, n) log-std
    # parameter is then expanded to the batch before the arithmetic, and its gradient is
    # summed over the batch by the expand's backward. Broadcasting later would sum the
    # same terms in another order: the loss is equal, the log-std gradient not bit for bit.
    loc, std = torch.broadcast_tensors(loc, std)
    var = std**2
    log_prob = -((x - loc) ** 2) / (2 * var) - std.log() - _LOG_SQRT_2PI
    return log_prob.sum(dim=-1, keepdim=True)


@dataclasses.dataclass(frozen=True)
class AdvantageWeighting:
    """Turns advantages into the non-negative sample weights of advantage-weighted regression.

    ``weight = min(exp(weight_temp * A'), max_weight)`` where ``A'`` is the advantage,
    optionally divided by its batch standard deviation.
    """

    weight_temp: float
    max_weight: float
    normalize_advantage: bool = False
    self_normalize: bool = False

    def weights(self, advantage: torch.Tensor) -> torch.Tensor:
        if self.normalize_advantage:
            # Scale only, no centring: the sign of A (better or worse than V) is what IQL
            # extracts, and dividing by the spread makes weight_temp independent of the
            # reward's units (with |A| in the tens exp(beta*A) is either ~0 or clipped, and
            # the policy follows a handful of samples).
            advantage = advantage / (batch_std(advantage) + 1e-6)
        return (self.weight_temp * advantage).exp().clamp(max=self.max_weight)

    def loss(self, weights: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
        """Weighted negative log-likelihood; a weighted average when ``self_normalize``."""
        if self.self_normalize:
            # Dividing by the weight sum keeps the loss on the scale of one sample's NLL
            # whatever weight_temp and max_weight are, so it cannot grow with the clip.
            return -batch_sum(weights * log_probs) / batch_sum(weights).clamp(min=1e-12)
        return -batch_mean(weights * log_probs)


#: The metrics of one IQL update, in the order of :attr:`DeviceLosses.stacked`.
LOSS_NAMES = ("critic_loss", "q_loss", "v_loss", "actor_loss", "weight_mean", "weight_clip_rate")


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

    One multi-tensor kernel per operation instead of two small kernels per parameter; the
    arithmetic matches d3rlpy's ``soft_sync`` (multiply, then add ``tau * source``).
    """
    with torch.no_grad():
        torch._foreach_mul_(targets, 1.0 - tau)
        torch._foreach_add_(targets, torch._foreach_mul(sources, tau))


class IQLImplBase(QLearningAlgoImplBase):
    """The parts of an IQL impl that do not depend on the action type.

    ``modules`` has ``policy``, ``q_funcs``, ``targ_q_funcs``, ``value_func``,
    ``actor_optim`` and ``critic_optim``. The subclass writes the two losses,
    :meth:`critic_losses` and :meth:`actor_loss`; :meth:`inner_update` steps on them.
    """

    def __init__(
        self,
        observation_shape: Shape,
        action_size: int,
        modules: Modules,
        q_func_forwarder: object,
        targ_q_func_forwarder: object,
        gamma: float,
        tau: float,
        expectile: float,
        weighting: AdvantageWeighting,
        device: str,
    ):
        super().__init__(
            observation_shape=observation_shape,
            action_size=action_size,
            modules=modules,
            device=device,
        )
        self._q_func_forwarder = q_func_forwarder
        self._targ_q_func_forwarder = targ_q_func_forwarder
        self._gamma = gamma
        self._tau = tau
        self._expectile = expectile
        self._weighting = weighting
        hard_sync(modules.targ_q_funcs, modules.q_funcs)
        self._q_params = list(modules.q_funcs.parameters())
        self._targ_q_params = list(modules.targ_q_funcs.parameters())

    def _finish_update(
        self,
        critic_loss: torch.Tensor,
        q_loss: torch.Tensor,
        v_loss: torch.Tensor,
        actor_loss: torch.Tensor,
        weights: torch.Tensor,
    ) -> DeviceLosses:
        """Move the target Q toward Q and report the update's losses and weight statistics.

        The metrics stay on the device (:class:`DeviceLosses`, names :data:`LOSS_NAMES`).
        """
        soft_update(self._targ_q_params, self._q_params, self._tau)
        with torch.no_grad():
            values = torch.stack(
                [
                    critic_loss.detach(),
                    q_loss.detach(),
                    v_loss.detach(),
                    actor_loss.detach(),
                    weights.mean(),
                    (weights >= self._weighting.max_weight).float().mean(),
                ]
            )
        return DeviceLosses(LOSS_NAMES, values)

    def inner_update(self, batch: TorchMiniBatch, grad_step: int) -> DeviceLosses:
        """One IQL step: Q and V together by one critic step, then the policy, then the target Q.

        The losses are the subclass's :meth:`critic_losses` and :meth:`actor_loss`, both
        written against ``nets`` (here the impl's modules), so the vectorised multi-seed
        trainer runs the same code on stacked weights.
        """
        m = self._modules
        q_loss, v_loss, q_target = self.critic_losses(m, batch)
        # set_to_none skips zero-filling every gradient; backward then writes them fresh.
        m.critic_optim.optim.zero_grad(set_to_none=True)
        critic_loss = q_loss + v_loss
        critic_loss.backward()
        m.critic_optim.step()
        # The actor's advantage uses V after this step (as d3rlpy and the IQL paper's code do).
        actor_loss, weights = self.actor_loss(m, batch, q_target)
        m.actor_optim.optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        m.actor_optim.step()
        return self._finish_update(critic_loss, q_loss, v_loss, actor_loss, weights)

    def critic_losses(self, nets: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(q_loss, v_loss, q_target)``: TD loss of the Q heads, expectile loss of V, min target Q."""
        raise NotImplementedError

    def actor_loss(self, nets: Any, batch: Any, q_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(actor_loss, weights)``: the advantage-weighted policy loss and its sample weights."""
        raise NotImplementedError

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
