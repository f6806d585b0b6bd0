"""The patient chart, and the PK exposure features of every row replayed from it.

:class:`StayChart` is the one patient chart: what a Bayesian MAP fit reads of each stay of a
validated table -- the covariates, the decision times, the doses, the creatinine and the newly
drawn levels -- as :class:`vanco_pk.estimation.DoseHistory` groups, by length for vectorised
fits (:meth:`StayChart.by_length`: the PK features, hindsight, the local population fit) or as
chosen stays padded to the longest (:meth:`StayChart.padded`: the twins' posteriors).
:func:`table_chart` validates a table and builds its chart.

:func:`fit_local_model` refits the population model's typical values and variances to a
chart's levels (:func:`vanco_pk.population.fit_population`): the hospital's own population
PK model. The result is a :class:`vanco_pk.pk.GotiModel`; ``ConversionSettings(pk_model=...)``
makes it the prior of the PK features and of the ``exposure`` reward, so that a policy learned
from the table sees its patients through the hospital's model rather than the published one.

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
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from vanco_pk.estimation import DoseHistory
from vanco_pk.exposure import PK_FEATURES, ExposureTracker
from vanco_pk.pk import GOTI_2018, GotiModel, infusion_duration_h
from vanco_pk.population import FITTED_PARAMETERS, PopulationFit, fit_population

from vanco_offline.data.options import CarryForward
from vanco_offline.data.schema import DOSE, LEVEL, LEVEL_MEASURED, STAY, TRACKER_COVARIATES
from vanco_offline.data.validation import CheckedTable
from vanco_offline.data.value_checks import offenders, raise_problems

__all__ = [
    "PK_REPLAY_COLUMNS",
    "PKReplay",
    "StayChart",
    "fit_local_model",
    "level_changes",
    "new_levels",
    "replay_pk_features",
    "stay_chart",
    "table_chart",
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
    """The patient chart: what a MAP fit of the stays of a validated table reads.

    Attributes
    ----------
    time, dose, creatinine : (rows,) arrays
        ``time_h``, ``dose_mg`` and the creatinine (after the caller's imputation) of each row.
    level : (rows,) array
        The vancomycin level where a new one was measured, NaN elsewhere.
    new_levels : (rows,) bool array
        Rows with a new level; ``level_source`` says how they were detected.
    interval_h : float
        The median time between decisions (12 h for a table of single rows).
    covariates : dict of (stays,) arrays
        :data:`~vanco_pk.exposure.TRACKER_COVARIATES` of each stay (fixed within a stay).
    stay_ids, starts, ends : (stays,) arrays
        Each stay's id, first row and one past its last row, in table order.
    """

    time: np.ndarray
    dose: np.ndarray
    creatinine: np.ndarray
    level: np.ndarray
    new_levels: np.ndarray
    level_source: str
    interval_h: float
    covariates: dict[str, np.ndarray]
    stay_ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def tracker(self, model: GotiModel = GOTI_2018) -> ExposureTracker:
        """A tracker for this chart's decision interval with ``model`` as its population prior."""
        return ExposureTracker(interval_h=self.interval_h, horizon_h=max(24.0, self.interval_h), model=model)

    def by_length(self, stay_ids: Sequence[Any] | None = None) -> Iterator[tuple[np.ndarray, DoseHistory]]:
        """``(rows (m, length), history)`` of the ``m`` stays of each length (shortest first, table
        order within a length): the stays' rows of the table and their :class:`DoseHistory`
        (a stay's last dose as logged, NaN when it is the final observation). ``stay_ids``:
        only those stays (in table order, as a chart of the table cut to them would give)."""
        lengths = self.ends - self.starts
        chosen = np.ones(len(lengths), dtype=bool)
        if stay_ids is not None:
            chosen = np.isin(self.stay_ids, np.asarray(list(stay_ids), dtype=self.stay_ids.dtype))
        for length in np.unique(lengths[chosen]).tolist():
            stays = np.flatnonzero((lengths == length) & chosen)
            rows = self.starts[stays][:, None] + np.arange(length)[None, :]
            yield (
                rows,
                self._history(
                    stays, self.time[rows], self.dose[rows], self.creatinine[rows], self.level[rows]
                ),
            )

    def padded(self, stay_ids: Sequence[Any]) -> tuple[DoseHistory, np.ndarray]:
        """The :class:`DoseHistory` of ``stay_ids`` (in that order) padded to the longest, and each
        stay's number of rows.

        After a stay's end the times go on at its last step (12 h for a single row), the doses
        are 0 (as is a final observation's missing dose), the creatinine is the stay's last and
        no level is drawn; a fit reads nothing there.
        """
        index = {stay: i for i, stay in enumerate(self.stay_ids.tolist())}
        stays = np.array([index[stay] for stay in stay_ids], dtype=np.int64)
        lengths = (self.ends - self.starts)[stays]
        width = int(lengths.max())
        k = np.arange(width)[None, :]
        inside = k < lengths[:, None]
        last = self.starts[stays][:, None] + lengths[:, None] - 1
        rows = np.minimum(self.starts[stays][:, None] + k, last)
        # The step after a stay's end: its last gap (12 h for a stay of a single row).
        step = np.where(lengths > 1, self.time[last[:, 0]] - self.time[np.maximum(last[:, 0] - 1, 0)], 12.0)
        after = k - lengths[:, None] + 1  # decisions after the stay's last row
        time = np.where(inside, self.time[rows], self.time[last] + step[:, None] * after)
        dose = np.where(inside, np.nan_to_num(self.dose[rows]), 0.0)
        level = np.where(inside, self.level[rows], np.nan)
        return self._history(stays, time, dose, self.creatinine[rows], level), lengths

    def _history(
        self, stays: np.ndarray, time: np.ndarray, dose: np.ndarray, creatinine: np.ndarray, level: np.ndarray
    ) -> DoseHistory:
        covariates = {name: values[stays] for name, values in self.covariates.items()}
        return DoseHistory(**covariates, time_h=time, dose_mg=dose, creatinine=creatinine, level=level)


def stay_chart(checked: CheckedTable, creatinine: np.ndarray) -> StayChart:
    """The chart of a validated table; ValueError naming what is missing or wrong.

    ``creatinine`` (rows,) is each row's serum creatinine after imputation (no NaN).
    """
    _check_inputs(checked)
    return _chart(checked, creatinine)


def table_chart(
    table: Any, stay_ids: Sequence[Any] | None = None, impute: CarryForward | None = None
) -> StayChart:
    """The chart of a dosing table's stays (all, or ``stay_ids``), validated as for the PK replay.

    ``impute`` is the rule for a missing creatinine (as for the conversion); ValueError on a
    creatinine it leaves missing, or on anything :func:`stay_chart` rejects.
    """
    from vanco_offline.data.options import ConversionSettings
    from vanco_offline.data.validation import check_table

    if stay_ids is not None:
        table = table[table[STAY].isin(list(stay_ids))]
    # pk_features: the table is read as the PK replay reads it (its level_measured column included).
    return chart_of(check_table(table, ConversionSettings(pk_features=True, impute=impute)), impute)


def chart_of(checked: CheckedTable, impute: CarryForward | None = None) -> StayChart:
    """The chart of a table already checked for the PK replay (``needs_pk`` options: its
    ``level_measured`` column read), with ``impute`` for a missing creatinine: what
    :func:`table_chart` gives without checking the table a second time."""
    from vanco_offline.data.imputation import imputed_column

    return stay_chart(checked, imputed_column(checked, "creatinine", impute))


def _chart(checked: CheckedTable, creatinine: np.ndarray) -> StayChart:
    time = checked.columns["time_h"]
    flags, source = new_levels(checked)
    gaps = np.diff(time)[~checked.last[:-1]]
    interval = float(np.median(gaps)) if gaps.size else _DEFAULT_INTERVAL_H
    level = np.where(flags, checked.columns[LEVEL], np.nan)
    return StayChart(
        time=time,
        dose=checked.columns[DOSE],
        creatinine=creatinine,
        level=level,
        new_levels=flags,
        level_source=source,
        interval_h=interval,
        covariates={c: checked.columns[c][checked.starts] for c in TRACKER_COVARIATES},
        stay_ids=checked.stay_ids,
        starts=checked.starts,
        ends=checked.ends,
    )


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
    chart = stay_chart(checked, creatinine)
    tracker = chart.tracker(model)
    features = np.zeros((checked.rows, len(PK_FEATURES)))
    for rows, history in chart.by_length():
        tracker.reset({c: getattr(history, c) for c in TRACKER_COVARIATES})
        for k in range(rows.shape[1]):
            tracker.observe(history.time_h[:, k], history.creatinine[:, k], history.level[:, k])
            features[rows[:, k]] = tracker.features()
            if k < rows.shape[1] - 1:
                tracker.record(history.dose_mg[:, k])
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


def fit_local_model(
    table: Any,
    start: GotiModel = GOTI_2018,
    impute: Any = None,
    parameters: tuple[str, ...] = FITTED_PARAMETERS,
    max_stays: int | None = 300,
    seed: int = 0,
    max_evaluations: int = 300,
) -> PopulationFit:
    """Refit the population PK model to a dosing table's levels (:func:`vanco_pk.population.fit_population`).

    Parameters
    ----------
    table : pandas.DataFrame or StayChart
        A dosing table (the schema of ``data/README.md``) with ``time_h``, the tracker's
        covariates and measured levels, or its chart (:func:`chart_of`
        of a table already checked: :func:`vanco_offline.training.train` checks once; ``impute``
        is then the chart's own).
    start : the published model the fit starts from (Goti 2018)
    parameters : what the fit estimates (:data:`vanco_pk.population.PARAMETERS`)
    max_stays : fit on at most this many stays, drawn at random with ``seed`` (None: all);
        a population model's few parameters are estimated well from a few hundred patients
    max_evaluations : the fit's budget of objective evaluations
    impute : CarryForward, optional
        The rule for missing creatinine (as for the conversion).
    """
    chart = table if isinstance(table, StayChart) else None
    chosen = None
    if max_stays is not None:
        stays = chart.stay_ids if chart is not None else table[STAY].unique()
        if len(stays) > max_stays:
            chosen = np.random.default_rng(seed).choice(stays, size=max_stays, replace=False)
    if chart is None:
        chart = table_chart(table if chosen is None else table[table[STAY].isin(chosen)], impute=impute)
        chosen = None
    histories = [history for _, history in chart.by_length(chosen)]
    return fit_population(histories, start=start, parameters=parameters, max_evaluations=max_evaluations)
