"""Adversarial use of every subcommand: nothing overwritten, nothing silently guessed, one-line errors."""

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import SAMPLE_COHORT, SEVEN_FEATURES

from vanco_offline import cli

STATE = SEVEN_FEATURES
ELDERLY = {"weight_kg": 55.0, "age": 88.0, "sex": 1, "dialysis": 0, "height_cm": 158.0}


def _error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dose(capsys, model, state, *extra) -> float:
    assert cli.main(["recommend", "--model", str(model), "--json", json.dumps(state), *extra]) == 0
    return float(capsys.readouterr().out.split("recommended dose")[1].split("mg")[0])


# --- outputs: never overwritten without --overwrite, never an input ---------------------------------


def test_convert_never_overwrites_its_input(tmp_path, capsys):
    table = tmp_path / "my.csv"
    shutil.copy(SAMPLE_COHORT, table)
    before = _digest(table)
    for extra in ([], ["--overwrite"]):
        argv = ["convert", "--data", str(table), "--fill-unmeasured-level", "--out", str(table), *extra]
        assert "would overwrite the input" in _error(capsys, argv)
    out = tmp_path / "data.h5"
    out.write_text("precious")
    argv = ["convert", "--data", str(table), "--fill-unmeasured-level", "--out", str(out)]
    assert "--overwrite" in _error(capsys, argv)
    assert _digest(table) == before and out.read_text() == "precious"


def test_simulate_export_recommend_plot_evaluate_refuse_existing_outputs(
    seven_features_model_dir, tmp_path, capsys
):
    model = str(seven_features_model_dir)
    existing = tmp_path / "existing.csv"
    existing.write_text("precious")
    state = tmp_path / "state.json"
    state.write_text(json.dumps(STATE))
    cases = [
        ["simulate", "--patients", "2", "--out", str(existing)],
        ["export", "--model", model, "--out", str(tmp_path / "existing.csv")],
        ["recommend", "--model", model, "--json", str(state), "--output", str(existing)],
        ["evaluate", "--model", model, "--output", str(existing)],
    ]
    for argv in cases:
        assert "already exists; pass --overwrite" in _error(capsys, argv)
    assert existing.read_text() == "precious"
    # An output that is one of the command's inputs is refused even with --overwrite.
    argv = ["recommend", "--model", model, "--json", str(state), "--output", str(state), "--overwrite"]
    assert "would overwrite the input" in _error(capsys, argv)
    argv = [
        "export",
        "--model",
        model,
        "--out",
        str(seven_features_model_dir / "model.safetensors"),
        "--overwrite",
    ]
    assert "would overwrite the input" in _error(capsys, argv)
    (tmp_path / "pk_profiles.png").write_text("precious")
    argv = ["plot", "--model", model, "--what", "pk", "--out", str(tmp_path)]
    assert "--overwrite" in _error(capsys, argv)
    assert (tmp_path / "pk_profiles.png").read_text() == "precious"
    assert "must be a non-negative integer" in _error(capsys, [*argv, "--patient-seed", "-1", "--overwrite"])


def test_export_default_goes_beside_the_model_once(seven_features_model_dir, tmp_path, capsys):
    folder = tmp_path / "m"
    shutil.copytree(seven_features_model_dir, folder, ignore=shutil.ignore_patterns("*.csv", "model_*.d3"))
    assert cli.main(["export", "--model", str(folder)]) == 0
    assert (folder / "policy.safetensors").is_file()
    assert "already exists" in _error(capsys, ["export", "--model", str(folder)])
    assert "would overwrite the input" in _error(
        capsys, ["export", "--model", str(folder), "--out", str(tmp_path)]
    )


def test_simulate_with_overwrite_replaces_whole(tmp_path, capsys):
    out = tmp_path / "c.csv"
    out.write_text("old")
    argv = ["simulate", "--patients", "2", "--days", "1", "--quiet", "--out", str(out), "--overwrite"]
    assert cli.main(argv) == 0
    assert pd.read_csv(out)["stay_id"].nunique() == 2
    assert [p.name for p in tmp_path.iterdir()] == ["c.csv"]  # no partial file left behind


# --- train: plain experiment names, one run per folder, Ctrl-C ------------------------------------


@pytest.mark.parametrize("name", ["../x", "sub/e3", "/tmp/abs", "..", ".hidden", "a b", ""])
def test_experiment_names_are_plain(tmp_path, capsys, name):
    logs = tmp_path / "logs"
    argv = [
        "train",
        "--config",
        "seven_features",
        "--data",
        str(SAMPLE_COHORT),
        "--steps",
        "2",
        "--experiment",
        name,
        "--log-dir",
        str(logs),
        "--quiet",
    ]
    assert "plain folder name" in _error(capsys, argv)
    assert not (tmp_path / "x").exists() and not any(logs.rglob("*.d3"))


def test_a_second_run_cannot_share_the_folder(seven_features_model_dir, capsys):
    before = _digest(seven_features_model_dir / "model.safetensors")
    argv = [
        "train",
        "--config",
        "seven_features",
        "--data",
        str(SAMPLE_COHORT),
        "--steps",
        "2",
        "--experiment",
        seven_features_model_dir.name,
        "--log-dir",
        str(seven_features_model_dir.parent),
    ]
    assert "already exists" in _error(capsys, argv)
    assert _digest(seven_features_model_dir / "model.safetensors") == before


def test_ctrl_c_during_train_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    import vanco_offline.training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vanco_offline.training, "_fit_and_save", interrupted)
    argv = [
        "train",
        "--config",
        "seven_features",
        "--data",
        str(SAMPLE_COHORT),
        "--experiment",
        "run",
        "--log-dir",
        str(tmp_path),
        "--quiet",
    ]
    assert cli.main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"vanco-offline train: interrupted; nothing saved in {tmp_path / 'run'}"
    assert not (tmp_path / "run").exists()


