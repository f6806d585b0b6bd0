"""``vanco-offline plot``: training curves, dose response, dose histograms and PK profiles (PNG)."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from vanco_offline.commands.files import (
    add_model_argument,
    add_overwrite_argument,
    check_output,
    load_model_argument,
    model_files,
)

KINDS = ("curves", "dose-response", "histogram", "pk")
#: The file each kind writes into --out.
FILES = {
    "curves": "training_curves.png",
    "dose-response": "dose_response.png",
    "histogram": "dose_histogram.png",
    "pk": "pk_profiles.png",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument(
        "--data", default=None, help="table for the dose histogram (default: the sample cohort)"
    )
    parser.add_argument("--out", default=None, help="folder for the PNG files (default: the model's folder)")
    parser.add_argument(
        "--what", default=",".join(KINDS), help=f"comma-separated subset of {', '.join(KINDS)} (default: all)"
    )
    parser.add_argument(
        "--patient-seed", type=int, default=7, help="the simulated patient of the PK profiles (>= 0)"
    )
    add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    from vanco_offline.plots import write_plots

    kinds = [k.strip() for k in args.what.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"--what {args.what!r}: choose from {', '.join(KINDS)}")
    if args.patient_seed < 0:
        raise ValueError(f"--patient-seed {args.patient_seed} must be a non-negative integer")
    model_dir = Path(args.model) if Path(args.model).is_dir() else Path(args.model).parent
    out = Path(args.out) if args.out else model_dir
    if not out.is_dir():
        raise ValueError(f"--out {out} is not an existing folder")
    existing = [str(out / FILES[k]) for k in kinds if (out / FILES[k]).exists()]
    if existing and not args.overwrite:
        raise ValueError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace")
    inputs = [*model_files(args.model), args.data]
    for kind in kinds:
        check_output(out / FILES[kind], args.overwrite, inputs, "--out")
    model = load_model_argument(args)
    table = None
    if args.data is not None:
        from vanco_offline.data import load_table

        table = load_table(args.data)
    # Drawn into a fresh folder beside the targets, then each renamed onto its target (never
    # through a symbolic link): an error or Ctrl-C leaves no half-written figure.
    with tempfile.TemporaryDirectory(prefix=".partial-plots-", dir=out) as scratch:
        drawn = write_plots(
            model, scratch, kinds, log_dir=model_dir, table=table, patient_seed=args.patient_seed
        )
        for path in drawn:
            target = check_output(out / Path(path).name, args.overwrite, inputs, "--out")
            os.replace(path, target)
            print(f"wrote {target}")
    return 0
