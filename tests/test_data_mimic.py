# ruff: noqa: E501  (the fixture writes MIMIC-IV rows one per line, as wide as the tables)
"""MIMIC-IV extraction: a simulated cohort written as MIMIC-IV tables comes back as the same table.

The fixture writes a small fabricated database in the PhysioNet layout (hosp/, icu/; the real
table and column names, itemids and units, some values in the other unit MIMIC uses: °F,
grams, pounds and inches in omr), plus stays the extraction must leave out or flag.
"""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vanco_offline.cli import main
from vanco_offline.data.cohort import generate_cohort

duckdb = pytest.importorskip("duckdb")
from vanco_offline.data.mimic import extract_mimic  # noqa: E402

BASE = pd.Timestamp("2150-03-01 08:00:00")
LBS = 0.45359237
COLUMNS = [
    "step", "time_h", "vanco_level", "creatinine", "wbc", "bun", "temperature", "sbp", "heart_rate",
    "dose_mg", "done", "level_measured", "weight_kg", "age", "sex", "height_cm", "dialysis",
]  # fmt: skip


EMPTY = {  # header of a table that may have no row
    "procedureevents": ["subject_id", "hadm_id", "stay_id", "caregiver_id", "starttime", "endtime", "storetime",
                        "itemid", "value", "valueuom", "statusdescription"],
    "omr": ["subject_id", "chartdate", "seq_num", "result_name", "result_value"],
    "admissions": ["subject_id", "hadm_id", "admittime", "dischtime", "deathtime"],
    "prescriptions": ["subject_id", "hadm_id", "pharmacy_id", "drug_type", "starttime", "stoptime", "drug",
                      "prod_strength", "form_rx", "dose_val_rx", "dose_unit_rx", "route"],
}  # fmt: skip


def _ids(i: int) -> tuple[int, int, int]:
    return 10_000_000 + i, 20_000_000 + i, 30_000_000 + i


