"""Synthetic cohorts: schema, conversion, determinism, mixtures, replayed behaviour probabilities."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from vanco_pk.targets import COVARIATES, FEATURES

from vanco_offline.cli import main
from vanco_offline.data import convert, load_table, validate
from vanco_offline.data.cohort import generate_cohort, score_table

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample_cohort.csv"
MIXTURE = {"clinician": 0.4, "mipd": 0.2, "oracle": 0.2, "fixed": 0.1, "random": 0.1}


@pytest.fixture(scope="module")
def mixed() -> pd.DataFrame:
    return generate_cohort(20, MIXTURE, seed=3, level_missing_prob=0.4)


def test_cohort_is_in_the_schema_and_converts_without_exclusions(mixed):
    stays = 20
    assert len(mixed) == stays * 15 and mixed["stay_id"].nunique() == stays
    for column in (
        "stay_id",
        "step",
        "time_h",
        *FEATURES,
        "dose_mg",
        "reward",
        "done",
        "behavior_prob",
        *COVARIATES,
    ):
        assert column in mixed.columns
    last = mixed.groupby("stay_id").cumcount(ascending=False).to_numpy() == 0
    assert mixed["reward"][last].isna().all() and mixed["reward"][~last].notna().all()
    assert not mixed["done"].any()
    assert ((mixed["behavior_prob"] > 0) & (mixed["behavior_prob"] <= 1)).all()
    # A level is NaN only before the first measurement of the stay.
    first = mixed["vanco_level"].notna().groupby(mixed["stay_id"]).cummax()
    assert mixed["vanco_level"][first].notna().all()
    validate(mixed, fill_unmeasured_level=True)
    for action in ("continuous", "discrete"):
        result = convert(mixed, action, fill_unmeasured_level=True)
        assert result.report.exclusions == ()
        assert result.report.transitions_out == len(mixed) - stays
        assert (
            "behavior_policy" in result.report.ignored_columns
            and "true_auc24" in result.report.ignored_columns
        )


def test_mixture_shares_are_exact_and_recorded_per_stay(mixed):
    per_stay = mixed.groupby("stay_id")["behavior_policy"]
    assert (per_stay.nunique() == 1).all()
    counts = per_stay.first().value_counts().to_dict()
    assert counts == {"clinician": 8, "mipd": 4, "oracle": 4, "fixed": 2, "random": 2}


def test_same_seed_same_cohort_other_seed_other_cohort():
    a = generate_cohort(4, "clinician", seed=5, level_missing_prob=0.5)
    b = generate_cohort(4, "clinician", seed=5, level_missing_prob=0.5)
    pd.testing.assert_frame_equal(a, b)
    c = generate_cohort(4, "clinician", seed=6, level_missing_prob=0.5)
    assert not np.allclose(a["weight_kg"], c["weight_kg"])
    # Stay i does not depend on the size of the cohort.
    d = generate_cohort(6, "clinician", seed=5, level_missing_prob=0.5)
    pd.testing.assert_frame_equal(a, d[d["stay_id"] < 4])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_replaying_a_written_cohort_reproduces_behavior_prob_exactly(mixed, tmp_path, suffix):
    path = tmp_path / f"cohort{suffix}"
    (mixed.to_csv(path, index=False) if suffix == ".csv" else mixed.to_parquet(path, index=False))
    table = load_table(path)
    for name, stays in table.groupby("behavior_policy", sort=False):
        scores = score_table(stays, name)
        np.testing.assert_array_equal(scores.prob, stays["behavior_prob"].to_numpy())
        assert scores.pmf.shape == (len(stays), 13)
        np.testing.assert_allclose(scores.pmf.sum(axis=1), 1.0)


def test_scoring_other_policies_on_logged_stays(mixed):
    clinician_stays = mixed[mixed["behavior_policy"] == "clinician"]
    random = score_table(clinician_stays, "random")
    np.testing.assert_allclose(random.prob, 1 / 13)
    mipd = score_table(clinician_stays, "mipd")
    assert set(np.unique(mipd.prob)) <= {0.0, 1.0} and 0 < mipd.prob.mean() < 1


def test_bad_input_raises_clear_errors(mixed):
    with pytest.raises(ValueError, match="n_patients"):
        generate_cohort(0)
    with pytest.raises(ValueError, match="unknown policy"):
        generate_cohort(2, {"clinician": 0.5, "expert": 0.5})
    with pytest.raises(ValueError, match="weights must be > 0"):
        generate_cohort(2, {"clinician": 1.0, "random": -0.1})
    with pytest.raises(ValueError, match="does not use"):
        generate_cohort(2, "clinician", policy_options={"mipd": {"target_auc": 450}})
    with pytest.raises(ValueError, match="unknown option"):
        generate_cohort(2, "clinician", policy_options={"clinician": {"noise": 1}})
    stay = mixed[mixed["stay_id"] == mixed["stay_id"].iloc[0]].copy()
    off = stay.copy()
    off.iloc[3, off.columns.get_loc("dose_mg")] = 1100.0
    with pytest.raises(ValueError, match=r"1100 mg in stay .* \(row 3\) is off the 250 mg grid"):
        score_table(off, "clinician")
    moved = stay.copy()
    moved.iloc[5, moved.columns.get_loc("weight_kg")] += 1.0
    with pytest.raises(ValueError, match="covariate 'weight_kg' changes within stay"):
        score_table(moved, "clinician")
    with pytest.raises(ValueError, match="needs the ground-truth column"):
        score_table(stay.drop(columns=["true_cl"]), "oracle")
    with pytest.raises(ValueError, match="lacks covariate"):
        score_table(stay.drop(columns=["age"]), "clinician")
    with pytest.raises(ValueError, match="must increase within each stay"):
        score_table(stay.iloc[::-1], "clinician")


def test_committed_sample_cohort_is_small_valid_and_clinician_generated():
    assert SAMPLE.stat().st_size < 1_000_000
    table = load_table(SAMPLE)
    assert table["stay_id"].nunique() == 150 and len(table) - 150 == 2100
    assert set(table["behavior_policy"]) == {"clinician"}
    assert 0.3 < table.loc[table["step"] > 0, "level_measured"].mean() < 0.7  # missing levels
    assert convert(table, "discrete", fill_unmeasured_level=True).report.exclusions == ()
    # Regenerating with the documented command gives the same table (so the code and file agree).
    np.testing.assert_array_equal(score_table(table, "clinician").prob, table["behavior_prob"].to_numpy())


def test_simulate_command_writes_a_table(tmp_path, capsys):
    out = tmp_path / "c.csv"
    code = main(
        [
            "simulate",
            "--patients",
            "6",
            "--mixture",
            "clinician=0.5,random=0.5",
            "--out",
            str(out),
            "--quiet",
            "--option",
            "clinician.miss_prob=0.5",
            "--missing-prob",
            "0.3",
        ]
    )
    assert code == 0 and "6 stays, 84 transitions" in capsys.readouterr().out
    table = load_table(out)
    assert table.groupby("behavior_policy")["stay_id"].nunique().to_dict() == {"clinician": 3, "random": 3}
    assert main(["simulate", "--patients", "2", "--out", str(tmp_path / "c.txt")]) == 2
    mixture = ["simulate", "--patients", "2", "--mixture", "clinician", "--out", str(out), "--overwrite"]
    assert main(mixture) == 2
    assert "NAME=WEIGHT" in capsys.readouterr().err
