"""Several seeds of one VancoIQL/DiscreteVancoIQL config trained at once, as one batched model.

Seeds of one algorithm share the data, the shapes and the hyperparameters; only their
initial weights and their mini-batches differ. Here the K seeds' weights are stacked
along a leading axis (``torch.func.stack_module_state``) and every layer runs once per
step for all of them as a batched matrix product (``torch.baddbmm``), through the impl's
own loss code (``critic_losses``/``actor_loss``, whose reductions give one loss per seed
on (seeds, batch, n) tensors). The gradient of the sum of the K losses is each seed's own
gradient, and Adam is element-wise, so one Adam over the stacked weights is K independent
Adams. Each seed keeps its own initial weights and its own mini-batches, those of
``d3rlpy.seed(seed); config.create().fit(...)``, so its result equals that separate fit
up to float rounding (batched products sum in another order).

Networks are d3rlpy's vector encoders (``VectorEncoderFactory``/default: linear layers
and element-wise activations) under its Q, V and policy heads; anything else (batch norm,
dropout, custom encoders) trains seed after seed.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import d3rlpy
import torch
from d3rlpy.algos.utility import build_scalers_with_transition_picker
from d3rlpy.dataset import ReplayBufferBase
from d3rlpy.logging import NoopAdapterFactory
from d3rlpy.models.torch import (
    ActionOutput,
    CategoricalPolicy,
    ContinuousMeanQFunction,
    DiscreteMeanQFunction,
    NormalPolicy,
    QFunctionOutput,
    ValueFunction,
    VectorEncoder,
    VectorEncoderWithAction,
)
from d3rlpy.optimizers import AdamFactory
from d3rlpy.optimizers.lr_schedulers import LRSchedulerFactory
from d3rlpy.torch_utility import Swish
from torch import nn
from torch.func import stack_module_state

from vanco_offline.algos.discrete_vanco_iql import DiscreteVancoIQLConfig
from vanco_offline.algos.fast.device_sampler import TorchTransitionSampler, make_generator
from vanco_offline.algos.fast.fitting import fit_threads
from vanco_offline.algos.fast.sampler import FlatTransitions, has_tuple_observations, seed_from_global_numpy
from vanco_offline.algos.torch.vanco_iql_impl import soft_update
from vanco_offline.algos.vanco_iql import VancoIQLConfig

__all__ = ["can_vectorise", "fit_seeds"]

_BATCH_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "intervals")


def can_vectorise(config: Any, dataset: ReplayBufferBase) -> str | None:
    """None when ``fit_seeds`` can train ``config``'s seeds as one batched model, else the reason why not."""
    if not isinstance(config, VancoIQLConfig | DiscreteVancoIQLConfig):
        return f"{type(config).__name__} is not a VancoIQL config"
    for name in ("actor_optim_factory", "critic_optim_factory"):
        factory = getattr(config, name)
        if not isinstance(factory, AdamFactory):
            return f"{name} is {type(factory).__name__}, not Adam"
        schedule = factory.lr_scheduler_factory
        if factory.clip_grad_norm or (schedule is not None and type(schedule) is not LRSchedulerFactory):
            return f"{name} clips gradients or schedules the learning rate"
    if has_tuple_observations(dataset):
        return "the dataset has tuple observations"
    return None


