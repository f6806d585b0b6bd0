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

from vanco_offline.data._messages import offenders, raise_problems
from vanco_offline.data.options import ConversionOptions
from vanco_offline.data.schema import (
    BEHAVIOR_PROB,
    COVARIATES,
    DONE,
    DOSE,
    DOSE_MAX_MG,
    FEATURES,
    MIN_NONZERO_DOSE_MG,
    RANGES,
    REWARD,
    SEX_TEXT,
    STAY,
    TIME_COLUMNS,
)

__all__ = ["CheckedTable", "check_table", "validate"]

_KNOWN = (STAY, *TIME_COLUMNS, *FEATURES, DOSE, REWARD, DONE, BEHAVIOR_PROB, *COVARIATES)


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


def validate(table: pd.DataFrame, **options: object) -> pd.DataFrame:
    """Check a dosing table against the schema; return a normalised copy or raise ValueError.

    Runs every check that :func:`~vanco_offline.data.convert` runs before it builds the
    dataset, including the NaN check of required fields under the chosen imputation rule.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per decision step (see ``data/README.md``).
    **options
        The keyword options of :func:`~vanco_offline.data.convert` (``action``,
        ``impute``, ``fill_unmeasured_level``, ``clip_doses``, ...).

    Returns
    -------
    pandas.DataFrame
        A copy with ``sex`` recoded to 0/1 and doses clipped when ``clip_doses=True``;
        every other value unchanged.

    Raises
    ------
    ValueError
        Naming each problem's column, stays and rows, and how to fix it.
    """
    from vanco_offline.data.observations import build_observations  # avoid an import cycle

    opts = ConversionOptions(**options)  # type: ignore[arg-type]
    checked = check_table(table, opts)
    build_observations(checked, opts)
    out = table.copy()
    if "sex" in out.columns:
        out["sex"] = checked.columns["sex"]
    if opts.clip_doses:
        out[DOSE] = checked.columns[DOSE]
    return out


def check_table(table: pd.DataFrame, options: ConversionOptions) -> CheckedTable:
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
            columns[name] = _sex(table[name], stay, problems, notes)
        else:
            columns[name] = _numeric(table[name], name, stay, problems)
    if DONE in table:
        columns[DONE] = _done(table[DONE], stay, problems)
    raise_problems(problems)  # the checks below need numbers

    codes, stay_ids = pd.factorize(table[STAY], sort=False)
    codes = codes.astype(np.int64)
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [len(codes)]))
    last = np.zeros(len(codes), dtype=bool)
    last[ends - 1] = True

    time_column = "step" if "step" in table else "time_h"
    order_problem = _check_order(table, codes, starts, stay, time_column, columns, problems)
    if order_problem:
        _check_duplicate_rows(table, stay, problems)
    for name in numeric:
        if name in RANGES:
            _check_range(name, columns[name], stay, problems)
    _check_dose(columns[DOSE], last, stay, options, problems)
    if REWARD in columns:
        _check_last_row_only_nan(REWARD, columns[REWARD], last, stay, problems, "the reward of a transition")
    if BEHAVIOR_PROB in columns:
        _check_behavior_prob(columns[BEHAVIOR_PROB], last, stay, options, problems)
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
    ignored = tuple(c for c in table.columns if c not in _KNOWN)
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


def _numeric(series: pd.Series, name: str, stay: np.ndarray, problems: list[str]) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series.dtype) and name not in ("dialysis",):
        problems.append(f"column '{name}' holds True/False values; it must be numeric")
        return np.zeros(len(series))
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    coerced = pd.to_numeric(series, errors="coerce")
    bad = (coerced.isna() & series.notna()).to_numpy()
    if bad.any():
        problems.append(
            f"column '{name}' has non-numeric values in {offenders(bad, stay, series.to_numpy())}: "
            "give numbers in the schema's unit (empty cells for missing values)"
        )
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


def _sex(series: pd.Series, stay: np.ndarray, problems: list[str], notes: list[str]) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        text = np.zeros(len(values), dtype=bool)
    else:
        key = series.astype("string").str.strip().str.lower()
        mapped = key.map(SEX_TEXT)
        numeric = pd.to_numeric(series, errors="coerce")
        values = mapped.fillna(numeric).to_numpy(dtype=np.float64, na_value=np.nan)
        text = mapped.notna().to_numpy()
        if text.any():
            notes.append(f"sex: mapped {int(text.sum())} text value(s) to codes (M/male -> 0, F/female -> 1)")
    bad = (~np.isnan(values) & (values != 0) & (values != 1)) | (np.isnan(values) & series.notna().to_numpy())
    if bad.any():
        problems.append(
            "column 'sex' has values other than 0/1/M/F/male/female in "
            f"{offenders(bad, stay, series.to_numpy())}: code sex as 0 = male, 1 = female"
        )
    return values


