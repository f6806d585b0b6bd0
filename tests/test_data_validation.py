"""Bad tables raise a ValueError that names the fault, the column, the stay and the row."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_data_builders import make_table, tables
from vanco_pk.targets import FEATURES

from vanco_offline.data import convert, validate

CORRUPTIONS = ("shuffle", "negative_dose", "fahrenheit", "nan", "duplicate", "missing_column")


def _stay(table: pd.DataFrame, row: int) -> str:
    stay = table["stay_id"].iloc[row]
    return repr(stay) if isinstance(stay, str) else str(stay)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(tables(rows=(2, 6), reward=False, behavior_prob=False), st.sampled_from(CORRUPTIONS), st.data())
def test_random_corruptions_raise_naming_the_fault(table, corruption, data):
    row = data.draw(st.integers(0, len(table) - 1), label="row")
    time = "step" if "step" in table else "time_h"
    table = table.copy()
    if corruption == "shuffle":
        stay = table["stay_id"] == table["stay_id"].iloc[row]
        table.loc[stay, time] = table.loc[stay, time].to_numpy()[::-1].copy()
        expected = [time, "not increasing", "shuffled", f"stay {_stay(table, row)}"]
    elif corruption == "negative_dose":
        table.loc[row, "dose_mg"] = -data.draw(st.floats(1, 3000), label="dose")
        expected = ["dose_mg", "negative", f"stay {_stay(table, row)} row {row}"]
    elif corruption == "fahrenheit":
        table.loc[row, "temperature"] = table.loc[row, "temperature"] * 9 / 5 + 32
        expected = ["temperature", "Fahrenheit", f"stay {_stay(table, row)} row {row}"]
    elif corruption == "nan":
        column = data.draw(st.sampled_from(FEATURES), label="column")
        table.loc[row, column] = np.nan
        expected = [f"'{column}'", "NaN", f"stay {_stay(table, row)} row {row}"]
    elif corruption == "duplicate":
        table = pd.concat([table.iloc[: row + 1], table.iloc[row:]], ignore_index=True)
        expected = ["duplicate rows", "drop_duplicates", f"stay {_stay(table, row)} row {row + 1}"]
    else:
        column = data.draw(st.sampled_from(["stay_id", time, *FEATURES, "dose_mg"]), label="column")
        table = table.drop(columns=column)
        expected = ["missing required column", column if column != time else "step or time_h"]
    with pytest.raises(ValueError) as error:
        convert(table)
    message = str(error.value)
    for part in expected:
        assert part in message, (corruption, part, message)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("creatinine", 88.0, r"'creatinine' \(mg/dL\) has values above 25 .* µmol/L: divide by 88.4"),
        ("creatinine", 0.0, r"'creatinine' \(mg/dL\) must be above 0"),
        ("vanco_level", 15000.0, r"'vanco_level' \(mg/L\) .* µg/L .*divide by 1000"),
        ("wbc", 9000.0, r"'wbc' .* cells/µL"),
        ("temperature", 20.0, r"'temperature' \(degC\) must be at least 25"),
        ("heart_rate", -3.0, r"'heart_rate' \(bpm\) must be at least 0"),
        ("sbp", np.inf, r"'sbp' has infinite values"),
        ("dose_mg", 1.5, r"'dose_mg' has doses below 5 mg .* look like grams"),
        ("dose_mg", np.inf, r"'dose_mg' has infinite doses"),
    ],
)
def test_unit_errors_are_named_with_the_fix(column, value, expected):
    table = make_table(n_stays=3, seed=1)
    table.loc[4, column] = value
    with pytest.raises(ValueError, match=expected) as error:
        convert(table)
    assert f"stay {table['stay_id'][4]} row 4" in str(error.value)


def test_doses_above_3_g_fail_unless_clipping_is_chosen_and_reported():
    table = make_table(n_stays=2, seed=2)
    table.loc[[1, 3], "dose_mg"] = [4500.0, 3200.0]
    with pytest.raises(ValueError, match=r"above the 3000 mg single-dose limit in 2 rows: .*clip_doses=True"):
        convert(table)
    result = convert(table, clip_doses=True)
    assert result.dataset.episodes[0].actions.max() == 3000.0
    assert any("clipped 2 dose(s)" in n and "largest was 4500 mg" in n for n in result.report.notes)
    assert validate(table, clip_doses=True)["dose_mg"].max() == 3000.0


def test_every_problem_is_listed_with_first_offenders_and_total():
    table = make_table(n_stays=3, rows=(5, 5), seed=3)
    table["temperature"] = table["temperature"] * 9 / 5 + 32
    table.loc[0, "dose_mg"] = -1.0
    with pytest.raises(ValueError) as error:
        convert(table)
    message = str(error.value)
    assert message.startswith("invalid dosing table (2 problems):")
    assert "15 rows: stay 100 row 0 (=" in message and "and 12 more" in message
    assert "'dose_mg' has negative doses in 1 row: stay 100 row 0 (= -1)" in message


def test_non_contiguous_stay_and_early_done():
    table = make_table(n_stays=3, rows=(3, 3), seed=4)
    moved = pd.concat([table.iloc[:2], table.iloc[3:], table.iloc[2:3]], ignore_index=True)
    with pytest.raises(
        ValueError, match=r"1 stay\(s\) appear in non-contiguous blocks.*stay 100 row 8.*sort"
    ):
        convert(moved)
    table["done"] = False
    table.loc[1, "done"] = True
    with pytest.raises(
        ValueError, match=r"'done' is True before the last row of its stay in 1 row: stay 100 row 1"
    ):
        convert(table)
    table["done"] = "maybe"
    with pytest.raises(ValueError, match=r"'done' must be True/False"):
        convert(table)


def test_duplicate_times_that_are_not_duplicate_rows():
    table = make_table(n_stays=2, rows=(3, 3), seed=5)
    table.loc[2, "step"] = table.loc[1, "step"]
    with pytest.raises(
        ValueError, match=r"'step' repeats a time within a stay in 1 row: stay 100 row 2"
    ) as error:
        convert(table)
    assert "duplicate rows" not in str(error.value)


def test_time_column_checks():
    table = make_table(n_stays=2, rows=(3, 3), seed=6).astype({"step": float})
    table.loc[1, "step"] = 1.5
    with pytest.raises(ValueError, match=r"'step' must hold integers.*stay 100 row 1 \(= 1.5\)"):
        convert(table)
    table = make_table(n_stays=2, rows=(3, 3), seed=6, time="time_h")
    table.loc[0, "time_h"] = np.nan
    with pytest.raises(ValueError, match=r"'time_h' must hold finite hours.*stay 100 row 0"):
        convert(table)


def test_reward_and_behavior_prob_may_be_empty_only_on_final_rows():
    table = make_table(n_stays=2, rows=(3, 3), seed=7, reward=True, behavior_prob=True)
    table.loc[0, "reward"] = np.nan
    table.loc[1, "behavior_prob"] = np.nan
    with pytest.raises(ValueError) as error:
        convert(table)
    message = str(error.value)
    assert "'reward' is missing in 1 row: stay 100 row 0" in message
    assert "'behavior_prob' is missing in 1 row: stay 100 row 1" in message


@pytest.mark.parametrize(("action", "value"), [("discrete", 1.2), ("discrete", 0.0), ("continuous", -0.1)])
def test_behavior_prob_range_depends_on_the_action_kind(action, value):
    table = make_table(n_stays=2, seed=8, behavior_prob=True, grid_doses=True)
    table.loc[2, "behavior_prob"] = value
    rule = "probability .* in \\(0, 1\\]" if action == "discrete" else "density .* > 0"
    with pytest.raises(ValueError, match=rf"'behavior_prob' out of range in 1 row: stay 100 row 2.*{rule}"):
        convert(table, action)
    table.loc[2, "behavior_prob"] = 2.5  # a density may exceed 1
    convert(table, "continuous")


def test_sex_text_is_mapped_and_reported_and_other_values_rejected():
    table = make_table(n_stays=2, rows=(2, 2), seed=9, covariates=True)
    table["sex"] = ["M", "male", " F", "Female"]
    result = convert(table, covariates=("sex",))
    np.testing.assert_array_equal(
        np.concatenate([e.observations[:, -1] for e in result.dataset.episodes]), [0, 0, 1, 1]
    )
    assert any("mapped 4 text value(s)" in n for n in result.report.notes)
    assert validate(table)["sex"].tolist() == [0, 0, 1, 1]
    table.loc[3, "sex"] = "unknown"
    with pytest.raises(
        ValueError, match=r"'sex' has values other than 0/1/M/F.*stay 101 row 3 \(= 'unknown'\)"
    ):
        convert(table)


def test_covariate_ranges_are_checked_when_present():
    table = make_table(n_stays=2, seed=10, covariates=True)
    table.loc[0, "weight_kg"] = 700.0
    table.loc[1, "height_cm"] = 1.8
    table.loc[2, "dialysis"] = 0.5
    with pytest.raises(ValueError) as error:
        convert(table)
    message = str(error.value)
    assert "pounds" in message and "metres" in message and "dialysis must be 0 or 1" in message


def test_non_numeric_values_and_missing_stay_ids():
    table = make_table(n_stays=2, seed=11)
    table["wbc"] = table["wbc"].astype(object)
    table.loc[3, "wbc"] = "high"
    with pytest.raises(
        ValueError, match=rf"'wbc' has non-numeric .* 1 row: stay {table['stay_id'][3]} row 3 \(= 'high'\)"
    ):
        convert(table)
    table = make_table(n_stays=2, seed=11).astype({"stay_id": float})
    table.loc[1, "stay_id"] = np.nan
    with pytest.raises(ValueError, match=r"'stay_id' is missing in 1 row: .* row 1"):
        convert(table)


def test_missing_columns_hint_at_renames():
    table = make_table().rename(columns={"creatinine": "Creatinine", "step": "hour"})
    with pytest.raises(ValueError) as error:
        convert(table)
    message = str(error.value)
    assert "missing required column(s) ['stay_id', 'step or time_h', 'creatinine']" not in message
    assert re.search(r"missing required column\(s\) \['step or time_h', 'creatinine'\]", message)
    assert "rename 'Creatinine' -> 'creatinine'" in message


def test_input_type_empty_table_and_bad_options():
    with pytest.raises(ValueError, match="expected a pandas DataFrame"):
        convert(make_table().to_numpy())
    with pytest.raises(ValueError, match="table is empty"):
        convert(make_table().iloc[:0])
    with pytest.raises(ValueError, match="action must be 'continuous' or 'discrete'"):
        convert(make_table(), "mg")
    with pytest.raises(ValueError, match="unknown reward 'best'"):
        convert(make_table(), reward="best")
    with pytest.raises(ValueError, match="impute must be None or a CarryForward rule"):
        convert(make_table(), impute="locf")
    with pytest.raises(ValueError, match=r"level_indicator=True .* needs fill_unmeasured_level=True"):
        convert(make_table(), level_indicator=True)


def test_validate_returns_an_unchanged_copy_of_a_valid_table():
    table = make_table(n_stays=3, seed=12, reward=True, covariates=True)
    checked = validate(table)
    pd.testing.assert_frame_equal(checked, table)
    assert checked is not table
