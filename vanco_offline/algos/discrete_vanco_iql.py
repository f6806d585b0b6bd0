"""DiscreteVancoIQL: implicit Q-learning over the dose grid, as a registered d3rlpy algorithm."""

from __future__ import annotations

import dataclasses

import numpy as np
from d3rlpy.algos.qlearning.base import QLearningAlgoBase
from d3rlpy.base import DeviceArg
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import ReplayBufferBase
from d3rlpy.models.builders import create_categorical_policy, create_discrete_q_function
from d3rlpy.types import NDArray, Observation, Shape

from vanco_offline.algos.fast.fitting import FastFitMixin
from vanco_offline.algos.fast.sampler import FlatTransitions
from vanco_offline.algos.onnx_export import PolicyExportMixin
from vanco_offline.algos.torch.discrete_vanco_iql_impl import DiscreteVancoIQLImpl
from vanco_offline.algos.vanco_iql import (
    StateValueMixin,
    VancoIQLBaseConfig,
    check_finite,
    create_iql_impl,
    scaled_observation,
)

__all__ = ["DiscreteVancoIQL", "DiscreteVancoIQLConfig"]


@dataclasses.dataclass()
class DiscreteVancoIQLConfig(VancoIQLBaseConfig):
    r"""Implicit Q-learning over a discrete dose grid (d3rlpy has no discrete IQL).

    Twin Q over the dose levels, each regressed on :math:`r + \gamma V(s')` at the logged
    level; V by expectile regression on the minimum target Q of the logged level; a
    categorical policy trained by advantage-weighted cross-entropy with the logged level,
    weights :math:`\min(e^{\beta (Q - V)}, w_{max})`. ``predict`` returns the level nearest
    the policy's mean level (the grid dose nearest its mean dose; an index into
    ``vanco_pk.targets.DOSE_GRID_MG`` for the project's data), and so do ``save_policy``
    (TorchScript and ONNX) and the bundle; ``sample_action`` samples the categorical policy.
    The policy imitates the advantage-weighted logged doses, which at a given state spread
    over several levels, most often below their mean, so the most probable level (what
    d3rlpy's discrete algorithms return) under-doses (docs/benchmark.md).

    Parameters are those of :class:`~vanco_offline.algos.VancoIQLConfig` that apply to a
    categorical policy (no action scaler: the actions are dose-level indices).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.action_scaler is not None:
            raise ValueError(
                "DiscreteVancoIQLConfig: action_scaler must be None; discrete actions are dose-grid "
                "indices, not doses"
            )

    def create(self, device: DeviceArg = False, enable_ddp: bool = False) -> DiscreteVancoIQL:
        return DiscreteVancoIQL(self, device, enable_ddp)

    @staticmethod
    def get_type() -> str:
        return "discrete_vanco_iql"


class DiscreteVancoIQL(
    StateValueMixin,
    PolicyExportMixin,
    FastFitMixin,
    QLearningAlgoBase[DiscreteVancoIQLImpl, DiscreteVancoIQLConfig],
):
    def inner_create_impl(self, observation_shape: Shape, action_size: int) -> None:
        cfg = self._config
        policy = create_categorical_policy(
            observation_shape,
            action_size,
            cfg.actor_encoder_factory,
            device=self._device,
            enable_ddp=self._enable_ddp,
        )
        self._impl = create_iql_impl(
            self, policy, observation_shape, action_size, create_discrete_q_function, DiscreteVancoIQLImpl
        )

    def get_action_type(self) -> ActionSpace:
        return ActionSpace.DISCRETE

    def predict_action_probabilities(self, x: Observation) -> NDArray:
        """The policy's probability of each dose level for a batch of observations, (batch, levels)."""
        return self._impl.predict_action_probabilities(scaled_observation(self, x)).cpu().numpy()

    def _check_training_data(self, flat: FlatTransitions, dataset: ReplayBufferBase) -> None:
        check_finite(flat, "DiscreteVancoIQL")
        n_levels = dataset.dataset_info.action_size
        actions = flat.actions.reshape(-1)
        bad = (actions != np.rint(actions)) | (actions < 0) | (actions >= n_levels)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"DiscreteVancoIQL: {int(bad.sum())} logged action(s) are not dose-level indices in "
                f"0..{n_levels - 1}; the first is {actions[row]:g} in episode "
                f"{int(flat.episode_index[row])}, step {int(flat.step_index[row])}. Convert doses with "
                "vanco_pk.targets.dose_to_grid_index and build the dataset with "
                "action_space=ActionSpace.DISCRETE"
            )