def write_mimic(cohort: pd.DataFrame, root: Path, fmt: str) -> None:
    """Write ``cohort`` (generate_cohort's table) as MIMIC-IV v3 tables under ``root``."""
    t = {name: [] for name in ("icustays", "inputevents", "chartevents", "procedureevents",
                               "labevents", "patients", "omr", "admissions", "prescriptions")}  # fmt: skip
    for i, (_, stay) in enumerate(cohort.groupby("stay_id", sort=True)):
        subject, hadm, stay_id = _ids(i)
        t0 = BASE + pd.Timedelta(days=11 * i)
        intime, outtime = t0 - pd.Timedelta(hours=5), t0 + pd.Timedelta(hours=stay.time_h.max() + 3)
        first = stay.iloc[0]
        t["icustays"].append(dict(subject_id=subject, hadm_id=hadm, stay_id=stay_id, first_careunit="MICU",
                                  last_careunit="MICU", intime=intime, outtime=outtime, los=1.0))  # fmt: skip
        t["admissions"].append(dict(subject_id=subject, hadm_id=hadm, admittime=intime, dischtime=outtime,
                                    deathtime=None))  # fmt: skip
        t["patients"].append(dict(subject_id=subject, gender="F" if first.sex == 1 else "M",
                                  anchor_age=int(first.age), anchor_year=t0.year,
                                  anchor_year_group="2017 - 2019", dod=None))  # fmt: skip
        ce = dict(subject_id=subject, hadm_id=hadm, stay_id=stay_id, caregiver_id=1, warning=0)
        if i % 2 == 0:
            t["chartevents"] += [
                {**ce, "charttime": intime + pd.Timedelta(hours=1), "storetime": intime, "itemid": 226512,
                 "value": str(first.weight_kg), "valuenum": first.weight_kg, "valueuom": "kg"},
                {**ce, "charttime": intime + pd.Timedelta(hours=1), "storetime": intime, "itemid": 226730,
                 "value": str(first.height_cm), "valuenum": first.height_cm, "valueuom": "cm"},
            ]  # fmt: skip
        else:  # omr: pounds and inches, by date
            for seq, (name, value) in enumerate(
                (("Weight (Lbs)", first.weight_kg / LBS), ("Height (Inches)", first.height_cm / 2.54))
            ):
                t["omr"].append(dict(subject_id=subject, chartdate=intime.date(), seq_num=seq + 1,
                                     result_name=name, result_value=repr(float(value))))  # fmt: skip
        if first.dialysis:
            t["procedureevents"].append(dict(subject_id=subject, hadm_id=hadm, stay_id=stay_id, caregiver_id=1,
                                             starttime=intime, endtime=outtime, storetime=intime, itemid=225441,
                                             value=1.0, valueuom="None", statusdescription="FinishedRunning"))  # fmt: skip
        for _, row in stay.iterrows():
            at = t0 + pd.Timedelta(hours=row.time_h)
            if row.dose_mg > 0:
                grams, counted = i % 3 == 1, i % 3 == 2  # MetaVision often counts antibiotics in doses
                amount, unit = (row.dose_mg / 1000, "grams") if grams else (1.0, "dose") if counted else (row.dose_mg, "mg")
                if counted:  # the mg is in the order active then; an oral order beside it is not IV
                    rx = dict(subject_id=subject, hadm_id=hadm, pharmacy_id=len(t["prescriptions"]), drug_type="MAIN",
                              starttime=at - pd.Timedelta(hours=1), stoptime=at + pd.Timedelta(hours=11),
                              drug="Vancomycin", prod_strength="1g Vial", form_rx=None)
                    t["prescriptions"] += [
                        {**rx, "dose_val_rx": f"{row.dose_mg:g}", "dose_unit_rx": "mg", "route": "IV"},
                        {**rx, "starttime": at - pd.Timedelta(minutes=30), "drug": "Vancomycin Oral Liquid",
                         "dose_val_rx": "125", "dose_unit_rx": "mg", "route": "PO/NG"},
                    ]
                t["inputevents"].append(dict(
                    subject_id=subject, hadm_id=hadm, stay_id=stay_id, caregiver_id=1, starttime=at,
                    endtime=at + pd.Timedelta(hours=2), storetime=at, itemid=225798,
                    amount=amount, amountuom=unit,
                    rate=None, rateuom=None, orderid=i, linkorderid=i, ordercategoryname="08-Antibiotics (IV)",
                    patientweight=first.weight_kg, totalamount=250.0, totalamountuom="mL", isopenbag=0,
                    statusdescription="FinishedRunning", originalamount=row.dose_mg, originalrate=0,
                ))  # fmt: skip
            drawn = at - pd.Timedelta(minutes=30)
            labs = [(50912, row.creatinine, "mg/dL"), (51006, row.bun, "mg/dL"), (51301, row.wbc, "K/uL")]
            if row.level_measured:
                labs.append((51009, row.vanco_level, "ug/mL"))
            for itemid, value, unit in labs:
                t["labevents"].append(dict(labevent_id=len(t["labevents"]), subject_id=subject, hadm_id=hadm,
                                           specimen_id=1, itemid=itemid, charttime=drawn, storetime=drawn,
                                           value=str(value), valuenum=value, valueuom=unit, flag=None))  # fmt: skip
            fahrenheit = i % 3 == 0
            temp = row.temperature * 9 / 5 + 32 if fahrenheit else row.temperature
            for itemid, value in ((220045, row.heart_rate), (220050 if i % 2 else 220179, row.sbp),
                                  (223761 if fahrenheit else 223762, temp)):  # fmt: skip
                t["chartevents"].append({**ce, "charttime": at - pd.Timedelta(minutes=15), "storetime": at,
                                         "itemid": itemid, "value": str(value), "valuenum": value,
                                         "valueuom": ""})  # fmt: skip
    # Stays the extraction must leave out or flag, and a rewritten order it must ignore.
    extra = len(cohort.stay_id.unique())
    t0 = BASE + pd.Timedelta(days=11 * extra)
    for k, note in enumerate(("no vancomycin", "volume only", "left within one interval")):
        subject, hadm, stay_id = _ids(extra + k)
        t["icustays"].append(dict(subject_id=subject, hadm_id=hadm, stay_id=stay_id, first_careunit="SICU",
                                  last_careunit="SICU", intime=t0, outtime=t0 + pd.Timedelta(hours=6), los=0.25))  # fmt: skip
        t["patients"].append(dict(subject_id=subject, gender="M", anchor_age=50, anchor_year=t0.year,
                                  anchor_year_group="2017 - 2019", dod=None))  # fmt: skip
        if note != "no vancomycin":
            t["inputevents"].append(dict(
                subject_id=subject, hadm_id=hadm, stay_id=stay_id, caregiver_id=1, starttime=t0 + pd.Timedelta(hours=1),
                endtime=t0 + pd.Timedelta(hours=2), storetime=t0, itemid=225798,
                amount=250.0 if note == "volume only" else 1000.0, amountuom="mL" if note == "volume only" else "mg",
                rate=None, rateuom=None, orderid=1, linkorderid=1, ordercategoryname="08-Antibiotics (IV)",
                patientweight=80.0, totalamount=250.0, totalamountuom="mL", isopenbag=0,
                statusdescription="FinishedRunning", originalamount=1000.0, originalrate=0,
            ))  # fmt: skip
            if note == "volume only":  # and a dose count with no prescription to give its mg
                t["inputevents"].append({**t["inputevents"][-1], "amount": 1.0, "amountuom": "dose"})
    rewritten = dict(t["inputevents"][0])
    rewritten.update(starttime=rewritten["starttime"] + pd.Timedelta(hours=1), statusdescription="Rewritten")
    t["inputevents"].append(rewritten)
    modules = {"icustays": "icu", "inputevents": "icu", "chartevents": "icu", "procedureevents": "icu"}
    for name, rows in t.items():
        folder = root / modules.get(name, "hosp")
        folder.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(rows, columns=EMPTY.get(name) if not rows else None)
        if fmt == "parquet":
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        else:
            frame.to_csv(folder / f"{name}.csv.gz", index=False, date_format="%Y-%m-%d %H:%M:%S")


