"""The value checks of every input: plausible ranges, units, sex and boolean codes, doses.

One module for the data layer (a dosing table, column by column) and the safety layer (one
patient state, value by value), so that a value means the same in a table and at the bedside:

- the range rule (:func:`out_of_range`, from :data:`~vanco_offline.data.schema.RANGES`) and
  its unit hints, for a value (:func:`check_range`) and a column (:func:`check_range_column`);
- the sex codes (:data:`SEX_CODES`: 0/1, m/male/f/female in any case), for a value
  (:func:`parse_sex`) and a column (:func:`parse_sex_column`);
- numbers (:func:`parse_number`, :func:`parse_numeric`) and booleans (:func:`parse_bool`,
  :func:`parse_done`);
- a table's logged doses (:func:`check_logged_doses`); a model's dose for a patient is the
  safety layer's :func:`vanco_offline.safety.check_dose`;
- the wording of every data-layer error (:func:`offenders`: the first offending stays and
  rows, :func:`raise_problems`: all problems in one ``ValueError``).

A value check raises one ``ValueError`` naming the field; a column check appends its problems
(column, first offending stays and rows, the fix) to a list so that one ``ValueError`` can
report every problem at once. This module needs numpy and the schema only (pandas for the
column checks), so the torch-free bundle runtime uses it too.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from vanco_offline.data.schema import (
    BEHAVIOR_PROB,
    DONE,
    DOSE,
    DOSE_MAX_MG,
    LEVEL_DRAWN,
    LEVEL_DRAWN_PROB,
    MIN_NONZERO_DOSE_MG,
    RANGES,
    SEX_TEXT,
)

# Error messages: every problem names the column, the stays and the rows, and the fix.
#: How many offending rows an error message lists before "and N more".
SHOWN = 3


def fmt_value(value: object) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def fmt_stay(stay: object) -> str:
    if isinstance(stay, np.generic):
        stay = stay.item()
    return repr(stay) if isinstance(stay, str) else str(stay)


def offenders(mask: np.ndarray, stay: np.ndarray, values: np.ndarray | None = None) -> str:
    """``"3 rows: stay 7 row 12 (= 101.2), stay 7 row 13 (= 100.4), stay 9 row 40 (= 99)"``.

    ``row`` is the 0-based position in the table as given (``table.iloc[row]``).
    """
    rows = np.flatnonzero(mask)
    shown = []
    for row in rows[:SHOWN]:
        where = f"stay {fmt_stay(stay[row])} row {row}"
        if values is not None:
            where += f" (= {fmt_value(values[row])})"
        shown.append(where)
    more = f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    noun = "row" if len(rows) == 1 else "rows"
    return f"{len(rows)} {noun}: " + ", ".join(shown) + more


def raise_problems(problems: list[str]) -> None:
    """Raise one ValueError listing every problem found, or return when there is none."""
    if not problems:
        return
    if len(problems) == 1:
        raise ValueError(f"invalid dosing table: {problems[0]}")
    listed = "\n".join(f"- {problem}" for problem in problems)
    raise ValueError(f"invalid dosing table ({len(problems)} problems):\n{listed}")


if TYPE_CHECKING:
    import pandas as pd

    from vanco_offline.data.options import ConversionSettings

__all__ = [
    "BOOLEAN_TEXT",
    "SEX_CODES",
    "check_behavior_prob",
    "check_last_row_only_nan",
    "check_logged_doses",
    "check_range",
    "check_range_column",
    "out_of_range",
    "parse_bool",
    "parse_done",
    "parse_number",
    "parse_numeric",
    "parse_sex",
    "parse_sex_column",
]

#: Text accepted for a boolean field, and its value.
BOOLEAN_TEXT: dict[str, bool] = {
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "1": True,
    "0": False,
}

#: Every text accepted for ``sex`` (any case, surrounding spaces ignored) and its code.
SEX_CODES: dict[str, int] = {**SEX_TEXT, "0": 0, "1": 1}

_NUMBER = (int, float, np.integer, np.floating)


def out_of_range(name: str, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the values below and above ``name``'s plausible range (NaN is neither; no range:
    nothing is out of it). The one range rule of the table and the patient state."""
    x = np.asarray(values, dtype=np.float64)
    spec = RANGES.get(name)
    if spec is None:
        return np.zeros(x.shape, dtype=bool), np.zeros(x.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        below = (x <= spec.low) if spec.low_exclusive else (x < spec.low)
        above = x > spec.high
        if name == "dialysis":
            above |= (x > 0) & (x < 1)
    return below, above


def check_range(name: str, value: float) -> None:
    """ValueError when one ``value`` lies outside ``name``'s plausible range, naming the likely unit error."""
    below, above = out_of_range(name, value)
    if below or above:
        spec = RANGES[name]
        raise ValueError(
            f"{name} = {value:g} {spec.unit} is outside the plausible range "
            f"[{spec.low:g}, {spec.high:g}]: {spec.above if above else spec.below}"
        )


def parse_number(name: str, raw: Any, where: str = "the state") -> float:
    """A finite number in the schema's range; ``raw`` must already be a number (not text, not bool)."""
    if raw is None:
        raise ValueError(f"{where}'s {name!r} is null; give a number")
    if isinstance(raw, bool | np.bool_) or not isinstance(raw, _NUMBER):
        raise ValueError(f"{where}'s {name!r} is {raw!r} ({type(raw).__name__}); give a number")
    try:
        value = float(raw)
    except OverflowError:  # an integer too large for a float (JSON allows any length)
        raise ValueError(
            f"{where}'s {name!r} is an integer of {len(str(abs(int(raw))))} digits; give a number"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"{where}'s {name!r} is {raw!r}; give a finite number")
    check_range(name, value)
    return value


def parse_bool(name: str, raw: Any, where: str = "the state") -> bool:
    """``True``/``False``, 0/1, or one of :data:`BOOLEAN_TEXT`; anything else is an error."""
    if isinstance(raw, bool | np.bool_):
        return bool(raw)
    if isinstance(raw, _NUMBER) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in BOOLEAN_TEXT:
        return BOOLEAN_TEXT[raw.strip().lower()]
    raise ValueError(
        f"{where}'s {name!r} is {raw!r}; give true or false (also accepted: 0/1, {', '.join(BOOLEAN_TEXT)})"
    )


def parse_sex(raw: Any, where: str = "the state") -> int:
    """0 (male) or 1 (female), from 0/1 or the text of :data:`SEX_CODES` in any case."""
    if isinstance(raw, str) and raw.strip().lower() in SEX_CODES:
        return SEX_CODES[raw.strip().lower()]
    if not isinstance(raw, bool | np.bool_) and isinstance(raw, _NUMBER) and raw in (0, 1):
        return int(raw)
    accepted = ", ".join(["0 (male)", "1 (female)", *(repr(k) for k in SEX_TEXT)])
    raise ValueError(f"{where}'s 'sex' is {raw!r}; accepted values: {accepted}")


def parse_numeric(series: pd.Series, name: str, stay: np.ndarray, problems: list[str]) -> np.ndarray:
    """A column as floats (NaN for empty cells); text that is not a number is a problem."""
    import pandas as pd

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


def parse_sex_column(
    series: pd.Series, stay: np.ndarray, problems: list[str], notes: list[str]
) -> np.ndarray:
    """``sex`` as 0.0/1.0 (NaN for empty cells), with the codes of :data:`SEX_CODES`; others are a problem."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        text = np.zeros(len(values), dtype=bool)
    else:
        key = series.astype("string").str.strip().str.lower()
        mapped = key.map(SEX_TEXT)  # the words; "0"/"1" text is read as a number below
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
    import pandas as pd

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


def check_range_column(name: str, values: np.ndarray, stay: np.ndarray, problems: list[str]) -> None:
    """The range rule of :func:`out_of_range` over a column; every offending row is a problem."""
    spec = RANGES[name]
    infinite = np.isinf(values)
    if infinite.any():
        problems.append(f"column '{name}' has infinite values in {offenders(infinite, stay, values)}")
    below, above = out_of_range(name, values)
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


def check_logged_doses(
    dose: np.ndarray, last: np.ndarray, stay: np.ndarray, options: ConversionSettings, problems: list[str]
) -> None:
    """A table's logged doses: present on every decision row, finite, not negative, in mg, at most 3 g."""
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
    prob: np.ndarray, last: np.ndarray, stay: np.ndarray, options: ConversionSettings, problems: list[str]
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


def check_draw_columns(table: pd.DataFrame, last: np.ndarray, stay: np.ndarray, problems: list[str]) -> dict:
    """``level_drawn`` (0/1) and ``level_drawn_prob`` (in (0, 1)) as float arrays, when present.

    Both may be empty only on a stay's last row (the final observation decides nothing);
    ``level_drawn_prob`` is the behaviour probability of the ``level_drawn`` decision and
    needs that column. Returns ``{name: values}`` of the columns present.
    """
    import pandas as pd

    out: dict[str, np.ndarray] = {}
    if LEVEL_DRAWN_PROB in table and LEVEL_DRAWN not in table:
        problems.append(
            f"column '{LEVEL_DRAWN_PROB}' is given without '{LEVEL_DRAWN}': it is the behaviour probability "
            f"of the logged draw decision; add '{LEVEL_DRAWN}' (1 where a level was ordered) or drop it"
        )
        return out
    if LEVEL_DRAWN not in table:
        return out
    series = table[LEVEL_DRAWN]
    if pd.api.types.is_bool_dtype(series.dtype) and not series.isna().any():
        drawn = series.to_numpy(dtype=np.float64)
    else:
        text = series.astype("object").replace({"True": 1, "False": 0, "true": 1, "false": 0})
        drawn = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = (np.isnan(drawn) & (series.notna().to_numpy() | ~last)) | (
            np.isfinite(drawn) & (drawn != 0) & (drawn != 1)
        )
        if bad.any():
            problems.append(
                f"column '{LEVEL_DRAWN}' must be 0/1 (True/False: a level ordered at the end of this row's "
                f"interval), empty only on a stay's last row; bad values in "
                f"{offenders(bad, stay, series.to_numpy())}"
            )
    out[LEVEL_DRAWN] = drawn
    if LEVEL_DRAWN_PROB in table:
        prob = parse_numeric(table[LEVEL_DRAWN_PROB], LEVEL_DRAWN_PROB, stay, problems)
        check_last_row_only_nan(
            LEVEL_DRAWN_PROB, prob, last, stay, problems, "the behaviour probability of the draw"
        )
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(prob) & ((prob <= 0) | (prob >= 1))
        if bad.any():
            problems.append(
                f"column '{LEVEL_DRAWN_PROB}' must be in (0, 1) (the probability of the logged draw "
                f"decision; 0 or 1 leaves the other decision unseen); out of range in "
                f"{offenders(bad, stay, prob)}"
            )
        out[LEVEL_DRAWN_PROB] = prob
    return out
