"""``vanco-offline convert``: validate a dosing table and convert it to a d3rlpy dataset.

Prints the conversion report (or its JSON with ``--json``); ``--out FILE.h5`` saves the
dataset in d3rlpy's HDF5 format with the stay ids, behaviour probabilities and report
alongside (read it back with ``vanco_offline.data.load_dataset``).
"""

from __future__ import annotations

import argparse
import json
import math

from vanco_pk.targets import REWARDS

from vanco_offline.commands.files import add_overwrite_argument, atomic_output, check_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, metavar="FILE", help="dosing table (.csv, .csv.gz, .parquet, .pq)"
    )
    parser.add_argument(
        "--action",
        choices=("continuous", "discrete"),
        default="continuous",
        help="dose in mg, or index of the 250 mg dose grid (default: continuous)",
    )
    parser.add_argument(
        "--reward",
        choices=sorted(REWARDS),
        default=None,
        help="compute this reward from consecutive rows, replacing any reward column "
        "(default: the table's reward column, else the default reward)",
    )
    parser.add_argument("--out", metavar="FILE.h5", help="save the dataset (d3rlpy HDF5 + our metadata)")
    add_overwrite_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    impute = parser.add_argument_group("imputation (off unless chosen; counted in the report)")
    age = impute.add_mutually_exclusive_group()
    age.add_argument(
        "--impute-max-age-h",
        type=float,
        metavar="H",
        help="carry the last value forward within a stay, at most H hours old (needs time_h; inf = no limit)",
    )
    age.add_argument(
        "--impute-max-age-steps",
        type=float,
        metavar="N",
        help="carry the last value forward within a stay, at most N decision steps old (inf = no limit)",
    )
    impute.add_argument(
        "--fill-unmeasured-level",
        action="store_true",
        help="use 0.0 mg/L for a vancomycin level never measured in the stay (drug-naive)",
    )
    impute.add_argument(
        "--level-indicator",
        action="store_true",
        help="add a vanco_level_measured feature (needs --fill-unmeasured-level)",
    )
    obs = parser.add_argument_group("observation and actions")
    obs.add_argument("--covariates", action="store_true", help="append the covariate columns present")
    obs.add_argument("--clip-doses", action="store_true", help="clip doses above 3000 mg instead of failing")
    obs.add_argument(
        "--round-doses", action="store_true", help="with --action discrete, round doses to the 250 mg grid"
    )


def run(args: argparse.Namespace) -> int:
    from vanco_offline.data import CarryForward, convert, load_table, save_dataset

    impute = None
    if args.impute_max_age_h is not None:
        impute = CarryForward(max_age_h=_age(args.impute_max_age_h, "--impute-max-age-h"))
    elif args.impute_max_age_steps is not None:
        impute = CarryForward(max_age_steps=_age(args.impute_max_age_steps, "--impute-max-age-steps"))
    out = check_output(args.out, args.overwrite, [args.data], "--out") if args.out else None
    table = load_table(args.data)
    result = convert(
        table,
        args.action,
        reward=args.reward,
        impute=impute,
        fill_unmeasured_level=args.fill_unmeasured_level,
        level_indicator=args.level_indicator,
        covariates=args.covariates,
        clip_doses=args.clip_doses,
        round_doses=args.round_doses,
    )
    assert result.report is not None
    if args.json:
        print(json.dumps(result.report.to_dict(), indent=2, default=str))
    else:
        print(result.report)
    if out is not None:
        with atomic_output(out) as partial:
            save_dataset(result, partial)
        path = out
        if not args.json:
            print(f"saved {result.dataset.transition_count:,} transitions to {path}")
    return 0


def _age(value: float, option: str) -> float:
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{option} must be a positive number (inf for no limit), got {value}")
    return value
