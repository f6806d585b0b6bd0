"""The twins' world is built from the logs and stated constants, never from the data's scenario."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from vanco_pk.pk import GOTI_2018
from vanco_pk.policies import make_policy
from vanco_pk.scenario import THAI_ICU, get_scenario
from vanco_pk.world import World

from vanco_offline.data.cohort import generate_cohort
from vanco_offline.ope import TwinSettings, twin_estimate
from vanco_offline.ope.policy import ReferencePolicy
from vanco_offline.ope.twin import level_timing

#: Every field a hospital cannot know, set to an absurd value: the twins must not notice.
SENTINEL = dataclasses.replace(
    get_scenario("icu"),
    name="sentinel",
    level_prop_error=0.9,
    level_add_error_mg_l=25.0,
    draw_time_sd_h=9.0,
    true_model=dataclasses.replace(THAI_ICU, cl=40.0, v1=400.0),
    iov_cl_sd=3.0,
    crcl_cap=10.0,
    arc_prob_young=1.0,
    arc_prob_middle=1.0,
    arc_prob_old=1.0,
    creatinine_assay_cv=0.5,
    dialysis="goti",
    sepsis_aki_per_day=5.0,
    vanco_aki_per_day=5.0,
    vanco_aki_slope=9.0,
    aki_injury=1.0,
    trough_every_h=12.0,
)


@pytest.fixture(scope="module")
def logs():
    table = generate_cohort(40, "clinician", seed=5, scenario="icu")
    return table, list(dict.fromkeys(table["stay_id"]))


def test_the_twin_estimate_does_not_read_the_datas_scenario_or_the_true_columns(logs):
    table, ids = logs
    policy = ReferencePolicy(make_policy("mipd"))
    settings = TwinSettings(model=GOTI_2018, n_draws=2, n_bootstrap=50, seed=5)
    estimates = [
        twin_estimate(policy, chart, ids, 0.99, dataclasses.replace(settings, world=World.make(**options)))
        for chart, options in (
            (table, {"scenario": "icu"}),
            (table, {"scenario": SENTINEL, "measurement_noise": 3.0, "level_missing_prob": 0.5}),
            # A misspecified truth is the data's world too: not read by the twins.
            (table, {"scenario": "icu", "misspecification": "severe"}),
            # The simulator's hidden columns are not part of a hospital's chart.
            (table[[c for c in table if not c.startswith("true_")]], {"scenario": "icu_iov035"}),
        )
    ]
    first = estimates[0]
    for other in estimates[1:]:
        np.testing.assert_array_equal(other.per_stay, first.per_stay)
        assert (other.attainment, other.aki_rate) == (first.attainment, first.aki_rate)
        assert other.aki_calibration.multiplier == first.aki_calibration.multiplier
    # The twins' world is the hospital's: its model, the logged timing, the twins' own constants.
    data_world = World(scenario=SENTINEL, measurement_noise=3.0, episode_days=3.0, reward="seed")
    world = dataclasses.replace(settings, world=data_world).with_logs(table, ids).twin_world()
    scenario = world.scenario
    # Only the user's choices cross over from the data's world (interval, horizon, reward).
    assert world == World(scenario=scenario, episode_days=3.0, reward="seed")
    assert scenario.model == GOTI_2018 and scenario.level_prop_error != SENTINEL.level_prop_error
    assert scenario.iov_cl_sd != SENTINEL.iov_cl_sd and scenario.arc_prob_young == 0.0
    assert scenario.trough_every_h == 48.0


def test_the_level_timing_is_read_from_the_logged_level_times(logs):
    table, ids = logs
    timing = level_timing(table, ids)
    icu = get_scenario("icu")
    assert (timing.sampling, timing.first_decision, timing.every_h) == (
        "trough_guided",
        icu.trough_first_decision,
        icu.trough_every_h,
    )
    ideal = generate_cohort(10, "clinician", seed=5, scenario="ideal")
    assert level_timing(ideal).sampling == "every_decision"
    with pytest.raises(ValueError, match="no logged level"):
        level_timing(table.assign(vanco_level=np.nan))
    with pytest.raises(ValueError, match="timing is not set"):
        TwinSettings().twin_world()


def test_without_level_measured_the_twin_counts_a_carried_level_once():
    """The data layer's one new-level rule (``pk_replay.level_changes``): a level carried
    forward on later rows is not a new level for the twins' posteriors either."""
    import numpy as np

    from vanco_offline.data.cohort import generate_cohort
    from vanco_offline.ope.twin.posterior import stay_histories

    table = generate_cohort(6, "clinician", seed=3)
    stays = list(dict.fromkeys(table["stay_id"]))
    flagged, _, _ = stay_histories(table, stays)
    inferred, _, _ = stay_histories(table.drop(columns="level_measured"), stays)
    drawn = np.isfinite(flagged.level)
    assert drawn.sum() > 0 and np.isfinite(table["vanco_level"]).sum() > drawn.sum()
    np.testing.assert_array_equal(np.isfinite(inferred.level), drawn)
