"""The one patient chart (``data/pk_replay.StayChart``): what the local fit, hindsight, the PK
replay and the twins read of a table, with one new-level rule and one creatinine."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vanco_offline.data import pk_feature_table
from vanco_offline.data.cohort import generate_cohort
from vanco_offline.data.hindsight import hindsight_auc_table
from vanco_offline.data.pk_replay import table_chart
from vanco_offline.ope.twin import level_timing
from vanco_offline.ope.twin.posterior import stay_histories


@pytest.fixture(scope="module")
def table():
    return generate_cohort(6, "clinician", seed=3)


def test_padded_and_by_length_hold_the_same_stays(table):
    """The twins' grouping (chosen stays, padded) and the fits' (by length) read one chart."""
    chart = table_chart(table)
    stays = list(dict.fromkeys(table["stay_id"]))[::-1]
    padded, lengths = chart.padded(stays)
    seen = 0
    for rows, history in chart.by_length():
        for i, first in enumerate(rows[:, 0].tolist()):
            j = stays.index(chart.stay_ids[np.searchsorted(chart.starts, first)])
            n = rows.shape[1]
            assert lengths[j] == n
            for name in ("time_h", "creatinine", "level", "weight_kg", "age", "sex", "dialysis"):
                np.testing.assert_array_equal(
                    np.atleast_1d(getattr(padded, name)[j])[:n], np.atleast_1d(getattr(history, name)[i])
                )
            np.testing.assert_array_equal(padded.dose_mg[j, : n - 1], history.dose_mg[i, :-1])
            seen += 1
    assert seen == len(stays)
    flagged, _, _ = stay_histories(table, stays)
    np.testing.assert_array_equal(flagged.level, padded.level)


def test_hindsight_reads_the_creatinine_as_charted():
    """Hindsight once read the creatinine back from the float32 observation, so its estimate at a
    stay's last decision missed the replay's by ~1e-7; the chart keeps the table's float64."""
    table = generate_cohort(6, {"clinician": 1.0}, seed=2, level_missing_prob=0.5, scenario="ideal")
    last = ~table["stay_id"].duplicated(keep="last").to_numpy()
    filtered = pk_feature_table(table)["pk_auc24"].to_numpy()
    np.testing.assert_array_equal(hindsight_auc_table(table).to_numpy()[last], filtered[last])


def test_every_consumer_reads_the_level_measured_column(table):
    """A level drawn again at the very value of the previous one is new where ``level_measured``
    says so; hindsight (and the local fit) once ignored the column and dropped it."""
    table = table.copy()
    drawn = np.flatnonzero(table["level_measured"].to_numpy(dtype=bool))
    stay = table["stay_id"].to_numpy()
    # A stay's second drawn level (and the rows that carry it forward), set to its first.
    second = next(b for a, b in itertools.pairwise(drawn) if stay[a] == stay[b])
    first = drawn[drawn < second][-1]
    later = np.flatnonzero(
        (np.arange(len(table)) > second) & ((stay != stay[second]) | np.isin(np.arange(len(table)), drawn))
    )
    rows = np.arange(first, later[0] if later.size else len(table))
    table.loc[table.index[rows], "vanco_level"] = table["vanco_level"].iloc[first]
    bare = table.drop(columns="level_measured")
    assert table_chart(table).new_levels.sum() == table_chart(bare).new_levels.sum() + 1
    flagged = hindsight_auc_table(table).to_numpy()
    inferred = hindsight_auc_table(bare).to_numpy()
    assert not np.array_equal(flagged[stay == stay[second]], inferred[stay == stay[second]])
    np.testing.assert_array_equal(flagged[stay != stay[second]], inferred[stay != stay[second]])


def test_level_timing_counts_a_carried_level_once():
    """Without ``level_measured`` the twins' level protocol counted every carried-forward value
    as a drawn level (a level at every decision); the one new-level rule counts it once."""
    table = generate_cohort(20, "clinician", seed=1)
    assert level_timing(table.drop(columns="level_measured")) == level_timing(table)
