"""MIMIC-IV (v2.x / v3.x) to the project's dosing table, through DuckDB over the PhysioNet files.

The input is the folder PhysioNet distributes (``hosp/`` and ``icu/``, each table as
``NAME.csv.gz``, ``NAME.csv`` or ``NAME.parquet``); nothing is loaded into memory but the
result. One row per decision of each ICU stay that received vancomycin:

* the episode starts at the stay's first vancomycin administration (``t0``); decisions are
  at ``t0 + k * interval_h`` while inside the ICU stay and within ``max_days``;
* ``time_h`` is the hours since ``t0``; ``dose_mg`` the vancomycin given (``amount`` in mg of
  ``icu.inputevents`` itemid 225798, grams converted, volumes never used) from this decision
  up to the next one;
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

__all__ = [
    "MIMIC_ITEMS",
    "MIMIC_TABLES",
    "ExtractionReport",
    "extract_mimic",
    "extraction_sql",
    "find_tables",
]

#: itemids used, by column (documented in data/README.md).
MIMIC_ITEMS: dict[str, tuple[int, ...]] = {
    "vancomycin": (225798,),
    "vanco_level": (51009,),
    "creatinine": (50912,),
    "bun": (51006,),
    "wbc": (51301,),
    "heart_rate": (220045,),
    "sbp": (220050, 220179),
    "temperature_c": (223762,),
    "temperature_f": (223761,),
    "weight_kg": (226512,),
    "height_cm": (226730,),
    "dialysis_procedure": (225441, 225802, 225803, 225805, 225809, 225955),
    "dialysis_chart": (226499, 224154, 224144, 224191, 225183),
}

#: table -> (module folder, columns read, required)
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
}
_SUFFIXES = (".csv.gz", ".csv", ".parquet")
_LBS_TO_KG = 0.45359237
_INCH_TO_CM = 2.54


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


def _in(items: tuple[int, ...]) -> str:
    return ", ".join(str(i) for i in items)


def extraction_sql(
    interval_h: float = 12.0, max_days: float = 7.0, optional: Mapping[str, bool] | None = None
) -> str:
    """The query :func:`extract_mimic` runs over views named after the MIMIC-IV tables.

    ``optional`` says which optional tables exist (``procedureevents``, ``omr``); an
    absent one contributes nothing.
    """
    have = {"procedureevents": True, "omr": True, **dict(optional or {})}
    h, cap = float(interval_h), float(max_days) * 24.0
    items = MIMIC_ITEMS
    dialysis_proc = (
        f"""
    SELECT p.stay_id, p.starttime AS t0, p.endtime AS t1 FROM procedureevents p
    WHERE p.itemid IN ({_in(items['dialysis_procedure'])})"""
        if have["procedureevents"]
        else "\n    SELECT NULL::BIGINT AS stay_id, NULL::TIMESTAMP AS t0, NULL::TIMESTAMP AS t1 WHERE false"
    )
    omr = (
        f"""
    SELECT o.subject_id, o.chartdate::TIMESTAMP AS t,
           CASE WHEN o.result_name = 'Weight (Lbs)' THEN 'weight_kg' ELSE 'height_cm' END AS name,
           TRY_CAST(o.result_value AS DOUBLE)
             * CASE WHEN o.result_name = 'Weight (Lbs)' THEN {_LBS_TO_KG} ELSE {_INCH_TO_CM} END AS value
    FROM omr o WHERE o.result_name IN ('Weight (Lbs)', 'Height (Inches)')"""
        if have["omr"]
        else "\n    SELECT NULL::BIGINT AS subject_id, NULL::TIMESTAMP AS t, NULL AS name, "
        "NULL::DOUBLE AS value WHERE false"
    )
    return f"""
-- Vancomycin administrations in mg (inputevents 225798, grams converted, rewritten orders out)
CREATE OR REPLACE TEMP TABLE admin AS
SELECT i.stay_id, i.starttime AS t,
       CASE lower(i.amountuom) WHEN 'mg' THEN i.amount WHEN 'grams' THEN i.amount * 1000
            WHEN 'g' THEN i.amount * 1000 END AS dose_mg,
       lower(i.amountuom) AS uom,
       coalesce(i.statusdescription, '') = 'Rewritten' AS rewritten
