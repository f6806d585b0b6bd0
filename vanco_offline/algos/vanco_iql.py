"""VancoIQL: implicit Q-learning for continuous vancomycin doses, as a registered d3rlpy algorithm.

Laid out as d3rlpy's ``algos/qlearning/iql.py``: the config, then the algorithm, whose impl
(the losses) is :mod:`vanco_offline.algos.torch.vanco_iql_impl`. The training loop is
d3rlpy's, fed on the device by the speed wing (:mod:`vanco_offline.algos.fast`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from d3rlpy.algos.qlearning.base import QLearningAlgoBase
from d3rlpy.base import DeviceArg, LearnableConfig
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import ReplayBufferBase
from d3rlpy.models.builders import create_continuous_q_function, create_normal_policy, create_value_function
from d3rlpy.models.encoders import EncoderFactory, make_encoder_field
from d3rlpy.models.q_functions import MeanQFunctionFactory
from d3rlpy.optimizers import OptimizerFactory
from d3rlpy.torch_utility import convert_to_torch_recursively
from d3rlpy.types import NDArray, Observation, Shape

from vanco_offline.algos.fast.fitting import FastFitMixin
from vanco_offline.algos.fast.graph import make_capturable
from vanco_offline.algos.fast.optimizers import fused_adam_field
from vanco_offline.algos.fast.sampler import FlatTransitions
from vanco_offline.algos.onnx_export import PolicyExportMixin
from vanco_offline.algos.torch.vanco_iql_impl import IQLModules, VancoIQLImpl

__all__ = ["VancoIQL", "VancoIQLBaseConfig", "VancoIQLConfig", "check_finite", "create_iql_impl"]

# Tolerance for "inside [-1, 1]" after the action scaler (float32 rounding of 0 and 3000 mg).
_ACTION_BOUND_TOL = 1e-5

#: Options of earlier versions, each with the one value this version implements: a saved
#: model that used another value is refused on load instead of changing its doses silently.
RETIRED_OPTIONS: dict[str, Any] = {
    "policy_head": "tanh_mean",
    "min_logstd": -5.0,
    "max_logstd": 2.0,
    "state_dependent_std": False,
    "normalize_advantage": False,
    "self_normalize_weights": False,
    "decision_rule": "mean",
}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: ``(option, test, valid range)`` of every numeric IQL option.
_OPTION_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("actor_learning_rate", lambda v: _number(v) and v > 0, "a finite number > 0"),
    ("critic_learning_rate", lambda v: _number(v) and v > 0, "a finite number > 0"),
    ("batch_size", lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    ("gamma", lambda v: _number(v) and 0.0 <= v <= 1.0, "in [0, 1]"),
    ("tau", lambda v: _number(v) and 0.0 < v <= 1.0, "in (0, 1]"),
    ("n_critics", lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    ("expectile", lambda v: _number(v) and 0.0 < v < 1.0, "in (0, 1); 0.5 is plain mean regression"),
    ("weight_temp", lambda v: _number(v) and v >= 0.0, "a finite number >= 0 (0 is behaviour cloning)"),
    ("max_weight", lambda v: _number(v) and v > 0.0, "a finite number > 0"),
)


@dataclasses.dataclass()
class VancoIQLBaseConfig(LearnableConfig):
    """The options VancoIQLConfig and DiscreteVancoIQLConfig share (documented in VancoIQLConfig).

    Every numeric option is checked on construction: an infinite learning rate, a NaN gamma
    or a fractional batch size would otherwise train silently into NaN weights.
    """

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

    def __post_init__(self) -> None:
        name = type(self).__name__
        for option, ok, valid in _OPTION_RULES:
            if not ok(getattr(self, option)):
                raise ValueError(f"{name}: {option}={getattr(self, option)!r} is invalid; it must be {valid}")

    @classmethod
    def deserialize_from_dict(cls, dict_config: dict[str, Any]) -> Any:
        """d3rlpy's deserialisation, refusing a retired option saved with a value now unsupported."""
        config = dict(dict_config)
        for option, only in RETIRED_OPTIONS.items():
            if option in config and config.pop(option) != only:
                raise ValueError(
                    f"{cls.__name__}: the saved model uses {option}={dict_config[option]!r}, which this "
                    f"version no longer implements (only {only!r}); retrain it, or load it with the "
                    "version that trained it"
                )
        return super().deserialize_from_dict(config)


