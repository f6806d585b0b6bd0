"""Shared fixtures: one small trained model for the command and recommendation tests."""

from pathlib import Path

import pytest
import torch

# The test networks are tiny: one thread is faster than two, and on a loaded 2-core machine
# two OpenMP threads contending for the cores stall (100 updates: 0.5 s on one, 40 s on two).
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_COHORT = ROOT / "data" / "sample_cohort.csv"

#: A plausible patient state of the seven schema features (the adversarial tests corrupt it).
SEVEN_FEATURES = {
    "vanco_level": 14.0,
    "creatinine": 1.3,
    "wbc": 12.5,
    "bun": 30.0,
    "temperature": 37.9,
    "sbp": 110.0,
    "heart_rate": 88.0,
}


def _train(tmp_path_factory, preset: str) -> Path:
    """`vanco-offline train` on the sample cohort for a few hundred steps: a real, small model."""
    from vanco_offline import cli

    logs = tmp_path_factory.mktemp("logs")
    code = cli.main(
        [
            "train",
            "--config",
            preset,
            "--data",
            str(SAMPLE_COHORT),
            "--steps",
            "300",
            "--experiment",
            "small",
            "--log-dir",
            str(logs),
            "--quiet",
        ]
    )
    assert code == 0
    return logs / "small"


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory) -> Path:
    """The `default` preset (PK features: recommending needs the stay's rows)."""
    return _train(tmp_path_factory, "default")


@pytest.fixture(scope="session")
def seven_features_model_dir(tmp_path_factory) -> Path:
    """The `seven_features` preset: one state, given by flags or JSON, is enough to recommend."""
    return _train(tmp_path_factory, "seven_features")