FROM inputevents i WHERE i.itemid IN ({_in(items['vancomycin'])});

-- One episode per ICU stay: from the first administration in mg, within the stay and max_days
CREATE OR REPLACE TEMP TABLE episodes AS
SELECT s.stay_id, s.subject_id, s.hadm_id, s.intime, s.outtime, a.t0,
       least(s.outtime, a.t0 + INTERVAL ({cap}) HOUR) AS t_end,
       s.outtime <= a.t0 + INTERVAL ({cap}) HOUR AS left_icu
FROM icustays s
JOIN (SELECT stay_id, min(t) AS t0 FROM admin WHERE dose_mg IS NOT NULL AND NOT rewritten
      GROUP BY stay_id) a USING (stay_id);

-- Decision grid: t0, t0 + {h:g} h, ... while inside the episode
CREATE OR REPLACE TEMP TABLE grid AS
SELECT e.*, k AS step, {h} * k AS time_h, e.t0 + INTERVAL ({h} * k) HOUR AS t
FROM episodes e,
     LATERAL (SELECT unnest(range(0, CAST(floor(epoch(e.t_end - e.t0) / 3600 / {h}) AS BIGINT) + 1)) AS k);

-- Every charted value, by stay, as (stay_id, t, name, value)
CREATE OR REPLACE TEMP TABLE obs AS
SELECT c.stay_id, c.charttime AS t,
       CASE WHEN c.itemid = {items['heart_rate'][0]} THEN 'heart_rate'
            WHEN c.itemid IN ({_in(items['sbp'])}) THEN 'sbp'
            WHEN c.itemid IN ({_in(items['temperature_c'] + items['temperature_f'])}) THEN 'temperature'
            WHEN c.itemid IN ({_in(items['dialysis_chart'])}) THEN 'dialysis'
            WHEN c.itemid = {items['weight_kg'][0]} THEN 'weight_kg'
            WHEN c.itemid = {items['height_cm'][0]} THEN 'height_cm' END AS name,
       CASE WHEN c.itemid IN ({_in(items['temperature_f'])}) THEN (c.valuenum - 32) * 5 / 9
            ELSE c.valuenum END AS value
FROM chartevents c
WHERE c.itemid IN ({_in(items['heart_rate'] + items['sbp'] + items['temperature_c'] + items['temperature_f']
                        + items['dialysis_chart'] + items['weight_kg'] + items['height_cm'])})
  AND c.stay_id IN (SELECT stay_id FROM episodes)
UNION ALL
SELECT e.stay_id, l.charttime AS t,
       CASE l.itemid WHEN {items['vanco_level'][0]} THEN 'vanco_level'
                     WHEN {items['creatinine'][0]} THEN 'creatinine'
                     WHEN {items['bun'][0]} THEN 'bun' WHEN {items['wbc'][0]} THEN 'wbc' END AS name,
       l.valuenum AS value
FROM labevents l JOIN episodes e ON l.hadm_id = e.hadm_id
WHERE l.itemid IN ({_in(items['vanco_level'] + items['creatinine'] + items['bun'] + items['wbc'])})
  AND l.valuenum IS NOT NULL AND l.charttime <= e.t_end;

CREATE OR REPLACE TEMP TABLE dialysis_runs AS {dialysis_proc};
CREATE OR REPLACE TEMP TABLE omr_values AS {omr};

-- Per stay covariates: chartevents first, else the omr value nearest to ICU admission
CREATE OR REPLACE TEMP TABLE covariates AS
SELECT e.stay_id,
       coalesce((SELECT o.value FROM obs o WHERE o.stay_id = e.stay_id AND o.name = 'weight_kg'
                 AND o.value IS NOT NULL ORDER BY o.t LIMIT 1),
                (SELECT m.value FROM omr_values m WHERE m.subject_id = e.subject_id AND m.name = 'weight_kg'
                 AND m.value IS NOT NULL ORDER BY abs(epoch(m.t - date_trunc('day', e.intime))), m.t LIMIT 1))
         AS weight_kg,
       coalesce((SELECT o.value FROM obs o WHERE o.stay_id = e.stay_id AND o.name = 'height_cm'
                 AND o.value IS NOT NULL ORDER BY o.t LIMIT 1),
                (SELECT m.value FROM omr_values m WHERE m.subject_id = e.subject_id AND m.name = 'height_cm'
                 AND m.value IS NOT NULL ORDER BY abs(epoch(m.t - date_trunc('day', e.intime))), m.t LIMIT 1))
         AS height_cm,
       p.anchor_age + (year(e.t0) - p.anchor_year) AS age,
       CASE upper(p.gender) WHEN 'F' THEN 1 WHEN 'M' THEN 0 END AS sex
