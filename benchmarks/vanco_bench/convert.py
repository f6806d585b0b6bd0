"""``vanco-offline bench convert``: table -> MDPDataset conversion speed and where the time goes.

Converts synthetic tables of growing size (default 10k, 100k and 1M rows, 15 decision
steps per stay, some terminal stays, missing values carried forward) and prints rows/s,
the growth ratio of the time against the growth of the table (1.0 = linear), and the split
of the time between validation, observations (imputation) and the rest (rewards, episodes
and d3rlpy's buffer). The last column times d3rlpy's own ``MDPDataset(...)`` constructor on
the same flat arrays, the path this module avoids.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import numpy as np
import pandas as pd

from vanco_offline.data.convert import convert
from vanco_offline.data.observations import build_observations
from vanco_offline.data.options import CarryForward, ConversionSettings
from vanco_offline.data.validation import check_table

#: The one-line help of ``vanco-offline bench convert`` (read by the command without importing this module).
HELP = "table -> MDPDataset conversion speed"

STEPS_PER_STAY = 15
TARGET_S_PER_MILLION = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="table sizes in rows"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic tables")
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs per size (default 3)")


def synthetic_table(rows: int, seed: int = 0) -> pd.DataFrame:
    """A valid dosing table of ``rows`` rows (15 per stay), with gaps to carry forward."""
    rng = np.random.default_rng(seed)
    stays = -(-rows // STEPS_PER_STAY)
    step = np.tile(np.arange(STEPS_PER_STAY), stays)[:rows]
    stay = np.repeat(np.arange(stays), STEPS_PER_STAY)[:rows]
    table = pd.DataFrame(
        {
            "stay_id": stay,
            "step": step,
            "vanco_level": rng.uniform(3, 35, rows),
            "creatinine": rng.uniform(0.4, 4, rows),
            "wbc": rng.uniform(2, 25, rows),
            "bun": rng.uniform(5, 80, rows),
            "temperature": rng.uniform(35, 40.5, rows),
            "sbp": rng.uniform(80, 180, rows),
            "heart_rate": rng.uniform(50, 140, rows),
            "dose_mg": rng.choice(np.arange(0.0, 3001.0, 250.0), rows),
            "done": False,
        }
    )
    table.loc[step < rng.integers(0, 3, stays)[stay], "vanco_level"] = np.nan  # not yet measured
    later = step > 0
    table.loc[later & (rng.random(rows) < 0.05), "creatinine"] = np.nan  # a missed lab draw
    last = np.r_[stay[1:] != stay[:-1], True]
    table.loc[last & (rng.random(rows) < 0.2), "done"] = True
    return table


OPTIONS = {"impute": CarryForward(max_age_steps=4), "fill_unmeasured_level": True}


def _best(function, repeats: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = function()
        best = min(best, time.perf_counter() - start)
    return best, out


def _d3rlpy_constructor_s(table: pd.DataFrame) -> float:
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset

    n = len(table)
    last = np.r_[table["stay_id"].to_numpy()[1:] != table["stay_id"].to_numpy()[:-1], True]
    observations = np.nan_to_num(table.iloc[:, 2:9].to_numpy(np.float32))
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # d3rlpy logs the signatures it guesses
        MDPDataset(
            observations,
            table["dose_mg"].to_numpy(np.float32).reshape(-1, 1),
            np.zeros(n, np.float32),
            np.zeros(n, np.float32),
            last.astype(np.float32),
            action_space=ActionSpace.CONTINUOUS,
            action_size=1,
        )
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    if any(size < 2 * STEPS_PER_STAY for size in args.sizes):
        raise ValueError(f"--sizes must be at least {2 * STEPS_PER_STAY} rows each")
    if args.repeats < 1:
        raise ValueError("--repeats must be at least 1")
    warnings.filterwarnings("ignore", module="d3rlpy")
    header = (
        f"{'rows':>10} {'stays':>8} {'total s':>8} {'rows/s':>11} {'growth':>7} "
        f"{'validate':>9} {'observ.':>8} {'rest':>9} {'d3rlpy MDPDataset() s':>22}"
    )
    print("table -> MDPDataset conversion (continuous doses, carry-forward imputation)")
    print(header)
    print("-" * len(header))
    previous: tuple[int, float] | None = None
    options = ConversionSettings(**OPTIONS)
    per_million = 0.0
    for size in sorted(args.sizes):
        table = synthetic_table(size, args.seed)
        repeats = args.repeats
        total, result = _best(lambda table=table: convert(table, **OPTIONS), repeats)
        t_check, checked = _best(lambda table=table: check_table(table, options), repeats)
        t_obs, _ = _best(lambda checked=checked: build_observations(checked, options), repeats)
        rest = max(total - t_check - t_obs, 0.0)
        growth = "" if previous is None else f"{(total / previous[1]) / (size / previous[0]):.2f}"
        print(
            f"{size:>10,} {result.report.stays:>8,} {total:>8.2f} {size / total:>11,.0f} {growth:>7} "
            f"{t_check / total:>8.0%} {t_obs / total:>8.0%} {rest / total:>8.0%} "
            f"{_d3rlpy_constructor_s(table):>22.2f}"
        )
        if result.report.transitions_out != result.dataset.transition_count:
            raise RuntimeError("report and d3rlpy disagree on the transition count")
        previous = (size, total)
        per_million = total * 1_000_000 / size
    print(
        "\nvalidate / observ. / rest: share of the total in schema checks, observation assembly and "
        "imputation, and rewards + d3rlpy episodes + buffer.\n"
        f"growth = (time ratio) / (rows ratio) against the previous size; 1.00 is linear. "
        f"At the largest size that is {per_million:.1f} s per 1M rows (target < {TARGET_S_PER_MILLION:g} s)."
    )
    return 0
