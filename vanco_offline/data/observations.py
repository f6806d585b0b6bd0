"""Observation matrix of a checked table: schema order, explicit imputation, no NaN left.

d3rlpy cannot learn from NaN, so every NaN in an observation column is either filled by a
rule the user chose (and counted) or reported as an error naming column, stay and row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from vanco_offline.data.imputation import carry_forward, impute_clock, last_valid, nan_problem
from vanco_offline.data.options import CarryForward, ConversionSettings
from vanco_offline.data.pk_replay import PKReplay, replay_pk_features
from vanco_offline.data.schema import DOSE, FEATURES, LAST_DOSE, LEVEL, LEVEL_INDICATOR, PK_FEATURES
from vanco_offline.data.validation import CheckedTable, check_table, normalised_table
from vanco_offline.data.value_checks import raise_problems

__all__ = ["Observations", "build_observations", "observation_names", "pk_feature_table", "validate"]


def observation_names(options: ConversionSettings, columns: Sequence[str]) -> tuple[str, ...]:
    """The observation columns, in order, that ``options`` gives a table with these ``columns``.

    The seven schema features, the covariates asked for (those present for
    ``covariates=True``), then the level indicator, the previous dose and the exposure
    features, each when asked. :func:`build_observations` assembles its columns in this
    order, and :func:`vanco_offline.rollout.model_env` rebuilds them in the simulator.
    """
    names = FEATURES + options.covariate_columns(tuple(columns))
    if options.level_indicator:
        names = (*names, LEVEL_INDICATOR)
    if options.last_dose:
        names = (*names, LAST_DOSE)
    if options.pk_features:
        names = (*names, *PK_FEATURES)
    return tuple(names)


@dataclasses.dataclass
class Observations:
    """Observation rows of a table, ready for d3rlpy."""

    values: np.ndarray  # (rows, len(names)) float32, no NaN
    names: tuple[str, ...]
    features: np.ndarray  # (rows, 7) float64 schema features after imputation, raw vanco_level
    imputed: dict[str, int]  # column -> values carried forward
    level_filled: int  # never-measured levels filled with 0.0
    pk: PKReplay | None = None  # the exposure tracker's replay, when pk_features or the exposure reward


def build_observations(checked: CheckedTable, options: ConversionSettings) -> Observations:
    """Assemble, impute and check the observation columns; raise ValueError on any NaN left."""
    covariates = options.covariate_columns(tuple(checked.columns))
    names = FEATURES + covariates
    raw = np.column_stack([checked.columns[name] for name in names])
    values = raw.copy()
    row_start = checked.starts[checked.codes]
    missing = np.isnan(raw)

    rule = options.impute
    carried = np.zeros_like(missing)
    if rule is not None and missing.any():
        if rule.max_age_h is not None and "time_h" not in checked.columns:
            raise ValueError(
                "CarryForward(max_age_h=...) needs a 'time_h' column (hours); this table has "
                "only 'step': use CarryForward(max_age_steps=...) instead"
            )
        allowed = rule.columns if rule.columns is not None else names
        clock = impute_clock(checked, rule)
        for j, name in enumerate(names):
            if name in allowed and missing[:, j].any():
                carried[:, j] = carry_forward(values[:, j], row_start, clock, rule.max_age)

    # A level is "never measured" at a row when no earlier row of the stay has one.
    level = names.index(LEVEL)
    measured_before = last_valid(raw[:, level], row_start) >= 0
    never = missing[:, level] & ~measured_before
    if options.fill_unmeasured_level:
        values[never, level] = 0.0

    left = np.isnan(values)
    if left.any():
        problems = [
            nan_problem(
                name, left[:, j], never if name == LEVEL else None, raw[:, j], row_start, checked, rule
            )
            for j, name in enumerate(names)
            if left[:, j].any()
        ]
        raise_problems(problems)

    # The columns after the features and covariates, in observation_names' order.
    if options.level_indicator:
        indicator = (~never).astype(np.float64)
        values = np.column_stack([values, indicator])
    if options.last_dose:
        # The dose given at the previous decision of the same stay; 0 before the first.
        previous = np.r_[0.0, checked.columns[DOSE][:-1]]
        previous[checked.starts] = 0.0
        values = np.column_stack([values, previous])
    creatinine = values[:, names.index("creatinine")]
    pk = replay_pk_features(checked, creatinine, options.population_model) if options.needs_pk else None
    if options.pk_features:
        values = np.column_stack([values, pk.features])
    names = observation_names(options, tuple(checked.columns))

    features = values[:, : len(FEATURES)].copy()
    features[:, level] = raw[:, level]  # the reward sees the level as measured (DESIGN.md)
    imputed = {
        name: int(carried[:, j].sum()) for j, name in enumerate(names[: raw.shape[1]]) if carried[:, j].any()
    }
    return Observations(
        values=values.astype(np.float32),
        names=tuple(names),
        features=features,
        imputed=imputed,
        level_filled=int(never.sum()) if options.fill_unmeasured_level else 0,
        pk=pk,
    )


def validate(table: pd.DataFrame, **options: object) -> pd.DataFrame:
    """Check a dosing table against the schema; return a normalised copy or raise ValueError.

    Runs every check that :func:`~vanco_offline.data.convert` runs before it builds the
    dataset, including the NaN check of required fields under the chosen imputation rule.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per decision step (see ``data/README.md``).
    **options
        The keyword options of :func:`~vanco_offline.data.convert` (``action``,
        ``impute``, ``fill_unmeasured_level``, ``clip_doses``, ...).

    Returns
    -------
    pandas.DataFrame
        A copy with ``sex`` recoded to 0/1 and doses clipped when ``clip_doses=True``;
        every other value unchanged.

    Raises
    ------
    ValueError
        Naming each problem's column, stays and rows, and how to fix it.
    """
    opts = ConversionSettings(**options)  # type: ignore[arg-type]
    checked = check_table(table, opts)
    build_observations(checked, opts)
    return normalised_table(table, checked, opts)


def pk_feature_table(table: pd.DataFrame, impute: CarryForward | None = None) -> pd.DataFrame:
    """The exposure tracker's features of every row of a dosing table, as a DataFrame.

    Columns :data:`vanco_pk.exposure.PK_FEATURES`, with the table's index; the table is
    validated as :func:`vanco_offline.data.convert` would with ``pk_features=True`` (and the
    ``impute`` rule, a :class:`~vanco_offline.data.CarryForward`, for missing values).
    """
    options = ConversionSettings(pk_features=True, fill_unmeasured_level=True, impute=impute)
    observations = build_observations(check_table(table, options), options)
    return pd.DataFrame(observations.pk.features, columns=list(PK_FEATURES), index=table.index)
