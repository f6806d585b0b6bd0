"""Algorithms: VancoIQL (continuous dose), ResidualVancoIQL (a learned correction to a PK dose) and
DiscreteVancoIQL (dose grid), registered with d3rlpy.

Each algorithm is laid out as d3rlpy's IQL: config and algorithm in one module
(``vanco_iql``, ``residual_iql``, ``discrete_vanco_iql``), losses in its impl under
``torch/``. What makes training fast (device sampling, batched seeds, the CUDA graph, fused
Adam) is the wing :mod:`vanco_offline.algos.fast`.

Importing this package (``import vanco_offline`` does) registers the configs with
``d3rlpy.base.register_learnable`` (d3rlpy 2.8 exports it there, not from ``d3rlpy.algos``)
and :class:`FusedAdamFactory` with d3rlpy's optimizer registry, so that
``d3rlpy.load_learnable`` can rebuild saved models. Python runs a module's body once per
process, so the registration happens exactly once.
"""

from __future__ import annotations

from d3rlpy.base import register_learnable
from d3rlpy.optimizers import register_optimizer_factory

from vanco_offline.algos.discrete_vanco_iql import DiscreteVancoIQL, DiscreteVancoIQLConfig
from vanco_offline.algos.evaluators import (
    ActionSaturationEvaluator,
    GreedyQEvaluator,
    MeanRewardEvaluator,
    MeanValueEvaluator,
    MonteCarloReturnEvaluator,
    PolicyImprovementEvaluator,
    standard_evaluators,
)
from vanco_offline.algos.fast.optimizers import FusedAdamFactory
from vanco_offline.algos.fast.sampler import FastReplayBuffer, FlatTransitions
from vanco_offline.algos.fast.seeds import fit_seeds
from vanco_offline.algos.onnx_export import save_policy_onnx
from vanco_offline.algos.residual_iql import ResidualVancoIQL, ResidualVancoIQLConfig
from vanco_offline.algos.vanco_iql import VancoIQL, VancoIQLConfig

__all__ = [
    "ActionSaturationEvaluator",
    "DiscreteVancoIQL",
    "DiscreteVancoIQLConfig",
    "FastReplayBuffer",
    "FlatTransitions",
    "FusedAdamFactory",
    "GreedyQEvaluator",
    "MeanRewardEvaluator",
    "MeanValueEvaluator",
    "MonteCarloReturnEvaluator",
    "PolicyImprovementEvaluator",
    "ResidualVancoIQL",
    "ResidualVancoIQLConfig",
    "VancoIQL",
    "VancoIQLConfig",
    "fit_seeds",
    "save_policy_onnx",
    "standard_evaluators",
]

register_optimizer_factory(FusedAdamFactory)
register_learnable(VancoIQLConfig)
register_learnable(DiscreteVancoIQLConfig)
register_learnable(ResidualVancoIQLConfig)
