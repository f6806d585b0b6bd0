"""``vanco-offline demo``: the main job on the built-in synthetic cohort.

Until the training pipeline is wired in, the demo rolls the simulator out under the standard
dosing regimens and prints their clinical outcomes.
"""

from __future__ import annotations

import argparse

from vanco_pk.sanity import format_outcome_table, outcome_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patients", type=int, default=300, help="simulated patients (default 300)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    if args.patients < 1:
        raise ValueError(f"--patients must be at least 1, got {args.patients}")
    print(format_outcome_table(outcome_table(n=args.patients, seed=args.seed)))
    return 0
