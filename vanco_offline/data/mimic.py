"""MIMIC-IV (v2.x / v3.x) to the project's dosing table, through DuckDB over the PhysioNet files.

The input is the folder PhysioNet distributes (``hosp/`` and ``icu/``, each table as
``NAME.csv.gz``, ``NAME.csv`` or ``NAME.parquet``); nothing is loaded into memory but the
result. One row per decision of each ICU stay that received vancomycin:

* the episode starts at the stay's first vancomycin administration (``t0``); decisions are
  at ``t0 + k * interval_h`` while inside the ICU stay and within ``max_days``;
* ``time_h`` is the hours since ``t0``; ``dose_mg`` the vancomycin given (``amount`` in mg of
  ``icu.inputevents`` itemid 225798, grams converted, volumes never used; an amount counted
  in doses takes its mg from the admission's IV vancomycin order in ``hosp.prescriptions``
  active then) from this decision up to the next one;
* ``vanco_level`` (``hosp.labevents`` 51009) is the last level measured at or before the
  decision (carried forward, as the schema defines it) and ``level_measured`` says whether
  one was drawn in the interval just ended;
* the other six features are the last value charted in the interval just ended,
  ``(t - interval_h, t]``, and empty otherwise: the converter's ``--impute-max-age-h`` makes
  any carrying-forward visible in its report. Creatinine 50912, BUN 51006, WBC 51301
  (``hosp.labevents``, matched to the stay by ``hadm_id``); heart rate 220045, SBP 220050
  (arterial) or 220179 (non-invasive), temperature 223762 (°C) or 223761 (°F, converted)
  from ``icu.chartevents``;
* covariates per stay: ``weight_kg`` (chartevents 226512, else the ``hosp.omr`` "Weight
  (Lbs)" nearest to ICU admission), ``height_cm`` (chartevents 226730, else omr "Height
  (Inches)"), ``age`` (``anchor_age`` moved to the year of ``t0``), ``sex`` (0 male, 1
  female); ``dialysis`` per decision: 1 when a dialysis procedure (``icu.procedureevents``
  225441, 225802, 225803, 225805, 225809, 225955) ran or an active-dialysis item was charted
  (chartevents 226499, 224154, 224144, 224191, 225183) in the 24 h up to the decision;
* ``done`` is True on the last row of a stay that left the ICU (discharge or death) before
  ``max_days``; a stay cut at ``max_days`` is a timeout.

:func:`extraction_sql` returns the SQL that :func:`extract_mimic` runs (``vanco-offline
extract mimic --print-sql``); data/README.md shows it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from vanco_offline.data.mimic_sql import MIMIC_ITEMS, extraction_sql

__all__ = [
    "MIMIC_ITEMS",
    "MIMIC_TABLES",
    "ExtractionReport",
    "extract_mimic",
    "extraction_sql",
    "find_tables",
]

MIMIC_TABLES: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "icustays": ("icu", ("subject_id", "hadm_id", "stay_id", "intime", "outtime"), True),
    "inputevents": (
        "icu",
        ("stay_id", "starttime", "itemid", "amount", "amountuom", "statusdescription"),
        True,
    ),
    "chartevents": ("icu", ("stay_id", "charttime", "itemid", "valuenum"), True),
    "procedureevents": ("icu", ("stay_id", "starttime", "endtime", "itemid"), False),
    "labevents": ("hosp", ("hadm_id", "itemid", "charttime", "valuenum"), True),
    "patients": ("hosp", ("subject_id", "gender", "anchor_age", "anchor_year"), True),
    "omr": ("hosp", ("subject_id", "chartdate", "result_name", "result_value"), False),
    "prescriptions": (
        "hosp",
        ("hadm_id", "starttime", "stoptime", "drug", "dose_val_rx", "dose_unit_rx", "route"),
        False,
    ),
}
_SUFFIXES = (".csv.gz", ".csv", ".parquet")

@dataclasses.dataclass
class ExtractionReport:
    """What the extraction found, kept and left out (nothing is dropped silently)."""

    mimic_dir: str
    tables: dict[str, str]
    stays_in_icu: int = 0
    stays_with_vancomycin: int = 0
    stays_kept: int = 0
    rows: int = 0
    single_decision_stays: int = 0
    administrations_used: int = 0
    administrations_from_prescriptions: int = 0
    administrations_dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    stays_dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    missing_values: dict[str, int] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        lines = [
            f"MIMIC-IV extraction from {self.mimic_dir}",
            f"  ICU stays                       {self.stays_in_icu:>8,}",
            f"  with vancomycin (225798)        {self.stays_with_vancomycin:>8,}",
            f"  kept                            {self.stays_kept:>8,}  ({self.rows:,} decision rows)",
        ]
        if self.single_decision_stays:
            lines.append(
                f"  of which one decision only      {self.single_decision_stays:>8,}  "
                "(left the ICU within one interval; the converter leaves them out and says so)"
            )
        for reason, n in self.stays_dropped.items():
            lines.append(f"  dropped: {reason:<22}{n:>8,}")
        lines.append(f"  administrations used (mg)       {self.administrations_used:>8,}")
        if self.administrations_from_prescriptions:
            lines.append(
                f"    of which mg from prescriptions {self.administrations_from_prescriptions:>7,}  "
                "(inputevents counted them in doses)"
            )
        for reason, n in self.administrations_dropped.items():
            lines.append(f"  administrations left out: {reason} {n:,}")
        if any(self.missing_values.values()):
            gaps = ", ".join(f"{k} {v:,}" for k, v in self.missing_values.items() if v)
            lines.append(f"  empty cells (no value in the interval; see --impute-max-age-h): {gaps}")
        tables = ", ".join(f"{name}={Path(path).name}" for name, path in self.tables.items())
        lines.append(f"  tables: {tables}")
        return "\n".join(lines)


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
        path = next((c for c in candidates if c.is_file()), None)
        if path is not None:
            found[name] = path
        elif required:
            absent.append(f"{module}/{name}")
    if absent:
        raise ValueError(
            f"--mimic-dir {root}: missing table(s) {', '.join(absent)} "
            f"(as {' / '.join(_SUFFIXES)})"
        )
    return found


def _reader(path: Path) -> str:
    quoted = str(path).replace("'", "''")
    if path.name.endswith(".parquet"):
        return f"read_parquet('{quoted}')"
    return f"read_csv('{quoted}', header = true, all_varchar = true)"


def _views(con: Any, tables: Mapping[str, Path]) -> None:
    """A typed view per table, with only the columns read; a ValueError names a missing column."""
    types = {
        "subject_id": "BIGINT", "hadm_id": "BIGINT", "stay_id": "BIGINT", "itemid": "BIGINT",
        "amount": "DOUBLE", "valuenum": "DOUBLE", "anchor_age": "DOUBLE", "anchor_year": "BIGINT",
        "intime": "TIMESTAMP", "outtime": "TIMESTAMP", "starttime": "TIMESTAMP", "endtime": "TIMESTAMP",
        "stoptime": "TIMESTAMP",
        "charttime": "TIMESTAMP", "chartdate": "DATE",
    }
    for name, path in tables.items():
        _, columns, _ = MIMIC_TABLES[name]
        source = _reader(path)
        try:
            present = {row[0].lower() for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        except Exception as exc:  # duckdb raises its own error types for unreadable files
            raise ValueError(f"{path}: not a readable MIMIC-IV table ({str(exc).splitlines()[0]})") from None
        missing = [c for c in columns if c not in present]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} of MIMIC-IV's {name} table")
        select = ", ".join(f"TRY_CAST({c} AS {types[c]}) AS {c}" if c in types else c for c in columns)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {select} FROM {source}")


def extract_mimic(
    mimic_dir: str | Path, interval_h: float = 12.0, max_days: float = 7.0
) -> tuple[pd.DataFrame, ExtractionReport]:
    """Build the dosing table (one row per decision) from a MIMIC-IV folder.

    Parameters
    ----------
    mimic_dir : the folder with ``hosp/`` and ``icu/`` as PhysioNet distributes them.
    interval_h : hours between decisions (default 12).
    max_days : longest episode, in days from the first dose (default 7).

    Returns
    -------
    (table, report): the table in the schema of data/README.md (plus ``level_measured``,
    ``subject_id``, ``hadm_id`` and ``decision_time``, which the converter ignores), and
    what was found, kept and left out.
    """
    if not interval_h > 0 or not max_days > 0:
        raise ValueError(f"interval_h = {interval_h} and max_days = {max_days} must be positive")
    try:
        import duckdb
    except ImportError:
        from vanco_offline.extras import missing_extra

        raise missing_extra("duckdb", "mimic", "extract mimic") from None
    tables = find_tables(mimic_dir)
    report = ExtractionReport(str(mimic_dir), {k: str(v) for k, v in tables.items()})
    con = duckdb.connect()
    _views(con, tables)
    optional = {name: name in tables for name, (_, _, required) in MIMIC_TABLES.items() if not required}
    sql = extraction_sql(interval_h, max_days, optional)
    *setup, final = [s for s in sql.split(";") if s.strip()]
    for statement in setup:
        con.execute(statement)
    table = con.execute(final).df()
    _fill_report(con, report, table, interval_h)
    for column in ("done", "level_measured"):
        table[column] = table[column].astype(bool)
    return table, report


def _fill_report(con: Any, report: ExtractionReport, table: pd.DataFrame, interval_h: float) -> None:
    one = lambda q: int(con.execute(q).fetchone()[0])  # noqa: E731
    report.stays_in_icu = one("SELECT count(DISTINCT stay_id) FROM icustays")
    report.stays_with_vancomycin = one("SELECT count(DISTINCT stay_id) FROM admin")
    report.stays_kept = int(table["stay_id"].nunique())
    report.rows = len(table)
    in_episode = "a.stay_id IN (SELECT stay_id FROM episodes)"
    report.administrations_used = one(
        f"SELECT count(*) FROM admin a WHERE dose_mg IS NOT NULL AND NOT rewritten AND {in_episode}"
    )
    volume = one("SELECT count(*) FROM admin WHERE dose_mg IS NULL AND uom <> 'dose'")
    no_rx = one("SELECT count(*) FROM admin WHERE dose_mg IS NULL AND uom = 'dose'")
    report.administrations_from_prescriptions = one(
        "SELECT count(*) FROM admin WHERE dose_mg IS NOT NULL AND uom = 'dose' AND NOT rewritten"
    )
    rewritten = one("SELECT count(*) FROM admin WHERE rewritten AND dose_mg IS NOT NULL")
    outside = one(
        "SELECT count(*) FROM admin a JOIN (SELECT stay_id, max(t) AS last_t FROM grid GROUP BY stay_id) g "
        f"USING (stay_id) WHERE a.dose_mg IS NOT NULL AND NOT a.rewritten "
        f"AND a.t >= g.last_t + INTERVAL ({float(interval_h)}) HOUR"
    )
    report.administrations_used -= outside
    report.administrations_dropped = {
        "amount not in mg or g (a volume)": volume,
        "counted in doses, no IV vancomycin prescription in mg then": no_rx,
        "rewritten orders": rewritten,
        "after the episode's last decision": outside,
    }
    no_mg = one(
        "SELECT count(DISTINCT stay_id) FROM admin WHERE stay_id NOT IN (SELECT stay_id FROM episodes)"
    )
    report.stays_dropped = {"no dose in mg": no_mg}
    sizes = table.groupby("stay_id").size()
    report.single_decision_stays = int((sizes == 1).sum())
    report.missing_values = {
        c: int(table[c].isna().sum())
        for c in ("creatinine", "wbc", "bun", "temperature", "sbp", "heart_rate", "weight_kg", "height_cm")
    }
