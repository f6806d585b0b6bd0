"""Property-based tests (hypothesis) of the state parser, the model-folder loader and the bundle runtime.

Each property holds for every input hypothesis generates: an answer is either a one-line
ValueError or a dose that the safety layer vouches for, never a traceback, never a silent guess.
"""

import json
import math
import shutil

import numpy as np
import pytest
from conftest import SEVEN_FEATURES
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from vanco_pk.targets import COVARIATES, FEATURES

from vanco_offline.safety import RANGES, parse_state
from vanco_offline.trained import METADATA_FILE, MODEL_FILE, load_model

NAMES = list(FEATURES)
ADULT = {"weight_kg": 70.0, "age": 50.0, "sex": 0, "dialysis": 0, "height_cm": 175.0}
FIELDS = [*NAMES, *COVARIATES, "first_dose", "creatinin", "dose", ""]

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["m", "F", "true", "no", "1", "0", "12", "NaN"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
#: A plausible state with some fields replaced, dropped or added.
STATES = st.builds(
    lambda changes, dropped: {
        **{k: v for k, v in {**SEVEN_FEATURES, **ADULT}.items() if k not in dropped},
        **changes,
    },
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=4),
    st.sets(st.sampled_from([*NAMES, *COVARIATES]), max_size=2),
)


@given(STATES, st.booleans())
@settings(max_examples=300, deadline=None)
def test_the_state_parser_accepts_only_what_it_can_read(state, fill):
    try:
        observation, covariates, first_dose = parse_state(state, NAMES, fill_unmeasured_level=fill)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    # Accepted: every field is known, every value finite and in its plausible range, nothing guessed.
    assert set(state) <= {*NAMES, *COVARIATES, "first_dose"}
    assert np.isfinite(observation).all() and observation.shape == (len(NAMES),)
    for name, value in zip(NAMES, observation, strict=True):
        spec = RANGES[name]
        assert spec.low <= value <= spec.high
        raw = state.get(name)
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            assert name == "vanco_level" and fill and value == 0.0  # a never-measured level only
        else:
            assert not isinstance(raw, bool | str) and value == float(raw)
    assert set(covariates) == set(state) & set(COVARIATES)
    assert covariates.get("sex", 0.0) in (0.0, 1.0) and covariates.get("dialysis", 0.0) in (0.0, 1.0)
    assert first_dose is None if "first_dose" not in state else isinstance(first_dose, bool)


@pytest.fixture(scope="module")
def bundle(seven_features_model_dir):
    from vanco_offline.bundle import load_bundle

    return load_bundle(seven_features_model_dir / MODEL_FILE)


@given(state=STATES, first_dose=st.sampled_from([None, True, False, "false", 1]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_bundle_runtime_doses_only_through_the_safety_layer(bundle, state, first_dose):
    if first_dose is not None:
        state = {**state, "first_dose": first_dose}
    try:
        answer = bundle.recommend(state)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    dose = answer["dose_mg"]
    assert math.isfinite(dose) and 0.0 <= dose <= 3000.0
    assert set(state) >= {"weight_kg", "age", "sex", "dialysis"} and float(state["age"]) >= 18
    if answer["renal_cap_mg"] is not None:
        assert dose <= answer["renal_cap_mg"] + 1e-9
    level = state.get("vanco_level")
    if isinstance(level, int | float) and not isinstance(level, bool) and level > 20:
        assert answer["held"] and dose == 0.0
    if dose != answer["model_dose_mg"]:
        assert answer["clipped_by"]  # every change of the model's dose is named
    assert answer["interval"] == "q12h"


def _metadata_edits():
    """An edit of model.json's description: a key removed, or set to a hostile value."""
    keys = [
        "format",
        "version",
        "observation_names",
        "action",
        "conversion",
        "support",
        "preset",
        "data",
        "training",
        "scope",
        "files",
    ]
    return st.tuples(st.sampled_from(keys), st.one_of(st.just("<delete>"), VALUES))


@pytest.fixture(scope="module")
def folder(seven_features_model_dir, tmp_path_factory):
    copy = tmp_path_factory.mktemp("loader") / "model"
    shutil.copytree(seven_features_model_dir, copy, ignore=shutil.ignore_patterns("*.csv", "model_*.d3"))
    return copy


@given(position=st.floats(0.0, 1.0, exclude_max=True), byte=st.integers(0, 255))
@example(position=0.0566, byte=69)  # an 'E' for an 'e' in the description: the same JSON number
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_loader_refuses_any_changed_byte_of_the_model(folder, tmp_path_factory, position, byte):
    work = tmp_path_factory.mktemp("flip") / "model"
    shutil.copytree(folder, work)
    data = bytearray((work / MODEL_FILE).read_bytes())
    index = int(position * len(data))
    if data[index] == byte:
        return
    data[index] = byte
    (work / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ValueError) as exc:
        load_model(work)
    assert "\n" not in str(exc.value)
    (work / METADATA_FILE).unlink()  # without the recorded hash the bundle's own checksum catches it
    try:
        model = load_model(work)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    # Loaded: then the change did not change the model. The checksum covers the parsed
    # description and the tensors, so another spelling of one JSON value (1e-08 as 1E-08, found
    # by this test) is the same bundle; anything that changes a number or a name is refused.
    from vanco_offline.bundle import load_bundle

    assert model.observation_names == load_model(folder).observation_names
    changed, original = load_bundle(work / MODEL_FILE), load_bundle(folder / MODEL_FILE)
    assert changed.metadata == original.metadata
    assert changed.tensors.keys() == original.tensors.keys()
    for key, value in original.tensors.items():
        np.testing.assert_array_equal(changed.tensors[key], value)


@given(edit=_metadata_edits())
@example(edit=("support", "<delete>"))  # found by this test: a KeyError (an internal error) before
@example(edit=("scope", "<delete>"))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_loader_reads_a_bundle_description_strictly(folder, tmp_path_factory, edit):
    """An attacker edits the bundle's description and recomputes its checksum (model.json removed)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from vanco_offline import bundle as runtime

    key, value = edit
    work = tmp_path_factory.mktemp("edit")
    with safe_open(str(folder / MODEL_FILE), framework="numpy") as handle:
        metadata = json.loads(handle.metadata()[runtime.METADATA_KEY])
    tensors = load_file(str(folder / MODEL_FILE))
    target = metadata["model"] if key in metadata["model"] else metadata
    if value == "<delete>":
        target.pop(key, None)
    else:
        target[key] = value
    metadata["checksum"] = runtime.checksum(metadata, tensors)
    path = work / "edited.safetensors"
    save_file(tensors, str(path), metadata={runtime.METADATA_KEY: json.dumps(metadata)})
    try:
        model = load_model(path)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    # Loaded: the edit did not touch what dosing depends on (free text such as "files" or "data").
    original = load_model(folder)
    assert model.scope == original.scope and model.observation_names == original.observation_names
    probe = np.asarray([original.support.mean], dtype=np.float32)
    assert np.allclose(model.algo.predict(probe), original.algo.predict(probe))
