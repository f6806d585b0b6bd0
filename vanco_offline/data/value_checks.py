"""Per-column value checks of a dosing table: numbers, units, doses, flags, probabilities.

Each check appends its problems (column, first offending stays and rows, the fix) to a list
so that one ``ValueError`` can report every problem at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vanco_offline.data._messages import offenders
from vanco_offline.data.options import ConversionOptions
from vanco_offline.data.schema import (
    BEHAVIOR_PROB,
    DONE,
    DOSE,
    DOSE_MAX_MG,
    MIN_NONZERO_DOSE_MG,
    RANGES,
    SEX_TEXT,
)

__all__ = [
    "check_behavior_prob",
    "check_dose",
    "check_last_row_only_nan",
    "check_range",
    "parse_done",
    "parse_numeric",
    "parse_sex",
]


def parse_numeric(series: pd.Series, name: str, stay: np.ndarray, problems: list[str]) -> np.ndarray:
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


def parse_sex(series: pd.Series, stay: np.ndarray, problems: list[str], notes: list[str]) -> np.ndarray:
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


def parse_done(series: pd.Series, stay: np.ndarray, problems: list[str], name: str = DONE) -> np.ndarray:
    """A True/False (or 1/0) column as 0.0/1.0 (``done``, or ``level_measured``)."""
    if pd.api.types.is_bool_dtype(series.dtype) and not series.isna().any():
        return series.to_numpy(dtype=np.float64)
    values = pd.to_numeric(series.astype("object").replace({"True": 1, "False": 0}), errors="coerce")
    values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(values) | ((values != 0) & (values != 1))
    if bad.any():
        problems.append(
            f"column '{name}' must be True/False (or 1/0) on every row; bad values in "
            f"{offenders(bad, stay, series.to_numpy())}"
        )
    return np.nan_to_num(values)


def check_range(name: str, values: np.ndarray, stay: np.ndarray, problems: list[str]) -> None:
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


def check_dose(
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


def check_last_row_only_nan(
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


def check_behavior_prob(
    prob: np.ndarray, last: np.ndarray, stay: np.ndarray, options: ConversionOptions, problems: list[str]
) -> None:
    check_last_row_only_nan(BEHAVIOR_PROB, prob, last, stay, problems, "the behaviour probability")
    with np.errstate(invalid="ignore"):
        if options.action == "discrete":
            bad = (prob <= 0) | (prob > 1)
            rule = "for discrete actions it is the probability of the logged grid dose, in (0, 1]"
        else:
            bad = prob <= 0
            rule = "for continuous actions it is the density of the logged dose, > 0"
    if bad.any():
        problems.append(f"column '{BEHAVIOR_PROB}' out of range in {offenders(bad, stay, prob)}: {rule}")
