"""MIMIC-IV (v2.x / v3.x) to the project's dosing table, through DuckDB over the PhysioNet files.

The input is the folder PhysioNet distributes (``hosp/`` and ``icu/``, each table as
``NAME.csv.gz``, ``NAME.csv`` or ``NAME.parquet``), read in place at its exact paths (no
globbing). The output has one row per decision of each ICU stay that received IV
vancomycin; data/README.md ("MIMIC-IV extraction") is the reference for every column.

Doses. An IV dose is an ``icu.inputevents`` row of itemid 225798 whose
``ordercategoryname`` is an IV category ("08-Antibiotics (IV)"), or a ``hosp.emar``
vancomycin administration ("Administered", "Delayed Administered", "Started") whose order
(``prescriptions`` by ``pharmacy_id``; else ``emar_detail.route``) is IV. Oral, enteral
and rectal records never count. A record of each source within ``match_window_h`` of one
of the other (same patient) is the same dose: pairs are made nearest first, one to one,
ties broken by time then record id, and the dose counted once. Its mg: eMAR's mg given
(``emar_detail`` product rows; else the mg due), else inputevents' amount in mg or g, else
(an amount counted in "dose") the mg of the admission's IV vancomycin order active then,
an order starting up to ``order_tolerance_h`` after the dose counting (order times are
rounded to the hour); among several, one started at or before the dose, then the latest
started, then the latest stopping, then the larger ``pharmacy_id``; orders started and
stopped together are one multi-vial dose and their mg add up. A dose whose mg stays unknown
ends its stay at its row (the stay is dropped when it is the first).

Episodes. A stay's course starts at the first IV dose of the run of doses that leads, with
no gap over ``course_gap_h``, to its first ICU dose: vancomycin given on the ward or in the
emergency department before ICU admission is part of the episode (rows before ``intime``
have labs but no ICU charting), so the PK replay's drug-naive start is true. Decisions are
at ``t0 + k * interval_h`` up to the ICU discharge and within ``max_days`` of ``t0``.

Features. Labs (``hosp.labevents``) are matched by subject and time, whatever the
admission. Each feature is its last value at or before the decision within the row's
look-back: ``lookback_h`` at a stay's first row, ``interval_h`` after it; the level
(51009) is the last one drawn since ``t0`` and at most ``level_max_age_h`` old. Then each
stay is checked against the converter's ``CarryForward(max_age_h=lookback_h)``: the stay
is cut before the first row that the converter could not fill (or dropped when that is its
first row), with the reason recorded; ``fill_missing_vitals`` fills vitals that nothing
measured (no ``chartevents``, or rows before ICU admission) with the reference values
:data:`VITAL_REFERENCE` instead, counted.

Covariates per stay: weight (chartevents 226512, else inputevents ``patientweight``, else
the omr weight nearest ``t0`` within ``weight_max_age_days``), height (chartevents 226730,
else omr within 365 days), age, sex, and ``dialysis`` (1 when dialysis ran or was charted
between 24 h before ``t0`` and the episode's end: constant within a stay, as the PK model
takes it); ``dialysis_24h`` per row says whether it ran in the 24 h up to the decision.

Everything left out is in the report, counted by reason, and in two machine-readable
ledgers (:attr:`MimicExtraction.doses`, :attr:`MimicExtraction.stays`): every vancomycin
record of inputevents and eMAR with its fate, and every ICU stay with a vancomycin record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vanco_offline.data.mimic_sql import MIMIC_ITEMS, asof_sql, cohort_sql, extraction_sql, source_sql

__all__ = [
    "MIMIC_ITEMS",
    "MIMIC_TABLES",
    "VITAL_REFERENCE",
    "ExtractionReport",
    "MimicExtraction",
    "extract_mimic",
    "extraction_sql",
    "find_tables",
]

MIMIC_TABLES: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "icustays": ("icu", ("subject_id", "hadm_id", "stay_id", "intime", "outtime"), True),
    "inputevents": (
        "icu",
        (
            "stay_id",
            "starttime",
            "itemid",
            "amount",
            "amountuom",
            "statusdescription",
            "ordercategoryname",
            "orderid",
            "patientweight",
        ),
        True,
    ),
    "labevents": ("hosp", ("subject_id", "itemid", "charttime", "valuenum"), True),
    "patients": ("hosp", ("subject_id", "gender", "anchor_age", "anchor_year"), True),
    "chartevents": ("icu", ("subject_id", "charttime", "itemid", "valuenum"), False),
    "procedureevents": ("icu", ("subject_id", "starttime", "endtime", "itemid"), False),
    "omr": ("hosp", ("subject_id", "chartdate", "result_name", "result_value"), False),
    "prescriptions": (
        "hosp",
        (
            "subject_id",
            "hadm_id",
            "pharmacy_id",
            "starttime",
            "stoptime",
            "drug",
            "dose_val_rx",
            "dose_unit_rx",
            "route",
        ),
        False,
    ),
    "emar": (
        "hosp",
        ("subject_id", "hadm_id", "emar_id", "charttime", "medication", "event_txt", "pharmacy_id"),
        False,
    ),
    "emar_detail": (
        "hosp",
        (
            "emar_id",
            "parent_field_ordinal",
            "dose_due",
            "dose_due_unit",
            "dose_given",
            "dose_given_unit",
            "route",
        ),
        False,
    ),
}
_SUFFIXES = (".csv.gz", ".csv", ".parquet")
_GLOB = set("*?[]{}")
_TYPES = {
    "subject_id": "BIGINT",
    "hadm_id": "BIGINT",
    "stay_id": "BIGINT",
    "itemid": "BIGINT",
    "orderid": "BIGINT",
    "pharmacy_id": "BIGINT",
    "amount": "DOUBLE",
    "valuenum": "DOUBLE",
    "anchor_age": "DOUBLE",
    "anchor_year": "BIGINT",
    "patientweight": "DOUBLE",
    "parent_field_ordinal": "DOUBLE",
    "intime": "TIMESTAMP",
    "outtime": "TIMESTAMP",
    "starttime": "TIMESTAMP",
    "endtime": "TIMESTAMP",
    "stoptime": "TIMESTAMP",
    "charttime": "TIMESTAMP",
    "chartdate": "DATE",
}
#: Reference values written by ``fill_missing_vitals`` where no vital sign was charted.
VITAL_REFERENCE: dict[str, float] = {"heart_rate": 80.0, "sbp": 120.0, "temperature": 37.0}
FEATURES = ("vanco_level", "creatinine", "wbc", "bun", "temperature", "sbp", "heart_rate")
_LABS = ("creatinine", "wbc", "bun")
_GIVEN = ("administered", "delayed administered", "started")
_UNKNOWN_MG = "counted in doses, no IV vancomycin order in mg then"


@dataclasses.dataclass
class ExtractionReport:
    """What the extraction found, kept and left out; every count adds up (see ``__str__``)."""

    mimic_dir: str
    tables: dict[str, str]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    stays_in_icu: int = 0
    stays_with_vancomycin: int = 0
    stays_with_iv_vancomycin: int = 0
    stays_kept: int = 0
    stays_cut: int = 0
    rows: int = 0
    rows_before_icu: int = 0
    single_decision_stays: int = 0
    records: dict[str, int] = dataclasses.field(default_factory=dict)
    doses: dict[str, int] = dataclasses.field(default_factory=dict)
    doses_used: int = 0
    doses_left_out: dict[str, int] = dataclasses.field(default_factory=dict)
    stays_dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    cuts: dict[str, int] = dataclasses.field(default_factory=dict)
    ambiguous_orders: int = 0
    multi_order_doses: int = 0
    mg_disagreements: int = 0
    filled_vitals: dict[str, int] = dataclasses.field(default_factory=dict)
    missing_values: dict[str, int] = dataclasses.field(default_factory=dict)
    covariate_sources: dict[str, int] = dataclasses.field(default_factory=dict)
    absent_tables: list[str] = dataclasses.field(default_factory=list)
    columns_left_out: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        n = lambda v: f"{v:>8,}"  # noqa: E731
        lines = [f"MIMIC-IV extraction from {self.mimic_dir}"]
        if self.absent_tables:
            lines.append(f"  tables absent (what they give stays empty): {', '.join(self.absent_tables)}")
        lines.append("  vancomycin records")
        lines += [f"    {k:<58}{n(v)}" for k, v in self.records.items()]
        lines.append("  IV doses (a dose in both inputevents and eMAR counted once)")
        lines += [f"    {k:<58}{n(v)}" for k, v in self.doses.items()]
        lines.append(f"    {'used in the table':<58}{n(self.doses_used)}")
        lines += [f"    left out: {k:<48}{n(v)}" for k, v in self.doses_left_out.items()]
        if self.multi_order_doses:
            lines.append(
                f"    {'mg summed over orders started and stopped together':<58}{n(self.multi_order_doses)}"
            )
        if self.ambiguous_orders:
            lines.append(
                f"    {'order chosen among orders started together (latest stop)':<58}"
                f"{n(self.ambiguous_orders)}"
            )
        if self.mg_disagreements:
            lines.append(
                f"    {'inputevents mg differed from eMAR (eMAR used)':<58}{n(self.mg_disagreements)}"
            )
        lines.append("  ICU stays")
        lines.append(f"    {'in icustays':<58}{n(self.stays_in_icu)}")
        lines.append(f"    {'with a vancomycin record (any route)':<58}{n(self.stays_with_vancomycin)}")
        lines.append(f"    {'with an IV dose':<58}{n(self.stays_with_iv_vancomycin)}")
        lines += [f"    dropped: {k:<49}{n(v)}" for k, v in self.stays_dropped.items()]
        lines.append(f"    {'kept':<58}{n(self.stays_kept)}  ({self.rows:,} decision rows)")
        if self.rows_before_icu:
            lines.append(
                f"    {'rows before ICU admission (course began outside the ICU)':<58}"
                f"{n(self.rows_before_icu)}"
            )
        if self.stays_cut:
            lines.append(f"    {'of which cut short':<58}{n(self.stays_cut)}")
            lines += [f"      at {k:<53}{n(v)}" for k, v in self.cuts.items()]
        if self.single_decision_stays:
            lines.append(
                f"    {'of which one decision only (the converter lists them)':<58}"
                f"{n(self.single_decision_stays)}"
            )
        if any(self.filled_vitals.values()):
            filled = ", ".join(f"{k} {v:,}" for k, v in self.filled_vitals.items() if v)
            lines.append(f"  vitals filled with reference values (nothing charted): {filled}")
        if any(self.missing_values.values()):
            gaps = ", ".join(f"{k} {v:,}" for k, v in self.missing_values.items() if v)
            lines.append(f"  empty cells (the converter carries them, --impute-max-age-h): {gaps}")
        if self.covariate_sources:
            lines.append(
                "  covariates from: " + ", ".join(f"{k} {v:,}" for k, v in self.covariate_sources.items())
            )
        for column, why in self.columns_left_out.items():
            lines.append(f"  column {column} not written: {why} (the converter needs it in every row)")
        tables = ", ".join(f"{name}={Path(path).name}" for name, path in self.tables.items())
        lines.append(f"  tables: {tables}")
        return "\n".join(lines)


@dataclasses.dataclass
class MimicExtraction:
    """The dosing table, the report and the two ledgers of an extraction."""

    table: pd.DataFrame
    report: ExtractionReport
    doses: pd.DataFrame
    stays: pd.DataFrame

    def __iter__(self) -> Iterator[Any]:  # (table, report) = extract_mimic(...)
        return iter((self.table, self.report))


def find_tables(mimic_dir: str | Path) -> dict[str, Path]:
    """The files of the tables the extraction reads; a ValueError names what is missing."""
    root = Path(mimic_dir)
    if not root.is_dir():
        raise ValueError(
            f"--mimic-dir {root}: no such folder (give the MIMIC-IV folder holding hosp/ and icu/)"
        )
    missing_dirs = [m for m in ("hosp", "icu") if not (root / m).is_dir()]
    if missing_dirs:
        raise ValueError(
            f"--mimic-dir {root}: no {' and no '.join(d + '/' for d in missing_dirs)} subfolder; "
            "expected the PhysioNet MIMIC-IV layout (hosp/labevents.csv.gz, icu/icustays.csv.gz, ...)"
        )
    found: dict[str, Path] = {}
    absent = []
    for name, (module, _, required) in MIMIC_TABLES.items():
        candidates = [root / module / f"{name}{suffix}" for suffix in _SUFFIXES]
        present = [c for c in candidates if c.is_file()]
        if len(present) > 1:
            raise ValueError(
                f"--mimic-dir {root}: {module}/{name} is there as {' and '.join(p.name for p in present)}; "
                "keep one, so that it is clear which is read"
            )
        if present:
            found[name] = present[0]
        elif required:
            absent.append(f"{module}/{name}")
    if absent:
        raise ValueError(
            f"--mimic-dir {root}: missing table(s) {', '.join(absent)} (as {' / '.join(_SUFFIXES)})"
        )
    return found


@contextlib.contextmanager
def _exact_paths(tables: Mapping[str, Path]) -> Iterator[dict[str, Path]]:
    """Paths DuckDB reads literally: a link with a plain name to each file (DuckDB globs ``*?[]{}``)."""
    folder = Path(tempfile.mkdtemp(prefix="vanco_mimic_"))
    try:
        if _GLOB & set(str(folder)):
            raise ValueError(
                f"the temporary folder {folder} has a glob character; set TMPDIR to a plain path"
            )
        links = {}
        for name, path in tables.items():
            suffix = next(s for s in _SUFFIXES if path.name.endswith(s))
            link = folder / f"{name}{suffix}"
            os.symlink(path.resolve(), link)
            links[name] = link
        yield links
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def _reader(path: Path) -> str:
    quoted = str(path).replace("'", "''")
    if path.name.endswith(".parquet"):
        return f"read_parquet('{quoted}')"
    return f"read_csv('{quoted}', header = true, all_varchar = true)"


def _views(con: Any, tables: Mapping[str, Path], links: Mapping[str, Path]) -> None:
    """A typed view per table, with only the columns read; a ValueError names a missing column."""
    for name, link in links.items():
        path = tables[name]
        _, columns, _ = MIMIC_TABLES[name]
        source = _reader(link)
        try:
            present = {row[0].lower() for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        except Exception as exc:  # duckdb raises its own error types for unreadable files
            raise ValueError(f"{path}: not a readable MIMIC-IV table ({str(exc).splitlines()[0]})") from None
        missing = [c for c in columns if c not in present]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} of MIMIC-IV's {name} table")
        select = ", ".join(f"TRY_CAST({c} AS {_TYPES[c]}) AS {c}" if c in _TYPES else c for c in columns)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {select} FROM {source}")


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} = {value}: must be a positive finite number of hours/days")
    return value


def extract_mimic(
    mimic_dir: str | Path,
    interval_h: float = 12.0,
    max_days: float = 7.0,
    *,
    lookback_h: float = 24.0,
    level_max_age_h: float = 72.0,
    course_gap_h: float = 72.0,
    match_window_h: float = 2.0,
    order_tolerance_h: float = 1.0,
    weight_max_age_days: float = 30.0,
    fill_missing_vitals: bool = False,
    memory_limit: str = "2GB",
) -> MimicExtraction:
    """Build the dosing table (one row per decision) from a MIMIC-IV folder.

    Parameters
    ----------
    mimic_dir : the folder with ``hosp/`` and ``icu/`` as PhysioNet distributes them.
    interval_h : hours between decisions (default 12).
    max_days : longest episode, in days from the course's first dose (default 7).
    lookback_h : how far back a stay's first row looks for each feature, and the converter's
        ``--impute-max-age-h`` the table is checked against (default 24).
    level_max_age_h : oldest vancomycin level carried forward (default 72 h).
    course_gap_h : longest gap between two IV doses of one course (default 72 h).
    match_window_h : an inputevents and an eMAR record this close are the same dose (2 h).
    order_tolerance_h : an order may start this long after a dose it gives the mg of (1 h).
    weight_max_age_days : oldest omr weight used (default 30 days from ``t0``).
    fill_missing_vitals : write :data:`VITAL_REFERENCE` where no vital sign was charted.
    memory_limit : DuckDB's memory limit (it spills to a temporary folder beyond it).

    Returns
    -------
    :class:`MimicExtraction`: the table in the schema of data/README.md (plus
    ``level_measured``, ``vanco_level_age_h``, ``in_icu``, ``dialysis_24h``, ``subject_id``,
    ``hadm_id`` and ``decision_time``, which the converter ignores), the report and the
    dose and stay ledgers. It unpacks as ``(table, report)``.
    """
    settings = dict(
        interval_h=_positive("interval_h", interval_h),
        max_days=_positive("max_days", max_days),
        lookback_h=_positive("lookback_h", lookback_h),
        level_max_age_h=_positive("level_max_age_h", level_max_age_h),
        course_gap_h=_positive("course_gap_h", course_gap_h),
        match_window_h=_positive("match_window_h", match_window_h),
        order_tolerance_h=_positive("order_tolerance_h", order_tolerance_h),
        weight_max_age_days=_positive("weight_max_age_days", weight_max_age_days),
        fill_missing_vitals=bool(fill_missing_vitals),
    )
    try:
        import duckdb
    except ImportError:
        from vanco_offline.extras import missing_extra

        raise missing_extra("duckdb", "mimic", "extract mimic") from None
    tables = find_tables(mimic_dir)
    report = ExtractionReport(str(mimic_dir), {k: str(v) for k, v in tables.items()}, settings)
    report.absent_tables = [f"{MIMIC_TABLES[n][0]}/{n}" for n in MIMIC_TABLES if n not in tables]
    have = {name: name in tables for name in MIMIC_TABLES}
    spill = tempfile.mkdtemp(prefix="vanco_duckdb_")
    try:
        with _exact_paths(tables) as links:
            con = duckdb.connect()
            con.execute(f"SET memory_limit = '{memory_limit}'")
            con.execute(f"SET temp_directory = '{spill}'")
            con.execute("SET preserve_insertion_order = false")
            _views(con, tables, links)
            return _Extraction(con, have, settings, report).run()
    finally:
        import shutil

        shutil.rmtree(spill, ignore_errors=True)


class _Extraction:
    """The steps of :func:`extract_mimic` over one DuckDB connection."""

    def __init__(
        self, con: Any, have: Mapping[str, bool], settings: dict[str, Any], report: ExtractionReport
    ):
        self.con, self.have, self.s, self.report = con, have, settings, report
        self.h = settings["interval_h"]

    def q(self, sql: str) -> pd.DataFrame:
        return self.con.execute(sql).df()

    # -- doses ---------------------------------------------------------------------------
    def run(self) -> MimicExtraction:
        src = source_sql(self.have)
        stays = self.q(src["stays"]).dropna(subset=["stay_id", "subject_id", "intime", "outtime"])
        stays = stays.sort_values(["subject_id", "intime", "stay_id"]).reset_index(drop=True)
        self.stays_all = stays
        ie = _text(self.q(src["vanco_inputevents"]), ("uom", "status", "category"))
        em = _text(self.q(src["vanco_emar"]), ("emar_id", "medication", "event_txt", "detail_route"))
        rx = _text(self.q(src["vanco_orders"]), ("drug", "route"))
        doses = self._records(ie, em, rx, stays)
        episodes, stay_ledger = self._episodes(doses, stays)
        table = self._finish(self._table(episodes, doses, stay_ledger), doses, stay_ledger)
        return MimicExtraction(
            table, self.report, doses.drop(columns=["given", "counted_in_doses", "reason"]), stay_ledger
        )

    def _records(
        self, ie: pd.DataFrame, em: pd.DataFrame, rx: pd.DataFrame, stays: pd.DataFrame
    ) -> pd.DataFrame:
        """Every vancomycin record of inputevents and eMAR, one row each, with its route and mg."""
        s = self.s
        ie = ie.merge(stays[["stay_id", "subject_id", "hadm_id"]], on="stay_id", how="left")
        ie["source"] = "inputevents"
        ie["record"] = (
            "inputevents:"
            + ie["stay_id"].astype("Int64").astype(str)
            + "@"
            + ie["t"].astype(str)
            + "#"
            + ie["orderid"].astype("Int64").astype(str)
        )
        category = ie["category"].str.lower()
        ie["route"] = np.where(
            category.str.contains(r"non[ -]?iv"),
            "non-IV",
            np.where(category.str.contains(r"\(iv\)"), "IV", "unknown"),
        )
        ie["detail"] = "order category " + ie["category"].where(ie["category"] != "", "(empty)")
        ie["given"] = True
        unit_mg = ie["uom"].map({"mg": 1.0, "g": 1000.0, "grams": 1000.0})
        ie["mg"] = ie["amount"] * unit_mg
        ie["counted_in_doses"] = ie["uom"].eq("dose")
        ie["reason"] = None
        ie.loc[ie["status"].eq("Rewritten"), "reason"] = "rewritten (superseded) inputevents row"
        ie.loc[ie["subject_id"].isna(), "reason"] = "stay_id not in icustays"
        ie.loc[ie["t"].isna(), "reason"] = "no time"

        em = em.copy()
        em["source"] = "emar"
        em["record"] = "emar:" + em["emar_id"].astype(str)
        event = em["event_txt"].fillna("").str.lower()
        em["given"] = event.isin(_GIVEN)
        order_route = (
            rx.dropna(subset=["pharmacy_id"])
            .groupby("pharmacy_id")["route"]
            .agg(lambda r: ",".join(sorted({str(x).upper() for x in r.dropna()})))
        )
        route = em["pharmacy_id"].map(order_route).astype(object).fillna("")
        detail = em["detail_route"].fillna("").str.upper()
        route = route.where(route != "", detail)
        oral_name = em["medication"].fillna("").str.lower().str.contains("oral|enema|capsule").astype(bool)
        is_iv = route.str.split(",").apply(
            lambda parts: bool(parts) and all(p.startswith("IV") for p in parts)
        )
        em["route"] = np.where(
            route == "",
            np.where(oral_name, "non-IV", "unknown"),
            np.where(is_iv & ~oral_name, "IV", "non-IV"),
        )
        em["detail"] = "route " + route.where(route != "", "(none)") + ", " + em["medication"].astype(str)
        em["mg"] = em["mg_given"].where(em["mg_given"].notna(), em["mg_due"])
        em["counted_in_doses"] = False
        em["reason"] = None
        em.loc[em["t"].isna(), "reason"] = "no time"
        em["stay_id"] = _stay_at(em, stays)

        cols = [
            "record",
            "source",
            "subject_id",
            "hadm_id",
            "stay_id",
            "t",
            "route",
            "detail",
            "given",
            "mg",
            "counted_in_doses",
            "reason",
        ]
        rec = pd.concat([ie[cols], em[cols]], ignore_index=True)
        rec = rec.sort_values(["subject_id", "t", "record"], na_position="last", kind="mergesort")
        rec = rec.reset_index(drop=True)
        self.report.records = {
            "inputevents 225798 rows": len(ie),
            "  IV order category": int((ie["route"] == "IV").sum()),
            "  not IV (e.g. 09-Antibiotics (Non IV))": int((ie["route"] == "non-IV").sum()),
            "  order category unknown": int((ie["route"] == "unknown").sum()),
            "eMAR vancomycin events": len(em),
            "  not an administration (Not Given, Hold, Stopped, ...)": int((~em["given"]).sum()),
            "  administrations, IV": int((em["given"] & (em["route"] == "IV")).sum()),
            "  administrations, not IV (PO/NG, oral, enema)": int(
                (em["given"] & (em["route"] == "non-IV")).sum()
            ),
            "  administrations, route unknown": int((em["given"] & (em["route"] == "unknown")).sum()),
        }
        rec["fate"] = None
        rec.loc[~rec["given"], "fate"] = "not an administration"
        rec.loc[rec["given"] & (rec["route"] == "non-IV"), "fate"] = "not IV"
        rec.loc[rec["given"] & (rec["route"] == "unknown"), "fate"] = "route unknown"
        rec.loc[rec["fate"].isna() & rec["reason"].notna(), "fate"] = rec["reason"]
        rec = self._reconcile(rec, s["match_window_h"])
        rec = self._order_mg(rec, rx, s["order_tolerance_h"])
        return rec

    def _reconcile(self, rec: pd.DataFrame, window_h: float) -> pd.DataFrame:
        """Pair inputevents and eMAR records of one dose: nearest first, one to one, deterministic."""
        rec["paired_with"] = None
        live = rec["fate"].isna() | (rec["source"].eq("emar") & rec["fate"].eq("route unknown"))
        a = rec[live & (rec["source"] == "inputevents")][["subject_id", "t", "record"]].reset_index()
        b = rec[live & (rec["source"] == "emar")][["subject_id", "t", "record"]].reset_index()
        pairs = a.merge(b, on="subject_id", suffixes=("_a", "_b"))
        pairs["gap"] = (pairs["t_a"] - pairs["t_b"]).abs()
        pairs = pairs[pairs["gap"] <= pd.Timedelta(hours=window_h)]
        pairs = pairs.sort_values(["gap", "t_a", "record_a", "record_b"], kind="mergesort")
        used_a: set[int] = set()
        used_b: set[int] = set()
        disagree = 0
        for ia, ib in zip(pairs["index_a"].tolist(), pairs["index_b"].tolist(), strict=True):
            if ia in used_a or ib in used_b:
                continue
            used_a.add(ia)
            used_b.add(ib)
            mg_a, mg_b = rec.at[ia, "mg"], rec.at[ib, "mg"]
            if pd.notna(mg_b):
                if pd.notna(mg_a) and abs(mg_a - mg_b) > 1e-6:
                    disagree += 1
                rec.at[ia, "mg"] = mg_b
                rec.at[ia, "counted_in_doses"] = False
            rec.at[ia, "paired_with"] = rec.at[ib, "record"]
            rec.at[ib, "paired_with"] = rec.at[ia, "record"]
            rec.at[ib, "fate"] = "same dose as " + rec.at[ia, "record"]
        self.report.mg_disagreements = disagree
        return rec

    def _order_mg(self, rec: pd.DataFrame, rx: pd.DataFrame, tolerance_h: float) -> pd.DataFrame:
        """The mg of an inputevents amount counted in doses, from the IV order active then."""
        need = rec["fate"].isna() & rec["counted_in_doses"]
        rec.loc[
            rec["fate"].isna()
            & ~rec["counted_in_doses"]
            & rec["mg"].isna()
            & rec["source"].eq("inputevents"),
            "fate",
        ] = "amount not in mg or g (a volume)"
        orders = rx[
            rx["route"].fillna("").str.upper().str.startswith("IV")
            & rx["mg"].notna()
            & ~rx["drug"].fillna("").str.lower().str.contains("oral")
        ].copy()
        orders = orders.dropna(subset=["hadm_id", "starttime"])
        doses = rec.loc[need, ["hadm_id", "t", "record"]].reset_index()
        cand = doses.merge(orders, on="hadm_id")
        cand = cand[
            (cand["starttime"] <= cand["t"] + pd.Timedelta(hours=tolerance_h))
            & (cand["stoptime"].isna() | (cand["stoptime"] > cand["t"]))
        ].copy()
        cand["late"] = cand["starttime"] > cand["t"]
        cand["stop"] = cand["stoptime"].fillna(pd.Timestamp.max)
        cand = cand.sort_values(
            ["index", "late", "starttime", "stop", "pharmacy_id"],
            ascending=[True, True, False, False, False],
            kind="mergesort",
        )
        best = cand.drop_duplicates("index")[["index", "starttime", "stop"]]
        chosen = cand.merge(best, on=["index", "starttime", "stop"])
        mg = chosen.groupby("index")["mg"].sum()  # orders started and stopped together: one multi-vial dose
        self.report.multi_order_doses = int((chosen.groupby("index").size() > 1).sum())
        rivals = (
            cand.merge(best[["index", "starttime"]], on=["index", "starttime"])
            .groupby("index")["stop"]
            .nunique()
        )
        self.report.ambiguous_orders = int((rivals > 1).sum())
        rec["order_mg"] = np.nan
        rec.loc[mg.index, "order_mg"] = mg
        rec.loc[need, "mg"] = rec.loc[need, "order_mg"]
        rec.loc[need & rec["mg"].isna(), "fate"] = _UNKNOWN_MG
        return rec.drop(columns=["order_mg"])

    # -- episodes ------------------------------------------------------------------------
    def _episodes(self, rec: pd.DataFrame, stays: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        s = self.s
        h, cap = self.h, pd.Timedelta(days=s["max_days"])
        iv = rec[rec["fate"].isna() | rec["fate"].eq(_UNKNOWN_MG)]  # IV doses, counted once, mg maybe unknown
        iv = iv.dropna(subset=["subject_id", "t"]).sort_values(
            ["subject_id", "t", "record"], kind="mergesort"
        )
        # courses: a new one after a gap of more than course_gap_h
        gap = iv["t"].diff() > pd.Timedelta(hours=s["course_gap_h"])
        new = gap | iv["subject_id"].ne(iv["subject_id"].shift())
        iv = iv.assign(course=new.cumsum())
        course_start = iv.groupby("course")["t"].min()
        in_stay = iv[iv["stay_id"].notna()].copy()
        in_stay["stay_id"] = in_stay["stay_id"].astype("int64")
        first = in_stay.drop_duplicates("stay_id")[["stay_id", "t", "course"]].rename(
            columns={"t": "first_icu_dose"}
        )
        # a dose of another ICU stay earlier in the same course
        earlier = in_stay[["course", "t", "stay_id"]].rename(columns={"stay_id": "other", "t": "t_other"})
        clash = first.merge(earlier, on="course")
        clash = clash[(clash["t_other"] < clash["first_icu_dose"]) & (clash["other"] != clash["stay_id"])]
        clash = (
            clash.sort_values(["stay_id", "t_other"]).drop_duplicates("stay_id").set_index("stay_id")["other"]
        )
        any_stays = set(rec["stay_id"].dropna().astype("int64"))
        ledger = stays[stays["stay_id"].astype("int64").isin(any_stays)].copy()
        ledger = ledger[["stay_id", "subject_id", "hadm_id", "intime", "outtime"]].astype(
            {"stay_id": "int64", "subject_id": "int64"}
        )
        ledger = ledger.merge(first, on="stay_id", how="left")
        ledger["t0"] = ledger["course"].map(course_start)
        ledger["status"], ledger["reason"] = "kept", ""
        no_iv = ledger["first_icu_dose"].isna()
        ledger.loc[no_iv, ["status", "reason"]] = [
            "dropped",
            "no IV vancomycin (oral/enteral or unusable records only)",
        ]
        other = ledger["stay_id"].map(clash)
        has_other = other.notna() & ~no_iv
        ledger.loc[has_other, "status"] = "dropped"
        ledger.loc[has_other, "reason"] = "continues the vancomycin course of ICU stay " + other[
            has_other
        ].astype("int64").astype(str)
        t_end = np.minimum(ledger["outtime"], ledger["t0"] + cap)
        early = (ledger["status"] == "kept") & (t_end <= ledger["intime"])
        ledger.loc[early, ["status", "reason"]] = [
            "dropped",
            "course began max_days or more before ICU admission",
        ]
        ledger = ledger.drop(columns=["course"])
        self.report.stays_in_icu = int(stays["stay_id"].nunique())
        self.report.stays_with_vancomycin = len(ledger)
        self.report.stays_with_iv_vancomycin = int((~no_iv).sum())
        ep = ledger[ledger["status"] == "kept"].copy()
        ep["t_end"] = t_end[ep.index]
        ep["left_icu"] = ep["outtime"] <= ep["t0"] + cap
        n = (np.floor((ep["t_end"] - ep["t0"]) / pd.Timedelta(hours=h)).astype("int64") + 1).to_numpy()
        grid = ep.loc[
            ep.index.repeat(n), ["stay_id", "subject_id", "hadm_id", "t0", "t_end", "intime", "left_icu"]
        ]
        grid = grid.reset_index(drop=True)
        grid["step"] = np.concatenate([np.arange(k) for k in n]) if len(n) else np.zeros(0, dtype=np.int64)
        grid["t"] = grid["t0"] + pd.to_timedelta(grid["step"] * h, unit="h")
        return grid, ledger.reset_index(drop=True)

    # -- features ------------------------------------------------------------------------
    def _table(self, grid: pd.DataFrame, rec: pd.DataFrame, ledger: pd.DataFrame) -> pd.DataFrame:
        s, h = self.s, self.h
        grid = grid.reset_index(drop=True)
        grid["row"] = np.arange(len(grid))
        grid["time_h"] = grid["step"] * h
        cohort = ledger[ledger["status"] == "kept"][["stay_id", "subject_id"]]
        self.con.register("cohort_df", cohort)
        self.con.execute("CREATE OR REPLACE TEMP TABLE cohort AS SELECT * FROM cohort_df")
        self.con.register("grid_df", grid[["row", "stay_id", "subject_id", "t"]])
        self.con.execute("CREATE OR REPLACE TEMP TABLE grid AS SELECT * FROM grid_df")
        for name, sql in cohort_sql(self.have).items():
            if name in ("obs", "dialysis_events"):
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
        first = grid["step"].eq(0).to_numpy()
        window = np.where(first, s["lookback_h"], h)
        for name in FEATURES:
            found = self.q(asof_sql(name)).set_index("row").reindex(grid["row"])
            age = (grid["t"].to_numpy() - found["t_obs"].to_numpy()) / np.timedelta64(1, "h")
            value = found["value"].to_numpy(dtype=float)
            if name == "vanco_level":
                since_t0 = found["t_obs"].to_numpy() >= grid["t0"].to_numpy()
                ok = since_t0 & (age <= s["level_max_age_h"])
                grid["level_measured"] = since_t0 & (age < h)
                grid["vanco_level_age_h"] = np.where(ok, age, np.nan)
            else:
                ok = age < window
            grid[name] = np.where(ok, value, np.nan)
        # doses of each decision interval [t, t + h)
        iv = rec[rec["fate"].isna() | rec["fate"].eq(_UNKNOWN_MG)]
        iv = iv[iv["subject_id"].isin(set(grid["subject_id"]))]
        grid["dose_mg"] = 0.0
        grid["unknown_dose"] = False
        rec["stay_row"] = pd.NA
        edges = grid[["row", "subject_id", "t"]].sort_values("t")
        hits = pd.merge_asof(
            iv[["t", "subject_id", "mg"]].reset_index().sort_values("t"),
            edges,
            on="t",
            by="subject_id",
            direction="backward",
        )
        hits = hits.merge(grid[["row", "t", "t0"]].rename(columns={"t": "t_row"}), on="row", how="left")
        inside = (
            hits["row"].notna()
            & (hits["t"] < hits["t_row"] + pd.Timedelta(hours=h))
            & (hits["t"] >= hits["t0"])
        )
        hits = hits[inside]
        rec.loc[hits["index"].to_numpy(), "stay_row"] = hits["row"].astype(int).to_numpy()
        sums = hits.groupby("row")["mg"].agg(lambda m: m.sum(min_count=len(m)))
        grid.loc[sums.index.astype(int), "dose_mg"] = sums.to_numpy()
        grid["unknown_dose"] = grid["dose_mg"].isna()
        self.rec_rows = rec
        grid = self._covariates(grid, ledger)
        return self._cut(grid, ledger)

    def _covariates(self, grid: pd.DataFrame, ledger: pd.DataFrame) -> pd.DataFrame:
        s = self.s
        parts = cohort_sql(self.have)
        kept = ledger[ledger["status"] == "kept"][["stay_id", "subject_id", "intime", "outtime", "t0"]]
        obs = self.q(
            "SELECT subject_id, name, t, value FROM obs "
            "WHERE name IN ('weight_kg', 'height_cm') AND value > 0"
        )
        omr = self.q(parts["omr_values"])
        omr = omr[omr["value"] > 0]
        icu_weight = self.q(parts["icu_weight"]).set_index("stay_id")["weight_kg"]
        pat = self.q(
            "SELECT subject_id, gender, anchor_age, anchor_year FROM patients "
            "WHERE subject_id IN (SELECT subject_id FROM cohort)"
        )
        pat = pat.sort_values(["subject_id", "anchor_year", "anchor_age", "gender"]).drop_duplicates(
            "subject_id"
        )
        cov = kept.set_index("stay_id")
        sources: dict[str, int] = {}
        for name, max_age in (("weight_kg", s["weight_max_age_days"]), ("height_cm", 365.0)):
            chart = kept.merge(obs[obs["name"] == name], on="subject_id")
            chart = chart[(chart["t"] >= chart["intime"]) & (chart["t"] <= chart["outtime"])]
            chart = (
                chart.sort_values(["stay_id", "t", "value"]).drop_duplicates("stay_id").set_index("stay_id")
            )
            value = chart["value"].reindex(cov.index)
            source = pd.Series(np.where(value.notna(), "chartevents", ""), index=cov.index)
            if name == "weight_kg":
                icu = icu_weight.reindex(cov.index)
                use = value.isna() & (icu > 0)
                value[use], source[use] = icu[use], "inputevents.patientweight"
            near = kept.merge(omr[omr["name"] == name], on="subject_id")
            near["age"] = (near["t"] - near["t0"].dt.normalize()).abs()
            near = near[near["age"] <= pd.Timedelta(days=max_age)]
            near = (
                near.sort_values(["stay_id", "age", "t", "value"])
                .drop_duplicates("stay_id")
                .set_index("stay_id")
            )
            from_omr = near["value"].reindex(cov.index)
            use = value.isna() & from_omr.notna()
            value[use], source[use] = from_omr[use], "omr"
            cov[name] = value
            for key, count in source.replace("", "none").value_counts().items():
                sources[f"{name} {key}"] = int(count)
        p = cov[["subject_id"]].merge(pat, on="subject_id", how="left").set_index(cov.index)
        cov["age"] = (p["anchor_age"] + (cov["t0"].dt.year - p["anchor_year"])).astype(float)
        cov["sex"] = p["gender"].astype(object).str.upper().map({"F": 1.0, "M": 0.0}).astype(float)
        self.report.covariate_sources = dict(sorted(sources.items()))
        grid = grid.merge(
            cov[["weight_kg", "height_cm", "age", "sex"]].reset_index(), on="stay_id", how="left"
        )
        dial = self.q("SELECT subject_id, t, t_end FROM dialysis_events")
        day = pd.Timedelta(hours=24)
        spans = grid.drop_duplicates("stay_id")[["stay_id", "subject_id", "t0", "t_end"]].merge(
            dial, on="subject_id"
        )
        on = spans[(spans["t"] <= spans["t_end_x"]) & (spans["t_end_y"] >= spans["t0"] - day)]["stay_id"]
        grid["dialysis"] = grid["stay_id"].isin(set(on)).astype(float)
        rows = grid[["row", "subject_id", "t"]].merge(dial, on="subject_id", suffixes=("", "_d"))
        now = rows[(rows["t_d"] <= rows["t"]) & (rows["t_end"] > rows["t"] - day)]["row"]
        grid["dialysis_24h"] = grid["row"].isin(set(now))
        return grid

    def _cut(self, grid: pd.DataFrame, ledger: pd.DataFrame) -> pd.DataFrame:
        """Cut each stay before the first row the converter's carry-forward could not fill."""
        s = self.s
        lookback = s["lookback_h"]
        filled = dict.fromkeys(VITAL_REFERENCE, 0)
        keep = np.ones(len(grid), dtype=bool)
        cut_at: dict[int, tuple[int, str]] = {}
        for sid, g in grid.groupby("stay_id", sort=False):
            idx = g.index.to_numpy()
            time = g["time_h"].to_numpy()
            stop, why = len(idx), ""
            if np.isnan(g["weight_kg"].iloc[0]):
                stop, why = 0, "no weight (chartevents, inputevents or omr within the age limit)"
            for name in FEATURES:
                values = g[name].to_numpy(dtype=float)
                last = -np.inf if name != "vanco_level" else None
                for k in range(min(stop, len(values))):
                    if not np.isnan(values[k]):
                        last = time[k]
                        continue
                    if last is None:  # a level never measured so far: --fill-unmeasured-level
                        continue
                    if time[k] - last <= lookback:
                        continue
                    if name in VITAL_REFERENCE and s["fill_missing_vitals"]:
                        grid.loc[idx[k], name] = VITAL_REFERENCE[name]
                        filled[name] += 1
                        last = time[k]
                        continue
                    if (
                        name == "vanco_level"
                    ):  # carried level_max_age_h by the table, lookback more by the converter
                        why = f"no vancomycin level drawn in the last {s['level_max_age_h'] + lookback:g} h"
                    else:
                        why = f"no {name} within {lookback:g} h"
                    stop = k
                    break
            unknown = np.flatnonzero(g["unknown_dose"].to_numpy())
            if unknown.size and unknown[0] == 0 and stop > 0:
                stop, why = 0, "a dose of unknown mg"
            elif unknown.size and unknown[0] + 1 < stop:
                stop, why = int(unknown[0]) + 1, "a dose of unknown mg (the stay ends at its row)"
            if stop < len(idx):
                keep[idx[stop:]] = False
                cut_at[int(sid)] = (stop, why)
        self.report.filled_vitals = filled
        grid["cut"] = grid["stay_id"].map({k: True for k in cut_at}).fillna(False).astype(bool)
        table = grid[keep].copy()
        for sid, (stop, why) in cut_at.items():
            i = ledger.index[ledger["stay_id"] == sid][0]
            if stop == 0:
                ledger.loc[i, ["status", "reason"]] = ["dropped", why + " at the first decision"]
            else:
                ledger.loc[i, ["status", "reason"]] = ["cut", f"{why} at step {stop}"]
        self.cut_at = cut_at
        return table

    # -- output and report ---------------------------------------------------------------
    def _finish(self, table: pd.DataFrame, rec: pd.DataFrame, ledger: pd.DataFrame) -> pd.DataFrame:
        r = self.report
        last = table.groupby("stay_id")["step"].transform("max") == table["step"]
        full = ~table["cut"]
        table["done"] = (table["left_icu"] & last & full).astype(bool)
        table["in_icu"] = table["t"] >= table["intime"]
        table["level_measured"] = table["level_measured"].astype(bool)
        table["decision_time"] = table["t"]
        columns = [
            "stay_id",
            "step",
            "time_h",
            *FEATURES,
            "dose_mg",
            "done",
            "level_measured",
            "vanco_level_age_h",
            "weight_kg",
            "age",
            "sex",
            "height_cm",
            "dialysis",
            "dialysis_24h",
            "in_icu",
            "subject_id",
            "hadm_id",
            "decision_time",
        ]
        table = table.reset_index(drop=True)
        # fates of the doses
        kept_at = pd.Series(np.arange(len(table)), index=table["row"].astype(int).to_numpy())
        stay_status = ledger.set_index("stay_id")["status"]
        stay_reason = ledger.set_index("stay_id")["reason"]
        candidates = rec["fate"].isna() | rec["fate"].eq(_UNKNOWN_MG)
        j = rec["stay_row"].map(lambda v: kept_at.get(int(v), -1) if pd.notna(v) else -1).astype(int)
        in_table = candidates & (j >= 0)
        rec["table_stay"] = pd.array([pd.NA] * len(rec), dtype="Int64")
        rec["table_step"] = pd.array([pd.NA] * len(rec), dtype="Int64")
        rec.loc[in_table, "table_stay"] = table["stay_id"].to_numpy()[j[in_table]]
        rec.loc[in_table, "table_step"] = table["step"].to_numpy()[j[in_table]]
        rec.loc[in_table & rec["fate"].isna(), "fate"] = "used"
        open_ = rec["fate"].isna()
        sid = rec["stay_id"]
        status = sid.map(lambda v: stay_status.get(int(v)) if pd.notna(v) else None)
        reason = sid.map(lambda v: stay_reason.get(int(v)) if pd.notna(v) else None)
        rec.loc[open_ & status.eq("dropped"), "fate"] = (
            "stay dropped: " + reason[open_ & status.eq("dropped")]
        )
        rec.loc[open_ & status.eq("cut"), "fate"] = "after the stay was cut short"
        rec.loc[open_ & sid.notna() & status.isin(["kept"]), "fate"] = (
            "after the episode's last decision (max_days or ICU discharge)"
        )
        rec.loc[rec["fate"].isna() & sid.notna(), "fate"] = (
            "after the episode's last decision (max_days or ICU discharge)"
        )
        rec.loc[rec["fate"].isna(), "fate"] = "outside any ICU stay and not in a course leading to one"
        del rec["stay_row"]
        table = table[columns]
        iv = rec[rec["given"] & (rec["route"] == "IV")]
        counted = iv[~iv["fate"].str.startswith("same dose as", na=False)]
        r.doses = {
            "IV records (inputevents + eMAR administrations)": len(iv),
            "  of which the same dose in the other source": int(len(iv) - len(counted)),
            "IV doses": len(counted),
        }
        r.doses_used = int((counted["fate"] == "used").sum())
        r.doses_left_out = _count(counted.loc[counted["fate"] != "used", "fate"])
        r.stays_dropped = _count(ledger.loc[ledger["status"] == "dropped", "reason"])
        r.stays_kept = int(table["stay_id"].nunique())
        r.stays_cut = int((ledger["status"] == "cut").sum())
        r.cuts = _count(
            ledger.loc[ledger["status"] == "cut", "reason"].str.replace(r" at step \d+$", "", regex=True)
        )
        r.rows = len(table)
        r.rows_before_icu = int((~table["in_icu"]).sum())
        r.single_decision_stays = int((table.groupby("stay_id").size() == 1).sum())
        r.missing_values = {c: int(table[c].isna().sum()) for c in FEATURES[1:]}
        unknown = table.loc[table["height_cm"].isna(), "stay_id"].nunique()
        if unknown:  # --covariates takes every covariate column present, and needs it in every row
            r.columns_left_out = {"height_cm": f"unknown in {unknown} of {r.stays_kept} stays"}
            table = table.drop(columns=["height_cm"])
        return table


def _text(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """``columns`` as object (strings or None) even when empty (DuckDB types an empty NULL column)."""
    for column in columns:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def _count(values: pd.Series) -> dict[str, int]:
    counts = values.value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))}


def _stay_at(frame: pd.DataFrame, stays: pd.DataFrame) -> pd.Series:
    """The ICU stay of each (subject_id, t) (the latest admitted one holding t), else NA."""
    out = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    if frame.empty:
        return out
    probe = frame[["subject_id", "t"]].dropna().reset_index().sort_values("t")
    spans = stays[["subject_id", "intime", "outtime", "stay_id"]].sort_values(["intime", "stay_id"])
    hit = pd.merge_asof(probe, spans, left_on="t", right_on="intime", by="subject_id", direction="backward")
    hit = hit[hit["stay_id"].notna() & (hit["t"] < hit["outtime"])]
    out.loc[hit["index"].to_numpy()] = hit["stay_id"].astype("int64").to_numpy()
    return out
