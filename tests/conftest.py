"""Shared fixtures: one small trained model for the command and recommendation tests."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_COHORT = ROOT / "data" / "sample_cohort.csv"


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory) -> Path:
    """`vanco-offline train` on the sample cohort for a few hundred steps: a real, small model."""
    from vanco_offline import cli

    logs = tmp_path_factory.mktemp("logs")
    code = cli.main(
        [
            "train",
            "--config",
            "default",
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
