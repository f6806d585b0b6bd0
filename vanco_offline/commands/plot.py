"""``vanco-offline plot``: training curves, dose response, dose histograms and PK profiles (PNG)."""

from __future__ import annotations

import argparse
from pathlib import Path

KINDS = ("curves", "dose-response", "histogram", "pk")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="model.d3 (or its folder) written by `vanco-offline train`"
    )
    parser.add_argument(
        "--data", default=None, help="table for the dose histogram (default: the sample cohort)"
    )
    parser.add_argument("--out", default=None, help="folder for the PNG files (default: the model's folder)")
    parser.add_argument(
        "--what", default=",".join(KINDS), help=f"comma-separated subset of {', '.join(KINDS)} (default: all)"
    )
    parser.add_argument(
        "--patient-seed", type=int, default=7, help="the simulated patient of the PK profiles"
    )


def run(args: argparse.Namespace) -> int:
    from vanco_offline.plots import write_plots
    from vanco_offline.trained import load_model

    kinds = [k.strip() for k in args.what.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"--what {args.what!r}: choose from {', '.join(KINDS)}")
    model_dir = Path(args.model) if Path(args.model).is_dir() else Path(args.model).parent
    model = load_model(args.model)
    table = None
    if args.data is not None:
        from vanco_offline.data import load_table

        table = load_table(args.data)
    out = Path(args.out) if args.out else model_dir
    for path in write_plots(
        model, out, kinds, log_dir=model_dir, table=table, patient_seed=args.patient_seed
    ):
        print(f"wrote {path}")
    return 0
