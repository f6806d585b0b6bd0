"""Adversarial inputs to the safety layer: every value is parsed strictly or refused, never guessed."""

import math

import numpy as np
import pytest
from conftest import SEVEN_FEATURES
from hypothesis import given, settings
from hypothesis import strategies as st
from vanco_pk.targets import FEATURES

from vanco_offline.clinical import StateSupport
from vanco_offline.safety import (
    BOOLEAN_TEXT,
    SEX_TEXT,
    DosingScope,
    UnsafeDose,
    check_dose,
    parse_bool,
    parse_covariates,
    parse_number,
    parse_sex,
    parse_state,
)

NAMES = list(FEATURES)
STATE = SEVEN_FEATURES
ELDERLY = {"weight_kg": 55.0, "age": 88.0, "sex": 1, "dialysis": 0}
SUPPORT = StateSupport.fit(
    np.random.default_rng(0).normal([15, 1.0, 9, 15, 37.5, 120, 85], [5, 0.3, 2, 5, 0.5, 15, 10], (500, 7)),
    NAMES,
)


SCOPE = DosingScope(interval_h=12.0, interval_source="test", units={})


def _observation(**changes):
    return np.array([{**STATE, **changes}[n] for n in NAMES])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        (0, False),
        (1, True),
        ("false", False),
        ("FALSE", False),
        (" no ", False),
        ("true", True),
        ("1", True),
        ("0", False),
    ],
)
def test_booleans_text_false_is_false(raw, expected):
    assert parse_bool("first_dose", raw) is expected


@given(st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.lists(st.integers())))
@settings(max_examples=60, deadline=None)
def test_booleans_anything_else_is_an_error(raw):
    accepted = (
        isinstance(raw, bool)
        or (isinstance(raw, int | float) and raw in (0, 1))
        or (isinstance(raw, str) and raw.strip().lower() in BOOLEAN_TEXT)
    )
    if accepted:
        assert parse_bool("dialysis", raw) in (True, False)
    else:
        with pytest.raises(ValueError, match="give true or false"):
            parse_bool("dialysis", raw)


@given(st.one_of(st.text(max_size=8), st.integers(-3, 9), st.floats(), st.none(), st.booleans()))
@settings(max_examples=150, deadline=None)
def test_sex_is_one_of_the_listed_values_or_an_error(raw):
    text = {**SEX_TEXT, "0": 0, "1": 1}
    if isinstance(raw, str) and raw.strip().lower() in text:
        assert parse_sex(raw) == text[raw.strip().lower()]
    elif not isinstance(raw, bool) and isinstance(raw, int | float) and raw in (0, 1):
        assert parse_sex(raw) == int(raw)
    else:
        with pytest.raises(ValueError, match="accepted values: 0 \\(male\\), 1 \\(female\\)"):
            parse_sex(raw)


@pytest.mark.parametrize(
    "raw", [None, "12", "", True, float("nan"), float("inf"), -float("inf"), [12], {"v": 1}]
)
def test_numbers_must_be_finite_numbers(raw):
    with pytest.raises(ValueError, match="'creatinine'"):
        parse_number("creatinine", raw)


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("creatinine", -100.0, "positive"),
        ("creatinine", 0.0, "positive"),
        ("temperature", 101.3, "Fahrenheit"),
        ("weight_kg", 300.0 * 2.2046, "pounds"),
        ("vanco_level", 15000.0, "µg/L"),
        ("age", 900.0, "months"),
    ],
)
def test_out_of_range_values_name_the_unit_error(name, value, hint):
    with pytest.raises(ValueError, match=hint):
        parse_number(name, value)


def test_null_weight_unknown_covariate_and_unknown_field_are_errors():
    with pytest.raises(ValueError, match="'weight_kg' is null"):
        parse_covariates({"weight_kg": None})
    with pytest.raises(ValueError, match="unknown covariate"):
        parse_covariates({"bmi": 30})
    with pytest.raises(ValueError, match="unknown fields \\['creatinin'\\]"):
        parse_state({**STATE, "creatinin": 1.0}, NAMES, fill_unmeasured_level=True)
    with pytest.raises(ValueError, match="lacks the feature 'wbc'"):
        parse_state({k: v for k, v in STATE.items() if k != "wbc"}, NAMES, fill_unmeasured_level=True)
    with pytest.raises(ValueError, match="not trained with unmeasured"):
        parse_state({**STATE, "vanco_level": None}, NAMES, fill_unmeasured_level=False)


def test_the_string_false_keeps_the_renal_cap():
    # The review's case: "first_dose": "false" counted as a loading dose and skipped the renal cap.
    observation, covariates, first_dose = parse_state(
        {**STATE, **ELDERLY, "sex": "F", "first_dose": "false"}, NAMES, fill_unmeasured_level=True
    )
    assert first_dose is False and covariates["sex"] == 1.0
    out = check_dose(
        1026.0, observation, NAMES, covariates, support=SUPPORT, scope=SCOPE, first_dose=first_dose
    )
    assert out.limited.renal_cap_mg is not None and out.dose_mg == pytest.approx(out.limited.renal_cap_mg)
    assert out.dose_mg < 600 and any("renal" in w for w in out.limited.clipped_by)


@given(st.floats(allow_nan=True, allow_infinity=True, width=64))
@settings(max_examples=200, deadline=None)
def test_any_model_output_is_refused_or_within_the_limits(raw):
    observation = _observation()
    try:
        out = check_dose(raw, observation, NAMES, ELDERLY, support=SUPPORT, scope=SCOPE, first_dose=False)
    except UnsafeDose:
        assert not math.isfinite(raw) or not -1.0 <= raw <= 3001.0
        return
    assert 0.0 <= out.dose_mg <= min(3000.0, out.limited.renal_cap_mg)
    if out.dose_mg != raw:
        assert out.limited.clipped_by  # every change of the dose is named


@given(st.lists(st.floats(-1e6, 1e6), min_size=7, max_size=7))
@settings(max_examples=100, deadline=None)
def test_a_state_far_from_the_training_data_is_flagged(values):
    observation = np.asarray(values)
    try:
        out = check_dose(1000.0, observation, NAMES, ELDERLY, support=SUPPORT, scope=SCOPE, first_dose=False)
    except ValueError as exc:  # an implausible value (creatinine 0, temperature 100) is refused, named
        assert "plausible range" in str(exc)
        return
    inside = all(lo <= v <= hi for v, lo, hi in zip(values, SUPPORT.low, SUPPORT.high, strict=True))
    if not inside:
        assert out.support_warnings
    assert out.dose_mg <= 1000.0
    if values[0] > 20.0:  # a measured trough above 20 mg/L: hold, no dose
        assert out.held and out.dose_mg == 0.0


def test_no_support_is_a_named_flag_not_silence():
    out = check_dose(800.0, _observation(), NAMES, ELDERLY, support=None, scope=SCOPE, first_dose=False)
    assert "no training-data support" in out.support_warnings[0]


@pytest.mark.parametrize(
    "changes",
    [
        {"names": None},
        {"names": ["a", None]},
        {"low": [0.0]},
        {"precision": [[1.0]]},
        {"radius": -1.0},
        {"mean": [float("nan")] * 7},
        {"coverage": 2.0},
        {"low": ["x"] * 7},
    ],
)
def test_a_tampered_support_is_refused(changes):
    fields = {**SUPPORT.__dict__, **changes}
    with pytest.raises(ValueError, match="support"):
        StateSupport(**fields)
