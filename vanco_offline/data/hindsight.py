"""Hindsight exposure: each interval's AUC24 re-estimated with every level of the stay.

The ``pk_auc24`` feature (:mod:`vanco_pk.exposure`) is a *filtered* estimate: the MAP fit
of the levels drawn up to that decision. With few levels it is mostly the population prior,
so a reward built on it scores a policy by the prior's opinion -- the very opinion MIPD
already doses by. A reward may look ahead (only the observation must not): this module
refits each stay once with all its levels (the MAP estimate after the stay's last decision)
and recomputes, with those parameters, the AUC of the 24 h before every decision from the
doses given. It is still a model estimate (Goti 2018 prior, MAP), but one that every level
of the stay has corrected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from vanco_pk.exposure import TRACKER_COVARIATES

from vanco_offline.data.pk_replay import stay_chart, stays_by_length

__all__ = ["hindsight_auc", "hindsight_auc_table"]


def hindsight_auc(checked: Any, creatinine: np.ndarray) -> np.ndarray:
    """Hindsight AUC24 (mg*h/L) before every row of a validated table, shape (rows,).

    Parameters
    ----------
    checked : vanco_offline.data.validation.CheckedTable
        The validated table (``time_h`` and the tracker's covariates, as for ``pk_features``).
    creatinine : (rows,) array
        Serum creatinine of each row after imputation (no NaN).
    """
    chart = stay_chart(checked)
    time, dose, level = chart.time, chart.dose, chart.level
    auc = np.zeros(checked.rows)
    for first, rows in stays_by_length(checked):
        length = rows.shape[1]
        covariates = {c: checked.columns[c][first] for c in TRACKER_COVARIATES}
        # Pass 1: the MAP estimate with every level of the stay.
        fit = chart.tracker()
        fit.reset(covariates)
        for k in range(length):
            r = rows[:, k]
            fit.observe(time[r], creatinine[r], level[r])
            if k < length - 1:
                fit.record(dose[r])
        # Pass 2: the same doses, no refit, the final estimate throughout.
        replay = chart.tracker()
        replay.reset(covariates)
        replay.eta = fit.eta.copy()
        for k in range(length):
            r = rows[:, k]
            replay.observe(time[r], creatinine[r], None)
            auc[r] = replay.auc24()
            if k < length - 1:
                replay.record(dose[r])
    return auc


def hindsight_auc_table(table: Any, impute: Any = None) -> Any:
    """:func:`hindsight_auc` of every row of a dosing table, as a Series named ``hindsight_auc24``."""
    import pandas as pd

    from vanco_offline.data.observations import build_observations
    from vanco_offline.data.options import ConversionOptions
    from vanco_offline.data.validation import check_table

    options = ConversionOptions(fill_unmeasured_level=True, impute=impute)
    checked = check_table(table, options)
    observations = build_observations(checked, options)
    creatinine = observations.values[:, list(observations.names).index("creatinine")]
    return pd.Series(hindsight_auc(checked, creatinine), index=table.index, name="hindsight_auc24")