def fit_seeds(
    config: Any,
    dataset: ReplayBufferBase,
    seeds: Sequence[int],
    n_steps: int,
    device: Any = False,
    vectorise: bool | None = None,
) -> list[Any]:
    """Train one algorithm per seed on ``dataset``; the seeds of a VancoIQL config train together.

    Parameters
    ----------
    config : d3rlpy LearnableConfig
        Any d3rlpy algorithm config. VancoIQL and DiscreteVancoIQL configs with Adam
        optimizers train all seeds as one batched model; others fit one seed after another.
    dataset : d3rlpy.dataset.ReplayBufferBase
        The training data (e.g. an ``MDPDataset``).
    seeds : sequence of int
        One algorithm per seed, in this order; ``seed`` plays the part of
        ``d3rlpy.seed(seed)`` before a separate ``fit``.
    n_steps : int
        Gradient steps per seed.
    device : d3rlpy DeviceArg
        As ``config.create(device)``.
    vectorise : bool, optional
        Force (True) or forbid (False) the batched model; by default it is used when
        :func:`can_vectorise` allows it.

    Returns
    -------
    list
        Ordinary fitted d3rlpy algorithms, one per seed (predict, save, ``d3rlpy.load_learnable``
        as after ``fit``), each equal to ``d3rlpy.seed(seed); config.create(device).fit(dataset,
        n_steps=n_steps)`` up to float rounding (no evaluators and no logs are run).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("fit_seeds: give at least one seed")
    if n_steps < 1:
        raise ValueError(f"fit_seeds: n_steps={n_steps} must be >= 1")
    reason = can_vectorise(config, dataset)
    if vectorise and reason:
        raise ValueError(f"fit_seeds: cannot vectorise: {reason}")
    if vectorise is False or reason:
        return [_fit_one(config, dataset, seed, n_steps, device) for seed in seeds]
    threads, previous = fit_threads(config), torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        try:
            trainer = _VectorisedSeeds(config, dataset, seeds, device)
        except _Unsupported as error:
            if vectorise:
                raise ValueError(f"fit_seeds: cannot vectorise: no batched form of {error}") from None
            return [_fit_one(config, dataset, seed, n_steps, device) for seed in seeds]
        return trainer.train(n_steps)
    finally:
        torch.set_num_threads(previous)


def _fit_one(config: Any, dataset: ReplayBufferBase, seed: int, n_steps: int, device: Any) -> Any:
    d3rlpy.seed(seed)
    algo = config.create(device=device)
    algo.fit(
        dataset,
        n_steps=n_steps,
        n_steps_per_epoch=n_steps,
        show_progress=False,
        save_interval=n_steps + 1,
        logger_adapter=NoopAdapterFactory(),
    )
    return algo


class _Unsupported(Exception):
    pass


_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.GELU, nn.ELU, nn.LeakyReLU, nn.Identity, Swish)


def _forward(module: nn.Module, params: dict[str, torch.Tensor], prefix: str, *inputs: Any) -> Any:
    """``module``'s forward on K stacked weight sets, inputs and outputs with a leading seed axis."""

    def sub(child: str, *args: Any) -> Any:
        return _forward(getattr(module, child), params, f"{prefix}{child}.", *args)

    if isinstance(module, nn.Linear):
        weight = params[prefix + "weight"].transpose(1, 2)
        bias = params.get(prefix + "bias")
        x = inputs[0]
        return torch.bmm(x, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, weight)
    if isinstance(module, nn.Sequential):
        x = inputs[0]
        for i, layer in enumerate(module):
            x = _forward(layer, params, f"{prefix}{i}.", x)
        return x
    if isinstance(module, _ELEMENTWISE):
        return module(inputs[0])
    if isinstance(module, VectorEncoder):
        return sub("_layers", inputs[0])
    if isinstance(module, VectorEncoderWithAction) and not module._discrete_action:
        return sub("_layers", torch.cat(list(inputs), dim=-1))
    if isinstance(module, ContinuousMeanQFunction | DiscreteMeanQFunction):
        return QFunctionOutput(q_value=sub("_fc", sub("_encoder", *inputs)), quantiles=None, taus=None)
    if isinstance(module, ValueFunction):
        return sub("_fc", sub("_encoder", inputs[0]))
    if isinstance(module, CategoricalPolicy):
        return types.SimpleNamespace(logits=sub("_fc", sub("_encoder", inputs[0])))
    if isinstance(module, NormalPolicy) and isinstance(module._logstd, nn.Parameter):
        # d3rlpy's NormalPolicy with one learned log-std parameter (VancoIQL's policy).
        mu = sub("_mu", sub("_encoder", inputs[0]))
        logstd = torch.sigmoid(params[prefix + "_logstd"])
        clipped = module._min_logstd + logstd * (module._max_logstd - module._min_logstd)
        return ActionOutput(mu, torch.tanh(mu), clipped)
    raise _Unsupported(type(module).__name__)


class _Stacked:
    """One network of every seed: its weights stacked on axis 0, called as one batched network."""

    def __init__(self, modules: list[nn.Module]):
        params, _buffers = stack_module_state(modules)  # type: ignore[arg-type]
        self.params: dict[str, torch.Tensor] = params
        self.modules = modules
        if any(True for _ in modules[0].buffers()):
            raise _Unsupported(f"{type(modules[0]).__name__} has buffers (batch norm?)")

    def __call__(self, *inputs: Any) -> Any:
        return _forward(self.modules[0], self.params, "", *inputs)

    def check(self, *example: torch.Tensor) -> None:
        """Raise :class:`_Unsupported` unless every layer has a batched form here."""
        with torch.no_grad():
            _forward(self.modules[0], self.params, "", *example)

    def write_back(self) -> None:
        with torch.no_grad():
            for k, module in enumerate(self.modules):
                for name, p in module.named_parameters():
                    p.copy_(self.params[name][k])


