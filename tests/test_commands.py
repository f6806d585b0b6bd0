"""Each subcommand on the sample cohort, including the bad input a user will give it."""

import json
import math
from pathlib import Path

import pytest
from conftest import SAMPLE_COHORT

from vanco_offline import cli
from vanco_offline.data import load_table
from vanco_offline.ope.report import coverage_label


def _error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_train_writes_logs_model_and_metadata(trained_model_dir: Path):
    assert (trained_model_dir / "model.d3").is_file()
    meta = json.loads((trained_model_dir / "model.json").read_text())
    # The safe primary file and the hashes that let a trusted pickle be checked before opening.
    from vanco_offline.trained import sha256

    for name in ("model.safetensors", "model.d3"):
        assert meta["files"][name] == sha256(trained_model_dir / name)
    assert meta["observation_names"][:2] == ["vanco_level", "creatinine"]
    assert meta["data"]["transitions"] == 2100
    assert meta["training"]["n_steps"] == 300
    assert (trained_model_dir / "greedy_q.csv").is_file()  # the seed's diagnostics, logged by d3rlpy


def test_train_bad_input(capsys, tmp_path):
    err = _error(capsys, ["train", "--config", "no-such-preset"])
    assert "no-such-preset" in err and "default" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: vanco_iql\nconfig: [unclosed\n")
    assert "bad.yaml" in _error(capsys, ["train", "--config", str(bad)])
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("extends: default\nconfig:\n  expectille: 0.8\n")
    assert "expectille" in _error(capsys, ["train", "--config", str(unknown)])
    # The default preset's PK replay needs times and covariates; the error names them and the way out.
    minimal = tmp_path / "minimal.csv"
    table = load_table(SAMPLE_COHORT)
    table.drop(columns=["time_h", "weight_kg", "age", "sex", "height_cm", "dialysis"]).to_csv(
        minimal, index=False
    )
    err = _error(capsys, ["train", "--data", str(minimal), "--steps", "10"])
    assert "['time_h', 'weight_kg', 'age', 'sex', 'dialysis']" in err and "--config seven_features" in err


def test_train_missing_data_file(capsys, tmp_path):
    err = _error(capsys, ["train", "--data", str(tmp_path / "none.csv")])
    assert "none.csv" in err


def test_recommend_from_flags(seven_features_model_dir, trained_model_dir, capsys):
    argv = [
        "recommend",
        "--model",
        str(seven_features_model_dir),
        "--vanco-level",
        "12",
        "--creatinine",
        "1.0",
        "--wbc",
        "12",
        "--bun",
        "15",
        "--temperature",
        "38.2",
        "--sbp",
        "115",
        "--heart-rate",
        "95",
        "--weight-kg",
        "80",
        "--age",
        "60",
        "--sex",
        "0",
        "--dialysis",
        "0",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "recommended dose" in out and "learned Q of alternatives" in out
    # The default model's observation holds the previous dose and the PK features: one state
    # cannot give them, and the error says what to give instead.
    argv[2] = str(trained_model_dir)
    err = _error(capsys, argv)
    assert "needs the stay's dose history: give --csv" in err and "pk_auc24" in err


def test_recommend_from_csv_uses_the_stay_history(trained_model_dir, capsys, tmp_path):
    output = tmp_path / "rec.json"
    argv = [
        "recommend",
        "--model",
        str(trained_model_dir),
        "--csv",
        str(SAMPLE_COHORT),
        "--row",
        "40",
        "--output",
        str(output),
    ]
    assert cli.main(argv) == 0
    result = json.loads(output.read_text())
    assert result["mipd_basis"].startswith("MAP fit")
    assert 0.0 <= result["dose_mg"] <= 3000.0


def test_recommend_clinical_cases_flag_what_they_must(trained_model_dir, capsys, tmp_path):
    output = tmp_path / "cases.json"
    assert (
        cli.main(["recommend", "--model", str(trained_model_dir), "--clinical", "--output", str(output)]) == 0
    )
    cases = {row["case"]: row for row in json.loads(output.read_text())}
    toxic = cases["toxic level"]  # a trough of 32 mg/L: hold, no dose beside the advice
    assert (
        toxic["held"] and toxic["dose_mg"] == 0.0 and any("above 20 mg/L" in c for c in toxic["clipped_by"])
    )
    assert cases["dialysis"]["outside_training_support"], "the sample cohort has no dialysis-range creatinine"
    for row in cases.values():
        assert row["dose_mg"] <= 3000.0


def test_recommend_samples(trained_model_dir, capsys):
    argv = ["recommend", "--model", str(trained_model_dir), "--samples", "5", "--data", str(SAMPLE_COHORT)]
    assert cli.main(argv) == 0
    assert "5 rows (greedy)" in capsys.readouterr().out


def test_recommend_bad_input(seven_features_model_dir, capsys, tmp_path):
    model = str(seven_features_model_dir)
    err = _error(capsys, ["recommend", "--model", model, "--json", '{"vanco_level": 12, "creatinine": 1.0}'])
    assert "lacks the feature 'wbc'" in err
    state = {
        "vanco_level": 12,
        "creatinine": 1.0,
        "wbc": 9,
        "bun": 15,
        "temperature": 101.3,
        "sbp": 120,
        "heart_rate": 80,
    }
    err = _error(capsys, ["recommend", "--model", model, "--json", json.dumps(state)])
    assert "temperature = 101.3" in err and "Fahrenheit" in err
    err = _error(capsys, ["recommend", "--model", model, "--json", "{not json"])
    assert "--json" in err
    foreign = tmp_path / "foreign.d3"
    foreign.write_text("hello")
    assert "--trust-pickle" in _error(capsys, ["recommend", "--model", str(foreign), "--clinical"])
    from vanco_offline.trained import sha256

    argv = ["recommend", "--model", str(foreign), "--clinical", "--trust-pickle", sha256(foreign)]
    assert "not opened" in _error(capsys, argv)  # no model.json beside it describes the model
    assert "does not exist" in _error(capsys, ["recommend", "--model", str(tmp_path / "x.d3"), "--clinical"])


def test_export_bundle_and_onnx(trained_model_dir, capsys, tmp_path):
    bundle = tmp_path / "policy.safetensors"
    assert (
        cli.main(["export", "--model", str(trained_model_dir), "--format", "bundle", "--out", str(bundle)])
        == 0
    )
    assert bundle.is_file()
    err = _error(
        capsys,
        [
            "export",
            "--model",
            str(trained_model_dir),
            "--format",
            "bundle",
            "--out",
            str(tmp_path / "policy.onnx"),
        ],
    )
    assert ".safetensors" in err


@pytest.mark.slow
def test_plot_writes_every_figure(trained_model_dir, capsys, tmp_path):
    argv = ["plot", "--model", str(trained_model_dir), "--data", str(SAMPLE_COHORT), "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    for name in ("training_curves", "dose_response", "dose_histogram", "pk_profiles"):
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "--what" in _error(capsys, ["plot", "--model", str(trained_model_dir), "--what", "violin"])


@pytest.mark.slow
def test_evaluate_reports_diagnostics_ope_and_truth(trained_model_dir, capsys, tmp_path):
    import pandas as pd

    output = tmp_path / "eval.json"
    cohort = pd.read_csv(SAMPLE_COHORT)
    data = tmp_path / "stays.csv"
    cohort[cohort["stay_id"].isin(cohort["stay_id"].unique()[:60])].to_csv(data, index=False)
    argv = [
        "evaluate",
        "--model",
        str(trained_model_dir),
        "--data",
        str(data),
        "--truth",
        "--missing-prob",
        "0.5",
        "--fqe-steps",
        "300",
        "--twin-prior",
        "published",
        "--output",
        str(output),
    ]
    assert cli.main(argv) == 0
    result = json.loads(output.read_text())
    assert set(result["diagnostics"]) == {
        "greedy_q",
        "mean_v",
        "mc_return",
        "mean_reward",
        "relative_improvement",
        "action_saturation",
    }
    assert set(result["ope"]) == {"fqe", "twin", "wis", "wdr"}
    for estimate in result["ope"].values():
        assert all(map(math.isfinite, estimate.values())) and estimate["low"] <= estimate["high"]
    assert result["truth"]["std_error"] > 0
    # The published-prior twin (the band's refit is the demo's test); its own coverage is quoted.
    assert result["ope_labels"]["twin"]["interval"] == coverage_label("twin")
    assert "not a vanco-offline model" in _error(capsys, ["evaluate", "--model", str(SAMPLE_COHORT)])


def test_evaluate_says_when_the_twins_prior_cannot_be_refitted(trained_model_dir, capsys, tmp_path):
    import pandas as pd

    table = pd.read_csv(SAMPLE_COHORT)
    few = tmp_path / "few.csv"
    table[table["stay_id"].isin(table["stay_id"].unique()[:5])].to_csv(few, index=False)
    argv = ["evaluate", "--model", str(trained_model_dir), "--data", str(few), "--fqe-steps", "5"]
    message = _error(capsys, argv)
    assert "--twin-prior band" in message and "--twin-prior published" in message
