"""d3rlpy's own algorithm contract (``algo_tester``, v2.8.1) for every registered configuration.

Written after d3rlpy's ``tests/algos/qlearning/test_iql.py``: the same observation shapes
(vector, image, tuple) and scalers (none, min-max), the same dummy encoders.
"""

from __future__ import annotations

import d3rlpy
import pytest
from d3rlpy.types import Shape
from vanco_pk.targets import DOSE_GRID_MG

from vanco_offline.algos import DiscreteVancoIQLConfig, ResidualVancoIQLConfig, VancoIQLConfig

from .algos.qlearning.algo_test import algo_tester
from .models.torch.model_test import DummyEncoderFactory
from .testing_utils import create_scaler_tuple

SHAPES = [(100,), (4, 32, 32), ((100,), (200,))]
SCALERS = [None, "min_max"]


def _encoders() -> dict[str, DummyEncoderFactory]:
    return {
        "actor_encoder_factory": DummyEncoderFactory(),
        "critic_encoder_factory": DummyEncoderFactory(),
        "value_encoder_factory": DummyEncoderFactory(),
    }


@pytest.fixture(autouse=True)
def _in_tmp_path_seeded(tmp_path, monkeypatch):
    # algo_tester writes to ./test_data (d3rlpy runs its tests from a scratch checkout) and
    # draws its data and networks from the global generators: seeded, every run is the same.
    monkeypatch.chdir(tmp_path)
    d3rlpy.seed(0)


@pytest.mark.parametrize("observation_shape", SHAPES)
@pytest.mark.parametrize("scalers", SCALERS)
def test_vanco_iql(observation_shape: Shape, scalers: str | None) -> None:
    observation_scaler, action_scaler, reward_scaler = create_scaler_tuple(scalers, observation_shape)
    config = VancoIQLConfig(
        **_encoders(),
        observation_scaler=observation_scaler,
        action_scaler=action_scaler,
        reward_scaler=reward_scaler,
    )
    algo_tester(config.create(), observation_shape)  # type: ignore[arg-type]


@pytest.mark.parametrize("observation_shape", SHAPES)
@pytest.mark.parametrize("scalers", SCALERS)
def test_residual_vanco_iql(observation_shape: Shape, scalers: str | None) -> None:
    observation_scaler, action_scaler, reward_scaler = create_scaler_tuple(scalers, observation_shape)
    config = ResidualVancoIQLConfig(
        **_encoders(),
        observation_scaler=observation_scaler,
        action_scaler=action_scaler,
        reward_scaler=reward_scaler,
    )
    # algo_tester's actions are two-dimensional; a residual policy corrects one dose.
    algo_tester(config.create(), observation_shape, action_size=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("observation_shape", SHAPES)
@pytest.mark.parametrize("scalers", SCALERS)
def test_discrete_vanco_iql(observation_shape: Shape, scalers: str | None) -> None:
    # As d3rlpy's discrete tests: no action scaler for dose-level indices.
    observation_scaler, _, reward_scaler = create_scaler_tuple(scalers, observation_shape)
    config = DiscreteVancoIQLConfig(
        **_encoders(),
        observation_scaler=observation_scaler,
        reward_scaler=reward_scaler,
    )
    # The dose grid's 13 levels, not algo_tester's default 2: with two levels the greedy level
    # of two random policies is often the same for all 100 test states, and the policy-copy
    # check (they must differ before the copy) would test the draw, not the copy.
    algo_tester(config.create(), observation_shape, action_size=len(DOSE_GRID_MG))  # type: ignore[arg-type]
