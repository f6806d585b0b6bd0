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
    minari = parser.add_argument_group("Minari export (the [minari] extra)")
    minari.add_argument("--minari", metavar="NAME", help="also write a Minari dataset (e.g. vanco/icu-v0)")
    minari.add_argument("--minari-root", metavar="DIR", help="Minari datasets folder (default: Minari's own)")
    minari.add_argument(
        "--minari-env",
        metavar="ENV_ID",
        help="the env a simulator cohort came from, for recover_environment() (default: vanco_pk's env "
        "when the table is a simulated cohort and its features are the env's; 'none' for no env)",
    )
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

    if args.minari:
        from vanco_offline.data.minari_format import _minari

        _minari()  # a missing extra stops here, before any work
    if args.minari_env is not None:
        _check_minari_env(args.minari_env)
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
        with atomic_output(out, args.overwrite) as partial:
            save_dataset(result, partial)
        path = out
        if not args.json:
            print(f"saved {result.dataset.transition_count:,} transitions to {path}")
    if args.minari:
        _write_minari(args, table, result)
    return 0


def _check_minari_env(env: str) -> None:
    """ValueError unless ``env`` names a vanco_pk environment (or ``none``): gymnasium imports the
    module of ``module:Env-v0``, so an arbitrary module name would run its code."""
    module, sep, _ = env.rpartition(":")
    if env != "none" and ((sep and module != "vanco_pk") or not env.split(":")[-1].startswith("VancoPK")):
        raise ValueError(
            f"--minari-env {env!r}: give a vanco_pk environment (vanco_pk:VancoPK-v0, "
            "vanco_pk:VancoPKDiscrete-v0, ...) or none; other modules are not imported"
        )


def _write_minari(args: argparse.Namespace, table, result) -> None:
    from vanco_offline.data import export_minari

    env = args.minari_env
    if env is None and "behavior_policy" in table.columns:  # written by generate_cohort / simulate
        candidate = "vanco_pk:VancoPKDiscrete-v0" if args.action == "discrete" else "vanco_pk:VancoPK-v0"
        import gymnasium

        names = tuple(gymnasium.make(candidate).unwrapped.observation_names)
        env = candidate if names == tuple(result.observation_names) else None
    env = None if env in (None, "none") else env
    dataset = export_minari(result, args.minari, root=args.minari_root, env=env)
    where = f" (env {env}: recover_environment() rebuilds it)" if env else " (no env: logged data)"
    print(f"wrote Minari dataset {args.minari}: {dataset.total_episodes:,} episodes{where}")


def _age(value: float, option: str) -> float:
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{option} must be a positive number (inf for no limit), got {value}")
    return value
