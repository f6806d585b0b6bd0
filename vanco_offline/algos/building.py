"""What VancoIQL and DiscreteVancoIQL build alike: twin Q and its target, V, both optimizers, the impl.

Only the policy, the Q-function family (continuous or over the dose grid) and the impl's own
option differ; the rest is built here, in d3rlpy's IQL order (policy first, then Q, target
Q, V), so that the same seed gives VancoIQL the same initial weights as d3rlpy's IQL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from d3rlpy.models.builders import create_value_function
from d3rlpy.models.q_functions import MeanQFunctionFactory
from d3rlpy.types import Shape

from vanco_offline.algos.torch.common import AdvantageWeighting
from vanco_offline.algos.torch.graph import make_capturable

__all__ = ["IQLCritics", "advantage_weighting", "create_iql_critics", "create_iql_impl"]


@dataclasses.dataclass(frozen=True)
class IQLCritics:
    """Twin Q, its target copy, V and the optimizers, ready to join a policy in the impl's modules."""

    q_funcs: Any
    q_func_forwarder: Any
    targ_q_funcs: Any
    targ_q_func_forwarder: Any
    value_func: Any
    actor_optim: Any
    critic_optim: Any

    def modules(self, modules_class: type, policy: Any) -> Any:
        """The impl's ``Modules`` dataclass holding ``policy`` and these networks."""
        return modules_class(
            policy=policy,
            q_funcs=self.q_funcs,
            targ_q_funcs=self.targ_q_funcs,
            value_func=self.value_func,
            actor_optim=self.actor_optim,
            critic_optim=self.critic_optim,
        )


def create_iql_critics(
    config: Any,
    policy: Any,
    observation_shape: Shape,
    action_size: int,
    create_q_function: Callable[..., Any],
    device: Any,
    enable_ddp: bool,
) -> IQLCritics:
    """Build the critics of ``config`` (a VancoIQL or DiscreteVancoIQL config) after ``policy``.

    ``create_q_function`` is d3rlpy's ``create_continuous_q_function`` or
    ``create_discrete_q_function``.
    """

    def q_function():
        return create_q_function(
            observation_shape,
            action_size,
            config.critic_encoder_factory,
            MeanQFunctionFactory(),
            n_ensembles=config.n_critics,
            device=device,
            enable_ddp=enable_ddp,
        )

    q_funcs, q_func_forwarder = q_function()
    targ_q_funcs, targ_q_func_forwarder = q_function()
    value_func = create_value_function(
        observation_shape, config.value_encoder_factory, device=device, enable_ddp=enable_ddp
    )
    actor_optim = config.actor_optim_factory.create(
        policy.named_modules(), lr=config.actor_learning_rate, compiled=False
    )
    critic_optim = config.critic_optim_factory.create(
        list(q_funcs.named_modules()) + list(value_func.named_modules()),
        lr=config.critic_learning_rate,
        compiled=False,
    )
    return IQLCritics(
        q_funcs, q_func_forwarder, targ_q_funcs, targ_q_func_forwarder, value_func, actor_optim, critic_optim
    )


def create_iql_impl(
    algo: Any,
    policy: Any,
    observation_shape: Shape,
    action_size: int,
    create_q_function: Callable[..., Any],
    impl_class: type,
    modules_class: type,
    **options: Any,
) -> Any:
    """The impl of ``algo`` (a VancoIQL-family algorithm) around ``policy``.

    Builds the critics (:func:`create_iql_critics`), then ``impl_class`` with the config's
    ``gamma``, ``tau``, ``expectile`` and advantage weights and the impl's own ``options``
    (``policy_head``, ``decision_rule``). With ``compile_graph=True`` on CUDA the optimizers
    are made capturable, as the update is recorded as a CUDA graph in fit.
    """
    cfg = algo.config
    critics = create_iql_critics(
        cfg,
        policy,
        observation_shape,
        action_size,
        create_q_function,
        device=algo._device,
        enable_ddp=algo._enable_ddp,
    )
    impl = impl_class(
        observation_shape=observation_shape,
        action_size=action_size,
        modules=critics.modules(modules_class, policy),
        q_func_forwarder=critics.q_func_forwarder,
        targ_q_func_forwarder=critics.targ_q_func_forwarder,
        gamma=cfg.gamma,
        tau=cfg.tau,
        expectile=cfg.expectile,
        weighting=advantage_weighting(cfg),
        device=algo._device,
        **options,
    )
    if algo.compiled:
        make_capturable(impl.policy_optim, impl.q_function_optim)
    return impl


def advantage_weighting(config: Any) -> AdvantageWeighting:
    """The advantage weights a VancoIQL or DiscreteVancoIQL config asks for."""
    return AdvantageWeighting(
        weight_temp=config.weight_temp,
        max_weight=config.max_weight,
        normalize_advantage=config.normalize_advantage,
        self_normalize=config.self_normalize_weights,
    )
