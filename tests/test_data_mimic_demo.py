"""MIMIC-IV extraction on the real MIMIC-IV Clinical Database Demo v2.2 (tests/data/mimic_demo, ODbL).

Counts are recomputed here with pandas straight from the raw files, independently of the
extractor's SQL; the dose and stay ledgers must account for every IV record in an ICU stay.
"""

import contextlib
import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vanco_offline.cli import main

duckdb = pytest.importorskip("duckdb")
from vanco_offline.data.mimic import extract_mimic  # noqa: E402

DEMO = Path(__file__).parent / "data" / "mimic_demo"


def raw(name: str) -> pd.DataFrame:
    module = "icu" if name in ("icustays", "inputevents", "procedureevents") else "hosp"
    return pd.read_csv(DEMO / module / f"{name}.csv.gz", low_memory=False)


@pytest.fixture(scope="module")
def demo():
    return extract_mimic(DEMO, fill_missing_vitals=True)


def _icu_stay(subject: pd.Series, time: pd.Series, stays: pd.DataFrame) -> pd.Series:
    out = pd.Series(pd.NA, index=subject.index, dtype="Int64")
    for st in stays.itertuples():
        hit = (subject == st.subject_id) & (time >= st.intime) & (time < st.outtime)
        out[hit] = st.stay_id
    return out


def test_counts_agree_with_pandas_on_the_raw_files(demo):
    stays = raw("icustays")
    ie = raw("inputevents")
    ie = ie[ie.itemid == 225798]
    em = raw("emar")
    em = em[em.medication.str.lower().str.contains("vancomycin", na=False)]
    r = demo.report
    assert r.stays_in_icu == stays.stay_id.nunique() == 140
    assert r.records["inputevents 225798 rows"] == len(ie) == 308
    assert (
        r.records["  IV order category"] == int((ie.ordercategoryname == "08-Antibiotics (IV)").sum()) == 236
    )
    assert r.records["eMAR vancomycin events"] == len(em)
    given = em.event_txt.str.lower().isin(["administered", "delayed administered", "started"])
    assert r.records["  not an administration (Not Given, Hold, Stopped, ...)"] == int((~given).sum())
    # the report adds up
    assert r.doses["IV doses"] == r.doses_used + sum(r.doses_left_out.values())
    assert r.stays_with_vancomycin == r.stays_kept + sum(r.stays_dropped.values())
    assert r.rows == len(demo.table) and r.stays_kept == demo.table.stay_id.nunique()
    assert (
        len(demo.stays) == r.stays_with_vancomycin and (demo.stays.status != "dropped").sum() == r.stays_kept
    )


def test_every_iv_dose_in_an_icu_stay_is_used_or_left_out_with_a_reason(demo):
    stays = raw("icustays")
    stays[["intime", "outtime"]] = stays[["intime", "outtime"]].apply(pd.to_datetime)
    ledger = demo.doses
    ie = raw("inputevents")
    ie = ie[(ie.itemid == 225798) & (ie.ordercategoryname == "08-Antibiotics (IV)")]
    em = raw("emar")
    rx_route = raw("prescriptions").drop_duplicates("pharmacy_id").set_index("pharmacy_id")["route"]
    em = em[
        (em.medication == "Vancomycin")
        & em.event_txt.isin(["Administered", "Delayed Administered", "Started"])
    ]
    em = em[em.pharmacy_id.map(rx_route).eq("IV")]
    em_stay = _icu_stay(em.subject_id, pd.to_datetime(em.charttime), stays)
    em = em[em_stay.notna()]
    assert len(ie) == 236 and len(em) > 100
    records = set(ledger.record)
    assert all(f"emar:{e}" in records for e in em.emar_id)
    ie_records = ledger[ledger.source == "inputevents"]
    assert (ie_records.route == "IV").sum() == len(ie)
    iv = ledger[
        ledger.record.isin({f"emar:{e}" for e in em.emar_id})
        | (ledger.source == "inputevents") & (ledger.route == "IV")
    ]
    assert iv.fate.notna().all() and (iv.fate != "").all()
    used = ledger[ledger.fate == "used"]  # with the ward doses of a course that began before the ICU
    assert len(used) == demo.report.doses_used and set(iv.record[iv.fate == "used"]) <= set(used.record)
    # the table's doses are exactly the sums of the used doses of each row
    sums = used.groupby(["table_stay", "table_step"]).mg.sum()
    table = demo.table.set_index(["stay_id", "step"]).dose_mg
    given = table[table.fillna(0) > 0]
    assert len(given) == len(sums)
    np.testing.assert_allclose(given.sort_index().to_numpy(), sums.sort_index().to_numpy())
    # the dropped stays are each named with a reason
    dropped = demo.stays[demo.stays.status == "dropped"]
    assert (dropped.reason.str.len() > 0).all()