@dataclasses.dataclass()
class VancoIQLConfig(VancoIQLBaseConfig):
    r"""Implicit Q-learning (Kostrikov et al. 2021) for continuous doses.

    d3rlpy's ``IQLConfig`` update: twin Q by TD regression to :math:`r + \gamma V(s')`, V by
    expectile regression on the minimum target Q, the policy
    :math:`\mathcal{N}(\tanh\mu(s), \sigma^2)` (log-std one learned parameter in [-5, 2]) by
    :math:`\min(e^{\beta A}, w_{max})`-weighted log-likelihood. With ``AdamFactory``
    optimizers it reproduces d3rlpy's ``IQL`` step for step (``tests/test_algos_equivalence.py``);
    in addition ``fit`` checks the data and draws its mini-batches on the device.

    Action scale: the policy's mean is :math:`\tanh(\mu) \in [-1, 1]`, so the logged
    actions must lie in [-1, 1] after the action scaler. A dose :math:`a` in mg (up to 3000)
    pushes the mean to +1 in every state, and the Gaussian loss
    :math:`(a - 1)^2 / (2\sigma^2)` is at least :math:`a^2 / (2e^{4})` at the log-std bound;
    no advantage weighting fixes that. Use
    ``action_scaler=MinMaxActionScaler(minimum=[0], maximum=[3000])``; by default fit
    refuses actions outside [-1, 1] after the scaler (``check_action_bounds``).

    Parameters
    ----------
    actor_learning_rate, critic_learning_rate : float
        Adam learning rates of the policy and of the Q and V networks.
    actor_optim_factory, critic_optim_factory : d3rlpy.optimizers.OptimizerFactory
        Default :class:`~vanco_offline.algos.FusedAdamFactory` (d3rlpy's Adam in one fused
        kernel). Pass ``d3rlpy.optimizers.AdamFactory()`` for bit-level parity with d3rlpy.
    actor_encoder_factory, critic_encoder_factory, value_encoder_factory : EncoderFactory
        Network bodies; e.g. ``VectorEncoderFactory([32, 32])`` (the ``seed`` preset's).
    batch_size, gamma, tau, n_critics, expectile, weight_temp, max_weight
        As in ``d3rlpy.algos.IQLConfig`` (``tau`` is the target-network rate,
        ``expectile`` the value expectile, ``weight_temp`` the inverse temperature beta,
        ``max_weight`` the clip of the advantage weight).
    check_action_bounds : bool
        Refuse to fit when a logged action lies outside [-1, 1] after the action scaler.
        Off only in the ``seed`` preset, which reproduces training on unscaled doses.
    """

    check_action_bounds: bool = True

    def create(self, device: DeviceArg = False, enable_ddp: bool = False) -> VancoIQL:
        return VancoIQL(self, device, enable_ddp)

    @staticmethod
    def get_type() -> str:
        return "vanco_iql"


