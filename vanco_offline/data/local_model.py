"""The hospital's own population PK model, refitted from the levels of a dosing table.

:func:`fit_local_model` groups a table's stays by length into :class:`vanco_pk.estimation.
DoseHistory` objects -- the covariates, decision times, doses, creatinine and the newly
drawn levels, exactly what the exposure tracker reads (:mod:`vanco_offline.data.pk_replay`)
-- and refits the population model's typical values and variances to them
(:func:`vanco_pk.population.fit_population`). The result is a :class:`vanco_pk.pk.GotiModel`;
``ConversionOptions(pk_model=...)`` makes it the prior of the PK features and of the
``exposure`` reward, so that a policy learned from the table sees its patients through the
hospital's model rather than the published one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from vanco_pk.estimation import DoseHistory
from vanco_pk.pk import GOTI_2018, GotiModel
from vanco_pk.population import FITTED_PARAMETERS, PopulationFit, fit_population

from vanco_offline.data.pk_replay import stay_chart, stays_by_length
from vanco_offline.data.schema import STAY, TRACKER_COVARIATES

__all__ = ["fit_local_model", "histories_by_length"]


def histories_by_length(checked: Any, creatinine: np.ndarray) -> list[DoseHistory]:
    """The stays of a validated table as :class:`DoseHistory` groups of equal length.

    Parameters
    ----------
    checked : vanco_offline.data.validation.CheckedTable
        The validated table (``time_h`` and the tracker's covariates).
    creatinine : (rows,) array
        Serum creatinine of each row after imputation (no NaN).
    """
    chart = stay_chart(checked)
    out = []
    for first, rows in stays_by_length(checked):
        covariates = {c: checked.columns[c][first] for c in TRACKER_COVARIATES}
        out.append(
            DoseHistory(
                weight_kg=covariates["weight_kg"],
                age=covariates["age"],
                sex=covariates["sex"],
                dialysis=covariates["dialysis"],
                time_h=chart.time[rows],
                dose_mg=chart.dose[rows],
                creatinine=creatinine[rows],
                level=chart.level[rows],
            )
        )
    return out


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
    table : pandas.DataFrame
        A dosing table (the schema of ``data/README.md``) with ``time_h``, the tracker's
        covariates and measured levels.
    start : the published model the fit starts from (Goti 2018)
    parameters : what the fit estimates (:data:`vanco_pk.population.PARAMETERS`)
    max_stays : fit on at most this many stays, drawn at random with ``seed`` (None: all);
        a population model's few parameters are estimated well from a few hundred patients
    max_evaluations : the fit's budget of objective evaluations
    impute : CarryForward, optional
        The rule for missing creatinine (as for the conversion).
    """
    from vanco_offline.data.observations import build_observations
    from vanco_offline.data.options import ConversionOptions
    from vanco_offline.data.validation import check_table

    if max_stays is not None:
        stays = table[STAY].unique()
        if len(stays) > max_stays:
            chosen = np.random.default_rng(seed).choice(stays, size=max_stays, replace=False)
            table = table[table[STAY].isin(chosen)]
    options = ConversionOptions(fill_unmeasured_level=True, impute=impute)
    checked = check_table(table, options)
    observations = build_observations(checked, options)
    creatinine = observations.values[:, list(observations.names).index("creatinine")]
    histories = histories_by_length(checked, creatinine)
    return fit_population(histories, start=start, parameters=parameters, max_evaluations=max_evaluations)
