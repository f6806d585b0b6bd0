"""PK exposure features of every row: each stay replayed through ``vanco_pk``'s exposure tracker.

:class:`vanco_pk.exposure.ExposureTracker` is fed, decision by decision, what the table's
rows hold -- the covariates, ``time_h``, the creatinine, the doses given and the levels
measured -- exactly as MIPD software would be, so the features of row ``t`` use rows ``<= t``
only (the dose of row ``t`` is that row's action and is not part of its features). Stays of
equal length are replayed together (vectorised over stays).

A row holds a *new* level where the ``level_measured`` column says so (when the table has
it), else where ``vanco_level`` is measured and differs from the stay's previous measured
value (a carried-forward level is not new). The patient is taken as drug-naive at a stay's
first row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
from vanco_pk.exposure import PK_FEATURES, ExposureTracker
from vanco_pk.pk import GOTI_2018, GotiModel, infusion_duration_h

from vanco_offline.data._messages import offenders, raise_problems
from vanco_offline.data.schema import DOSE, LEVEL, LEVEL_MEASURED, TRACKER_COVARIATES
from vanco_offline.data.validation import CheckedTable

__all__ = [
    "PK_REPLAY_COLUMNS",
    "PKReplay",
    "StayChart",
    "level_changes",
    "new_levels",
    "replay_pk_features",
    "stay_chart",
    "stays_by_length",
]

_DEFAULT_INTERVAL_H = 12.0
#: The columns a table needs for the replay (``pk_features=True`` or ``reward="exposure"``).
PK_REPLAY_COLUMNS = ("time_h", *TRACKER_COVARIATES)


@dataclasses.dataclass(frozen=True)
class PKReplay:
    """The tracker's features per row and how they were obtained.

    Attributes
    ----------
    features : (rows, 3) float64, :data:`vanco_pk.exposure.PK_FEATURES` of each row
    levels : number of new levels fed to the tracker
    level_source : how a new level was told apart from a carried-forward one
    interval_h : hours between decisions assumed by the forward dose rule (median gap)
    prior : the tracker's population model, in words
    """

    features: np.ndarray
    levels: int
    level_source: str
    interval_h: float
    prior: str = "Goti 2018 prior"

    @property
    def auc24(self) -> np.ndarray:
        """The estimated AUC24 of each row (``pk_auc24``)."""
        return self.features[:, PK_FEATURES.index("pk_auc24")]

    def note(self) -> str:
        return (
            f"pk features: each stay replayed through vanco_pk.exposure.ExposureTracker (Bayesian MAP of "
            f"CL and V1, {self.prior}); {self.levels} new level(s) fitted, detected {self.level_source}; "
            f"forward dose rule every {self.interval_h:g} h"
        )


def new_levels(checked: CheckedTable) -> tuple[np.ndarray, str]:
    """Boolean mask of the rows that hold a newly drawn level, and how it was decided."""
    level = checked.columns[LEVEL]
    if LEVEL_MEASURED in checked.columns:
        measured = np.isfinite(level)
        return (checked.columns[LEVEL_MEASURED] > 0) & measured, f"from the '{LEVEL_MEASURED}' column"
    changed = level_changes(level, checked.starts[checked.codes])
    return changed, f"as changes of '{LEVEL}' (no '{LEVEL_MEASURED}' column)"


def level_changes(level: np.ndarray, row_start: np.ndarray) -> np.ndarray:
    """The one new-level rule without a ``level_measured`` column: a row holds a new level where
    its level is measured and differs from the stay's previous measured one.

    ``level`` (rows,) in table order, NaN where none is charted; ``row_start`` (rows,) the
    index of the first row of each row's stay.
    """
    measured = np.isfinite(level)
    # The stay's previous measured value at each row (NaN at the first row and before any level).
    index = np.where(measured, np.arange(len(level)), -1)
    previous_row = np.r_[-1, np.maximum.accumulate(index)[:-1]]
    previous = np.where(previous_row >= row_start, level[np.maximum(previous_row, 0)], np.nan)
    return measured & ~(level == previous)


@dataclasses.dataclass(frozen=True)
class StayChart:
    """What a replay of the stays through :class:`~vanco_pk.exposure.ExposureTracker` reads.

    Attributes
    ----------
    time, dose : (rows,) arrays
        ``time_h`` and ``dose_mg`` of each row.
    level : (rows,) array
        The vancomycin level where a new one was measured, NaN elsewhere.
    new_levels : (rows,) bool array
        Rows with a new level; ``level_source`` says how they were detected.
    interval_h : float
        The median time between decisions (12 h for a table of single rows).
    """

    time: np.ndarray
    dose: np.ndarray
    level: np.ndarray
    new_levels: np.ndarray
    level_source: str
    interval_h: float

    def tracker(self, model: GotiModel = GOTI_2018) -> ExposureTracker:
        """A tracker for this chart's decision interval with ``model`` as its population prior."""
        return ExposureTracker(interval_h=self.interval_h, horizon_h=max(24.0, self.interval_h), model=model)