@pytest.fixture(scope="module")
def cohort():
    table = generate_cohort(8, policy="clinician", seed=5, level_missing_prob=0.4, true_columns=False)
    assert (table.groupby("stay_id").dose_mg.first() > 0).all()  # a loading dose starts every stay
    table.loc[table.stay_id == table.stay_id.unique()[2], "dialysis"] = 1  # one stay on dialysis
    return table


@pytest.mark.parametrize("fmt", ["csv.gz", "parquet"])
def test_simulated_cohort_round_trips_through_mimic_tables(cohort, tmp_path, fmt):
    write_mimic(cohort, tmp_path, fmt)
    table, report = extract_mimic(tmp_path, interval_h=12.0, max_days=7.0)
    n = cohort.stay_id.nunique()
    got = table[table.stay_id < 30_000_000 + n].reset_index(drop=True)
    got["stay_id"] = got.stay_id - 30_000_000
    want = cohort.assign(stay_id=cohort.stay_id.rank(method="dense").astype(int) - 1).reset_index(drop=True)
    # a level is carried at most 72 h (level_max_age_h); the fixture draws it 30 min before the decision
    drawn = want.time_h.where(want.level_measured.astype(bool)).groupby(want.stay_id).ffill()
    want.loc[want.time_h - drawn + 0.5 > 72.0, "vanco_level"] = np.nan
    assert want.vanco_level.isna().sum() > cohort.vanco_level.isna().sum()  # the limit is exercised
    assert got.stay_id.tolist() == want.stay_id.tolist()
    for column in COLUMNS:
        g, w = got[column].to_numpy(dtype=float), want[column].to_numpy(dtype=float)
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=column)
    assert report.stays_in_icu == n + 3 and report.stays_with_vancomycin == n + 2
    assert report.stays_kept == n
    # the two extra stays have no creatinine: the converter could not fill their first row
    assert report.stays_dropped == {"no creatinine within 24 h at the first decision": 2}
    assert report.doses_left_out["rewritten (superseded) inputevents row"] == 1
    assert report.doses_left_out["amount not in mg or g (a volume)"] == 1
    assert report.doses_left_out["counted in doses, no IV vancomycin order in mg then"] == 1
    assert report.doses["IV doses"] == report.doses_used + sum(report.doses_left_out.values())
    counted = cohort[cohort.stay_id.isin(cohort.stay_id.unique()[2::3])]
    assert int((counted.dose_mg > 0).sum()) > 0 and report.ambiguous_orders == 0


def test_extract_command_writes_the_table_and_the_report(cohort, tmp_path, capsys):
    write_mimic(cohort.loc[cohort.stay_id == cohort.stay_id.iloc[0]], tmp_path / "mimic", "csv.gz")
    out = tmp_path / "stays.csv"
    assert main(["extract", "mimic", "--mimic-dir", str(tmp_path / "mimic"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "kept" in printed and "next: vanco-offline convert" in printed
    assert len(pd.read_csv(out)) == 15
    assert out.with_name("stays.doses.csv").is_file() and out.with_name("stays.stays.csv").is_file()


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("absent", "no such folder"),
        ("no_icu", "no icu/ subfolder"),
        ("no_labs", "missing table(s) hosp/labevents"),
        ("bad_column", "icustays.csv.gz: missing column(s) subject_id"),
        ("not_gzip", "not a readable MIMIC-IV table"),
    ],
)
def test_missing_or_malformed_mimic_folder_is_one_line_exit_2(tmp_path, capsys, layout, message):
    root = tmp_path / "mimic"
    if layout != "absent":
        (root / "hosp").mkdir(parents=True)
        if layout != "no_icu":
            (root / "icu").mkdir()
            for name in ("icustays", "inputevents", "chartevents"):
                (root / "icu" / f"{name}.csv.gz").write_bytes(gzip.compress(b"stay_id\n1\n"))
            for name in ("patients", "labevents"):
                (root / "hosp" / f"{name}.csv.gz").write_bytes(gzip.compress(b"x\n1\n"))
            if layout == "no_labs":
                (root / "hosp" / "labevents.csv.gz").unlink()
            if layout == "not_gzip":
                (root / "icu" / "icustays.csv.gz").write_bytes(b"\x00\x01not gzip")
    code = main(["extract", "mimic", "--mimic-dir", str(root), "--out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x.csv").exists()


def test_data_readme_shows_the_sql_that_runs():
    from vanco_offline.data.mimic import extraction_sql

    readme = (Path(__file__).resolve().parents[1] / "data" / "README.md").read_text()
    assert f"```sql\n{extraction_sql()}\n```" in readme
