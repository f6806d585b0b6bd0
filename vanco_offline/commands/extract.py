"""``vanco-offline extract mimic``: build the dosing table from a MIMIC-IV folder (DuckDB).

Reads the PhysioNet files in place (``hosp/``, ``icu/``; csv.gz or parquet), writes one row
per decision of each ICU stay that received vancomycin, and prints what was found, kept and
left out. The SQL is printed by ``--print-sql`` and shown in data/README.md.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", choices=("mimic",), help="the database to extract from (MIMIC-IV v2/v3)")
    parser.add_argument(
        "--mimic-dir", metavar="DIR", help="the MIMIC-IV folder holding hosp/ and icu/, as PhysioNet ships it"
    )
    parser.add_argument("--out", metavar="FILE", help="the dosing table to write (.csv, .csv.gz, .parquet)")
    parser.add_argument(
        "--interval-h", type=float, default=12.0, metavar="H", help="hours between decisions (default 12 h)"
    )
    parser.add_argument(
        "--max-days", type=float, default=7.0, metavar="D", help="longest episode in days (default 7 d)"
    )
    parser.add_argument("--print-sql", action="store_true", help="print the extraction's SQL and stop")
    parser.add_argument("--json", action="store_true", help="print the extraction report as JSON")


def run(args: argparse.Namespace) -> int:
    from vanco_offline.commands import CommandError
    from vanco_offline.data.mimic import extract_mimic, extraction_sql

    if args.print_sql:
        print(extraction_sql(args.interval_h, args.max_days))
        return 0
    if not args.mimic_dir or not args.out:
        raise CommandError("give --mimic-dir DIR and --out FILE (or --print-sql)")
    from vanco_offline.data import save_table

    table, report = extract_mimic(args.mimic_dir, args.interval_h, args.max_days)
    path = save_table(table, args.out)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    if not args.json:
        print(f"wrote {len(table):,} rows ({report.stays_kept:,} stays) to {path}")
        print(f"next: vanco-offline convert --data {path} --fill-unmeasured-level --impute-max-age-h 24")
    return 0
