"""From a :class:`~vanco_offline.configs.presets.Preset` to a d3rlpy algorithm with its scalers."""

from __future__ import annotations

from typing import Any

import numpy as np
from d3rlpy.base import DeviceArg
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import ReplayBufferBase
from d3rlpy.models.encoders import VectorEncoderFactory
from d3rlpy.preprocessing import MinMaxActionScaler, StandardObservationScaler, StandardRewardScaler
from vanco_pk.targets import DOSE_MAX_MG

from vanco_offline.configs.presets import Preset

__all__ = ["build_algo", "make_config"]


def make_config(preset: Preset) -> Any:
    """The algorithm config of ``preset``, with unfitted scalers (d3rlpy's ``fit`` fits them)."""
    from vanco_offline.algos import DiscreteVancoIQLConfig, ResidualVancoIQLConfig, VancoIQLConfig

    encoder = VectorEncoderFactory(
        hidden_units=list(preset.network.hidden_units), activation=preset.network.activation
    )
    data = preset.data
    kwargs: dict[str, Any] = dict(preset.config)
    kwargs.update(
        actor_encoder_factory=encoder,
        critic_encoder_factory=encoder,
        value_encoder_factory=encoder,
        observation_scaler=StandardObservationScaler() if data.observation_scaler == "standard" else None,
        reward_scaler=StandardRewardScaler() if data.reward_scaler == "standard" else None,
    )
    if preset.algo == "discrete_vanco_iql":
        return DiscreteVancoIQLConfig(**kwargs)
    if data.action_scaler == "clinical":
        # The clinical dose bounds, not the data's min and max: a cohort that never saw
        # 3000 mg must still map 3000 mg to +1.
        kwargs["action_scaler"] = MinMaxActionScaler(minimum=np.array([0.0]), maximum=np.array([DOSE_MAX_MG]))
    if preset.algo == "residual_vanco_iql":
        return ResidualVancoIQLConfig(**kwargs)
    return VancoIQLConfig(**kwargs)


def build_algo(preset: Preset, dataset: ReplayBufferBase | None = None, device: DeviceArg = False) -> Any:
    """A ready-to-fit VancoIQL or DiscreteVancoIQL for ``preset``.

    With ``dataset``, checks that its action space matches the preset and fits the
    observation and reward scalers on it, so that ``build_with_dataset`` followed by
    ``predict`` sees the same scaling as ``fit`` (d3rlpy's ``build_with_dataset`` does not
    fit scalers). Call ``d3rlpy.seed(preset.training.seed)`` before building the networks.
    """
    config = make_config(preset)
    if dataset is not None:
        space = dataset.dataset_info.action_space
        expected = ActionSpace.DISCRETE if preset.data.action == "discrete" else ActionSpace.CONTINUOUS
        if space != expected:
            raise ValueError(
                f"preset {preset.name!r} expects {preset.data.action} actions but the dataset's action space "
                f"is {space.name.lower()}; convert the data with action={preset.data.action!r}"
            )
        for scaler in (config.observation_scaler, config.reward_scaler):
            if scaler is not None and not scaler.built:
                scaler.fit_with_transition_picker(dataset.episodes, dataset.transition_picker)
    return config.create(device=device)
