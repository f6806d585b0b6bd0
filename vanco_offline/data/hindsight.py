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

from vanco_offline.data.pk_replay import StayChart, table_chart

__all__ = ["hindsight_auc", "hindsight_auc_table"]


def hindsight_auc(chart: StayChart) -> np.ndarray:
    """Hindsight AUC24 (mg*h/L) before every row of a patient chart, shape (rows,)."""
    auc = np.zeros(len(chart.time))
    for rows, history in chart.by_length():
        length = rows.shape[1]
        covariates = {c: getattr(history, c) for c in TRACKER_COVARIATES}
        # Pass 1: the MAP estimate with every level of the stay.
        fit = chart.tracker()
        fit.reset(covariates)
        for k in range(length):
            fit.observe(history.time_h[:, k], history.creatinine[:, k], history.level[:, k])
            if k < length - 1:
                fit.record(history.dose_mg[:, k])
        # Pass 2: the same doses, no refit, the final estimate throughout.
        replay = chart.tracker()
        replay.reset(covariates)
        replay.eta = fit.eta.copy()
        for k in range(length):
            replay.observe(history.time_h[:, k], history.creatinine[:, k], None)
            auc[rows[:, k]] = replay.auc24()
            if k < length - 1:
                replay.record(history.dose_mg[:, k])
    return auc


def hindsight_auc_table(table: Any, impute: Any = None) -> Any:
    """:func:`hindsight_auc` of every row of a dosing table, as a Series named ``hindsight_auc24``.

    ``impute`` is the rule for a missing creatinine (as for the conversion).
    """
    import pandas as pd

    return pd.Series(
        hindsight_auc(table_chart(table, impute=impute)), index=table.index, name="hindsight_auc24"
    )
