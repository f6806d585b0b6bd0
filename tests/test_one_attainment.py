"""One simulator loop, one attainment: every scorer of a policy gives the same number.

The same policy on the same patients through the offline benchmark's rollout, the OPE
ground truth, ``bench policies``, the fidelity table's rollout and a generated cohort (its
``true_auc24`` column) must give one attainment (:data:`vanco_pk.targets.ATTAINMENT_DEFINITION`).
"""

from __future__ import annotations

import numpy as np
import pytest
from vanco_bench import fidelity
from vanco_bench.policies import evaluate_policy
from vanco_pk.policies import make_policy
from vanco_pk.simulate import patient_seeds, simulate
from vanco_pk.targets import ATTAINMENT_FROM_H, AUC24_TARGET, auc_attainment
from vanco_pk.world import World

from vanco_offline.data.cohort import generate_cohort
from vanco_offline.ope.policy import as_policy
from vanco_offline.ope.truth import SimulatorTruth, simulate_value
from vanco_offline.rollout import EvalPatients, reference_actor, rollout

N, SEED = 12, 5


def _cohort_attainment(table) -> np.ndarray:
    low, high = AUC24_TARGET
    rows = table[table["time_h"] >= ATTAINMENT_FROM_H]
    hit = (rows["true_auc24"] >= low) & (rows["true_auc24"] <= high)
    return hit.groupby(rows["stay_id"]).mean().to_numpy()


@pytest.mark.parametrize(("name", "scenario"), [("fixed", "icu"), ("mipd", "ideal")])
def test_every_scorer_gives_one_attainment(name, scenario):
    world = World.make(scenario=scenario)
    trace = simulate(make_policy(name), SEED, N, world=world)
    per_patient = trace.attainment_by_patient()
    expected = trace.attainment()
    assert 0.0 < expected < 1.0  # a number that can disagree

    act, reset = reference_actor(name, seed=SEED)
    scores = rollout(act, EvalPatients(N, SEED, world), reset)
    bench = evaluate_policy(name, N, SEED, world=world)
    truth = simulate_value(
        as_policy(make_policy(name)),
        0.99,
        SimulatorTruth(patient_seeds=patient_seeds(SEED, N)[0], world=world),
    )
    table = generate_cohort(N, name, SEED, world=world)
    fid = fidelity._rollout(world, N, SEED, name)

    assert scores.attainment == pytest.approx(expected)
    np.testing.assert_allclose(scores.trace.attainment_by_patient(), per_patient)
    assert bench["attainment"] == pytest.approx(expected)
    np.testing.assert_allclose(bench["attainment_by_patient"], per_patient)
    assert truth.attainment == pytest.approx(expected)
    # The cohort writes the truth rounded to 0.1 mg*h/L: equal unless an AUC sits on a boundary.
    np.testing.assert_allclose(_cohort_attainment(table), per_patient)
    assert auc_attainment(fid["auc24"], fid["time_h"]) == pytest.approx(expected)


def test_the_grid_is_the_default_action_set():
    class Odd:
        def reset(self, covariates, seed=None):
            self.n = len(covariates["weight_kg"])

        def act(self, features, info):
            return np.full(self.n, 1130.0)

    grid = simulate(Odd(), SEED, 3)
    free = simulate(Odd(), SEED, 3, dose_set="continuous")
    assert np.all(grid.dose_mg == 1250.0)  # 1130 mg given as the pharmacy's 1250 mg
    assert np.all(free.dose_mg == 1130.0)
    with pytest.raises(ValueError, match="dose_set"):
        simulate(Odd(), SEED, 3, dose_set="rounded")
