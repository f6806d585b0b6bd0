"""Carrying a value forward within a stay (:class:`~vanco_offline.data.options.CarryForward`), and
what is said where a NaN is left: the one imputation of the observation and the patient chart.
"""

from __future__ import annotations

import numpy as np

from vanco_offline.data.options import CarryForward
from vanco_offline.data.schema import LEVEL_INDICATOR
from vanco_offline.data.validation import CheckedTable
from vanco_offline.data.value_checks import offenders, raise_problems

__all__ = ["carry_forward", "impute_clock", "imputed_column", "last_valid", "nan_problem"]


def imputed_column(checked: CheckedTable, name: str, rule: CarryForward | None) -> np.ndarray:
    """Column ``name`` of a validated table with its gaps carried forward by ``rule`` as in the
    observation (:func:`~vanco_offline.data.observations.build_observations`); ValueError where
    one is left."""
    raw = checked.columns[name]
    values = raw.copy()
    row_start = checked.starts[checked.codes]
    if rule is not None and (rule.columns is None or name in rule.columns) and np.isnan(raw).any():
        carry_forward(values, row_start, impute_clock(checked, rule), rule.max_age)
    left = np.isnan(values)
    if left.any():
        raise_problems([nan_problem(name, left, None, raw, row_start, checked, rule)])
    return values


def impute_clock(checked: CheckedTable, rule: CarryForward) -> np.ndarray:
    if rule.max_age_h is not None:
        return checked.columns["time_h"]
    if "step" in checked.columns:
        return checked.columns["step"]
    return (np.arange(checked.rows) - checked.starts[checked.codes]).astype(np.float64)


def last_valid(column: np.ndarray, row_start: np.ndarray) -> np.ndarray:
    """Row of the last non-NaN value at or before each row within its stay, else -1."""
    index = np.where(np.isnan(column), -1, np.arange(len(column)))
    last = np.maximum.accumulate(index)
    # Stays are contiguous blocks, so an index before the stay's first row is another stay's.
    return np.where(last >= row_start, last, -1)


def carry_forward(column: np.ndarray, row_start: np.ndarray, clock: np.ndarray, max_age: float) -> np.ndarray:
    """Fill NaN in place from the last value of the same stay; return the mask of filled rows."""
    source = last_valid(column, row_start)
    fill = np.isnan(column) & (source >= 0)
    fill[fill] = (clock[fill] - clock[source[fill]]) <= max_age
    column[fill] = column[source[fill]]
    return fill


def nan_problem(
    name: str,
    left: np.ndarray,
    never_measured: np.ndarray | None,
    raw: np.ndarray,
    row_start: np.ndarray,
    checked: CheckedTable,
    rule: CarryForward | None,
) -> str:
    where = offenders(left, checked.stay)
    if never_measured is not None and never_measured[left].all():
        return (
            f"column '{name}' is NaN because the level was never measured in the stay before {where}: "
            "pass fill_unmeasured_level=True (--fill-unmeasured-level) to use 0.0 mg/L (drug-naive, as "
            "the simulator shows it), optionally with level_indicator=True to add a "
            f"'{LEVEL_INDICATOR}' feature"
        )
    if rule is None:
        return (
            f"column '{name}' is NaN in {where}: the observation cannot hold NaN; fill the values, or "
            "carry the last value forward within the stay with impute=CarryForward(max_age_h=...) "
            "(--impute-max-age-h / --impute-max-age-steps)"
        )
    if rule.columns is not None and name not in rule.columns:
        return f"column '{name}' is NaN in {where} and is not among the CarryForward columns {rule.columns}"
    has_source = last_valid(raw, row_start) >= 0
    if not has_source[left].any():
        return (
            f"column '{name}' is NaN in {where} with no earlier value in the same stay to carry forward: "
            "a stay's first value must be measured (values are never carried across stays or backward)"
        )
    return (
        f"column '{name}' is NaN in {where} and the last value of the stay is older than the maximum "
        f"age ({rule.max_age:g} {rule.unit}) or missing: raise the maximum age or fill the values"
    )
