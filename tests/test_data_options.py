"""ConversionSettings: one specification, written to and read from JSON without loss."""

import dataclasses
import inspect
import json

import pandas as pd
import pytest

from vanco_offline.configs import available_presets, load_preset
from vanco_offline.data import CarryForward, ConversionSettings, convert, observation_table


def test_options_survive_a_json_round_trip():
    options = ConversionSettings(
        action="discrete",
        reward="exposure",
        impute=CarryForward(max_age_h=24.0, columns=("wbc", "bun")),
        fill_unmeasured_level=True,
        level_indicator=True,
        covariates=("weight_kg", "age"),
        round_doses=True,
        pk_features=True,
    )
    saved = json.loads(json.dumps(options.to_dict()))
    assert saved["impute"] == {"max_age_h": 24.0, "columns": ["wbc", "bun"]}
    assert "action" not in saved and "last_dose" not in saved  # positional / default
    assert ConversionSettings.from_dict(saved, action="discrete") == options


def test_converts_keywords_are_the_options_fields_with_the_same_defaults():
    # convert(table, action, **keywords) is a thin wrapper of convert_with(table, ConversionSettings):
    # its keyword list must not drift from the one specification.
    params = inspect.signature(convert).parameters
    keywords = {n: p.default for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    fields = {f.name: f.default for f in dataclasses.fields(ConversionSettings)}
    assert params["action"].default == fields.pop("action")
    assert keywords == fields


def test_an_unknown_key_is_named():
    with pytest.raises(ValueError, match=r"unknown ConversionSettings field\(s\) \['pk_feature'\]"):
        ConversionSettings.from_dict({"pk_feature": True})
    with pytest.raises(ValueError, match="unknown CarryForward"):
        ConversionSettings.from_dict({"impute": {"max_age": 3}})
    with pytest.raises(ValueError, match=r"\['pk_feature'\]"):
        observation_table(pd.DataFrame(), pk_feature=True)


@pytest.mark.parametrize("name", available_presets())
def test_a_presets_conversion_reads_back_as_saved(name):
    conversion = load_preset(name).data.conversion_settings(12.0)
    saved = json.loads(json.dumps(conversion.to_dict()))  # as model.json keeps it
    assert ConversionSettings.from_dict(saved, action=conversion.action) == conversion