def test_ctrl_c_during_simulate_writes_nothing(tmp_path, capsys, monkeypatch):
    import vanco_offline.data.cohort

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vanco_offline.data.cohort, "generate_cohort", interrupted)
    out = tmp_path / "c.csv"
    assert cli.main(["simulate", "--patients", "2", "--quiet", "--out", str(out)]) == 130
    assert "interrupted; nothing saved to" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# --- configs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("config: {actor_learning_rate: .inf}", "actor_learning_rate=inf"),
        ("config: {critic_learning_rate: .nan}", "critic_learning_rate=nan"),
        ("config: {gamma: 1.5}", "gamma=1.5"),
        ("config: {batch_size: 0}", "batch_size=0"),
        ("config: {expectile: 1.0}", "expectile=1.0"),
        ("config: {weight_temp: -1}", "weight_temp=-1"),
        ("training: {seed: -1}", "training.seed=-1"),
    ],
)
def test_configs_out_of_range_name_file_and_key(tmp_path, capsys, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"extends: default\n{body}\n")
    err = _error(capsys, ["train", "--config", str(path), "--log-dir", str(tmp_path / "logs")])
    assert message in err and "bad.yaml" in err
    assert not (tmp_path / "logs").exists()


def test_extends_cycle_through_parent_folder(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yaml").write_text("extends: ../sub/a.yaml\n")
    assert "cycle" in _error(capsys, ["train", "--config", str(tmp_path / "sub" / "a.yaml")])


# --- recommend: strict states, no ignored flags, the converter's checks on --csv -----------------------


def test_recommend_state_values_are_parsed_strictly(seven_features_model_dir, capsys):
    model = seven_features_model_dir
    capped = _dose(capsys, model, {**STATE, **ELDERLY}, "--maintenance")
    assert _dose(capsys, model, {**STATE, **ELDERLY, "first_dose": "false"}) == capped
    assert _dose(capsys, model, {**STATE, **ELDERLY, "first_dose": False}) == capped
    for sex in ("F", "female", " f ", 1):
        assert _dose(capsys, model, {**STATE, **ELDERLY, "sex": sex}, "--maintenance") == capped
    for sex in (7, None, "x", True):
        err = _error(
            capsys,
            ["recommend", "--model", str(model), "--json", json.dumps({**STATE, **ELDERLY, "sex": sex})],
        )
        assert "sex" in err
    for field, value in (("weight_kg", None), ("age", "88"), ("creatinine", -100), ("first_dose", "maybe")):
        state = json.dumps({**STATE, **ELDERLY, field: value})
        assert field in _error(capsys, ["recommend", "--model", str(model), "--json", state])


def test_flags_beside_json_override_and_say_so(seven_features_model_dir, capsys):
    model = str(seven_features_model_dir)
    argv = [
        "recommend",
        "--model",
        model,
        "--json",
        json.dumps({**STATE, **ELDERLY}),
        "--creatinine",
        "3.5",
        "--maintenance",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "note: --creatinine 3.5 overrides the JSON's creatinine 1.3" in out
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**STATE, **ELDERLY, "creatinine": 3.5}.items()]
    assert cli.main(["recommend", "--model", model, *flags, "--maintenance"]) == 0
    alone = capsys.readouterr().out
    assert (
        out.split("recommended dose")[1].split("\n")[0] == alone.split("recommended dose")[1].split("\n")[0]
    )


def test_flags_beside_csv_are_an_error(seven_features_model_dir, capsys):
    argv = [
        "recommend",
        "--model",
        str(seven_features_model_dir),
        "--csv",
        str(SAMPLE_COHORT),
        "--creatinine",
        "20",
    ]
    assert "--creatinine cannot be combined with --csv" in _error(capsys, argv)


def test_recommend_csv_goes_through_the_converter_checks(seven_features_model_dir, tmp_path, capsys):
    table = pd.read_csv(SAMPLE_COHORT)
    stay = table[table["stay_id"] == 0]
    shuffled = tmp_path / "shuffled.csv"
    stay.iloc[[0, 2, 1, 3, 4]].to_csv(shuffled, index=False)
    # The converter's message lists every problem, one per line, and no traceback.
    assert cli.main(["recommend", "--model", str(seven_features_model_dir), "--csv", str(shuffled)]) == 2
    err = capsys.readouterr().err
    assert "not increasing within a stay" in err and "Traceback" not in err
    duplicated = tmp_path / "duplicated.csv"
    pd.concat([stay.iloc[:3], stay.iloc[[2]]]).to_csv(duplicated, index=False)
    assert cli.main(["recommend", "--model", str(seven_features_model_dir), "--csv", str(duplicated)]) == 2
    err = capsys.readouterr().err
    assert "stay 0" in err and "Traceback" not in err
    ordered = tmp_path / "ordered.csv"
    stay.iloc[:5].to_csv(ordered, index=False)
    assert cli.main(["recommend", "--model", str(seven_features_model_dir), "--csv", str(ordered)]) == 0


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc (a folder nobody can write)")
@pytest.mark.parametrize("fmt", ["bundle", "onnx", "torchscript"])
def test_export_to_an_unwritable_folder_is_one_line(seven_features_model_dir, capsys, fmt):
    suffix = {"bundle": ".safetensors", "onnx": ".onnx", "torchscript": ".pt"}[fmt]
    argv = ["export", "--model", str(seven_features_model_dir), "--format", fmt, "--out", f"/proc/x{suffix}"]
    assert "/proc" in _error(capsys, argv)
