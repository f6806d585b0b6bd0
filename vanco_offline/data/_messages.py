"""Error-message helpers: every problem names the column, the stays and the rows, and the fix."""

from __future__ import annotations

import numpy as np

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
