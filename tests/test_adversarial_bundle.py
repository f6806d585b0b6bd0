"""Adversarial bundles and states for the torch-free runtime: a clear refusal, never a silent dose."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import SEVEN_FEATURES
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from vanco_offline import bundle as runtime
from vanco_offline.bundle import load_bundle
from vanco_offline.trained import MODEL_FILE

STATE = SEVEN_FEATURES
ELDERLY = {"weight_kg": 55.0, "age": 88.0, "sex": "F", "dialysis": 0, "height_cm": 158.0}


@pytest.fixture(scope="module")
def original(seven_features_model_dir):
    path = seven_features_model_dir / MODEL_FILE
    with safe_open(str(path), framework="numpy") as handle:
        metadata = json.loads(handle.metadata()[runtime.METADATA_KEY])
    return path, metadata, load_file(str(path))


def _write(tmp_path, metadata, tensors, *, rechecksum=True):
    """A bundle with edited contents; ``rechecksum`` as a careful attacker would."""
    metadata = json.loads(json.dumps(metadata))
    if rechecksum:
        metadata["checksum"] = runtime.checksum(metadata, tensors)
    path = tmp_path / "edited.safetensors"
    save_file(tensors, str(path), metadata={runtime.METADATA_KEY: json.dumps(metadata)})
    return path


def _set(meta, dotted, value):
    *parents, last = dotted.split(".")
    for key in parents:
        meta = meta[key]
    meta[last] = value


# (edit, what the one-line error says)
METADATA_EDITS = [
    ("action_scaler.maximum", [1e6], "outside the clinical"),  # the review's 751,206 mg
    ("action_scaler.minimum", [-3000.0], "outside the clinical"),
    ("action_scaler", None, "needs its action scaler"),
    ("observation_scaler.std", [-1.0] * 7, "std must be >= 0"),
    ("observation_scaler.mean", [float("nan")] * 7, "finite numbers"),
    ("observation_scaler.eps", 0.0, "eps > 0"),
    ("observation_names", None, "observation_names"),
    ("observation_names", ["a", "b"], "must be 2 finite|support is over|malformed"),
    ("observation_names", ["vanco_level"] * 7, "duplicates"),
    ("action", "ordinal", "action must be"),
    ("output", "exp", "does not fit"),
    ("dose_grid_mg", [0, 1e9], "dose_grid_mg"),
    ("support", {"names": []}, "support|malformed"),
    ("support.radius", -1, "support"),
    ("version", 1, "version"),
    ("format", "other", "format"),
]


@pytest.mark.parametrize(("key", "value", "message"), METADATA_EDITS)
def test_edited_bundles_are_refused_with_one_line(original, tmp_path, capsys, key, value, message):
    _, metadata, tensors = original
    edited = json.loads(json.dumps(metadata))
    _set(edited, key, value)
    path = _write(tmp_path, edited, tensors)
    with pytest.raises(ValueError, match=message):
        load_bundle(path)
    assert runtime.main([str(path), str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_any_edit_without_a_new_checksum_is_found(original, tmp_path):
    _, metadata, tensors = original
    edited = json.loads(json.dumps(metadata))
    edited["model"]["conversion"]["fill_unmeasured_level"] = False
    with pytest.raises(ValueError, match="checksum does not match"):
        load_bundle(_write(tmp_path, edited, tensors, rechecksum=False))
    first = sorted(tensors)[0]
    changed = {**tensors, first: tensors[first] * 1.01}
    with pytest.raises(ValueError, match="checksum does not match"):
        load_bundle(_write(tmp_path, metadata, changed, rechecksum=False))


@pytest.mark.parametrize("edit", ["nan", "inf", "missing", "shape", "op", "huge"])
def test_broken_weights_and_layers_are_refused(original, tmp_path, edit):
    _, metadata, tensors = original
    metadata, tensors = json.loads(json.dumps(metadata)), dict(tensors)
    head = metadata["layers"][-1]["weight"]
    if edit in ("nan", "inf"):
        tensors[head] = np.full_like(tensors[head], np.nan if edit == "nan" else np.inf)
    elif edit == "missing":
        del tensors[head]
    elif edit == "shape":
        tensors[head] = np.zeros((3, 3), dtype=np.float32)
    elif edit == "op":
        metadata["layers"].insert(1, {"op": "__import__('os').system"})
    else:  # weights scaled so the policy saturates: the dose stays within the action range
        tensors[head] = tensors[head] * 1e30
    path = _write(tmp_path, metadata, tensors)
    if edit == "huge":
        answer = load_bundle(path).recommend({**STATE, **ELDERLY, "first_dose": False})
        assert 0 <= answer["dose_mg"] <= answer["renal_cap_mg"]
        return
    with pytest.raises(
        ValueError, match=r"NaN or infinity|not in the file|do not compose|not supported|malformed"
    ):
        load_bundle(path)


@pytest.mark.parametrize(
    "content", [b"", b"not a bundle", b"\x00" * 64, b"\xff\xff\xff\xff\xff\xff\xff\x7f{}", b"PK\x03\x04junk"]
)
def test_files_that_are_not_bundles(tmp_path, capsys, content):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    assert runtime.main([str(path), str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bundle: error:") and err.count("\n") == 1


def test_a_truncated_bundle(original, tmp_path, capsys):
    path, _, _ = original
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert runtime.main([str(cut), str(cut)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


BAD_STATES = [
    ({**STATE, "creatinine": -100}, "positive"),  # the review: 183 mg, exit 0
    ({**STATE, "creatinine": float("nan")}, "finite"),
    ({**STATE, "wbc": "9"}, "give a number"),
    ({**STATE, "wbc": None}, "null"),
    ({**STATE, "heart_rate": True}, "give a number"),
    ({**STATE, **ELDERLY, "weight_kg": None}, "null"),
    ({**STATE, **ELDERLY, "sex": "woman"}, "accepted values"),
    ({**STATE, "first_dose": "nope"}, "true or false"),
    ({**STATE, "dose": 1000}, "unknown fields"),
    ({**STATE}, "lacks the covariate(s) ['weight_kg', 'age', 'sex', 'dialysis']"),
    ({**STATE, **{k: v for k, v in ELDERLY.items() if k != "dialysis"}}, "never taken as no dialysis"),
    ({**STATE, **ELDERLY, "age": 5.0, "weight_kg": 18.0, "height_cm": 110.0}, "5 years"),
    ({k: v for k, v in STATE.items() if k != "sbp"}, "lacks the feature 'sbp'"),
    ([], "empty list"),
    ("hello", "must be an object"),
]


@pytest.mark.parametrize(("state", "message"), BAD_STATES)
def test_bad_states_are_one_line_errors(original, tmp_path, capsys, state, message):
    path, _, _ = original
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state).replace("NaN", "NaN"))
    assert runtime.main([str(path), str(state_file)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_the_runtime_applies_the_same_limits_as_recommend(original, seven_features_model_dir):
    from vanco_offline.recommend import recommend
    from vanco_offline.trained import load_model

    path, _, _ = original
    model = load_model(seven_features_model_dir)
    for first_dose in (True, False, "false", 0):
        answer = load_bundle(path).recommend({**STATE, **ELDERLY, "first_dose": first_dose})
        rec = recommend(model, STATE, ELDERLY, first_dose=first_dose)
        assert answer["dose_mg"] == pytest.approx(rec.dose_mg, abs=0.05)
        cap = rec.limited.renal_cap_mg
        assert answer["renal_cap_mg"] == (None if cap is None else pytest.approx(cap, rel=1e-6))
        assert answer["outside_training_support"] == rec.support_warnings


def test_runtime_with_torch_blocked_doses_through_the_safety_layer(original, tmp_path):
    path, _, _ = original
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps([{**STATE, **ELDERLY, "first_dose": "false"}, {**STATE, **ELDERLY, "vanco_level": None}])
    )
    script = (
        "import runpy, sys\n"
        "class Uninstalled:  # as if torch and d3rlpy were not installed\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'd3rlpy'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Uninstalled())\n"
        f"sys.argv = ['bundle', {str(path)!r}, {str(state)!r}]\n"
        "try:\n"
        "    runpy.run_module('vanco_offline.bundle', run_name='__main__')\n"
        "finally:\n"
        "    loaded = {m.split('.')[0] for m, v in sys.modules.items() if v is not None}\n"
        "    assert not loaded & {'torch', 'd3rlpy'}, loaded\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    capped, naive = json.loads(out.stdout)
    assert capped["dose_mg"] <= capped["renal_cap_mg"] < 700
    assert naive["interval"] == "q12h" and naive["interval_h"] == 12.0
