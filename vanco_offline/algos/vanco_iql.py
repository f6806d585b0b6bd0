"""VancoIQL: implicit Q-learning for continuous vancomycin doses, as a registered d3rlpy algorithm."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from d3rlpy.algos.qlearning.base import QLearningAlgoBase
from d3rlpy.base import DeviceArg, LearnableConfig
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import ReplayBufferBase
from d3rlpy.models.builders import (
    create_continuous_q_function,
    create_deterministic_policy,
    create_normal_policy,
)
from d3rlpy.models.encoders import EncoderFactory, make_encoder_field
from d3rlpy.optimizers import OptimizerFactory
from d3rlpy.torch_utility import convert_to_torch_recursively
from d3rlpy.types import NDArray, Observation, Shape

from vanco_offline.algos._validation import check_iql_options
from vanco_offline.algos.building import create_iql_impl
from vanco_offline.algos.fitting import FastFitMixin, check_finite
from vanco_offline.algos.onnx_export import PolicyExportMixin
from vanco_offline.algos.optimizers import fused_adam_field
from vanco_offline.algos.sampler import FlatTransitions
from vanco_offline.algos.torch.vanco_iql_impl import POLICY_HEADS, VancoIQLImpl, VancoIQLModules

__all__ = ["VancoIQL", "VancoIQLConfig"]

# Tolerance for "inside [-1, 1]" after the action scaler (float32 rounding of 0 and 3000 mg).
_ACTION_BOUND_TOL = 1e-5


@dataclasses.dataclass()
class IQLOptions(LearnableConfig):
    """The options VancoIQLConfig and DiscreteVancoIQLConfig share (documented in VancoIQLConfig)."""

    actor_learning_rate: float = 3e-4
    critic_learning_rate: float = 3e-4
    actor_optim_factory: OptimizerFactory = fused_adam_field()  # noqa: RUF009  (d3rlpy field factory)
    critic_optim_factory: OptimizerFactory = fused_adam_field()  # noqa: RUF009  (d3rlpy field factory)
    actor_encoder_factory: EncoderFactory = make_encoder_field()  # noqa: RUF009  (d3rlpy field factory)
    critic_encoder_factory: EncoderFactory = make_encoder_field()  # noqa: RUF009  (d3rlpy field factory)
    value_encoder_factory: EncoderFactory = make_encoder_field()  # noqa: RUF009  (d3rlpy field factory)
    batch_size: int = 256
    gamma: float = 0.99
    tau: float = 0.005
    n_critics: int = 2
    expectile: float = 0.7
    weight_temp: float = 3.0
    max_weight: float = 100.0
    normalize_advantage: bool = False
    self_normalize_weights: bool = False


@dataclasses.dataclass()
class VancoIQLConfig(IQLOptions):
    r"""Implicit Q-learning (Kostrikov et al. 2021) for continuous doses.

    The update of d3rlpy's ``IQLConfig`` (twin Q by TD regression to
    :math:`r + \gamma V(s')`, V by expectile regression on the minimum target Q, policy by
    :math:`\min(e^{\beta A}, w_{max})`-weighted log-likelihood) with options for dosing
    data. With the defaults below and ``AdamFactory`` optimizers it reproduces d3rlpy's
    ``IQL`` step for step (see ``tests/test_algos_equivalence.py``).

    Action scale: the policy's mean is :math:`\tanh(\mu) \in [-1, 1]`, so the logged
    actions must lie in [-1, 1] after the action scaler. A dose :math:`a` in mg
    (up to 3000) pushes the mean to +1 in every state, and the Gaussian loss
    :math:`(a - 1)^2 / (2\sigma^2)` is at least :math:`a^2 / (2e^{4})` at the log-std
    bound; no advantage weighting fixes that. Use
    ``action_scaler=MinMaxActionScaler(minimum=[0], maximum=[3000])``; by default fit
    refuses actions outside [-1, 1] after the scaler (``check_action_bounds``).

    Parameters
    ----------
    actor_learning_rate, critic_learning_rate : float
        Adam learning rates of the policy and of the Q and V networks.
    actor_optim_factory, critic_optim_factory : d3rlpy.optimizers.OptimizerFactory
        Default :class:`~vanco_offline.algos.optimizers.FusedAdamFactory` (d3rlpy's Adam in
        one fused kernel). Pass ``d3rlpy.optimizers.AdamFactory()`` for bit-level parity.
    actor_encoder_factory, critic_encoder_factory, value_encoder_factory : EncoderFactory
        Network bodies; e.g. ``VectorEncoderFactory([32, 32])`` (the ``seed`` preset's).
    batch_size, gamma, tau, n_critics, expectile, weight_temp, max_weight
        As in ``d3rlpy.algos.IQLConfig`` (``tau`` is the target-network rate,
        ``expectile`` the value expectile, ``weight_temp`` the inverse temperature beta,
        ``max_weight`` the clip of the advantage weight).
    policy_head : {"tanh_mean", "tanh_squashed", "plain", "deterministic"}
        ``tanh_mean``: Gaussian with mean tanh(mu) (d3rlpy's IQL; a logged action at the
        bound only pulls the mean towards it). ``tanh_squashed``: the density of tanh(u),
        u Gaussian; its density grows without bound at +-1, so held (0 mg) and maximum
        doses pull it to the bound; not recommended for dosing data. ``plain``: Gaussian
        with unbounded mean, greedy action clipped to [-1, 1]. ``deterministic``:
        advantage-weighted squared error to tanh(mu) (loss bounded by 4 per sample).
    min_logstd, max_logstd : float
        Bounds of the policy's log standard deviation (d3rlpy: -5, 2).
    state_dependent_std : bool
        Log-std from a linear layer instead of one learned parameter (d3rlpy: False).
    normalize_advantage : bool
        Divide advantages by their batch standard deviation before the exponential, so
        ``weight_temp`` does not depend on the reward's units.
    self_normalize_weights : bool
        Policy loss as the weighted *average* NLL (divide by the weight sum instead of
        the batch size), bounding it by the largest per-sample NLL whatever the clip.
    check_action_bounds : bool
        Refuse to fit when a logged action lies outside [-1, 1] after the action scaler.
        Off only in the ``seed`` preset, which reproduces training on unscaled doses.
    """

    policy_head: str = "tanh_mean"
    min_logstd: float = -5.0
    max_logstd: float = 2.0
    state_dependent_std: bool = False
    check_action_bounds: bool = True

    def __post_init__(self) -> None:
        check_iql_options(self, "VancoIQLConfig")
        if self.policy_head not in POLICY_HEADS:
            raise ValueError(
                f"VancoIQLConfig: policy_head={self.policy_head!r} is not one of {list(POLICY_HEADS)}"
            )
        if not self.min_logstd < self.max_logstd:
            raise ValueError(
                f"VancoIQLConfig: min_logstd={self.min_logstd} must be below max_logstd={self.max_logstd}"
            )

    def create(self, device: DeviceArg = False, enable_ddp: bool = False) -> VancoIQL:
        return VancoIQL(self, device, enable_ddp)

    @staticmethod
    def get_type() -> str:
        return "vanco_iql"


class StateValueMixin:
    """``predict_state_value`` of a VancoIQL-family algorithm (its impl has a value network)."""

    def predict_state_value(self, x: Observation) -> NDArray:
        """V(s) of the expectile value network for a batch of observations, shape (batch,)."""
        torch_x = scaled_observation(self, x)  # raises before the networks exist
        with torch.no_grad():
            return self.impl.predict_state_value(torch_x).cpu().numpy()  # type: ignore[attr-defined]


class VancoIQL(
    StateValueMixin, PolicyExportMixin, FastFitMixin, QLearningAlgoBase[VancoIQLImpl, VancoIQLConfig]
):
    #: The impl built by ``inner_create_impl`` (a subclass may change the policy's loss).
    _impl_class: type[VancoIQLImpl] = VancoIQLImpl

    def inner_create_impl(self, observation_shape: Shape, action_size: int) -> None:
        cfg = self._config
        # Same construction order as d3rlpy's IQL, so the same seed gives the same
        # initial weights (the equivalence test relies on it).
        if cfg.policy_head == "deterministic":
            policy: Any = create_deterministic_policy(
                observation_shape,
                action_size,
                cfg.actor_encoder_factory,
                device=self._device,
                enable_ddp=self._enable_ddp,
            )
        else:
            policy = create_normal_policy(
                observation_shape,
                action_size,
                cfg.actor_encoder_factory,
                min_logstd=cfg.min_logstd,
                max_logstd=cfg.max_logstd,
                use_std_parameter=not cfg.state_dependent_std,
                device=self._device,
                enable_ddp=self._enable_ddp,
            )
        self._impl = create_iql_impl(
            self,
            policy,
            observation_shape,
            action_size,
            create_continuous_q_function,
            self._impl_class,
            VancoIQLModules,
            policy_head=cfg.policy_head,
        )

    def get_action_type(self) -> ActionSpace:
        return ActionSpace.CONTINUOUS

    def _check_training_data(self, flat: FlatTransitions, dataset: ReplayBufferBase) -> None:
        check_finite(flat, "VancoIQL")
        if not self._config.check_action_bounds:
            return
        actions = flat.actions
        scaler = self._config.action_scaler
        scaled = scaler.transform_numpy(actions) if scaler else actions
        outside = (scaled < -1.0 - _ACTION_BOUND_TOL) | (scaled > 1.0 + _ACTION_BOUND_TOL)
        if outside.any():
            scaler_name = type(scaler).__name__ if scaler else "no action scaler"
            raise ValueError(
                f"VancoIQL: {int(outside.any(axis=1).sum())} of {len(flat)} logged actions (range "
                f"{actions.min():g} to {actions.max():g}) lie outside [-1, 1] after {scaler_name}. "
                "The policy outputs actions in [-1, 1]; unscaled doses in mg saturate it at its bound. "
                "Pass action_scaler=MinMaxActionScaler(minimum=[0.0], maximum=[3000.0]) (the "
                "clinical dose bounds), or set check_action_bounds=False to train on them anyway"
            )


def scaled_observation(algo: Any, x: Observation) -> torch.Tensor:
    """``x`` as a float32 tensor on the algorithm's device, after its observation scaler."""
    if algo.impl is None:
        raise ValueError(f"{type(algo).__name__} has no networks yet: call build_with_dataset or fit first")
    torch_x = convert_to_torch_recursively(np.asarray(x, dtype=np.float32), algo._device)
    with torch.no_grad():
        return algo.observation_scaler.transform(torch_x) if algo.observation_scaler else torch_x
