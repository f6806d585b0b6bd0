"""``vanco-offline recommend``: the next dose for one patient, with limits, support and MIPD."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vanco_pk.targets import COVARIATES, FEATURES

from vanco_offline.commands.files import (
    add_model_argument,
    add_overwrite_argument,
    atomic_output,
    check_output,
    load_model_argument,
    model_files,
)

#: The unit of each state flag, shown in --help.
_UNITS = {
    "vanco_level": "mg/L (omit if never measured)",
    "creatinine": "mg/dL",
    "wbc": "10^9/L",
    "bun": "mg/dL",
    "temperature": "degC",
    "sbp": "mmHg",
    "heart_rate": "beats/min",
    "weight_kg": "kg",
    "age": "years",
    "height_cm": "cm",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--json", metavar="JSON_OR_FILE", help="the state as a JSON object, or a file holding one"
    )
    source.add_argument("--csv", metavar="FILE", help="a dosing table; the state is --row of it")
    source.add_argument("--clinical", action="store_true", help="run the built-in clinical cases as a table")
    source.add_argument(
        "--samples", type=int, metavar="N", help="recommend for N rows of --data (or the built-in cohort)"
    )
    parser.add_argument("--row", type=int, default=None, help="row of --csv (0-based; default the last)")
    parser.add_argument(
        "--data", metavar="FILE", help="table for --samples (default: a built-in synthetic cohort)"
    )
    parser.add_argument(
        "--mode",
        choices=("greedy", "sample"),
        default=None,
        help="--samples: greedy (default) or sampled doses",
    )
    state = parser.add_argument_group(
        "state flags (alone, or beside --json to override its fields, which is reported; not with --csv); "
        "every dose needs --weight-kg, --age (18 or older), --sex and --dialysis, and --height-cm is "
        "checked against the weight"
    )
    for name in FEATURES + COVARIATES:
        flag = f"--{name.replace('_', '-')}"
        if name == "sex":
            state.add_argument(flag, dest=name, default=None, help="0/m/male or 1/f/female")
        elif name == "dialysis":
            state.add_argument(flag, dest=name, default=None, help="0/1, true/false, yes/no")
        else:
            state.add_argument(flag, dest=name, type=float, default=None, metavar="X", help=_UNITS[name])
    dose = parser.add_mutually_exclusive_group()
    dose.add_argument(
        "--first-dose", dest="first_dose", action="store_true", default=None, help="this is a loading dose"
    )
    dose.add_argument(
        "--maintenance", dest="first_dose", action="store_false", help="this is a maintenance dose"
    )
    parser.add_argument("--output", metavar="FILE", help="also write the result as JSON")
    add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    if args.output:
        inputs = [*model_files(args.model), args.csv, args.data, _json_file(args)]
        check_output(args.output, args.overwrite, inputs, "--output")
    flags = [name for name in FEATURES + COVARIATES if getattr(args, name) is not None]
    if flags and (args.clinical or args.samples is not None or args.csv is not None):
        source = "--clinical" if args.clinical else "--samples" if args.samples is not None else "--csv"
        raise ValueError(
            f"{', '.join('--' + f.replace('_', '-') for f in flags)} cannot be combined with {source} "
            "(the state comes from there); edit the table, or give the state with --json or flags alone"
        )
    _check_flag_combinations(args)
    model = load_model_argument(args)
    if args.clinical:
        result: Any = _clinical_table(model)
    elif args.samples is not None:
        result = _samples(model, args)
    else:
        result = _one_state(model, args)
    if args.output:
        with atomic_output(Path(args.output), args.overwrite) as partial:
            partial.write_text(json.dumps(result, indent=2, default=str))
    return 0


def _check_flag_combinations(args: argparse.Namespace) -> None:
    """ValueError for a flag that the chosen source would ignore (never silently dropped)."""
    ignored = []
    if args.mode is not None and args.samples is None:
        ignored.append("--mode (it applies to --samples)")
    if args.data is not None and args.samples is None:
        ignored.append("--data (it applies to --samples; give one patient's rows with --csv)")
    if args.row is not None and args.csv is None:
        ignored.append("--row (it applies to --csv)")
    if args.first_dose is not None and (args.samples is not None or args.clinical):
        flag = "--first-dose" if args.first_dose else "--maintenance"
        source = (
            "--samples (each row's place in its stay says it)" if args.samples is not None else "--clinical"
        )
        ignored.append(f"{flag} (not with {source})")
    if ignored:
        raise ValueError(f"these flags would be ignored: {'; '.join(ignored)}; leave them out")


def _json_file(args: argparse.Namespace) -> str | None:
    """``--json``'s file name; None when it is JSON text (an object or a list, never a file name)."""
    if args.json is None or args.json.lstrip().startswith(("{", "[")):
        return None
    return args.json


