"""``vanco-offline recommend``: the next dose for one patient, with limits, support and MIPD."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vanco_pk.targets import COVARIATES, FEATURES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="model.d3 (or its folder) written by `vanco-offline train`"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--json", metavar="JSON_OR_FILE", help="the state as a JSON object, or a file holding one"
    )
    source.add_argument("--csv", metavar="FILE", help="a dosing table; the state is --row of it")
    source.add_argument("--clinical", action="store_true", help="run the built-in clinical cases as a table")
    source.add_argument(
        "--samples", type=int, metavar="N", help="recommend for N rows of --data (or the built-in cohort)"
    )
    parser.add_argument("--row", type=int, default=-1, help="row of --csv (0-based; default the last)")
    parser.add_argument(
        "--data", metavar="FILE", help="table for --samples (default: a built-in synthetic cohort)"
    )
    parser.add_argument(
        "--mode", choices=("greedy", "sample"), default="greedy", help="--samples: greedy or sampled doses"
    )
    for name in FEATURES + COVARIATES:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, default=None)
    dose = parser.add_mutually_exclusive_group()
    dose.add_argument(
        "--first-dose", dest="first_dose", action="store_true", default=None, help="this is a loading dose"
    )
    dose.add_argument(
        "--maintenance", dest="first_dose", action="store_false", help="this is a maintenance dose"
    )
    parser.add_argument("--output", metavar="FILE", help="also write the result as JSON")


def run(args: argparse.Namespace) -> int:
    from vanco_offline.trained import load_model

    model = load_model(args.model)
    if args.clinical:
        result: Any = _clinical_table(model)
    elif args.samples is not None:
        result = _samples(model, args)
    else:
        result = _one_state(model, args)
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))
    return 0


def _one_state(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    from vanco_offline.recommend import recommend

    history = None
    if args.json is not None:
        text = Path(args.json).read_text() if Path(args.json).is_file() else args.json
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"--json is neither a file nor valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(fields, dict):
            raise ValueError("--json must hold one JSON object of feature names to values")
    elif args.csv is not None:
        fields, history = _csv_state(args.csv, args.row)
    else:
        fields = {
            name: getattr(args, name) for name in FEATURES + COVARIATES if getattr(args, name) is not None
        }
        if not fields:
            raise ValueError(
                "give the state with --json, --csv or flags such as --vanco-level 12 --creatinine 1.1 ..."
            )
    first_dose = fields.pop("first_dose", args.first_dose)
    covariates = {k: fields.pop(k) for k in COVARIATES if k in fields}
    rec = recommend(model, fields, covariates, first_dose=first_dose, history=history)
    print(rec)
    return rec.to_dict()


def _csv_state(path: str, row: int) -> tuple[dict[str, Any], Any]:
    from vanco_offline.data import load_table

    table = load_table(path)
    if not -len(table) <= row < len(table):
        raise ValueError(f"--row {row} is outside {path}, which has {len(table)} rows")
    current = table.iloc[row]
    fields = {k: current[k] for k in FEATURES + COVARIATES if k in table.columns}
    history = None
    if "stay_id" in table.columns:
        # The stay's rows up to the current one: for the MIPD fit and for a model whose
        # observation holds the previous dose or the PK features.
        stay = table[table["stay_id"] == current["stay_id"]]
        history = stay.loc[: current.name]
    return fields, history


def _clinical_table(model: Any) -> list[dict[str, Any]]:
    from vanco_offline.recommend import CLINICAL_CASES, recommend

    rows = []
    print("| case | level | SCr | model dose | recommended | MIPD | limits and warnings |")
    print("|---|---|---|---|---|---|---|")
    for name, case in CLINICAL_CASES.items():
        # Each case is a short chart (a loading and a maintenance dose before its level), which
        # MIPD fits and a model with history-dependent features needs.
        rec = recommend(model, case["state"], case["covariates"], history=case["history"])
        notes = "; ".join(rec.warnings) or "-"
        level = case["state"]["vanco_level"]
        mipd = f"{rec.mipd_dose_mg:.0f}" if rec.mipd_dose_mg is not None else "-"
        print(
            f"| {name} | {level:.0f} | {case['state']['creatinine']:.1f} | {rec.model_dose_mg:.0f} | "
            f"{rec.dose_mg:.0f} | {mipd} | {notes} |"
        )
        rows.append({"case": name, **rec.to_dict()})
    return rows


def _samples(model: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    from vanco_offline.recommend import recommend_on_table
    from vanco_offline.training import builtin_cohort

    if args.data is not None:
        from vanco_offline.data import load_table

        table = load_table(args.data)
    else:
        table = builtin_cohort(n_patients=20, seed=1)
    rows = recommend_on_table(model, table, args.samples, args.mode)
    difference = (rows.recommended_mg - rows.logged_dose_mg).abs().mean()
    print(rows.drop(columns="warnings").to_string(index=False, float_format=lambda v: f"{v:.0f}"))
    print(
        f"\n{len(rows)} rows ({args.mode}): mean |recommended - logged| {difference:.0f} mg, "
        f"clipped {rows.clipped.mean():.0%}, outside the training support {rows.outside_support.mean():.0%}"
    )
    return rows.to_dict(orient="records")
