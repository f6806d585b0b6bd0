"""Imputation: carried forward within a stay only, never from the future, bounded in age, reported."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_data_builders import make_table, stay_blocks
from vanco_pk.targets import FEATURES, reward

from vanco_offline.data import CarryForward, convert


def _observations(result) -> np.ndarray:
    return np.concatenate([e.observations for e in result.dataset.episodes])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.05, 0.6))
def test_carry_forward_equals_pandas_groupwise_ffill(seed, fraction):
    table = make_table(n_stays=5, rows=(2, 7), seed=seed)
    rng = np.random.default_rng(seed)
    first = table.groupby("stay_id").cumcount() == 0
    holes = (rng.random((len(table), len(FEATURES))) < fraction) & ~first.to_numpy()[:, None]
    raw = table.copy()
    raw[list(FEATURES)] = raw[list(FEATURES)].mask(holes)
    result = convert(raw, impute=CarryForward(max_age_steps=math.inf))
    expected = raw.groupby("stay_id", sort=False)[list(FEATURES)].ffill().to_numpy(np.float32)
    np.testing.assert_array_equal(_observations(result), expected)
    counted = {c: int(n) for c, n in zip(FEATURES, holes.sum(axis=0), strict=True) if n}
    assert result.report.imputed == counted


def _gappy(column: str = "creatinine") -> pd.DataFrame:
    table = make_table(n_stays=2, rows=(4, 4), seed=1, time="time_h")
    table["time_h"] = [0.0, 12.0, 24.0, 36.0] * 2
    table.loc[[1, 2, 3], column] = np.nan
    return table


def test_maximum_age_limits_the_carry():
    table = _gappy()
    with pytest.raises(
        ValueError, match=r"'creatinine' is NaN in 1 row: stay 100 row 3 and the last value .* older"
    ):
        convert(table, impute=CarryForward(max_age_h=24))
    result = convert(table, impute=CarryForward(max_age_h=36))
    np.testing.assert_array_equal(_observations(result)[:4, 1], np.float32(table.loc[0, "creatinine"]))
    assert result.report.imputed == {"creatinine": 3}
    assert "max age 36 h" in str(result.report)


def test_age_in_steps_uses_the_step_column_and_hours_need_time_h():
    table = make_table(n_stays=1, rows=(3, 3), seed=2)
    table["step"] = [0, 1, 5]
    table.loc[2, "wbc"] = np.nan
    with pytest.raises(ValueError, match="older than the maximum age"):
        convert(table, impute=CarryForward(max_age_steps=3))
    convert(table, impute=CarryForward(max_age_steps=4))
    with pytest.raises(ValueError, match=r"max_age_h=.* needs a 'time_h' column"):
        convert(table, impute=CarryForward(max_age_h=12))


def test_never_across_stays_and_never_from_the_future():
    table = make_table(n_stays=2, rows=(3, 3), seed=3)
    table.loc[3, "bun"] = np.nan  # first row of stay 101: the previous stay's value must not leak
    with pytest.raises(
        ValueError, match=r"'bun' is NaN in 1 row: stay 101 row 3 with no earlier value in the same stay"
    ):
        convert(table, impute=CarryForward(max_age_steps=math.inf))


def test_without_a_rule_a_nan_names_the_options():
    table = make_table(n_stays=2, rows=(3, 3), seed=4)
    table.loc[4, "sbp"] = np.nan
    with pytest.raises(ValueError, match=r"'sbp' is NaN in 1 row: stay 101 row 4: .*CarryForward"):
        convert(table)


def test_rule_columns_limit_what_is_carried():
    table = _gappy("heart_rate")
    with pytest.raises(ValueError, match=r"not among the CarryForward columns \('creatinine',\)"):
        convert(table, impute=CarryForward(max_age_h=48, columns=("creatinine",)))
    with pytest.raises(ValueError, match="not observation columns"):
        CarryForward(max_age_h=1, columns=("dose_mg",))
    with pytest.raises(ValueError, match="exactly one of max_age_h and max_age_steps"):
        CarryForward()
    with pytest.raises(ValueError, match="must be a positive number"):
        CarryForward(max_age_steps=0)


def test_never_measured_level_is_filled_only_on_request_and_the_reward_sees_it_missing():
    table = make_table(n_stays=1, rows=(3, 3), seed=5)
    table.loc[[0, 1], "vanco_level"] = np.nan
    with pytest.raises(
        ValueError, match=r"never measured in the stay before 2 rows: stay 100 row 0.*fill_unmeasured_level"
    ):
        convert(table)
    result = convert(table, fill_unmeasured_level=True)
    episode = result.dataset.episodes[0]
    np.testing.assert_array_equal(
        episode.observations[:, 0], np.float32([0.0, 0.0, table.loc[2, "vanco_level"]])
    )
    assert result.report.level_filled == 2
    rows = table[list(FEATURES)].to_numpy()
    # Step 0 -> 1: next level never measured, so no exposure term (0.0 would score -1).
    assert episode.rewards[0, 0] == pytest.approx(reward(rows[0], 0.0, rows[1]))
    filled = rows.copy()
    filled[:, 0] = np.nan_to_num(filled[:, 0])
    assert episode.rewards[0, 0] != pytest.approx(reward(filled[0], 0.0, filled[1]))


def test_level_gap_after_a_measurement_is_not_never_measured():
    table = make_table(n_stays=1, rows=(3, 3), seed=6)
    table.loc[1, "vanco_level"] = np.nan
    with pytest.raises(ValueError, match=r"'vanco_level' is NaN in 1 row: stay 100 row 1: .*CarryForward"):
        convert(table, fill_unmeasured_level=True)
    result = convert(table, impute=CarryForward(max_age_steps=1), fill_unmeasured_level=True)
    assert result.report.imputed == {"vanco_level": 1} and result.report.level_filled == 0
    # The reward uses the level as measured: the carried value earns no exposure term.
    rows = table[list(FEATURES)].to_numpy()
    assert result.dataset.episodes[0].rewards[0, 0] == pytest.approx(reward(rows[0], 0.0, rows[1]))


def test_imputation_is_per_stay_for_string_stay_ids():
    table = make_table(n_stays=3, rows=(3, 3), seed=7, stay_prefix="icu-")
    table.loc[[1, 4, 7], "temperature"] = np.nan
    table["step"] = [0, 1, 2] * 3
    result = convert(table, impute=CarryForward(max_age_steps=1))
    for block, episode in zip(stay_blocks(table), result.dataset.episodes, strict=True):
        assert episode.observations[1, 4] == np.float32(block["temperature"].iloc[0])
