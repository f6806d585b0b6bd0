"""The twins' AKI hazard, calibrated on the logged stays' KDIGO AKI incidence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vanco_offline.data.cohort import generate_cohort
from vanco_offline.ope import TwinSettings
from vanco_offline.ope.twin import (
    AKICalibration,
    calibrate_aki,
    from_logs,
    logged_aki,
    replay_aki,
    stay_twins,
)
from vanco_offline.ope.twin.kidney import MULTIPLIER_GRID


@pytest.fixture(scope="module")
def icu():
    table = generate_cohort(80, "clinician", seed=3, scenario="icu")
    ids = list(dict.fromkeys(table["stay_id"]))
    settings = TwinSettings(n_draws=2, seed=3).with_logs(table, ids)
    return table, ids, settings


def test_logged_aki_is_the_simulators_kdigo_flag_from_the_charted_creatinine(icu):
    table, ids, settings = icu
    twins = stay_twins(table, ids, settings)
    flagged = table.groupby("stay_id", sort=False)["true_aki"].max().reindex(ids).to_numpy() > 0
    assert flagged.any()
    np.testing.assert_array_equal(logged_aki(twins.history, twins.lengths), flagged)


def test_kdigo_on_charts_with_gaps_and_shorter_stays():
    from types import SimpleNamespace

    nan = np.nan
    chart = SimpleNamespace(
        time_h=np.tile([0.0, 12.0, 24.0, 36.0, 72.0], (6, 1)),
        creatinine=np.array(
            [
                [1.0, nan, 1.4, 1.4, 1.4],  # +0.4 within 48 h across a gap: AKI
                [1.0, nan, 1.2, 1.2, 1.2],  # +0.2: none
                [nan, 1.0, 1.35, 1.3, 1.3],  # baseline is the first charted value: AKI
                [1.0, 1.1, nan, nan, nan],  # a missing value is not a fall to 0 and back
                [1.0, 1.1, 1.2, 1.25, 1.45],  # +0.25 in 48 h; 1.45 at 72 h is +0.25 on the 48-h low 1.2
                [1.0, 1.0, 1.0, 1.0, 2.0],  # 2 x baseline, but after the stay's last row
            ]
        ),
    )
    lengths = np.array([5, 5, 5, 5, 5, 4])
    np.testing.assert_array_equal(logged_aki(chart, lengths), [True, False, True, False, False, False])


def test_the_calibrated_multiplier_reproduces_the_logged_incidence(icu):
    table, ids, settings = icu
    twins = stay_twins(table, ids, settings)
    cal = calibrate_aki(table, ids, settings, twins)
    # Common random numbers: more hazard never means fewer twins with AKI.
    assert np.all(np.diff(cal.replayed_rates) >= 0) and cal.replayed_rates[-1] > cal.replayed_rates[0]
    assert cal.logged_rate == pytest.approx(logged_aki(twins.history, twins.lengths).mean())
    replayed = replay_aki(twins, settings, [cal.multiplier]).mean()
    assert abs(replayed - cal.logged_rate) <= 0.1
    quantiles = cal.multipliers_for(4)
    assert np.all(np.diff(quantiles) >= 0) and quantiles[0] <= cal.multiplier <= quantiles[-1]
    assert cal.multipliers_for(1).tolist() == [cal.multiplier]
    assert MULTIPLIER_GRID[0] <= cal.multiplier <= MULTIPLIER_GRID[-1]
    assert "AKI hazard x" in cal.describe()


def test_twin_settings_reject_an_unknown_mode_and_a_calibration_of_other_stays(icu):
    from vanco_pk.policies import make_policy

    from vanco_offline.ope import twin_estimate
    from vanco_offline.ope.policy import ReferencePolicy

    table, ids, settings = icu
    with pytest.raises(ValueError, match=r"TwinSettings\.aki"):
        TwinSettings(aki="logged")
    other = AKICalibration(0.2, 10, MULTIPLIER_GRID, np.linspace(0.1, 0.5, 11), 20, 1.0, False)
    with pytest.raises(ValueError, match="calibrated on 10 stays"):
        twin_estimate(
            ReferencePolicy(make_policy("clinician")),
            table,
            ids,
            0.99,
            dataclasses.replace(settings, aki=other),
        )


def test_from_logs_learns_the_timing_and_the_kidney_once(icu):
    """``from_logs``: the level timing and the AKI calibration from the logs, in one
    step (the demo and the OPE benchmarks used to do both by hand); a calibration is kept."""
    table, ids, settings = icu
    bare = TwinSettings(n_draws=2, seed=3)
    learned = from_logs(bare, table, ids)
    assert learned.timing == settings.timing
    assert isinstance(learned.aki, AKICalibration)
    assert learned.aki.multiplier == calibrate_aki(table, ids, settings).multiplier
    assert from_logs(learned, table, ids) is learned
    skipped = from_logs(dataclasses.replace(bare, aki="uncalibrated"), table, ids)
    assert skipped.aki == "uncalibrated" and skipped.timing == settings.timing
