"""Schema validation of a dosing table, checked early and vectorised (no per-row Python loops).

Every check collects its offenders and all problems are raised together in one
``ValueError`` that names the column, the stays and rows (``row`` is the 0-based position
in the table as given) and says how to fix it. Nothing is repaired here unless an option
asks for it (text ``sex`` values are mapped and reported; that is a recoding, not a repair).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from vanco_offline.data.options import ConversionSettings
from vanco_offline.data.schema import (
    BEHAVIOR_PROB,
    COVARIATES,
    DONE,
    DOSE,
    DOSE_MAX_MG,
    FEATURES,
    LEVEL_DRAWN,
    LEVEL_DRAWN_PROB,
    LEVEL_MEASURED,
    RANGES,
    REWARD,
    STAY,
    TIME_COLUMNS,
)
from vanco_offline.data.value_checks import (
    check_behavior_prob,
    check_draw_columns,
    check_last_row_only_nan,
    check_logged_doses,
    check_range_column,
    offenders,
    parse_done,
    parse_numeric,
    parse_sex_column,
    raise_problems,
)

__all__ = ["CheckedTable", "check_table"]

_KNOWN = (
    STAY,
    *TIME_COLUMNS,
    *FEATURES,
    DOSE,
    REWARD,
    DONE,
    BEHAVIOR_PROB,
    *COVARIATES,
    LEVEL_DRAWN,
    LEVEL_DRAWN_PROB,
)


@dataclasses.dataclass
class CheckedTable:
    """A validated table as arrays, with its stay structure (stays are contiguous row blocks)."""

    columns: dict[str, np.ndarray]  # numeric columns as float64, sex already 0/1
    stay: np.ndarray  # stay id of each row
    stay_ids: np.ndarray  # one per stay, in table order
    starts: np.ndarray  # first row of each stay
    ends: np.ndarray  # one past the last row of each stay
    codes: np.ndarray  # stay number (0..stays-1) of each row
    last: np.ndarray  # True on the last row of each stay
    time_column: str
    notes: list[str]
    ignored_columns: tuple[str, ...]
    dose_clipped: int = 0
    dose_clip_max_mg: float = 0.0

    @property
    def rows(self) -> int:
        return len(self.stay)


def normalised_table(table: pd.DataFrame, checked: CheckedTable, options: ConversionSettings) -> pd.DataFrame:
    """A copy of ``table`` as ``check_table(table, options)`` read it (``checked``): ``sex`` as
    0/1 and the doses clipped when ``options.clip_doses``; every other value unchanged."""
    out = table.copy()
    if "sex" in out.columns:
        out["sex"] = checked.columns["sex"]
    if options.clip_doses:
        out[DOSE] = checked.columns[DOSE]
    return out


def check_table(table: pd.DataFrame, options: ConversionSettings) -> CheckedTable:
    """Validate ``table`` and return its arrays; raise ValueError listing every problem."""
    if not isinstance(table, pd.DataFrame):
        raise ValueError(
            f"expected a pandas DataFrame, got {type(table).__name__}; load files with load_table"
        )
    if len(table) == 0:
        raise ValueError("the dosing table is empty: it needs one row per decision step")
    _check_columns(table)
    problems: list[str] = []
    notes: list[str] = []

    stay = table[STAY].to_numpy()
    stay_missing = pd.isna(table[STAY]).to_numpy()
    if stay_missing.any():
        problems.append(
            f"column '{STAY}' is missing in {offenders(stay_missing, stay)}: every row needs a stay id"
        )
        raise_problems(problems)

    columns: dict[str, np.ndarray] = {}
    numeric = [c for c in (*TIME_COLUMNS, *FEATURES, DOSE, REWARD, BEHAVIOR_PROB, *COVARIATES) if c in table]
    for name in numeric:
        if name == "sex":
            columns[name] = parse_sex_column(table[name], stay, problems, notes)
        else:
            columns[name] = parse_numeric(table[name], name, stay, problems)
    if DONE in table:
        columns[DONE] = parse_done(table[DONE], stay, problems)
    if options.needs_pk and LEVEL_MEASURED in table:
        # Read only when the PK replay needs it (a new level), else it stays an ignored column.
        columns[LEVEL_MEASURED] = parse_done(table[LEVEL_MEASURED], stay, problems, LEVEL_MEASURED)
    raise_problems(problems)  # the checks below need numbers

    codes, stay_ids = pd.factorize(table[STAY], sort=False)
    codes = codes.astype(np.int64)
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [len(codes)]))
    last = np.zeros(len(codes), dtype=bool)
    last[ends - 1] = True

    time_column = "step" if "step" in table else "time_h"
    order_problem = _check_order(codes, starts, stay, time_column, columns, problems)
    if order_problem:
        _check_duplicate_rows(table, stay, problems)
    for name in numeric:
        if name in RANGES:
            check_range_column(name, columns[name], stay, problems)
    check_logged_doses(columns[DOSE], last, stay, options, problems)
    if REWARD in columns:
        check_last_row_only_nan(REWARD, columns[REWARD], last, stay, problems, "the reward of a transition")
    if BEHAVIOR_PROB in columns:
        check_behavior_prob(columns[BEHAVIOR_PROB], last, stay, options, problems)
    # The draw decision (read by the draw head, checked for every table that has it).
    columns.update(check_draw_columns(table, last, stay, problems))
    if DONE in columns:
        early = (columns[DONE] > 0) & ~last
        if early.any():
            problems.append(
                f"column '{DONE}' is True before the last row of its stay in {offenders(early, stay)}: "
                "a terminal event (death, discharge) ends the stay; drop the rows after it or give "
                "them another stay id"
            )
    raise_problems(problems)

    clipped, clip_max = 0, 0.0
    if options.clip_doses:
        over = columns[DOSE] > DOSE_MAX_MG
        clipped = int(over.sum())
        if clipped:
            clip_max = float(np.max(columns[DOSE][over]))
            columns[DOSE] = np.minimum(columns[DOSE], DOSE_MAX_MG)
            notes.append(
                f"{DOSE}: clipped {clipped} dose(s) above {DOSE_MAX_MG:g} mg to {DOSE_MAX_MG:g} mg "
                f"(largest was {clip_max:g} mg)"
            )
    ignored = tuple(c for c in table.columns if c not in _KNOWN and c not in columns)
    return CheckedTable(
        columns=columns,
        stay=stay,
        stay_ids=np.asarray(stay_ids),
        starts=starts,
        ends=ends,
        codes=codes,
        last=last,
        time_column=time_column,
        notes=notes,
        ignored_columns=ignored,
        dose_clipped=clipped,
        dose_clip_max_mg=clip_max,
    )


def _check_columns(table: pd.DataFrame) -> None:
    present = set(table.columns)
    time = () if any(c in present for c in TIME_COLUMNS) else (" or ".join(TIME_COLUMNS),)
    missing = [c for c in (STAY, *time, *FEATURES, DOSE) if c not in present]
    if not missing:
        return
    lower = {str(c).strip().lower(): c for c in table.columns}
    hints = [f"{lower[m]!r} -> {m!r}" for m in missing if m in lower and lower[m] != m]
    message = (
        f"missing required column(s) {missing}; the schema needs {STAY}, step or time_h, "
        f"the features {list(FEATURES)} and {DOSE} (see data/README.md)"
    )
    if hints:
        message += f"; rename {', '.join(hints)}"
    raise ValueError(f"invalid dosing table: {message}")


def _check_order(
    codes: np.ndarray,
    starts: np.ndarray,
    stay: np.ndarray,
    time_column: str,
    columns: dict[str, np.ndarray],
    problems: list[str],
) -> bool:
    found = False
    again = _second_block(codes, starts)
    if again.any():
        found = True
        problems.append(
            f"column '{STAY}': {len(np.unique(codes[again]))} stay(s) appear in non-contiguous blocks; "
            f"a stay starts again at {offenders(again, stay)}: sort the table by {STAY} then time "
            f"(table.sort_values(['{STAY}', '{time_column}'], kind='stable'))"
        )
    same = codes[1:] == codes[:-1]
    for name in TIME_COLUMNS:
        if name not in columns:
            continue
        time = columns[name]
        bad = ~np.isfinite(time)
        if name == "step":
            bad |= np.isfinite(time) & (time != np.round(time))
        if bad.any():
            kind = "integers" if name == "step" else "finite hours"
            problems.append(
                f"column '{name}' must hold {kind} on every row; bad values in {offenders(bad, stay, time)}"
            )
            found = True
            continue
        diff = np.diff(time)
        duplicate = np.concatenate(([False], same & (diff == 0)))
        unsorted = np.concatenate(([False], same & (diff < 0)))
        if duplicate.any():
            found = True
            problems.append(
                f"column '{name}' repeats a time within a stay in {offenders(duplicate, stay, time)}: "
                "each stay needs one row per decision time; merge or drop the duplicates"
            )
        if unsorted.any():
            found = True
            problems.append(
                f"column '{name}' is not increasing within a stay (shuffled or unsorted times) in "
                f"{offenders(unsorted, stay, time)}: sort the table by {STAY} then {name}"
            )
    return found


def _second_block(codes: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """True on the first row of every block that repeats a stay seen in an earlier block."""
    out = np.zeros(len(codes), dtype=bool)
    block_codes = codes[starts]
    _, first = np.unique(block_codes, return_index=True)
    again = np.ones(len(starts), dtype=bool)
    again[first] = False
    out[starts[again]] = True
    return out


def _check_duplicate_rows(table: pd.DataFrame, stay: np.ndarray, problems: list[str]) -> None:
    # Only run when the ordering checks failed: in a valid table the time check already
    # proves there are no duplicate rows, so the costly hash of every column is skipped.
    duplicated = table.duplicated(keep="first").to_numpy()
    if duplicated.any():
        problems.insert(
            0,
            f"duplicate rows (identical in every column) in {offenders(duplicated, stay)}: "
            "remove them with table.drop_duplicates()",
        )
