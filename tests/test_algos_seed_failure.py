"""The seed's failure, reproduced with its settings, and the fix bringing it down.

The seed trained IQL on doses in raw mg: the policy's tanh mean saturates at the top of
its [-1, 1] range for every patient and the Gaussian policy loss runs into the millions.
The `seed` preset is its settings verbatim; `base` is the same hyperparameters with the
doses scaled by the clinical bounds and standardised observations.
"""

from __future__ import annotations

from pathlib import Path

import d3rlpy
import pytest
import torch
from d3rlpy.logging import NoopAdapterFactory

from vanco_offline.algos.evaluators import ActionSaturationEvaluator
from vanco_offline.algos.synthetic import make_dosing_dataset
from vanco_offline.configs import build_algo, load_preset

SAMPLE_COHORT = Path(__file__).resolve().parents[1] / "data" / "sample_cohort.csv"
# The saturation needs ~1,000 steps at the seed's learning rate of 3e-5 (0.6 at 600 steps).
N_STEPS = 1000


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _train(preset_name: str, dataset) -> tuple[float, float]:
    """(fraction of greedy actions at the policy's bounds, last epoch's mean policy loss)."""
    preset = load_preset(preset_name)
    d3rlpy.seed(preset.training.seed)
    algo = build_algo(preset, dataset)
    results = algo.fit(
        dataset,
        n_steps=N_STEPS,
        n_steps_per_epoch=N_STEPS,
        show_progress=False,
        logger_adapter=NoopAdapterFactory(),
        evaluators={"saturation": ActionSaturationEvaluator()},
    )
    metrics = results[-1][1]
    return metrics["saturation"], metrics["actor_loss"]


def _assert_failure_and_fix(dataset) -> None:
    seed_saturation, seed_loss = _train("seed", dataset)
    fixed_saturation, fixed_loss = _train("base", dataset)
    summary = (
        f"seed settings: {seed_saturation:.0%} of greedy doses at the bound, policy loss {seed_loss:.3g}; "
        f"with the fix: {fixed_saturation:.0%}, {fixed_loss:.3g}"
    )
    print(summary)
    assert seed_saturation >= 0.95 and seed_loss > 1e5, summary
    assert fixed_saturation <= 0.05 and abs(fixed_loss) < 10.0, summary


def test_seed_failure_and_fix_on_a_synthetic_cohort():
    _assert_failure_and_fix(make_dosing_dataset(reward="seed"))


@pytest.mark.skipif(
    not SAMPLE_COHORT.exists(),
    reason="data/sample_cohort.csv is not there yet (issue 4 adds it); synthetic test shows the mechanism",
)
def test_seed_failure_and_fix_on_the_sample_cohort():
    from vanco_offline.data import convert, load_table

    table = load_table(SAMPLE_COHORT)
    # A table's own reward column wins over the conversion's reward option; drop it so
    # that the seed's reward is what both presets train on.
    table = table.drop(columns=["reward"], errors="ignore")
    result = convert(table, "continuous", reward="seed", fill_unmeasured_level=True)
    _assert_failure_and_fix(result.dataset)