def _done(series: pd.Series, stay: np.ndarray, problems: list[str]) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series.dtype) and not series.isna().any():
        return series.to_numpy(dtype=np.float64)
    values = pd.to_numeric(series.astype("object").replace({"True": 1, "False": 0}), errors="coerce")
    values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(values) | ((values != 0) & (values != 1))
    if bad.any():
        problems.append(
            f"column '{DONE}' must be True/False (or 1/0) on every row; bad values in "
            f"{offenders(bad, stay, series.to_numpy())}"
        )
    return np.nan_to_num(values)


def _check_order(
    table: pd.DataFrame,
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


def _check_range(name: str, values: np.ndarray, stay: np.ndarray, problems: list[str]) -> None:
    spec = RANGES[name]
    infinite = np.isinf(values)
    if infinite.any():
        problems.append(f"column '{name}' has infinite values in {offenders(infinite, stay, values)}")
    with np.errstate(invalid="ignore"):
        below = (values <= spec.low) if spec.low_exclusive else (values < spec.low)
        above = values > spec.high
        if name == "dialysis":
            above |= (values > 0) & (values < 1)
    below &= ~infinite
    above &= ~infinite
    bound = f"{'above' if spec.low_exclusive else 'at least'} {spec.low:g}"
    if below.any():
        problems.append(
            f"column '{name}' ({spec.unit}) must be {bound}; {offenders(below, stay, values)}: {spec.below}"
        )
    if above.any():
        problems.append(
            f"column '{name}' ({spec.unit}) has values above {spec.high:g} in "
            f"{offenders(above, stay, values)}: {spec.above}"
        )


def _check_dose(
    dose: np.ndarray, last: np.ndarray, stay: np.ndarray, options: ConversionOptions, problems: list[str]
) -> None:
    missing = np.isnan(dose) & ~last
    if missing.any():
        problems.append(
            f"column '{DOSE}' is missing in {offenders(missing, stay)}: every decision step needs its "
            "dose (0 = held); only the last row of a stay (the final observation) may be empty"
        )
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(dose)
        negative = (dose < 0) & ~infinite
        grams = (dose > 0) & (dose < MIN_NONZERO_DOSE_MG)
        over = (dose > DOSE_MAX_MG) & ~infinite
    if infinite.any():
        problems.append(f"column '{DOSE}' has infinite doses in {offenders(infinite, stay, dose)}")
    if negative.any():
        problems.append(
            f"column '{DOSE}' has negative doses in {offenders(negative, stay, dose)}: "
            "a dose is the mg given in the interval, 0 when held"
        )
    if grams.any():
        problems.append(
            f"column '{DOSE}' has doses below {MIN_NONZERO_DOSE_MG:g} mg in {offenders(grams, stay, dose)}: "
            "these look like grams; multiply by 1000 to get mg"
        )
    if over.any() and not options.clip_doses:
        problems.append(
            f"column '{DOSE}' has doses above the {DOSE_MAX_MG:g} mg single-dose limit in "
            f"{offenders(over, stay, dose)}: check that doses are per interval in mg (not a daily "
            "total or µg), or pass clip_doses=True (--clip-doses) to clip them to 3000 mg (reported)"
        )


def _check_last_row_only_nan(
    name: str, values: np.ndarray, last: np.ndarray, stay: np.ndarray, problems: list[str], what: str
) -> None:
    missing = np.isnan(values) & ~last
    if missing.any():
        problems.append(
            f"column '{name}' is missing in {offenders(missing, stay)}: {what} may be empty only on the "
            f"last row of a stay (the final observation); fill it, or drop the column to have the "
            f"library compute it"
        )
    infinite = np.isinf(values)
    if infinite.any():
        problems.append(f"column '{name}' has infinite values in {offenders(infinite, stay, values)}")


def _check_behavior_prob(
    prob: np.ndarray, last: np.ndarray, stay: np.ndarray, options: ConversionOptions, problems: list[str]
) -> None:
    _check_last_row_only_nan(BEHAVIOR_PROB, prob, last, stay, problems, "the behaviour probability")
    with np.errstate(invalid="ignore"):
        if options.action == "discrete":
            bad = (prob <= 0) | (prob > 1)
            rule = "for discrete actions it is the probability of the logged grid dose, in (0, 1]"
        else:
            bad = prob <= 0
            rule = "for continuous actions it is the density of the logged dose, > 0"
    if bad.any():
        problems.append(f"column '{BEHAVIOR_PROB}' out of range in {offenders(bad, stay, prob)}: {rule}")