def test_no_oral_dose_appears(demo):
    ledger = demo.doses
    used = ledger[ledger.fate == "used"]
    assert (used.route == "IV").all()
    ie = raw("inputevents")
    oral = ie[(ie.itemid == 225798) & (ie.ordercategoryname == "09-Antibiotics (Non IV)")]
    assert len(oral) == 72
    oral_records = ledger[(ledger.source == "inputevents") & (ledger.route == "non-IV")]
    assert len(oral_records) == 72 and (oral_records.fate == "not IV").all()
    rx = raw("prescriptions")
    oral_pharmacy = set(rx.loc[rx.route.isin(["PO/NG", "ORAL", "PR"]), "pharmacy_id"])
    em = raw("emar")
    oral_emar = {f"emar:{e}" for e in em.loc[em.pharmacy_id.isin(oral_pharmacy), "emar_id"]}
    assert oral_emar and not (set(used.record) & oral_emar)
    # issue 25 finding 1: stay 34807493 started on an oral dose charted with an IV order's mg
    first = demo.table[demo.table.stay_id == 34807493].iloc[0]
    t0 = used[used.table_stay == 34807493].t.min()
    assert (
        first.decision_time == t0
        and (used[used.table_stay == 34807493].source.isin(["inputevents", "emar"])).all()
    )