def stay_chart(checked: CheckedTable) -> StayChart:
    """The replay's inputs of a validated table; ValueError naming what is missing or wrong."""
    _check_inputs(checked)
    time = checked.columns["time_h"]
    flags, source = new_levels(checked)
    gaps = np.diff(time)[~checked.last[:-1]]
    interval = float(np.median(gaps)) if gaps.size else _DEFAULT_INTERVAL_H
    level = np.where(flags, checked.columns[LEVEL], np.nan)
    return StayChart(time, checked.columns[DOSE], level, flags, source, interval)


def stays_by_length(checked: CheckedTable) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(first rows (m,), rows (m, length))`` of the stays of each length, to replay them at once."""
    lengths = checked.ends - checked.starts
    for length in np.unique(lengths).tolist():
        first = checked.starts[lengths == length]
        yield first, first[:, None] + np.arange(length)[None, :]


def replay_pk_features(
    checked: CheckedTable, creatinine: np.ndarray, model: GotiModel = GOTI_2018
) -> PKReplay:
    """Replay every stay through the exposure tracker; ValueError naming what is missing or wrong.

    Parameters
    ----------
    checked : CheckedTable
        The validated table; needs ``time_h`` and the covariates ``weight_kg``, ``age``,
        ``sex``, ``dialysis`` (constant within a stay).
    creatinine : (rows,) array
        Serum creatinine of each row after imputation (no NaN).
    model : GotiModel
        The tracker's population prior (Goti 2018, or a model refitted to local levels).
    """
    chart = stay_chart(checked)
    tracker = chart.tracker(model)
    features = np.zeros((checked.rows, len(PK_FEATURES)))
    for first, rows in stays_by_length(checked):
        tracker.reset({c: checked.columns[c][first] for c in TRACKER_COVARIATES})
        for k in range(rows.shape[1]):
            r = rows[:, k]
            tracker.observe(chart.time[r], creatinine[r], chart.level[r])
            features[r] = tracker.features()
            if k < rows.shape[1] - 1:
                tracker.record(chart.dose[r])
    return PKReplay(
        features=features,
        levels=int(chart.new_levels.sum()),
        level_source=chart.level_source,
        interval_h=chart.interval_h,
        prior="Goti 2018 prior" if model == GOTI_2018 else "a refitted population model as prior",
    )


def _check_inputs(checked: CheckedTable) -> None:
    why = "pk_features=True and reward='exposure' replay each stay through the population PK model"
    if "time_h" not in checked.columns:
        raise ValueError(
            f"invalid dosing table: {why} and need a 'time_h' column (hours since the stay's first "
            "decision; for a table with only 'step', add time_h = step * hours between decisions)"
        )
    missing = [c for c in TRACKER_COVARIATES if c not in checked.columns]
    if missing:
        raise ValueError(
            f"invalid dosing table: {why} and need the covariate column(s) {missing} "
            f"({', '.join(TRACKER_COVARIATES)}; see data/README.md)"
        )
    problems = []
    row_start = checked.starts[checked.codes]
    for name in TRACKER_COVARIATES:
        values = checked.columns[name]
        if np.isnan(values).any():
            problems.append(
                f"column '{name}' is empty in {offenders(np.isnan(values), checked.stay)}: {why}, "
                "which needs every stay's covariates"
            )
            continue
        changed = values != values[row_start]
        if changed.any():
            problems.append(
                f"column '{name}' changes within a stay in {offenders(changed, checked.stay, values)}: the "
                "population PK model takes covariates fixed per stay; split the stay or fix the column"
            )
    dose = checked.columns[DOSE]
    within = ~checked.last
    gap = np.r_[np.diff(checked.columns["time_h"]), np.inf]
    need = infusion_duration_h(np.nan_to_num(dose))
    short = within & (need > gap)
    if short.any():
        problems.append(
            f"column '{DOSE}' has doses that cannot be infused (10 mg/min, at least 1 h) before the next "
            f"decision in {offenders(short, checked.stay, dose)}: check the dose or the times"
        )
    raise_problems(problems)