def create_iql_impl(
    algo: Any,
    policy: Any,
    observation_shape: Shape,
    action_size: int,
    create_q_function: Any,
    impl_class: type,
) -> Any:
    """The impl of ``algo`` (a VancoIQL-family algorithm) around ``policy``.

    Builds, in d3rlpy's IQL order (so the same seed gives the same initial weights), the
    twin Q (``create_q_function``: d3rlpy's continuous or discrete builder), its target copy,
    V and the two optimizers (through ``OptimizerFactory.create``, so they are checkpointed).
    With ``compile_graph=True`` the optimizers are made capturable for the CUDA graph.
    """
    cfg, device, ddp = algo.config, algo._device, algo._enable_ddp

    def q_function() -> Any:
        return create_q_function(
            observation_shape,
            action_size,
            cfg.critic_encoder_factory,
            MeanQFunctionFactory(),
            n_ensembles=cfg.n_critics,
            device=device,
            enable_ddp=ddp,
        )

    q_funcs, q_func_forwarder = q_function()
    targ_q_funcs, targ_q_func_forwarder = q_function()
    value_func = create_value_function(
        observation_shape, cfg.value_encoder_factory, device=device, enable_ddp=ddp
    )
    actor_optim = cfg.actor_optim_factory.create(
        policy.named_modules(), lr=cfg.actor_learning_rate, compiled=False
    )
    critic_optim = cfg.critic_optim_factory.create(
        list(q_funcs.named_modules()) + list(value_func.named_modules()),
        lr=cfg.critic_learning_rate,
        compiled=False,
    )
    modules = IQLModules(
        policy=policy,
        q_funcs=q_funcs,
        targ_q_funcs=targ_q_funcs,
        value_func=value_func,
        actor_optim=actor_optim,
        critic_optim=critic_optim,
    )
    impl = impl_class(
        observation_shape=observation_shape,
        action_size=action_size,
        modules=modules,
        q_func_forwarder=q_func_forwarder,
        targ_q_func_forwarder=targ_q_func_forwarder,
        gamma=cfg.gamma,
        tau=cfg.tau,
        expectile=cfg.expectile,
        weight_temp=cfg.weight_temp,
        max_weight=cfg.max_weight,
        device=device,
    )
    if algo.compiled:
        make_capturable(impl.policy_optim, impl.q_function_optim)
    return impl


def check_finite(flat: FlatTransitions, algo_name: str) -> None:
    """ValueError naming the field, episode and step of the first NaN/inf in the training data."""
    for field in ("observations", "actions", "rewards"):
        values = getattr(flat, field)
        bad = ~np.isfinite(values).all(axis=tuple(range(1, values.ndim)))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{algo_name}: {int(bad.sum())} transition(s) have NaN or infinite {field}; the first "
                f"is episode {int(flat.episode_index[row])}, step {int(flat.step_index[row])}. Impute "
                "or remove them when converting the table (vanco_offline.data) before training"
            )


def scaled_observation(algo: Any, x: Observation) -> torch.Tensor:
    """``x`` as a float32 tensor on the algorithm's device, after its observation scaler."""
    if algo.impl is None:
        raise ValueError(f"{type(algo).__name__} has no networks yet: call build_with_dataset or fit first")
    torch_x = convert_to_torch_recursively(np.asarray(x, dtype=np.float32), algo._device)
    with torch.no_grad():
        return algo.observation_scaler.transform(torch_x) if algo.observation_scaler else torch_x


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
    #: The impl built by ``inner_create_impl`` (ResidualVancoIQL moves the policy's location).
    _impl_class: type[VancoIQLImpl] = VancoIQLImpl

    def inner_create_impl(self, observation_shape: Shape, action_size: int) -> None:
        # The policy first, as d3rlpy's IQL (the same seed gives the same initial weights).
        policy = create_normal_policy(
            observation_shape,
            action_size,
            self._config.actor_encoder_factory,
            min_logstd=-5.0,
            max_logstd=2.0,
            use_std_parameter=True,
            device=self._device,
            enable_ddp=self._enable_ddp,
        )
        self._impl = create_iql_impl(
            self, policy, observation_shape, action_size, create_continuous_q_function, self._impl_class
        )

    def get_action_type(self) -> ActionSpace:
        return ActionSpace.CONTINUOUS

    def _check_training_data(self, flat: FlatTransitions, dataset: ReplayBufferBase) -> None:
        check_finite(flat, type(self).__name__)
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
