"""Issue 26, the third adversarial round: one test per finding (each failed before its fix).

Trust for a pickle is in tests/test_adversarial_models.py
(``test_trust_comes_from_outside_the_folder_never_from_its_model_json``).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import SAMPLE_COHORT, SEVEN_FEATURES

from vanco_offline import cli
from vanco_offline.trained import METADATA_FILE, MODEL_FILE, PICKLE_FILE

STATE = SEVEN_FEATURES
ADULT = {"weight_kg": 60.0, "age": 55.0, "sex": 1, "dialysis": 0, "height_cm": 155.0}


def _error(capsys, argv, code=2) -> str:
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def _recommend(capsys, model, state, *extra) -> str:
    assert cli.main(["recommend", "--model", str(model), "--json", json.dumps(state), *extra]) == 0
    return capsys.readouterr().out


def _dose(out: str) -> float:
    return float(out.split("recommended dose")[1].split("mg")[0])


# --- 2. the dosing interval is saved with the model and used for every cap -------------------------


@pytest.fixture(scope="module")
def six_hourly_model(tmp_path_factory):
    """seven_features trained for 100 steps on a cohort dosed every 6 h."""
    from vanco_offline.configs import load_preset
    from vanco_offline.data import generate_cohort
    from vanco_offline.training import train

    table = generate_cohort(60, "clinician", seed=3, decision_interval_h=6.0, level_missing_prob=0.5)
    logs = tmp_path_factory.mktemp("six")
    train(
        load_preset("seven_features"), table, n_steps=100, experiment="q6", log_root=logs, show_progress=False
    )
    return logs / "q6"


def test_the_interval_is_saved_and_caps_the_dose_at_it(six_hourly_model, capsys):
    from vanco_offline.clinical import ClinicalLimits, renal_maintenance_cap
    from vanco_offline.recommend import recommend
    from vanco_offline.trained import load_model

    model = load_model(six_hourly_model)
    assert model.scope.interval_h == 6.0
    assert json.loads((six_hourly_model / METADATA_FILE).read_text())["scope"]["interval_h"] == 6.0
    rec = recommend(model, STATE, ADULT, first_dose=False)
    covariates = {k: float(v) for k, v in ADULT.items()}
    at_6h = renal_maintenance_cap(STATE["creatinine"], covariates, ClinicalLimits(interval_h=6.0))
    assert rec.limited.renal_cap_mg == pytest.approx(at_6h)  # half the 12-hourly cap: same AUC24
    assert at_6h == pytest.approx(renal_maintenance_cap(STATE["creatinine"], covariates) / 2)
    with pytest.raises(ValueError, match="limits are for doses every 12 h but the model doses every 6 h"):
        recommend(model, STATE, ADULT, first_dose=False, limits=ClinicalLimits(max_auc24=600.0))
    out = _recommend(capsys, six_hourly_model, {**STATE, **ADULT}, "--maintenance")
    assert "q6h" in out and "q12h" not in out
    # The MIPD comparison doses for 6 h too: before any level, about half its 12-hourly dose.
    first = recommend(model, {**STATE, "vanco_level": None}, ADULT, first_dose=True)
    assert "q6h" in str(first) and first.mipd_dose_mg is not None and first.mipd_dose_mg <= 1250.0
    # The bundle runtime reads the interval from the bundle.
    from vanco_offline.bundle import load_bundle

    answer = load_bundle(six_hourly_model / MODEL_FILE).recommend({**STATE, **ADULT, "first_dose": False})
    assert answer["interval"] == "q6h" and answer["renal_cap_mg"] == pytest.approx(at_6h)


def test_a_chart_at_another_interval_is_refused(six_hourly_model):
    from vanco_offline.recommend import case_history, recommend
    from vanco_offline.trained import load_model

    model = load_model(six_hourly_model)
    history = case_history(STATE, ADULT, interval_h=12.0)
    with pytest.raises(ValueError, match="12 h apart but the model doses every 6 h"):
        recommend(model, STATE, ADULT, history=history)


def test_evaluate_refuses_data_at_another_interval(six_hourly_model, capsys):
    argv = ["evaluate", "--model", str(six_hourly_model), "--data", str(SAMPLE_COHORT)]
    assert "12 h apart but the model doses every 6 h" in _error(capsys, argv)


def test_a_model_without_its_interval_is_refused(seven_features_model_dir, tmp_path, capsys):
    import shutil

    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from vanco_offline import bundle as runtime
    from vanco_offline.trained import sha256

    folder = tmp_path / "old"
    shutil.copytree(seven_features_model_dir, folder, ignore=shutil.ignore_patterns("*.csv", "model_*.d3"))
    with safe_open(str(folder / MODEL_FILE), framework="numpy") as handle:
        metadata = json.loads(handle.metadata()[runtime.METADATA_KEY])
    tensors = load_file(str(folder / MODEL_FILE))
    del metadata["model"]["scope"]  # as a model written before the interval was saved
    metadata["checksum"] = runtime.checksum(metadata, tensors)
    save_file(tensors, str(folder / MODEL_FILE), metadata={runtime.METADATA_KEY: json.dumps(metadata)})
    description = json.loads((folder / METADATA_FILE).read_text())
    description["files"][MODEL_FILE] = sha256(folder / MODEL_FILE)
    (folder / METADATA_FILE).write_text(json.dumps(description))
    err = _error(capsys, ["recommend", "--model", str(folder), "--json", json.dumps({**STATE, **ADULT})])
    assert "no dosing interval" in err and "retrain" in err
    bundle = runtime.load_bundle(folder / MODEL_FILE)  # the raw policy still loads ...
    with pytest.raises(ValueError, match="no dosing interval"):
        bundle.recommend({**STATE, **ADULT})  # ... but is not given to a patient


# --- 3. outputs never replace a file of the model being read, nor follow a link -----------------------


@pytest.fixture
def model_copy(seven_features_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(seven_features_model_dir, copy, ignore=shutil.ignore_patterns("*.csv"))
    return copy


@pytest.mark.parametrize("name", [MODEL_FILE, METADATA_FILE, PICKLE_FILE, "params.json", "model_100.d3"])
def test_output_never_replaces_a_model_file_even_with_overwrite(model_copy, capsys, name):
    target = model_copy / name
    if not target.exists():
        target.write_bytes(b"checkpoint")
    before = target.read_bytes()
    argv = ["recommend", "--model", str(model_copy), "--json", json.dumps({**STATE, **ADULT})]
    err = _error(capsys, [*argv, "--output", str(target), "--overwrite"])
    assert "would overwrite the input" in err and target.read_bytes() == before
    argv = ["evaluate", "--model", str(model_copy / MODEL_FILE), "--output", str(target), "--overwrite"]
    assert "would overwrite the input" in _error(capsys, argv)
    assert target.read_bytes() == before


def test_no_output_is_written_through_a_symbolic_link(model_copy, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    argv = ["recommend", "--model", str(model_copy), "--json", json.dumps({**STATE, **ADULT})]
    assert "symbolic link" in _error(capsys, [*argv, "--output", str(link), "--overwrite"])
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "pk_profiles.png").symlink_to(victim)
    argv = ["plot", "--model", str(model_copy), "--out", str(plots), "--what", "pk", "--overwrite"]
    assert "symbolic link" in _error(capsys, argv)
    assert victim.read_text() == "precious"


def test_an_existing_partial_file_is_never_clobbered(model_copy, tmp_path, capsys):
    out = tmp_path / "result.json"
    bystander = tmp_path / f".partial-{out.name}"
    bystander.write_text("someone else's file")
    _recommend(capsys, model_copy, {**STATE, **ADULT}, "--output", str(out))
    assert bystander.read_text() == "someone else's file"
    assert json.loads(out.read_text())["dose_mg"] >= 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, bystander.name, "model"])


# --- 6, 7, 8. population limits and required covariates ----------------------------------------


def test_a_weight_in_pounds_is_flagged_against_the_height(seven_features_model_dir, capsys):
    out = _recommend(
        capsys, seven_features_model_dir, {**STATE, **ADULT, "weight_kg": 132.3}, "--maintenance"
    )
    assert "BMI 55.1" in out and "pounds (132.3 lb = 60.0 kg)" in out
    no_height = {k: v for k, v in ADULT.items() if k != "height_cm"}
    out = _recommend(capsys, seven_features_model_dir, {**STATE, **no_height}, "--maintenance")
    assert "height_cm not given: the weight was not checked against the height" in out


def test_a_weight_outside_the_training_range_is_flagged(seven_features_model_dir, capsys):
    out = _recommend(
        capsys,
        seven_features_model_dir,
        {**STATE, **ADULT, "weight_kg": 190.0, "height_cm": 200.0},
        "--maintenance",
    )
    assert "weight_kg = 190 kg is outside the training data's" in out


def test_a_child_is_never_dosed_with_adult_limits(seven_features_model_dir, capsys):
    child = {**STATE, "weight_kg": 18.0, "age": 5.0, "sex": 0, "dialysis": 0, "height_cm": 110.0}
    err = _error(capsys, ["recommend", "--model", str(seven_features_model_dir), "--json", json.dumps(child)])
    assert "age 5 years" in err and "18 years and older" in err


def test_a_missing_dialysis_is_never_no_dialysis(seven_features_model_dir, capsys):
    state = {**STATE, **{k: v for k, v in ADULT.items() if k != "dialysis"}}
    err = _error(capsys, ["recommend", "--model", str(seven_features_model_dir), "--json", json.dumps(state)])
    assert "['dialysis']" in err and "never taken as no dialysis" in err
    no_covariates = ["recommend", "--model", str(seven_features_model_dir), "--json", json.dumps(STATE)]
    assert "['weight_kg', 'age', 'sex', 'dialysis']" in _error(capsys, no_covariates)


# --- 9. Python API: every key of the state is used or an error ------------------------------------


def test_python_api_first_dose_in_the_state_is_an_error(seven_features_model_dir):
    from vanco_offline.recommend import recommend
    from vanco_offline.trained import load_model

    model = load_model(seven_features_model_dir)
    with pytest.raises(ValueError, match="first_dose"):
        recommend(model, {**STATE, "first_dose": True}, ADULT)
    # Covariates inside the state are used (the caps need them), never dropped.
    inside = recommend(model, {**STATE, **ADULT}, first_dose=False)
    apart = recommend(model, STATE, ADULT, first_dose=False)
    assert inside.dose_mg == apart.dose_mg and inside.limited.renal_cap_mg == apart.limited.renal_cap_mg
    with pytest.raises(ValueError, match="given both"):
        recommend(model, {**STATE, "age": 40.0}, ADULT)


# --- a trough of 45 mg/L means hold -----------------------------------------------------------------


def test_a_toxic_trough_holds_with_no_dose_beside_it(seven_features_model_dir, capsys, tmp_path):
    out_file = tmp_path / "hold.json"
    out = _recommend(
        capsys, seven_features_model_dir, {**STATE, **ADULT, "vanco_level": 45.0}, "--output", str(out_file)
    )
    first = out.splitlines()[0]
    assert "HOLD" in first and not any(ch.isdigit() for ch in first)
    result = json.loads(out_file.read_text())
    assert result["held"] and result["dose_mg"] == 0.0


# --- code that must never run, inputs that must never be guessed ---------------------------------


def test_convert_minari_env_never_imports_another_module(tmp_path, capsys):
    pytest.importorskip("minari")
    marker = tmp_path / "imported"
    (tmp_path / "evil_module.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        argv = ["convert", "--data", str(SAMPLE_COHORT), "--minari", "vanco/evil-v0"]
        argv += ["--minari-root", str(tmp_path / "minari"), "--minari-env", "evil_module:X-v0"]
        assert "other modules are not imported" in _error(capsys, argv)
    finally:
        sys.path.remove(str(tmp_path))
    assert not marker.exists()


def test_duplicate_keys_are_errors(seven_features_model_dir, tmp_path, capsys):
    text = json.dumps({**STATE, **ADULT})[:-1] + ', "creatinine": 3.5}'  # the same key twice
    argv = ["recommend", "--model", str(seven_features_model_dir), "--json", text]
    assert "'creatinine' twice" in _error(capsys, argv)
    state = tmp_path / "state.json"
    state.write_text(text)
    from vanco_offline import bundle as runtime

    assert runtime.main([str(seven_features_model_dir / MODEL_FILE), str(state)]) == 2
    assert "'creatinine' twice" in capsys.readouterr().err
    config = tmp_path / "twice.yaml"
    config.write_text("extends: seven_features\ntraining: {n_steps: 10}\ntraining: {n_steps: 99999}\n")
    assert "'training' is given twice" in _error(capsys, ["train", "--config", str(config)])


def test_the_bundle_runtime_refuses_an_impossible_history(trained_model_dir):
    from vanco_offline.bundle import load_bundle

    bundle = load_bundle(trained_model_dir / MODEL_FILE)
    state = dict(zip(bundle.observation_names, bundle.support.mean, strict=True))
    state = {**state, **ADULT}
    assert bundle.recommend(state)["dose_mg"] >= 0
    for name, value in (("last_dose_mg", -3000.0), ("pk_auc24", -5.0), ("pk_cl_map", 0.0)):
        with pytest.raises(ValueError, match=name):
            bundle.recommend({**state, name: value})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--samples", "2", "--first-dose"], "--first-dose (not with --samples"),
        (["--csv", str(SAMPLE_COHORT), "--mode", "sample"], "--mode (it applies to --samples)"),
        (["--clinical", "--maintenance"], "--maintenance (not with --clinical)"),
        (["--clinical", "--row", "3"], "--row (it applies to --csv)"),
    ],
)
def test_flags_that_would_be_ignored_are_errors(seven_features_model_dir, capsys, extra, message):
    err = _error(capsys, ["recommend", "--model", str(seven_features_model_dir), *extra])
    assert message in err


def test_evaluate_missing_prob_without_truth_is_an_error(seven_features_model_dir, capsys):
    argv = ["evaluate", "--model", str(seven_features_model_dir), "--data", str(SAMPLE_COHORT)]
    assert "--missing-prob applies to --truth" in _error(capsys, [*argv, "--missing-prob", "0.5"])


# --- no tracebacks --------------------------------------------------------------------------------


def test_huge_integers_and_deep_nesting_are_one_line_errors(seven_features_model_dir, tmp_path, capsys):
    model = str(seven_features_model_dir)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({**STATE, **ADULT})[:-1].replace('"wbc": 12.5', '"wbc": 1' + "0" * 400) + "}")
    assert "'wbc' is an integer of 401 digits" in _error(
        capsys, ["recommend", "--model", model, "--json", str(big)]
    )
    huge = tmp_path / "huge.json"
    huge.write_text('{"wbc": 1' + "0" * 5000 + "}")
    assert "not valid JSON" in _error(capsys, ["recommend", "--model", model, "--json", str(huge)])
    deep = "[" * 100_000
    assert "nested too deeply" in _error(capsys, ["recommend", "--model", model, "--json", deep])
    (tmp_path / "deep.json").write_text(deep)
    from vanco_offline import bundle as runtime

    assert runtime.main([str(seven_features_model_dir / MODEL_FILE), str(tmp_path / "deep.json")]) == 2
    assert "nested too deeply" in capsys.readouterr().err


def test_configs_that_crashed_training_are_one_line_errors(tmp_path, capsys):
    geglu = tmp_path / "geglu.yaml"  # an activation the preset schema listed
    geglu.write_text("extends: seven_features\nnetwork: {activation: geglu}\n")
    argv = ["train", "--data", str(SAMPLE_COHORT), "--steps", "2", "--log-dir", str(tmp_path), "--quiet"]
    assert "activation" in _error(capsys, [*argv, "--config", str(geglu), "--experiment", "a"])
    huge = tmp_path / "batch.yaml"
    huge.write_text("extends: seven_features\nconfig: {batch_size: 1000000000000}\n")
    assert "batch_size" in _error(capsys, [*argv, "--config", str(huge), "--experiment", "b"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.yaml", "geglu.yaml"]  # no run folders


def test_a_non_finite_policy_option_is_an_error(tmp_path, capsys):
    argv = ["simulate", "--policy", "fixed", "--patients", "2", "--out", str(tmp_path / "x.csv")]
    for value in ("nan", "inf", "-inf"):
        assert "finite" in _error(capsys, [*argv, "--option", f"fixed.dose_mg={value}"])
    assert not (tmp_path / "x.csv").exists()


def test_an_internal_error_is_shown_as_one(monkeypatch, capsys):
    import vanco_offline.commands.plot as plot

    def broken(args):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(plot, "run", broken)
    err = _error(capsys, ["plot", "--model", "x"], code=1)
    assert "internal error (TypeError" in err and "--debug" in err and "not a problem with your input" in err
    monkeypatch.setattr(plot, "run", lambda args: {}["missing"])
    assert "internal error (KeyError" in _error(capsys, ["plot", "--model", "x"], code=1)


def _train_process(tmp_path, steps="20000"):
    argv = [sys.executable, "-m", "vanco_offline.cli", "train", "--config", "seven_features", "--data"]
    argv += [
        str(SAMPLE_COHORT),
        "--steps",
        steps,
        "--experiment",
        "run",
        "--log-dir",
        str(tmp_path),
        "--quiet",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [1.0, 1.4, 1.8, 2.2])
def test_ctrl_c_in_the_first_second_of_train_is_one_line(tmp_path, after_s):
    """While torch and d3rlpy are imported: one line, exit status 130. (Before cli.entry, a
    Ctrl-C that landed in torch's import printed the line and still ended by SIGINT, -2, at
    about one interrupt time in seven; hence several times.)"""
    process = _train_process(tmp_path)
    time.sleep(after_s)  # importing torch and d3rlpy
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert "interrupted" in err and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_sigterm_during_train_leaves_no_run_folder(tmp_path):
    process = _train_process(tmp_path)
    deadline = time.monotonic() + 60
    while not (tmp_path / "run").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (tmp_path / "run").exists()
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and "Traceback" not in err, err
    assert "terminated; nothing saved" in err and not (tmp_path / "run").exists()
    # The experiment name is free again.
    assert (
        cli.main(
            [
                "train",
                "--config",
                "seven_features",
                "--data",
                str(SAMPLE_COHORT),
                "--steps",
                "5",
                "--experiment",
                "run",
                "--log-dir",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 0
    )
