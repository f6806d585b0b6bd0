"""Adversarial model files: a pickle never runs without --trust-pickle, a tampered model is refused."""

import json
import pickle
import shutil

import numpy as np
import pytest
from conftest import SAMPLE_COHORT, SEVEN_FEATURES

from vanco_offline import cli
from vanco_offline.trained import METADATA_FILE, MODEL_FILE, PICKLE_FILE, load_model, sha256

STATE = {**SEVEN_FEATURES, "weight_kg": 55.0, "age": 88.0, "sex": 1, "dialysis": 0, "height_cm": 158.0}


def _error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def _dose(capsys, model, *extra) -> float:
    argv = ["recommend", "--model", str(model), "--json", json.dumps(STATE), "--maintenance", *extra]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    return float(out.split("recommended dose")[1].split("mg")[0])


class _Payload:
    """A pickle that writes a marker file when unpickled: what an attacker's model.d3 would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('executed')",))


@pytest.fixture
def folder(seven_features_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(seven_features_model_dir, copy, ignore=shutil.ignore_patterns("*.csv", "model_*.d3"))
    return copy


def _poison(folder, marker):
    """A real model appended to a pickle payload (the zip check passes; pickle runs the payload)."""
    real = (folder / PICKLE_FILE).read_bytes()
    (folder / PICKLE_FILE).write_bytes(pickle.dumps(_Payload(marker)) + real)


def test_a_payload_appended_to_a_model_never_runs_without_trust(folder, tmp_path, capsys):
    marker = tmp_path / "pwned"
    clean = _dose(capsys, folder)
    _poison(folder, marker)
    assert _dose(capsys, folder) == clean  # the folder loads its safetensors bundle, not the pickle
    for command in ("recommend", "evaluate", "export", "plot"):
        err = _error(capsys, [command, "--model", str(folder / PICKLE_FILE)])
        assert "--trust-pickle" in err and not marker.exists()
    (folder / MODEL_FILE).unlink()
    assert "--trust-pickle" in _error(capsys, ["recommend", "--model", str(folder), "--clinical"])
    # With --trust-pickle the file must still be the one trusted: its hash is checked first.
    err = _error(capsys, ["recommend", "--model", str(folder), "--clinical", "--trust-pickle", "0" * 64])
    assert "SHA-256" in err and "not opened" in err
    assert not marker.exists()


def test_trust_comes_from_outside_the_folder_never_from_its_model_json(folder, tmp_path, capsys):
    # Issue 26, finding 1: the sender writes model.json too. A payload whose hash model.json
    # records ran on recommend, evaluate, export and plot (exit 0, a normal dose printed).
    marker = tmp_path / "pwned"
    trained_hash = sha256(folder / PICKLE_FILE)
    _poison(folder, marker)
    metadata = json.loads((folder / METADATA_FILE).read_text())
    metadata["files"][PICKLE_FILE] = sha256(folder / PICKLE_FILE)  # the sender's matching hash
    (folder / METADATA_FILE).write_text(json.dumps(metadata))
    for command in ("recommend", "evaluate", "export", "plot"):
        for trust in ([], ["--trust-pickle", trained_hash], ["--trust-pickle", "yes"]):
            argv = [command, "--model", str(folder / PICKLE_FILE), *trust]
            argv += ["--clinical"] if command == "recommend" else []
            err = _error(capsys, argv)
            assert "--trust-pickle" in err or "SHA-256" in err
            assert not marker.exists()
    # The bare flag of the earlier version (trust whatever model.json says) is no longer accepted.
    with pytest.raises(SystemExit):
        cli.main(["recommend", "--model", str(folder / PICKLE_FILE), "--trust-pickle"])
    with pytest.raises(ValueError, match="64 hex digits"):
        load_model(folder / PICKLE_FILE, trust_pickle=True)  # type: ignore[arg-type]
    assert not marker.exists()


def test_trust_pickle_opens_the_trained_pickle_only(folder, capsys):
    clean = _dose(capsys, folder)
    trusted = sha256(folder / PICKLE_FILE)
    (folder / MODEL_FILE).unlink()
    assert _dose(capsys, folder, "--trust-pickle", trusted) == clean
    # A plain d3rlpy IQL placed beside our model.json (the review: it recommended 1 mg).
    import d3rlpy

    iql = d3rlpy.algos.IQLConfig().create()
    iql.create_impl((7,), 1)
    iql.save(str(folder / PICKLE_FILE))
    assert "--trust-pickle" in _error(capsys, ["recommend", "--model", str(folder), "--clinical"])
    err = _error(capsys, ["recommend", "--model", str(folder), "--clinical", "--trust-pickle", trusted])
    assert "SHA-256" in err


def test_a_bundle_whose_config_disagrees_with_its_policy_is_refused(folder, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from vanco_offline import bundle as runtime

    with safe_open(str(folder / MODEL_FILE), framework="numpy") as handle:
        metadata = json.loads(handle.metadata()[runtime.METADATA_KEY])
    tensors = load_file(str(folder / MODEL_FILE))
    # A careful edit: the d3rlpy config's dose range, with the checksum recomputed.
    metadata["config"]["config"]["params"]["action_scaler"]["params"]["maximum"] = [2000.0]
    metadata["checksum"] = runtime.checksum(metadata, tensors)
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, str(edited), metadata={runtime.METADATA_KEY: json.dumps(metadata)})
    assert "different doses" in _error(capsys, ["recommend", "--model", str(edited), "--clinical"])


def test_a_swapped_bundle_is_refused(folder, trained_model_dir, capsys):
    shutil.copy(trained_model_dir / MODEL_FILE, folder / MODEL_FILE)  # another model's file
    assert "replaced or edited" in _error(capsys, ["recommend", "--model", str(folder), "--clinical"])


TAMPERED = [
    (lambda m: m.update(action="discrete"), "action is 'discrete'"),
    (lambda m: m.pop("support"), "support is missing"),
    (lambda m: m["support"].update(low=[0.0]), "support"),
    (lambda m: m["support"].update(radius="far"), "support"),
    (lambda m: m.update(observation_names=None), "observation_names"),
    (lambda m: m.update(observation_names=[None] * 7), "observation_names"),
    (
        lambda m: m.update(observation_names=m["observation_names"][:5]),
        "5 observation names for a model with 7",
    ),
    (lambda m: m.update(conversion=None), "'conversion' must be an object"),
    (lambda m: m.update(version=1), "version"),
    (lambda m: m.update(format="x"), "does not describe"),
    (lambda m: m.pop("scope"), "no dosing interval"),
    (lambda m: m["scope"].update(interval_h=0), "dosing interval"),
    (lambda m: m["scope"].update(interval_h="12"), "dosing interval"),
    (lambda m: m["scope"]["units"].update(creatinine="umol/L"), "creatinine in umol/L"),
]


@pytest.mark.parametrize(("edit", "message"), TAMPERED)
def test_a_tampered_model_json_is_one_line(folder, capsys, edit, message):
    (folder / MODEL_FILE).unlink()  # the pickle path reads model.json; the bundle path ignores it
    metadata = json.loads((folder / METADATA_FILE).read_text())
    edit(metadata)
    (folder / METADATA_FILE).write_text(json.dumps(metadata))
    trusted = sha256(folder / PICKLE_FILE)
    argv = ["recommend", "--model", str(folder), "--clinical", "--trust-pickle", trusted]
    assert message in _error(capsys, argv)


def test_model_json_that_is_not_json(folder, capsys):
    (folder / METADATA_FILE).write_text("{broken")
    assert METADATA_FILE in _error(capsys, ["recommend", "--model", str(folder), "--clinical"])


def test_non_finite_weights_are_refused_everywhere(folder, tmp_path):
    from vanco_offline.export import export_bundle

    model = load_model(folder)
    with __import__("torch").no_grad():
        next(model.algo.impl.modules.policy.parameters()).fill_(float("nan"))
    out = tmp_path / "nan.safetensors"
    with pytest.raises(ValueError, match="NaN or infinity"):
        export_bundle(model.algo, out, observation_names=model.observation_names)
    assert not out.exists()
    from vanco_offline.trained import _check_finite

    with pytest.raises(ValueError, match="NaN or infinity"):
        _check_finite(model.algo, folder)


def test_every_model_command_names_trust_pickle_in_its_help(capsys):
    for command in ("recommend", "evaluate", "export", "plot"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert "--trust-pickle" in capsys.readouterr().out


def test_recommend_and_evaluate_accept_an_exported_bundle(folder, tmp_path, capsys, monkeypatch):
    bundle = tmp_path / "shared.safetensors"
    assert cli.main(["export", "--model", str(folder), "--out", str(bundle)]) == 0
    capsys.readouterr()
    assert _dose(capsys, bundle) == _dose(capsys, folder)
    # evaluate loads the bundle and computes the diagnostics on it; the OPE itself (tested in
    # tests/test_ope_*) is replaced by a recorder here, as its behaviour model takes ~15 s.
    import vanco_offline.ope

    seen = {}

    def recorder(algo, data, **kwargs):
        seen["doses"] = algo.predict(data.dataset.episodes[0].observations)
        return "OPE report"

    monkeypatch.setattr(vanco_offline.ope, "evaluate", recorder)
    # The twins' prior refit is the OPE's part too (tested in tests/test_commands.py).
    argv = ["evaluate", "--model", str(bundle), "--data", str(SAMPLE_COHORT), "--fqe-steps", "20"]
    argv += ["--twin-prior", "published"]
    assert cli.main(argv) == 0
    assert "greedy_q" in capsys.readouterr().out
    assert np.isfinite(seen["doses"]).all() and 0 <= seen["doses"].min() and seen["doses"].max() <= 3000
