"""``vanco-offline evaluate``: training diagnostics, off-policy evaluation and, for simulated
data, the simulator's ground truth of a trained model."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from vanco_offline.commands.common import add_data_argument, format_metrics, quiet_d3rlpy, read_table_argument
from vanco_offline.commands.files import (
    add_model_argument,
    add_overwrite_argument,
    atomic_output,
    check_output,
    load_model_argument,
    model_files,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    add_data_argument(parser)
    parser.add_argument(
        "--truth",
        action="store_true",
        help="the --data table came from `vanco-offline simulate`: add the simulator's ground truth "
        "(automatic for the built-in cohort)",
    )
    parser.add_argument(
        "--missing-prob",
        type=float,
        default=None,
        metavar="P",
        help="with --truth: the table's --missing-prob (probability 0-1 a trough is not drawn)",
    )
    parser.add_argument(
        "--twin-prior",
        choices=("band", "published"),
        default="band",
        help="the PK twins' prior: Goti 2018 refitted to the table's levels and spread over the refit's "
        "band (default; needs at least 20 stays with a level), or Goti 2018 as published",
    )
    parser.add_argument("--fqe-steps", type=int, default=4000, help="FQE gradient steps (default 4000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap, FQE and the truth")
    parser.add_argument("--output", metavar="FILE", help="also write the results as JSON")
    add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    from vanco_pk.world import World

    from vanco_offline.algos.evaluators import standard_evaluators
    from vanco_offline.data.cohort import BUILTIN_WORLD, builtin_cohort
    from vanco_offline.ope import FQESettings, SimulatorTruth, TwinSettings, evaluate, local_prior
    from vanco_offline.ope.report import coverage_label
    from vanco_offline.ope.twin import TWIN_COVARIATES
    from vanco_offline.progress import stages

    quiet_d3rlpy()
    if args.missing_prob is not None and not (args.truth and args.data is not None):
        raise ValueError("--missing-prob applies to --truth with --data (a simulated table); leave it out")
    if args.missing_prob is not None and not 0.0 <= args.missing_prob <= 1.0:
        raise ValueError(f"--missing-prob {args.missing_prob} must be a probability in [0, 1]")
    if args.output:
        check_output(args.output, args.overwrite, [*model_files(args.model), args.data], "--output")
    model = load_model_argument(args)
    table, source = read_table_argument(args)
    truth = None
    if table is None:
        # A fresh draw of the built-in cohort: stays the model was not trained on.
        table, source = (
            builtin_cohort(n_patients=200, seed=args.seed + 1),
            "built-in synthetic cohort (new stays)",
        )
        data_world = BUILTIN_WORLD
    elif args.truth:
        data_world = World(level_missing_prob=args.missing_prob or 0.0)
    else:
        data_world = None
    # The truth and the twins score the reward the model's data were converted with.
    world = dataclasses.replace(data_world or World(), reward=model.conversion.reward or "default")
    if data_world is not None:
        truth = SimulatorTruth(n_patients=1000, seed=10**6 + args.seed, world=world)
    if "time_h" in table.columns:  # the OPE replays the model at the data's interval: it must be the model's
        model.scope.check_interval(table["stay_id"].to_numpy(), table["time_h"].to_numpy(), f"data {source}")
    data = model.convert(table)
    # The PK twins need each stay's covariates (weight, age, sex, dialysis).
    twin_ok = all(c in table for c in TWIN_COVARIATES)

    twin = TwinSettings(world=world, seed=args.seed)
    if twin_ok and args.twin_prior == "band":
        try:
            local = local_prior(table, seed=args.seed)
        except ValueError as err:
            raise ValueError(f"--twin-prior band: {err}; pass --twin-prior published") from None
        twin = dataclasses.replace(twin, model=local, refitted_from=twin.model)
    estimators = ("fqe", "twin", "wis", "wdr") if twin_ok else ("fqe", "wis", "wdr")
    ope_stage = "FQE, " + ("the PK twins, " if twin_ok else "") + "WIS, WDR"
    ope_stage += " and the truth" if truth is not None else ""
    with stages(["training diagnostics", ope_stage], desc="evaluate ") as bar:
        evaluators = standard_evaluators()
        diagnostics = {name: float(fn(model.algo, data.dataset)) for name, fn in evaluators.items()}
        bar.next()
        report = evaluate(
            model.algo,
            data,
            gamma=model.algo.config.gamma,
            estimators=estimators,
            table=table,
            fqe=FQESettings(n_steps=args.fqe_steps, seed=args.seed),
            twin=twin,
            truth=truth,
            seed=args.seed,
        )
        bar.next()
    print(f"data: {source}")
    print("training diagnostics on this data:")
    print(format_metrics(diagnostics))
    print()
    print(report)
    if not twin_ok:
        print(f"twin: not run; the table lacks the covariates {list(TWIN_COVARIATES)} the PK twins need")
    if args.output:
        result = {
            "model": str(args.model),
            "data": source,
            "diagnostics": diagnostics,
            "ope": {
                name: {"value": est.value, "low": est.interval.low, "high": est.interval.high}
                for name, est in report.estimates.items()
            },
            # What each estimate is of, and its interval's measured coverage (or "uncalibrated").
            "ope_labels": {
                name: {
                    "of": "softened policy" if est.softened else "policy",
                    "interval": coverage_label(report.coverage_key(name), est.interval.confidence),
                }
                for name, est in report.estimates.items()
            },
            "logged_return": report.logged_return.value,
            "truth": None
            if report.truth is None
            else {"value": report.truth.value, "std_error": report.truth.std_error},
            "truth_softened": None
            if report.truth_softened is None
            else {"value": report.truth_softened.value, "std_error": report.truth_softened.std_error},
            "warnings": report.warnings,
            "notes": report.notes,
        }
        with atomic_output(Path(args.output), args.overwrite) as partial:
            partial.write_text(json.dumps(result, indent=2))
    return 0