def _copy(tmp: Path, transform) -> Path:
    root = tmp / "mimic"
    for module in ("hosp", "icu"):
        (root / module).mkdir(parents=True)
        for path in sorted((DEMO / module).glob("*.csv.gz")):
            transform(path, root / module)
    return root


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.table.reset_index(drop=True), b.table.reset_index(drop=True))
    key = ["record"]
    pd.testing.assert_frame_equal(
        a.doses.sort_values(key).reset_index(drop=True), b.doses.sort_values(key).reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(a.stays.reset_index(drop=True), b.stays.reset_index(drop=True))
    assert str(a.report).split("  tables:")[0].replace(str(a.report.mimic_dir), "") == str(b.report).split(
        "  tables:"
    )[0].replace(str(b.report.mimic_dir), "")


@pytest.mark.slow
def test_shuffled_rows_and_parquet_give_the_same_output(demo, tmp_path):
    rng = np.random.default_rng(0)

    def shuffle(path, folder):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.sample(frac=1.0, random_state=rng.integers(2**31)).to_csv(folder / path.name, index=False)

    shuffled = extract_mimic(_copy(tmp_path / "shuffled", shuffle), fill_missing_vitals=True)
    _same(demo, shuffled)

    def parquet(path, folder):
        out = folder / path.name.replace(".csv.gz", ".parquet")
        duckdb.execute(f"COPY (SELECT * FROM read_csv('{path}')) TO '{out}' (FORMAT parquet)")

    as_parquet = extract_mimic(_copy(tmp_path / "parquet", parquet), fill_missing_vitals=True)
    _same(demo, as_parquet)


def test_out_never_replaces_a_file_or_writes_into_the_input(tmp_path, capsys):
    out = tmp_path / "stays.csv"
    out.write_text("precious")
    assert main(["extract", "mimic", "--mimic-dir", str(DEMO), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "precious"
    inside = DEMO / "hosp" / "patients.csv.gz"
    before = inside.read_bytes()
    for target in (inside, DEMO / "new.csv"):
        assert main(["extract", "mimic", "--mimic-dir", str(DEMO), "--out", str(target), "--overwrite"]) == 2
        assert "inside --mimic-dir" in capsys.readouterr().err
    assert inside.read_bytes() == before and not (DEMO / "new.csv").exists()


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-12"])
def test_interval_must_be_a_positive_finite_number(tmp_path, capsys, value):
    out = tmp_path / "t.csv"
    code = main(["extract", "mimic", "--mimic-dir", str(DEMO), "--out", str(out), f"--interval-h={value}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--interval-h" in err[0] and not out.exists()


@pytest.mark.slow
def test_a_folder_name_with_glob_characters_is_read_exactly(tmp_path):
    site = tmp_path / "site[1]"
    shutil.copytree(DEMO, site)
    other = tmp_path / "site1"  # what the glob site[1] would match
    other.mkdir()
    result = extract_mimic(site, fill_missing_vitals=True)
    assert result.report.stays_kept > 0
    shutil.rmtree(site / "icu")
    (site / "icu").mkdir()
    shutil.copytree(DEMO / "icu", other / "icu")
    with pytest.raises(ValueError, match="missing table"):
        extract_mimic(site)


@pytest.mark.slow
def test_end_to_end_on_the_demo_without_edits(tmp_path):
    """extract, convert (as printed), train residual, evaluate (twin, no truth), recommend, export."""

    def run(*argv: str) -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = main(list(argv))
        assert code == 0, (argv, buf.getvalue()[-2000:])
        return buf.getvalue()

    out = tmp_path / "demo.csv"
    printed = run("extract", "mimic", "--mimic-dir", str(DEMO), "--out", str(out), "--fill-missing-vitals")
    suggestion = next(line for line in printed.splitlines() if line.startswith("next: vanco-offline convert"))
    run(*suggestion.removeprefix("next: vanco-offline ").split())
    logs = tmp_path / "logs"
    run(
        "train",
        "--config",
        "residual",
        "--data",
        str(out),
        "--steps",
        "20",
        "--experiment",
        "r",
        "--log-dir",
        str(logs),
        "--impute-max-age-h",
        "24",
        "--quiet",
    )
    model = str(logs / "r")
    report = run(
        "evaluate", "--model", model, "--data", str(out), "--twin-prior", "published", "--fqe-steps", "20"
    )
    assert "twin" in report
    table = pd.read_csv(out)
    every = run("recommend", "--model", model, "--samples", str(len(table)), "--data", str(out))
    assert f"{len(table)} rows (greedy)" in every  # one recommendation per row of the table
    late = int(table.index[table.step == 6][0])  # after the first day
    for row in (0, late, len(table) - 1):
        assert "recommended dose" in run("recommend", "--model", model, "--csv", str(out), "--row", str(row))
    run("export", "--model", model, "--format", "bundle", "--out", str(tmp_path / "bundle.safetensors"))


def test_levels_weights_and_labs_respect_their_limits(demo):
    table = demo.table
    level = table.vanco_level.notna()
    assert (table.vanco_level_age_h[level] <= 72.0).all() and table.vanco_level_age_h[~level].isna().all()
    assert (
        table.vanco_level_age_h[level] <= table.time_h[level]
    ).all()  # drawn since the course's first dose
    assert not (
        table.step.eq(0) & level & ~table.level_measured
    ).any()  # no level of an earlier stay at step 0
    # labs by subject and time: a creatinine with no hadm_id in labevents reaches the table
    labs = raw("labevents")
    orphan = labs[(labs.itemid == 50912) & labs.hadm_id.isna() & labs.subject_id.isin(table.subject_id)]
    orphan_t = pd.to_datetime(orphan.charttime)
    rows = table.merge(orphan.assign(charttime=orphan_t), on="subject_id")
    age = (pd.to_datetime(rows.decision_time) - rows.charttime) / pd.Timedelta(hours=1)
    hit = rows[
        (age >= 0) & (age < np.where(rows.step == 0, 24.0, 12.0)) & np.isclose(rows.creatinine, rows.valuenum)
    ]
    assert len(hit) > 0
    assert set(demo.report.covariate_sources) <= {
        "weight_kg inputevents.patientweight",
        "height_cm omr",
        "height_cm none",
    }


@pytest.mark.slow
def test_hour_rounded_order_times_and_the_default_presets_data(demo):
    strict = extract_mimic(DEMO, fill_missing_vitals=True, order_tolerance_h=1e-6)
    unknown = "counted in doses, no IV vancomycin order in mg then"
    assert (strict.doses.fate == unknown).sum() > (demo.doses.fate == unknown).sum()
    assert strict.report.doses_used < demo.report.doses_used
    # dialysis is constant within a stay, as the PK features of the default and residual presets need
    assert (demo.table.groupby("stay_id").dialysis.nunique() == 1).all() and demo.table.dialysis.sum() > 0
    from vanco_offline.data import CarryForward, convert

    result = convert(
        demo.table,
        "continuous",
        impute=CarryForward(max_age_h=24),
        fill_unmeasured_level=True,
        covariates=True,
        last_dose=True,
        pk_features=True,
        reward="exposure",
    )
    assert result.report.transitions_out > 300