FROM episodes e JOIN patients p ON p.subject_id = e.subject_id;

-- The table: one row per decision
SELECT g.stay_id, g.step, g.time_h,
       (SELECT o.value FROM obs o WHERE o.stay_id = g.stay_id AND o.name = 'vanco_level' AND o.t <= g.t
          AND o.value IS NOT NULL ORDER BY o.t DESC LIMIT 1) AS vanco_level,
       {", ".join(
           f"(SELECT o.value FROM obs o WHERE o.stay_id = g.stay_id AND o.name = '{name}'"
           f" AND o.value IS NOT NULL AND o.t <= g.t AND o.t > g.t - INTERVAL ({h}) HOUR"
           f" ORDER BY o.t DESC LIMIT 1) AS {name}"
           for name in ("creatinine", "wbc", "bun", "temperature", "sbp", "heart_rate")
       )},
       coalesce((SELECT sum(a.dose_mg) FROM admin a WHERE a.stay_id = g.stay_id AND NOT a.rewritten
                 AND a.t >= g.t AND a.t < g.t + INTERVAL ({h}) HOUR), 0) AS dose_mg,
       g.left_icu AND g.step = max(g.step) OVER (PARTITION BY g.stay_id) AS done,
       EXISTS (SELECT 1 FROM obs o WHERE o.stay_id = g.stay_id AND o.name = 'vanco_level'
               AND o.value IS NOT NULL AND o.t <= g.t AND o.t > g.t - INTERVAL ({h}) HOUR) AS level_measured,
       c.weight_kg, c.age, c.sex, c.height_cm,
       CASE WHEN EXISTS (SELECT 1 FROM obs o WHERE o.stay_id = g.stay_id AND o.name = 'dialysis'
                         AND o.t <= g.t AND o.t > g.t - INTERVAL 24 HOUR)
              OR EXISTS (SELECT 1 FROM dialysis_runs d WHERE d.stay_id = g.stay_id
                         AND d.t0 <= g.t AND d.t1 > g.t - INTERVAL 24 HOUR) THEN 1 ELSE 0 END AS dialysis,
       g.subject_id, g.hadm_id, g.t AS decision_time
FROM grid g LEFT JOIN covariates c USING (stay_id)
ORDER BY g.stay_id, g.step;
""".strip()


def _views(con: Any, tables: Mapping[str, Path]) -> None:
    """A typed view per table, with only the columns read; a ValueError names a missing column."""
    types = {
        "subject_id": "BIGINT", "hadm_id": "BIGINT", "stay_id": "BIGINT", "itemid": "BIGINT",
        "amount": "DOUBLE", "valuenum": "DOUBLE", "anchor_age": "DOUBLE", "anchor_year": "BIGINT",
        "intime": "TIMESTAMP", "outtime": "TIMESTAMP", "starttime": "TIMESTAMP", "endtime": "TIMESTAMP",
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
    sql = extraction_sql(interval_h, max_days, {k: k in tables for k in ("procedureevents", "omr")})
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
    not_mg = one("SELECT count(*) FROM admin WHERE dose_mg IS NULL")
    rewritten = one("SELECT count(*) FROM admin WHERE rewritten AND dose_mg IS NOT NULL")
    outside = one(
        "SELECT count(*) FROM admin a JOIN (SELECT stay_id, max(t) AS last_t FROM grid GROUP BY stay_id) g "
        f"USING (stay_id) WHERE a.dose_mg IS NOT NULL AND NOT a.rewritten "
        f"AND a.t >= g.last_t + INTERVAL ({float(interval_h)}) HOUR"
    )
    report.administrations_used -= outside
    report.administrations_dropped = {
        "amount not in mg or g (a volume)": not_mg,
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
