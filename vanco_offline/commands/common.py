"""Arguments and output shared by several commands."""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from vanco_offline.progress import quiet_d3rlpy  # noqa: F401  (re-exported for the commands)

#: Training diagnostics (``algos.evaluators``) shown after training and in `evaluate`, in this order.
DIAGNOSTICS = ("greedy_q", "mean_v", "mc_return", "mean_reward", "relative_improvement", "action_saturation")


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=None,
        metavar="FILE",
        help="dosing table (CSV or Parquet, schema in data/README.md); default: the built-in cohort",
    )


def read_table_argument(args: argparse.Namespace) -> tuple[pd.DataFrame | None, str | None]:
    """The table named by ``--data`` (None for the built-in cohort) and a description of it."""
    if args.data is None:
        return None, None
    from vanco_offline.data import load_table

    return load_table(args.data), str(args.data)


def format_metrics(metrics: dict[str, Any]) -> str:
    rows = [(name, metrics[name]) for name in DIAGNOSTICS if name in metrics]
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name:<{width}}  {value: .4f}" for name, value in rows)
