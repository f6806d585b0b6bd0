"""``vanco-offline extract mimic``: build the dosing table from a MIMIC-IV folder (DuckDB).

Reads the PhysioNet files in place (``hosp/``, ``icu/``; csv.gz or parquet) at their exact
paths, writes one row per decision of each ICU stay that received IV vancomycin and, beside
it, the two ledgers (``NAME.doses.csv``: every vancomycin record and what became of it;
``NAME.stays.csv``: every ICU stay with a vancomycin record, kept, cut or dropped and why),
and prints what was found, kept and left out. An output never replaces an existing file
without ``--overwrite``, never anything inside ``--mimic-dir``, and is written under a
unique temporary name and renamed when complete. The SQL is printed by ``--print-sql``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", choices=("mimic",), help="the database to extract from (MIMIC-IV v2/v3)")
    parser.add_argument(
        "--mimic-dir", metavar="DIR", help="the MIMIC-IV folder holding hosp/ and icu/, as PhysioNet ships it"
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="the dosing table to write (.csv, .csv.gz, .parquet); NAME.doses.csv and NAME.stays.csv "
        "beside it",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    parser.add_argument(
        "--interval-h", type=float, default=12.0, metavar="H", help="hours between decisions (default 12 h)"
    )
    parser.add_argument(
        "--max-days", type=float, default=7.0, metavar="D", help="longest episode in days (default 7 d)"
    )
    parser.add_argument(
        "--lookback-h",
        type=float,
        default=24.0,
        metavar="H",
        help="how far back a stay's first row looks for each value, and the converter's --impute-max-age-h "
        "the table is made to pass (default 24 h)",
    )
    parser.add_argument(
        "--level-max-age-h",
        type=float,
        default=72.0,
        metavar="H",
        help="oldest vancomycin level carried forward (default 72 h)",
    )
    parser.add_argument(
        "--fill-missing-vitals",
        action="store_true",
        help="write reference vitals (HR 80, SBP 120, 37 C) where nothing was charted (no chartevents, or "
        "before ICU admission), counted in the report; without it such stays are cut or dropped",
    )
    parser.add_argument(
        "--memory-limit", default="2GB", metavar="SIZE", help="DuckDB's memory limit (default 2GB; it spills)"
    )
    parser.add_argument("--print-sql", action="store_true", help="print the extraction's SQL and stop")
    parser.add_argument("--json", action="store_true", help="print the extraction report as JSON")


def ledger_paths(out: Path) -> dict[str, Path]:
    """The two ledgers written beside ``out``: NAME.doses.csv and NAME.stays.csv."""
    name = out.name
    for suffix in (".csv.gz", ".csv", ".parquet", ".pq"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return {"doses": out.with_name(f"{name}.doses.csv"), "stays": out.with_name(f"{name}.stays.csv")}


def check_outputs(out: str, mimic_dir: str, overwrite: bool) -> list[Path]:
    """The output paths, or ValueError when one would replace an input or an existing file."""
    target = Path(out)
    paths = [target, *ledger_paths(target).values()]
    root = Path(mimic_dir).resolve()
    for path in paths:
        resolved = path.resolve()
        if resolved == root or root in resolved.parents:
            raise ValueError(
                f"--out {out}: {path} is inside --mimic-dir {mimic_dir}; write the table elsewhere"
            )
        if path.is_symlink():
            raise ValueError(f"--out {out}: {path} is a symbolic link; give a plain path")
        if path.is_dir():
            raise ValueError(f"--out {out}: {path} is a folder; give a file name")
        if path.exists() and not overwrite:
            raise ValueError(f"--out {out}: {path} already exists; pass --overwrite to replace it")
    if not target.parent.is_dir():
        raise ValueError(f"--out {out}: the folder {target.parent} does not exist")
    return paths


def run(args: argparse.Namespace) -> int:
    from vanco_offline.commands import CommandError
    from vanco_offline.data.mimic import extract_mimic, extraction_sql

    for option in ("interval_h", "max_days", "lookback_h", "level_max_age_h"):
        value = getattr(args, option)
        if not (math.isfinite(value) and value > 0):
            flag = "--" + option.replace("_", "-")
            raise ValueError(f"{flag} {value}: give a positive finite number")
    if args.print_sql:
        print(extraction_sql(args.interval_h, args.max_days))
        return 0
    if not args.mimic_dir or not args.out:
        raise CommandError("give --mimic-dir DIR and --out FILE (or --print-sql)")
    from vanco_offline.data import save_table

    out, doses_path, stays_path = check_outputs(args.out, args.mimic_dir, args.overwrite)
    result = extract_mimic(
        args.mimic_dir,
        args.interval_h,
        args.max_days,
        lookback_h=args.lookback_h,
        level_max_age_h=args.level_max_age_h,
        fill_missing_vitals=args.fill_missing_vitals,
        memory_limit=args.memory_limit,
    )
    report = result.report
    from vanco_offline.atomic import atomic_path

    with atomic_path(doses_path, overwrite=args.overwrite) as p:
        result.doses.to_csv(p, index=False)
    with atomic_path(stays_path, overwrite=args.overwrite) as p:
        result.stays.to_csv(p, index=False)
    with atomic_path(out, overwrite=args.overwrite) as p:
        save_table(result.table, p)
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report)
    if not args.json:
        print(f"wrote {len(result.table):,} rows ({report.stays_kept:,} stays) to {out}")
        print(f"every vancomycin record and what became of it: {doses_path}; every stay: {stays_path}")
        print(
            f"next: vanco-offline convert --data {out} --fill-unmeasured-level "
            f"--impute-max-age-h {args.lookback_h:g} --covariates"
        )
    return 0
