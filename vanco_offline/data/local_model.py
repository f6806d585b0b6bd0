"""The hospital's own population PK model, refitted from the levels of a dosing table.

:func:`fit_local_model` reads a table's stays from the patient chart
(:func:`vanco_offline.data.pk_replay.table_chart`, grouped by length into
:class:`vanco_pk.estimation.DoseHistory` objects: the covariates, decision times, doses,
creatinine and the newly drawn levels, exactly what the exposure tracker reads) and
refits the population model's typical values and variances to them
(:func:`vanco_pk.population.fit_population`). The result is a :class:`vanco_pk.pk.GotiModel`;
``ConversionSettings(pk_model=...)`` makes it the prior of the PK features and of the
``exposure`` reward, so that a policy learned from the table sees its patients through the
hospital's model rather than the published one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from vanco_pk.pk import GOTI_2018, GotiModel
from vanco_pk.population import FITTED_PARAMETERS, PopulationFit, fit_population

from vanco_offline.data.pk_replay import StayChart, table_chart
from vanco_offline.data.schema import STAY

__all__ = ["fit_local_model"]


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
        covariates and measured levels, or its chart (:func:`~vanco_offline.data.pk_replay.chart_of`
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