def _one_state(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    from vanco_offline.recommend import recommend

    history = None
    if args.json is not None:
        from vanco_offline.safety import load_json

        path = _json_file(args)
        if path is not None and not Path(path).is_file():
            raise ValueError(f"--json {path!r} is neither a JSON object nor an existing file")
        fields = load_json(
            Path(path).read_text() if path else args.json, f"--json {path}" if path else "--json"
        )
        if not isinstance(fields, dict):
            raise ValueError("--json must hold one JSON object of feature names to values")
        for name in FEATURES + COVARIATES:
            value = getattr(args, name)
            if value is not None:
                if name in fields:
                    flag = f"--{name.replace('_', '-')}"
                    print(f"note: {flag} {value} overrides the JSON's {name} {fields[name]!r}")
                fields[name] = value
        if args.first_dose is not None and "first_dose" in fields:
            print(f"note: the dose flag overrides the JSON's first_dose {fields['first_dose']!r}")
            fields["first_dose"] = args.first_dose
    elif args.csv is not None:
        fields, history = _csv_state(model, args.csv, -1 if args.row is None else args.row)
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


def _csv_state(model: Any, path: str, row: int) -> tuple[dict[str, Any], Any]:
    from vanco_offline.data import load_table

    table = load_table(path)
    # The converter's checks (times sorted and unique within a stay, units, doses...): the
    # stay's rows are the patient's history, and read out of order they would give another dose.
    table = model.validate(table)
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
    from vanco_offline.recommend import CLINICAL_CASES, case_history, recommend

    rows = []
    head = model.draw_head is not None
    print(
        "| case | level | SCr | model dose | recommended | MIPD |"
        + (" draw a level |" if head else "")
        + " limits and warnings |"
    )
    print("|---|---|---|---|---|---|---|" + ("---|" if head else ""))
    for name, case in CLINICAL_CASES.items():
        # Each case is a short chart (a loading and a maintenance dose before its level), which
        # MIPD fits and a model with history-dependent features needs.
        # Charted at the model's own dosing interval.
        history = case_history(case["state"], case["covariates"], model.scope.interval_h)
        rec = recommend(model, case["state"], case["covariates"], history=history)
        notes = "; ".join(rec.warnings) or "-"
        level = case["state"]["vanco_level"]
        mipd = f"{rec.mipd_dose_mg:.0f}" if rec.mipd_dose_mg is not None else "-"
        given = "HOLD" if rec.held else f"{rec.dose_mg:.0f} {rec.schedule}"
        draw = ""
        if rec.draw is not None:
            advice = rec.draw
            why = "hold: re-check; head " if rec.held else ""
            value = f"{why}{advice['value']:+.3f} vs {advice['cost']:.3f}"
            draw = f" {'yes' if advice['draw'] else 'no'} ({value}) |"
        print(
            f"| {name} | {level:.0f} | {case['state']['creatinine']:.1f} | {rec.model_dose_mg:.0f} | "
            f"{given} | {mipd} |{draw} {notes} |"
        )
        rows.append({"case": name, **rec.to_dict()})
    return rows


def _samples(model: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    from vanco_offline.data import builtin_cohort
    from vanco_offline.recommend import recommend_on_table

    if args.data is not None:
        from vanco_offline.data import load_table

        table = load_table(args.data)
    else:
        table = builtin_cohort(n_patients=20, seed=1)
    mode = args.mode or "greedy"
    rows = recommend_on_table(model, table, args.samples, mode)
    difference = (rows.recommended_mg - rows.logged_dose_mg).abs().mean()
    print(rows.drop(columns="warnings").to_string(index=False, float_format=lambda v: f"{v:.0f}"))
    print(
        f"\n{len(rows)} rows ({mode}): mean |recommended - logged| {difference:.0f} mg, "
        f"clipped {rows.clipped.mean():.0%}, outside the training support {rows.outside_support.mean():.0%}"
    )
    return rows.to_dict(orient="records")
