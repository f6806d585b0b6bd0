"""vanco_pk: a population-pharmacokinetic Gymnasium environment for vancomycin dosing.

Depends on numpy, scipy and gymnasium only. Importing the package registers
``VancoPK-v0`` (continuous dose in mg) and ``VancoPKDiscrete-v0`` (dose grid), so
``gymnasium.make("vanco_pk:VancoPK-v0")`` works without a prior import.
"""

from __future__ import annotations

import gymnasium

from vanco_pk.env import VancoPKDiscreteEnv, VancoPKEnv, charted_level
from vanco_pk.level_request import LevelRequest
from vanco_pk.patients import Covariates, Misspecification, Patients, sample_patients
from vanco_pk.scenario import SCENARIOS, Scenario, get_scenario
from vanco_pk.simulator import EXTENDED_FEATURES
from vanco_pk.targets import (
    ATTAINMENT_DEFINITION,
    AUC24_TARGET,
    COVARIATES,
    DOSE_GRID_MG,
    DOSE_MAX_MG,
    FEATURES,
    TROUGH_TARGET,
    auc_attainment,
    get_reward_function,
    reward,
    seed_reward,
)
from vanco_pk.vector import VancoPKDiscreteVectorEnv, VancoPKVectorEnv
from vanco_pk.world import World

__all__ = [
    "ATTAINMENT_DEFINITION",
    "AUC24_TARGET",
    "COVARIATES",
    "DOSE_GRID_MG",
    "DOSE_MAX_MG",
    "EXTENDED_FEATURES",
    "FEATURES",
    "SCENARIOS",
    "TROUGH_TARGET",
    "Covariates",
    "LevelRequest",
    "Misspecification",
    "Patients",
    "Scenario",
    "VancoPKDiscreteEnv",
    "VancoPKDiscreteVectorEnv",
    "VancoPKEnv",
    "VancoPKVectorEnv",
    "World",
    "auc_attainment",
    "charted_level",
    "get_reward_function",
    "get_scenario",
    "reward",
    "sample_patients",
    "seed_reward",
]

ENV_IDS = ("VancoPK-v0", "VancoPKDiscrete-v0")


def _register() -> None:
    if "VancoPK-v0" in gymnasium.registry:
        return
    # Episode length is set by the env's own `episode_days`, so no TimeLimit wrapper here.
    gymnasium.register(
        id="VancoPK-v0",
        entry_point="vanco_pk.env:VancoPKEnv",
        vector_entry_point="vanco_pk.vector:VancoPKVectorEnv",
    )
    gymnasium.register(
        id="VancoPKDiscrete-v0",
        entry_point="vanco_pk.env:VancoPKDiscreteEnv",
        vector_entry_point="vanco_pk.vector:VancoPKDiscreteVectorEnv",
    )


_register()

# Reference dosing policies, appended to the exports above.
from vanco_pk.policies import make_policy  # noqa: E402 - after the env registration

__all__ += ["make_policy"]
