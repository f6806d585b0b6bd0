"""A dose recommendation for one patient, never unsafe in silence.

The state is parsed strictly and the trained policy's greedy dose passes through the safety
layer of :mod:`vanco_offline.safety`: a broken model's output is refused, each clinical limit
that acts is named, and a state unlike the training data is flagged, not answered quietly; the
learned Q of a few alternative doses is shown beside it, and so is the dose
model-informed precision dosing (MIPD, Bayesian AUC-guided) would give.

A model trained with ``last_dose`` or ``pk_features`` (:data:`HISTORY_COLUMNS`) needs the
stay's earlier rows to build its observation: the previous dose and the Bayesian exposure
estimate are replayed from them exactly as the converter did for the training data
(:func:`vanco_offline.data.observation_table`). Such a model refuses a single state without
its history, naming what to give.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from vanco_pk import make_policy
from vanco_pk.exposure import PK_FEATURES
from vanco_pk.targets import COVARIATES, DOSE_GRID_MG, FEATURES

from vanco_offline.algos.dosing import predict_dose_mg
from vanco_offline.bundle import draw_line
from vanco_offline.clinical import ClinicalLimits
from vanco_offline.data.schema import LAST_DOSE
from vanco_offline.safety import (
    CheckedDose,
    check_dose,
    check_range,
    parse_bool,
    parse_covariates,
    parse_number,
    parse_sex,
    parse_state,
)
from vanco_offline.trained import TrainedModel

__all__ = [
    "ALTERNATIVE_DOSES_MG",
    "CLINICAL_CASES",
    "HISTORY_COLUMNS",
    "Recommendation",
    "case_history",
    "history_columns",
    "observation_from_state",
    "recommend",
    "recommend_on_table",
]

#: Observation columns built from a stay's earlier rows, not from the current state alone.
HISTORY_COLUMNS: tuple[str, ...] = (LAST_DOSE, *PK_FEATURES)

ALTERNATIVE_DOSES_MG = (0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0)


@dataclasses.dataclass
class Recommendation(CheckedDose):
    """The recommended dose for one state, with everything a pharmacist should see beside it."""

    alternatives: dict[float, float]
    mipd_dose_mg: float | None
    mipd_basis: str
    observation: dict[str, float]
    #: Whether to draw a level at the end of this interval, and why (:meth:`DrawHead.advise`);
    #: None for a model trained without a draw head.
    draw: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            **super().to_dict(),
            "q_of_alternatives": {f"{dose:g}": q for dose, q in self.alternatives.items()},
            "mipd_dose_mg": self.mipd_dose_mg,
            "mipd_basis": self.mipd_basis,
            "observation": self.observation,
        }
        if self.draw is not None:
            out["draw"] = self.draw
        return out

    def __str__(self) -> str:
        every = self.scope.label
        if self.held:
            lines = [
                "recommended dose      HOLD: no dose now; re-check the level before the next dose",
                f"model's greedy dose   {self.model_dose_mg:.0f} mg (not to be given: hold)",
            ]
        else:
            # A maintenance dose repeats every interval (its daily total shown); a loading dose is once.
            daily = (
                f" ({self.dose_mg * 24.0 / self.interval_h:.0f} mg/day)"
                if self.limited.renal_cap_mg is not None
                else ""
            )
            lines = [
                f"recommended dose      {self.dose_mg:.0f} mg {self.schedule}{daily}, infused over at least "
                f"{self.limited.min_infusion_minutes:.0f} min",
                f"model's greedy dose   {self.model_dose_mg:.0f} mg {self.schedule}",
            ]
        if self.scope.interval_source.startswith("assumed"):
            lines.append(f"NOTE: the model's dosing interval was {self.scope.interval_source}")
        mipd = (
            f"{self.mipd_dose_mg:.0f} mg {every} ({self.mipd_basis})"
            if self.mipd_dose_mg is not None
            else self.mipd_basis
        )
        lines.append(f"MIPD dose             {mipd}")
        lines.append(
            "learned Q of alternatives: "
            + ", ".join(f"{d:g} mg {q:+.2f}" for d, q in self.alternatives.items())
        )
        if self.draw is not None:
            lines.append(draw_line(self.draw))
        lines.extend(f"CLIPPED: {reason}" for reason in self.limited.clipped_by)
        lines.extend(f"WARNING: {warning}" for warning in [*self.limited.warnings, *self.population_warnings])
        lines.extend(f"OUTSIDE TRAINING DATA: {reason}" for reason in self.support_warnings)
        return "\n".join(lines)


def history_columns(model: TrainedModel) -> list[str]:
    """The model's observation columns that need the stay's earlier rows (empty: the state suffices)."""
    return [name for name in model.observation_names if name in HISTORY_COLUMNS]


def observation_from_state(
    model: TrainedModel, state: Mapping[str, Any], history: pd.DataFrame | None = None
) -> np.ndarray:
    """The model's observation vector for a state given by feature name, checked like a table row.

    A missing or NaN ``vanco_level`` means never measured, filled with 0 mg/L when the model
    was trained that way; any other missing feature is an error naming it. A model with
    :data:`HISTORY_COLUMNS` needs ``history``: the stay's rows in the data schema up to and
    including the current state (its last row), from which the observation is built as the
    converter builds it; ``state`` must then agree with that last row.
    """
    unknown = sorted(set(state) - set(model.observation_names) - set(COVARIATES) - {"first_dose"})
    if unknown:
        raise ValueError(
            f"the state has unknown fields {unknown}; the model's features are {model.observation_names}"
        )
    needed = history_columns(model)
    if needed:
        if history is None:
            raise ValueError(
                f"this model needs the stay's dose history: give --csv with the stay's rows (its observation "
                f"has {', '.join(needed)}, built from the earlier doses and levels)"
            )
        return _observation_from_history(model, state, history)
    observation, _, _ = parse_state(
        state,
        list(model.observation_names),
        fill_unmeasured_level=model.conversion.fill_unmeasured_level,
    )
    return observation.astype(np.float32)


def _observation_from_history(
    model: TrainedModel, state: Mapping[str, Any], history: pd.DataFrame
) -> np.ndarray:
    if not isinstance(history, pd.DataFrame) or len(history) == 0:
        raise ValueError("the history must be a non-empty table of the stay's rows, the current state last")
    if "stay_id" in history.columns and history["stay_id"].nunique() != 1:
        stays = history["stay_id"].nunique()
        raise ValueError(f"the history holds {stays} stays; give the rows of the patient's stay only")
    values = model.observation(history)
    last = history.iloc[-1]
    for name, given in state.items():
        given_at_all = given is not None and not _is_nan(given)
        if name in FEATURES + COVARIATES and name in history.columns and given_at_all:
            given = parse_number(name, given)
            logged = parse_sex(last[name], "the history") if name == "sex" else last[name]
            if not _is_nan(logged) and not math.isclose(given, float(logged), rel_tol=1e-6):
                raise ValueError(
                    f"the state's {name!r} is {given!r} but the last row of the stay's history has "
                    f"{last[name]!r}: the history must end with the current state"
                )
    for name, value in zip(model.observation_names, values, strict=True):
        if not math.isfinite(float(value)):
            raise ValueError(f"the stay's history gives {name} = {value}; give the rows that define it")
        check_range(name, float(value))
    return values


def recommend(
    model: TrainedModel,
    state: Mapping[str, Any],
    covariates: Mapping[str, Any] | None = None,
    *,
    first_dose: bool | None = None,
    history: pd.DataFrame | None = None,
    limits: ClinicalLimits | None = None,
    mode: str = "greedy",
) -> Recommendation:
    """Recommend the next dose for one patient state.

    Parameters
    ----------
    model : TrainedModel
        From :func:`vanco_offline.trained.load_model` or :func:`vanco_offline.training.train`.
    state : mapping
        The model's observation features by name (``vanco_level``, ``creatinine``, ...); it
        may also hold the covariates. Any other key (``first_dose`` included) is an error.
    covariates : mapping, optional
        ``weight_kg``, ``age`` (18 or older), ``sex`` (0/1) and ``dialysis`` (0/1) are required,
        here or in ``state`` (not both): the loading-dose and renal limits need them; a missing
        one is an error naming it. ``height_cm``, when given, is checked against the weight.
    first_dose : bool, optional
        Whether this is the first dose of the course; inferred from an unmeasured level if None.
    history : DataFrame, optional
        The patient's earlier rows in the data schema (one stay; doses and levels so far),
        ending with the current state: the MIPD comparison then fits the patient's own
        clearance to the measured levels instead of using the population prior (its rows must
        be the model's dosing interval apart), and a model
        with :data:`HISTORY_COLUMNS` (previous dose, PK features) builds its observation from
        it (required for such a model).
    mode : {"greedy", "sample"}
        The policy's greedy dose, or one drawn from its stochastic policy.
    """
    if mode not in ("greedy", "sample"):
        raise ValueError(f"mode must be 'greedy' or 'sample', got {mode!r}")
    if not isinstance(state, Mapping):
        raise ValueError(
            f"the state must be a mapping of feature names to values, not {type(state).__name__}"
        )
    if "first_dose" in state:
        raise ValueError(
            "the state has the field 'first_dose': give it as recommend(..., first_dose=...), "
            "not in the state"
        )
    in_both = sorted(set(state) & set(covariates or {}))
    if in_both:
        raise ValueError(f"{in_both} given both in the state and in covariates; give each once")
    state, covariates = (
        {k: v for k, v in state.items() if k not in COVARIATES},
        {**{k: v for k, v in state.items() if k in COVARIATES}, **(covariates or {})},
    )
    covariates = parse_covariates(covariates)
    if isinstance(history, pd.DataFrame) and "time_h" in history.columns:
        stays = history["stay_id"] if "stay_id" in history.columns else np.zeros(len(history))
        time = pd.to_numeric(history["time_h"], errors="coerce").to_numpy(np.float64)
        model.scope.check_interval(stays, time, "the stay's history")
    if first_dose is not None:
        first_dose = parse_bool("first_dose", first_dose)
    observation = observation_from_state(model, {**state, **covariates}, history)
    features = np.array([observation[model.observation_names.index(f)] for f in FEATURES], dtype=np.float64)
    if first_dose is None and history is not None and history_columns(model):
        # The stay's rows say whether a dose was given before; no need to infer it from the level.
        first_dose = not bool(np.nansum(history["dose_mg"].to_numpy(np.float64)[:-1]) > 0)
    algo = model.algo
    discrete = model.action == "discrete"
    model_dose = float(predict_dose_mg(algo, observation, sample=mode != "greedy")[0])
    checked = check_dose(
        model_dose,
        observation,
        list(model.observation_names),
        covariates,
        support=model.support,
        scope=model.scope,
        first_dose=first_dose,
        limits=limits,
    )
    alternatives = _alternative_q(algo, observation, discrete)
    mipd_history = history if history is not None and set(COVARIATES) <= set(history.columns) else None
    mipd_dose, basis = _mipd_dose(features, covariates, mipd_history, model.scope.interval_h)
    draw = None if model.draw_head is None else _draw_advice(model, history, covariates, checked)
    return Recommendation(
        model_dose_mg=model_dose,
        limited=checked.limited,
        support_warnings=checked.support_warnings,
        scope=checked.scope,
        population_warnings=checked.population_warnings,
        alternatives=alternatives,
        mipd_dose_mg=mipd_dose,
        mipd_basis=basis,
        observation=dict(zip(model.observation_names, map(float, observation), strict=True)),
        draw=draw,
    )


def _draw_advice(
    model: TrainedModel, history: pd.DataFrame | None, covariates: Mapping[str, Any], checked: CheckedDose
) -> dict[str, Any]:
    """The draw head's advice at the dose to be given (0 when held), from the stay's rows."""
    from vanco_offline.algos.sampling_iql import draw_features_at

    if history is None:
        return {"why": "not computed: the draw state is built from the stay's rows (give --csv with them)"}
    rows = model.validate(
        history.assign(**{c: covariates.get(c, np.nan) for c in COVARIATES if c not in history})
    )
    dose = 0.0 if checked.held else float(checked.dose_mg)
    features = draw_features_at(rows, dose, model.population_model, model.scope.interval_h)
    state = dict(zip(model.draw_head.features, map(float, features), strict=True))
    return model.draw_head.advise(state, held=checked.held)


def recommend_on_table(
    model: TrainedModel, table: pd.DataFrame, n: int, mode: str = "greedy", seed: int = 0
) -> pd.DataFrame:
    """Recommend for ``n`` rows of a dosing table drawn at random (seeded), beside the logged dose.

    Each row is taken with its stay's earlier rows as history (so MIPD fits the levels seen so
    far, and a model with :data:`HISTORY_COLUMNS` builds its observation from them) and as a
    first dose when it is the stay's first row.
    """
    model.convert(table)  # the whole table must be valid data
    if not 1 <= n <= len(table):
        raise ValueError(f"--samples must be between 1 and the table's {len(table)} rows, got {n}")
    rows = np.sort(np.random.default_rng(seed).choice(len(table), size=n, replace=False))
    records = []
    for position in rows.tolist():
        row = table.iloc[position]
        stay = table.iloc[: position + 1]
        stay = stay[stay["stay_id"] == row["stay_id"]]
        covariates = {c: row[c] for c in COVARIATES if c in table.columns}
        state = {f: row[f] for f in model.observation_names if f in table.columns and f not in covariates}
        history = stay if history_columns(model) or set(COVARIATES) <= set(table.columns) else None
        rec = recommend(model, state, covariates, first_dose=len(stay) == 1, history=history, mode=mode)
        records.append(
            {
                "stay_id": row["stay_id"],
                "row": position,
                "logged_dose_mg": float(row["dose_mg"]),
                "model_dose_mg": rec.model_dose_mg,
                "recommended_mg": rec.dose_mg,
                "mipd_dose_mg": rec.mipd_dose_mg,
                "clipped": rec.limited.clipped,
                "outside_support": bool(rec.support_warnings),
                "warnings": "; ".join(rec.warnings),
                **({} if rec.draw is None else {"draw_level": rec.draw.get("draw")}),
            }
        )
    return pd.DataFrame.from_records(records)


def _alternative_q(algo: Any, observation: np.ndarray, discrete: bool) -> dict[float, float]:
    doses = np.asarray(ALTERNATIVE_DOSES_MG)
    states = np.repeat(observation[None], len(doses), axis=0)
    if discrete:
        actions: np.ndarray = np.searchsorted(DOSE_GRID_MG, doses)
    else:
        actions = doses.astype(np.float32).reshape(-1, 1)
    values = np.asarray(algo.predict_value(states, actions)).reshape(-1)
    return {float(d): float(q) for d, q in zip(doses, values, strict=True)}


def _mipd_dose(
    features: np.ndarray, covariates: dict[str, Any], history: pd.DataFrame | None, interval_h: float
) -> tuple[float | None, str]:
    """MIPD's dose for the model's dosing interval (AUC24 500 with a dose every ``interval_h``)."""
    missing = [c for c in ("weight_kg", "age", "sex", "dialysis") if c not in covariates]
    if missing:
        return None, f"not computed: covariates {missing} not given"
    if history is not None:
        from vanco_offline.data import score_table

        scores = score_table(history, make_policy("mipd", interval_h=interval_h))
        levels = int(history["vanco_level"].notna().sum())
        return float(
            DOSE_GRID_MG[int(np.argmax(scores.pmf[-1]))]
        ), f"MAP fit to the stay's {levels} level rows"
    if features[0] > 0:
        # A level cannot be attributed to doses that are not known, and the population prior
        # would ignore it: showing that number next to a toxic level would mislead.
        return None, "not computed: a measured level needs the dose history (give --csv with the stay's rows)"
    policy = make_policy("mipd", interval_h=interval_h)
    policy.reset({"height_cm": float("nan"), **covariates})
    naive = features.copy()
    naive[0] = np.nan
    pmf = policy.action_probs(naive, {"time_h": 0.0, "level_measured": False})
    return float(DOSE_GRID_MG[int(np.argmax(pmf))]), "population prior from the covariates (no level yet)"


def _is_nan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def case_history(state: Mapping[str, float], covariates: Mapping[str, float], interval_h: float = 12.0):
    """A short chart ending with ``state``, in the data schema (one stay).

    With no measured level (NaN) the state is the first decision: a single row. Otherwise
    the stay so far is a loading dose of 25 mg/kg (at most 3 g) and, ``interval_h`` later, one
    maintenance dose of 15 mg/kg (10 mg/kg on dialysis; at most 2 g), both rounded to 250 mg,
    with the state's signs and creatinine and no level; the state's level is the trough drawn
    ``interval_h`` after the maintenance dose, just before the current decision.
    """
    weight = float(covariates["weight_kg"])
    per_kg = 10.0 if covariates.get("dialysis", 0) else 15.0
    load = min(round(25.0 * weight / 250.0) * 250.0, 3000.0)
    maintenance = min(round(per_kg * weight / 250.0) * 250.0, 2000.0)
    measured = not _is_nan(state["vanco_level"])
    doses = [load, maintenance, float("nan")] if measured else [float("nan")]
    rows = []
    for step, dose in enumerate(doses):
        current = step == len(doses) - 1
        row = {"stay_id": 0, "step": step, "time_h": step * interval_h, **state, "dose_mg": dose}
        row["vanco_level"] = state["vanco_level"] if current else float("nan")
        row["level_measured"] = bool(current and measured)
        rows.append({**row, **{c: covariates[c] for c in COVARIATES}})
    return pd.DataFrame(rows)


def _case(
    level: float,
    creatinine: float,
    wbc: float,
    bun: float,
    temperature: float,
    sbp: float,
    heart_rate: float,
    **covariates: float,
) -> dict[str, Any]:
    state = dict(zip(FEATURES, (level, creatinine, wbc, bun, temperature, sbp, heart_rate), strict=True))
    covariates = {"dialysis": 0, **covariates}
    return {"state": state, "covariates": covariates, "history": case_history(state, covariates)}


#: Built-in clinical cases for ``vanco-offline recommend --clinical``, each with a short chart
#: (``history``: a loading and a maintenance dose before a measured level; see :func:`case_history`).
CLINICAL_CASES: dict[str, dict[str, Any]] = {
    "first dose, normal kidney": _case(
        float("nan"), 0.9, 15.0, 14.0, 38.6, 112.0, 104.0, weight_kg=75.0, age=55.0, sex=0, height_cm=178.0
    ),
    "normal kidney, in range": _case(
        14.0, 0.9, 11.5, 14.0, 37.9, 118.0, 92.0, weight_kg=75.0, age=55.0, sex=0, height_cm=178.0
    ),
    "acute kidney injury": _case(
        24.0, 2.4, 13.0, 48.0, 38.1, 104.0, 98.0, weight_kg=80.0, age=66.0, sex=0, height_cm=175.0
    ),
    "dialysis": _case(
        18.0, 6.5, 12.0, 62.0, 37.8, 128.0, 84.0, weight_kg=70.0, age=60.0, sex=1, height_cm=165.0, dialysis=1
    ),
    "obese (150 kg)": _case(
        9.0, 1.0, 14.0, 16.0, 38.4, 132.0, 100.0, weight_kg=150.0, age=45.0, sex=0, height_cm=180.0
    ),
    "elderly (88 y, 55 kg)": _case(
        14.0, 1.3, 12.5, 30.0, 37.9, 110.0, 88.0, weight_kg=55.0, age=88.0, sex=1, height_cm=158.0
    ),
    "subtherapeutic level": _case(
        6.0, 0.8, 16.0, 12.0, 38.8, 108.0, 110.0, weight_kg=70.0, age=45.0, sex=0, height_cm=176.0
    ),
    "toxic level": _case(
        32.0, 1.6, 10.0, 30.0, 37.4, 120.0, 84.0, weight_kg=70.0, age=60.0, sex=0, height_cm=176.0
    ),
}
