"""Clinical sanity of the simulator's exposures and outcomes, and the ``bench sim`` command."""

import argparse

import numpy as np
import pytest
from vanco_pk import sanity


@pytest.fixture(scope="module")
def exposures():
    return {(r.cohort.split(",")[0], r.regimen.split(" (")[0]): r for r in sanity.exposure_table(400, seed=1)}


def test_typical_patient_on_1g_q12h_has_goti_exposures(exposures):
    row = exposures[("70 kg", "1 g q12h")]
    # Goti 2018 typical values: CL 3.5 L/h at CrCL 87.5 mL/min -> AUC 2000/3.5 = 572.
    assert 520.0 < row.auc_ss[1] < 620.0
    assert 15.0 < row.trough_ss[1] < 21.0
    # omega^2 CL 0.1584: the 5th-95th percentiles span about x1.9 either way.
    assert row.auc_ss[2] / row.auc_ss[1] == pytest.approx(np.exp(1.645 * 0.398), rel=0.15)
    assert row.auc_day2[1] < row.auc_ss[1]  # still accumulating on day 2


def test_weight_based_dosing_reaches_the_auc_target_in_a_minority(exposures):
    for cohort in ("70 kg", "ICU population"):
        row = exposures[(cohort, "15 mg/kg q12h")]
        assert row.in_target_ss < 0.5 and row.in_target_day2 < 0.5
        assert row.in_target_ss + row.below_target_ss + row.above_target_ss == pytest.approx(1.0)


def test_outcomes_order_with_exposure():
    rows = {r.regimen.split(" (")[0]: r for r in sanity.outcome_table(300, seed=2)}
    names = ("no vancomycin", "7.5 mg/kg q12h", "15 mg/kg q12h", "30 mg/kg q12h")
    none, half, full, double = (rows[k] for k in names)
    assert none.aki == 0.0 and none.resolved == 0.0
    assert none.aki <= half.aki < full.aki < double.aki
    assert half.resolved < full.resolved <= double.resolved
    assert double.aki > 0.5 and full.resolved > 0.8
    # Dosing each patient to AUC 500 on the true CL: no AKI, and the reward ranks it first.
    rule = rows["AUC-500 rule on the true CL"]
    assert rule.aki == 0.0 and rule.auc_day3_in_target > 0.5
    assert rule.mean_reward == max(r.mean_reward for r in rows.values())
    table = sanity.format_outcome_table(list(rows.values()))
    assert table.count("\n") == len(rows) + 1 and "| no vancomycin | 300 | 0 |" in table


def test_bench_sim_prints_the_speed_table(capsys):
    from vanco_bench import sim

    parser = argparse.ArgumentParser()
    sim.add_arguments(parser)
    args = parser.parse_args(["--patients", "1", "8", "--seconds", "0.02", "--ode-patient-steps", "2"])
    assert sim.run(args) == 0
    out = capsys.readouterr().out
    assert "| 8 |" in out and "at 8 patients:" in out and "x solve_ivp stepping each patient" in out
    with pytest.raises(ValueError, match="--patients"):
        sim.run(parser.parse_args(["--patients", "0"]))