class _VectorisedSeeds:
    def __init__(self, config: Any, dataset: ReplayBufferBase, seeds: list[int], device: Any):
        flat = FlatTransitions.from_dataset(dataset)
        self.algos, sampler_seeds = [], []
        # The prelude of FastFitMixin.fitter, seed by seed, in its order of random draws.
        for seed in seeds:
            d3rlpy.seed(seed)
            algo = config.create(device=device)
            build_scalers_with_transition_picker(algo, dataset)
            algo._check_training_data(flat, dataset)
            sampler_seeds.append(seed_from_global_numpy())
            algo.create_impl(tuple(flat.observations.shape[1:]), dataset.dataset_info.action_size)
            self.algos.append(algo)
        first = self.algos[0]
        self.sampler = TorchTransitionSampler(
            flat,
            device=first._device,
            seed=sampler_seeds[0],
            observation_scaler=first.observation_scaler,
            action_scaler=first.action_scaler,
            reward_scaler=first.reward_scaler,
        )
        self.generators = [make_generator(first._device, s) for s in sampler_seeds]
        self.impl = first.impl
        self.continuous = isinstance(config, VancoIQLConfig)
        mods = [a.impl.modules for a in self.algos]
        n_critics = len(mods[0].q_funcs)
        self.policy = _Stacked([m.policy for m in mods])
        self.value = _Stacked([m.value_func for m in mods])
        self.q = [_Stacked([m.q_funcs[i] for m in mods]) for i in range(n_critics)]
        self.targ_q = [_Stacked([m.targ_q_funcs[i] for m in mods]) for i in range(n_critics)]
        for targ in self.targ_q:
            for p in targ.params.values():
                p.requires_grad_(False)
        self.actor_optim = _stacked_adam(
            config.actor_optim_factory, config.actor_learning_rate, [self.policy]
        )
        self.critic_optim = _stacked_adam(
            config.critic_optim_factory, config.critic_learning_rate, [*self.q, self.value]
        )
        self.batch_size = config.batch_size
        self.nets = types.SimpleNamespace(
            policy=self.policy, value_func=self.value, q_funcs=self.q, targ_q_funcs=self.targ_q
        )
        # The first rows as an example (no random draw: the samplers must stay in step).
        k = len(seeds)
        obs = self.sampler.observations[:2].expand(k, -1, -1)
        actions = [self.sampler.actions[:2].expand(k, -1, -1)] if self.continuous else []
        for stacked in (self.policy, self.value):
            stacked.check(obs)
        for stacked in (*self.q, *self.targ_q):
            stacked.check(obs, *actions)

    def _batch(self) -> dict[str, torch.Tensor]:
        n, b, k = len(self.sampler), self.batch_size, len(self.generators)
        device = self.sampler.observations.device
        idx = torch.cat([torch.randint(0, n, (b,), generator=g, device=device) for g in self.generators])
        return {
            name: getattr(self.sampler, name).index_select(0, idx).view(k, b, -1) for name in _BATCH_FIELDS
        }

    def step(self) -> None:
        batch = types.SimpleNamespace(**self._batch())
        q_loss, v_loss, q_target = self.impl.critic_losses(self.nets, batch)
        self.critic_optim.zero_grad(set_to_none=True)
        (q_loss + v_loss).sum().backward()
        self.critic_optim.step()
        actor_loss, _weights = self.impl.actor_loss(self.nets, batch, q_target)
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.sum().backward()
        self.actor_optim.step()
        targets = [p for s in self.targ_q for p in s.params.values()]
        sources = [p for s in self.q for p in s.params.values()]
        soft_update(targets, sources, self.impl._tau)

    def train(self, n_steps: int) -> list[Any]:
        for algo in self.algos:
            algo.impl.modules.set_train()
        for _ in range(n_steps):
            self.step()
        for stacked in (self.policy, self.value, *self.q, *self.targ_q):
            stacked.write_back()
        _write_back_adam(self.actor_optim, [self.policy], [a.impl.policy_optim for a in self.algos])
        _write_back_adam(
            self.critic_optim, [*self.q, self.value], [a.impl.q_function_optim for a in self.algos]
        )
        for algo in self.algos:
            algo._grad_step = n_steps
        return self.algos


def _stacked_adam(factory: AdamFactory, lr: float, stacks: list[_Stacked]) -> torch.optim.Adam:
    params = [p for s in stacks for p in s.params.values()]
    fused = type(factory).__name__ == "FusedAdamFactory"
    return torch.optim.Adam(
        params,
        lr=lr,
        betas=factory.betas,
        eps=factory.eps,
        weight_decay=factory.weight_decay,
        amsgrad=factory.amsgrad,
        fused=fused or None,
    )


def _write_back_adam(stacked_optim: torch.optim.Adam, stacks: list[_Stacked], optims: list[Any]) -> None:
    """Give each seed's own optimizer its slice of the stacked Adam state (so checkpoints resume)."""
    for k, optim in enumerate(optims):
        own = {id(p): p for group in optim.param_groups for p in group["params"]}
        for stack in stacks:
            module = stack.modules[k]
            for name, p in module.named_parameters():
                if id(p) not in own:
                    continue
                state = stacked_optim.state.get(stack.params[name])
                if not state:
                    continue
                optim.state[p] = {
                    key: value.clone() if key == "step" else value[k].clone() for key, value in state.items()
                }
