"""The safety layer: every dose a model gives a patient passes through here.

``recommend``, the bundle runtime (:mod:`vanco_offline.bundle`) and the Python API dose
through :func:`check_dose`, after parsing the patient state with the strict parsers below.
Nothing is answered silently: a value that cannot be read is an error naming the field, a
model output no trained policy can produce is a refusal (:class:`UnsafeDose`), a limit that
acts is named (:func:`vanco_offline.clinical.apply_limits`) and a state unlike the training
data is flagged (:class:`vanco_offline.clinical.StateSupport`).

Parsing rules:

- numbers must be numbers (a JSON ``"12"`` or ``true`` is an error, not 12 or 1), finite, and
  inside the schema's plausible range (:data:`vanco_offline.data.schema.RANGES`), whose
  message names the likely unit error. These value checks are those of a dosing table:
  :mod:`vanco_offline.data.value_checks` is the one module of both;
- booleans (``first_dose``, ``dialysis``) are ``true``/``false``, 0/1, or the text
  ``"true"``/``"false"``/``"yes"``/``"no"``/``"1"``/``"0"``; anything else is an error (the
  text ``"false"`` is false, never truthy);
- ``sex`` is 0 (male) or 1 (female) (number or text), or one of :data:`vanco_offline.data.schema.SEX_TEXT`
  (``m``, ``male``, ``f``, ``female``, any case);
- ``null`` is an error, except a ``vanco_level`` that was never measured.

Every dose is for one model's :class:`DosingScope`, saved with the model at training: its
dosing interval (the renal cap and the MIPD comparison use it; the output says ``q6h`` or
``q12h`` from it), the units of its inputs, and the population it was trained on. A patient
outside that population is refused (a child: the limits here are adult limits) or flagged
(a weight outside the training range, or implausible for the height); the covariates the caps
need (weight, age, sex, dialysis) are required, never assumed.

This module needs numpy and ``vanco_pk`` only (no torch, no d3rlpy), so the bundle runtime
applies it on a machine without torch.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from vanco_pk.targets import COVARIATES, DOSE_MAX_MG, FEATURES

from vanco_offline.clinical import ClinicalLimits, LimitedDose, StateSupport, apply_limits

__all__ = [
    "BOOLEAN_TEXT",
    "REQUIRED_COVARIATES",
    "CheckedDose",
    "DosingScope",
    "UnsafeDose",
    "check_dose",
    "check_range",
    "load_json",
    "parse_bool",
    "parse_covariates",
    "parse_number",
    "parse_sex",
    "parse_state",
]

#: Covariates every dose needs: the loading cap (weight), the renal cap (age, weight, sex,
#: dialysis) and the population check (age).
REQUIRED_COVARIATES: tuple[str, ...] = ("weight_kg", "age", "sex", "dialysis")

#: Body-mass index (kg/m^2) beyond which a weight is flagged as unlikely for the height.
BMI_PLAUSIBLE: tuple[float, float] = (15.0, 50.0)

_LB_PER_KG = 2.20462

#: A model's raw dose beyond this margin outside 0-3000 mg is not a policy's output: refused.
_OUTPUT_MARGIN_MG = 1.0


class UnsafeDose(ValueError):
    """The model's answer cannot be given to a patient (non-finite, or outside what a policy outputs)."""


def _data_module(name: str) -> ModuleType:
    """``vanco_offline.data.<name>``, also where d3rlpy and torch are missing (the bundle runtime).

    ``vanco_offline.data``'s ``__init__`` imports d3rlpy; the schema and the value checks need
    only numpy and ``vanco_pk``. Without torch the package is entered without its ``__init__``.
    """
    try:
        return importlib.import_module(f"vanco_offline.data.{name}")
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in ("torch", "d3rlpy"):
            raise
    package = sys.modules.get("vanco_offline.data")
    if package is None:
        package = ModuleType("vanco_offline.data")
        package.__path__ = [str(Path(__file__).with_name("data"))]
        sys.modules["vanco_offline.data"] = package
    return importlib.import_module(f"vanco_offline.data.{name}")


_CHECKS = _data_module("value_checks")
RANGES = _CHECKS.RANGES
SEX_TEXT: dict[str, int] = _CHECKS.SEX_TEXT
BOOLEAN_TEXT: dict[str, bool] = _CHECKS.BOOLEAN_TEXT
#: The one value-check module's checks (:mod:`vanco_offline.data.value_checks`), used here as in a table.
check_range = _CHECKS.check_range
parse_number = _CHECKS.parse_number
parse_bool = _CHECKS.parse_bool
parse_sex = _CHECKS.parse_sex


def load_json(text: str | bytes, where: str) -> Any:
    """JSON text parsed strictly: a key given twice in one object, nesting too deep for the parser,
    or an integer too long to read is a ValueError naming ``where``, never a guess or a traceback."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"{where} gives the key {key!r} twice in one object; give each field once")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{where} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise ValueError(
            f"{where} is nested too deeply to be a patient state or a model description"
        ) from None
    except ValueError as exc:
        if "twice in one object" in str(exc):
            raise
        raise ValueError(f"{where} is not valid JSON ({exc})") from None


def parse_covariates(covariates: Mapping[str, Any] | None, where: str = "the state") -> dict[str, float]:
    """The covariates strictly parsed: numbers in range, ``sex`` 0/1, ``dialysis`` 0/1; null is an error."""
    out: dict[str, float] = {}
    for name, raw in (covariates or {}).items():
        if name not in COVARIATES:
            raise ValueError(f"{where} has an unknown covariate {name!r}; known: {list(COVARIATES)}")
        if name == "sex":
            out[name] = float(parse_sex(raw, where))
        elif name == "dialysis":
            out[name] = float(parse_bool(name, raw, where))
        else:
            out[name] = parse_number(name, raw, where)
    return out


def parse_state(
    state: Mapping[str, Any],
    observation_names: list[str],
    *,
    fill_unmeasured_level: bool,
    where: str = "the state",
) -> tuple[np.ndarray, dict[str, float], bool | None]:
    """A state given by name as (observation, covariates, first_dose), every field parsed strictly.

    ``state`` holds the model's observation features, any covariates and optionally
    ``first_dose``. A missing or null ``vanco_level`` means never measured: 0 mg/L when the
    model was trained with ``fill_unmeasured_level``, else an error. Any other missing or null
    feature, and any unknown field, is an error naming it.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"{where} must be an object of feature names to values, not {type(state).__name__}")
    unknown = sorted(set(state) - set(observation_names) - set(COVARIATES) - {"first_dose"})
    if unknown:
        raise ValueError(
            f"{where} has unknown fields {unknown}; the model's features are {observation_names}"
        )
    covariates = parse_covariates({k: v for k, v in state.items() if k in COVARIATES}, where)
    first_dose = parse_bool("first_dose", state["first_dose"], where) if "first_dose" in state else None
    values: list[float] = []
    for name in observation_names:
        raw = state.get(name)
        if name == "vanco_level" and (raw is None or (isinstance(raw, float) and math.isnan(raw))):
            if not fill_unmeasured_level:
                raise ValueError(
                    f"{where} has no vanco_level and the model was not trained with unmeasured levels"
                )
            values.append(0.0)
            continue
        if name not in state:
            raise ValueError(f"{where} lacks the feature {name!r}; the model needs {observation_names}")
        values.append(covariates[name] if name in covariates else parse_number(name, raw, where))
    return np.array(values, dtype=np.float64), covariates, first_dose


@dataclass(frozen=True)
class DosingScope:
    """What a model's doses mean and whom they are for; saved with the model at training.

    Attributes
    ----------
    interval_h : float
        Hours between doses in the training data (the median gap of ``time_h`` within stays):
        a dose is "q{interval_h}h". The renal cap and the MIPD comparison are computed for it.
    interval_source : str
        How ``interval_h`` was obtained (shown with every dose when it was assumed).
    units : dict
        The schema unit of each input at training (``vanco_level``: ``mg/L``, ...); a model
        whose units differ from this version's schema is refused.
    min_age : float
        Youngest age in years the model doses (18: the limits here are adult limits).
    covariate_ranges : dict
        ``[min, max]`` of ``weight_kg``, ``age`` and ``height_cm`` in the training data; a
        patient outside is flagged.
    """

    interval_h: float
    interval_source: str
    units: dict[str, str]
    min_age: float = 18.0
    covariate_ranges: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        interval = self.interval_h
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0 < interval <= 168:
            raise ValueError(f"the dosing interval must be a number of hours in (0, 168], got {interval!r}")
        if not isinstance(self.interval_source, str):
            raise ValueError(f"interval_source must be text, got {self.interval_source!r}")
        if not isinstance(self.units, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.units.items()
        ):
            raise ValueError(f"units must map input names to unit text, got {self.units!r}")
        for name, unit in self.units.items():
            spec = RANGES.get(name)
            if spec is not None and spec.unit != unit:
                raise ValueError(
                    f"the model takes {name} in {unit}, this version's schema in {spec.unit}: the model "
                    "cannot be dosed with; retrain it"
                )
        if (
            isinstance(self.min_age, bool)
            or not isinstance(self.min_age, int | float)
            or not 0 <= self.min_age
        ):
            raise ValueError(f"min_age must be a non-negative number of years, got {self.min_age!r}")
        if not isinstance(self.covariate_ranges, dict):
            raise ValueError(f"covariate_ranges must be an object, got {self.covariate_ranges!r}")
        for name, bounds in self.covariate_ranges.items():
            ok = name in ("weight_kg", "age", "height_cm") and isinstance(bounds, list) and len(bounds) == 2
            ok = ok and all(
                isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in bounds
            )
            if not ok or bounds[0] > bounds[1]:
                raise ValueError(
                    f"covariate_ranges[{name!r}] must be [low, high] of weight_kg, age or height_cm"
                )

    @property
    def label(self) -> str:
        """``q12h``, ``q6h``, ..."""
        return f"q{self.interval_h:g}h"

    @classmethod
    def from_dict(cls, value: Any, where: str = "the model") -> DosingScope:
        """The scope a model file records; ValueError naming ``where`` when absent or malformed."""
        if value is None:
            raise ValueError(
                f"{where} records no dosing interval (written before version 0.2 saved it): its doses "
                "cannot be capped for the interval it was trained at; retrain it (or export it again)"
            )
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: the dosing scope must be an object, got {value!r}")
        try:
            return cls(**dict(value))
        except TypeError as exc:
            raise ValueError(f"{where}: the dosing scope is malformed ({exc})") from None
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "interval_h": float(self.interval_h),
            "interval_source": self.interval_source,
            "units": dict(self.units),
            "min_age": float(self.min_age),
            "covariate_ranges": {k: [float(v) for v in b] for k, b in self.covariate_ranges.items()},
        }

    @classmethod
    def fit(
        cls,
        stay_ids: np.ndarray,
        time_h: np.ndarray | None,
        covariates: Mapping[str, np.ndarray],
        input_names: list[str] | tuple[str, ...],
    ) -> DosingScope:
        """The scope of a training table: the median gap of ``time_h`` within stays (12 h, said to
        be assumed, for a table without ``time_h``), the inputs' units, the covariate ranges."""
        median = median_interval(stay_ids, time_h)
        if median is not None:
            interval, source = median, "the median time between a stay's rows (time_h)"
        else:
            interval = 12.0
            source = "assumed: the training table had no time_h (or no stay of two rows); 12 h"
        units = {name: RANGES[name].unit for name in input_names if name in RANGES}
        ranges = {}
        for name in ("weight_kg", "age", "height_cm"):
            if name in covariates:
                values = np.asarray(covariates[name], dtype=np.float64)
                values = values[np.isfinite(values)]
                if values.size:
                    ranges[name] = [float(values.min()), float(values.max())]
        return cls(interval_h=interval, interval_source=source, units=units, covariate_ranges=ranges)

    def check_interval(self, stay_ids: Any, time_h: Any, where: str) -> None:
        """ValueError when rows (``where``: a chart, a table) are not ``interval_h`` apart (10 %):
        the model's doses and caps are for its own interval."""
        median = median_interval(stay_ids, time_h)
        if median is not None and not math.isclose(median, self.interval_h, rel_tol=0.1):
            raise ValueError(
                f"{where}: the rows are {median:g} h apart but the model doses every {self.interval_h:g} h "
                f"({self.label}, from its training data): its doses and caps do not apply to these data"
            )

    def check_patient(self, covariates: Mapping[str, float], checked: Any = ()) -> list[str]:
        """Flags for a patient unlike the training population; ValueError for one outside the
        model's population (age below ``min_age``) or without the required covariates.
        ``checked``: covariates the support check already compares with the training data."""
        missing = [name for name in REQUIRED_COVARIATES if name not in covariates]
        if missing:
            raise ValueError(
                f"the state lacks the covariate(s) {missing}, which the loading and renal caps need "
                "(weight in kg, age in years, sex 0/1, dialysis 0/1: a missing dialysis is never taken "
                "as no dialysis); no dose is recommended without them"
            )
        age = float(covariates["age"])
        if age < self.min_age:
            raise ValueError(
                f"age {age:g} years: this model doses patients of {self.min_age:g} years and older "
                "(its limits "
                "and renal cap are adult limits); no dose is recommended"
            )
        flags = []
        for name, (low, high) in self.covariate_ranges.items():
            if name in covariates and name not in checked and not low <= float(covariates[name]) <= high:
                flags.append(
                    f"{name} = {float(covariates[name]):g} {RANGES[name].unit} is outside the "
                    "training data's "
                    f"{low:g}-{high:g}"
                )
        weight = float(covariates["weight_kg"])
        if "height_cm" in covariates:
            metres = float(covariates["height_cm"]) / 100.0
            bmi = weight / metres**2
            if not BMI_PLAUSIBLE[0] <= bmi <= BMI_PLAUSIBLE[1]:
                hint = ""
                if bmi > BMI_PLAUSIBLE[1] and 18.5 <= bmi / _LB_PER_KG <= 30.0:
                    hint = f": the weight looks like pounds ({weight:g} lb = {weight / _LB_PER_KG:.1f} kg)"
                flags.append(
                    f"weight {weight:g} kg at height {float(covariates['height_cm']):g} cm gives "
                    f"BMI {bmi:.1f}, "
                    f"outside {BMI_PLAUSIBLE[0]:g}-{BMI_PLAUSIBLE[1]:g}{hint}; check the weight"
                )
        else:
            flags.append("height_cm not given: the weight was not checked against the height")
        return flags


def median_interval(stay_ids: Any, time_h: Any) -> float | None:
    """The median time in hours between consecutive rows of the same stay (None: no such pair)."""
    if time_h is None:
        return None
    stay = np.asarray(stay_ids)
    time = np.asarray(time_h, dtype=np.float64)
    if len(stay) < 2:
        return None
    gaps = np.diff(time)[stay[1:] == stay[:-1]]
    gaps = gaps[np.isfinite(gaps) & (gaps > 0)]
    return float(np.median(gaps)) if gaps.size else None


@dataclass
class CheckedDose:
    """A model's dose after the safety layer: the limited dose and the out-of-support flags."""

    model_dose_mg: float
    limited: LimitedDose
    support_warnings: list[str]
    scope: DosingScope
    population_warnings: list[str]

    @property
    def dose_mg(self) -> float:
        return self.limited.dose_mg

    @property
    def interval_h(self) -> float:
        return self.scope.interval_h

    @property
    def schedule(self) -> str:
        """``"q12h"`` (``"q6h"``, ...) for a maintenance dose, ``"once (loading dose)"`` for a loading one."""
        return self.scope.label if self.limited.renal_cap_mg is not None else "once (loading dose)"

    @property
    def held(self) -> bool:
        """The dose is held (a measured trough above the hold threshold): no dose is given."""
        return self.limited.held

    @property
    def warnings(self) -> list[str]:
        return [
            *self.limited.clipped_by,
            *self.limited.warnings,
            *self.population_warnings,
            *self.support_warnings,
        ]

    def to_dict(self) -> dict[str, Any]:
        """The dose and everything a pharmacist must see beside it (JSON-ready)."""
        interval = {
            "interval_h": self.scope.interval_h,
            "interval": self.scope.label,
            "schedule": self.schedule,
        }
        if self.scope.interval_source.startswith("assumed"):
            interval["interval_note"] = self.scope.interval_source
        return {
            "dose_mg": self.dose_mg,
            "held": self.held,
            **interval,
            "model_dose_mg": self.model_dose_mg,
            "min_infusion_minutes": self.limited.min_infusion_minutes,
            "renal_cap_mg": self.limited.renal_cap_mg,
            "clipped_by": self.limited.clipped_by,
            "warnings": [*self.limited.warnings, *self.population_warnings],
            "outside_training_support": self.support_warnings,
        }


def check_dose(
    model_dose_mg: float,
    observation: np.ndarray,
    observation_names: list[str],
    covariates: Mapping[str, float] | None,
    *,
    support: StateSupport | None,
    scope: DosingScope,
    first_dose: bool | None = None,
    limits: ClinicalLimits | None = None,
) -> CheckedDose:
    """Pass a model's dose for one parsed state through the clinical limits and the support check.

    Parameters
    ----------
    model_dose_mg : float
        The policy's dose in mg. Non-finite, or outside 0-3000 mg by more than 1 mg (which no
        trained policy outputs: a broken or tampered model), raises :class:`UnsafeDose`.
    observation : array of shape (n_features,)
        The model's observation, in the order of ``observation_names``; it must hold the seven
        features of ``vanco_pk.targets.FEATURES``.
    covariates : mapping
        Parsed by :func:`parse_covariates`; :data:`REQUIRED_COVARIATES` must be there (the caps
        need them), else ValueError naming the missing ones.
    support : StateSupport or None
        The training data's support; None flags that no support check was possible.
    scope : DosingScope
        The model's dosing interval and population: a patient younger than ``scope.min_age``
        is refused; the renal cap is computed for ``scope.interval_h``.
    limits : ClinicalLimits, optional
        Default: the consensus limits at the model's interval. Limits for another interval
        than the model's are an error.
    """
    dose = float(model_dose_mg)
    if not math.isfinite(dose):
        raise UnsafeDose(f"the model's dose is {dose!r}: the model is broken; no dose is recommended")
    if not -_OUTPUT_MARGIN_MG <= dose <= DOSE_MAX_MG + _OUTPUT_MARGIN_MG:
        raise UnsafeDose(
            f"the model's dose is {dose:.6g} mg, outside the 0-{DOSE_MAX_MG:g} mg any trained policy gives: "
            "the model is broken or tampered with; no dose is recommended"
        )
    x = np.asarray(observation, dtype=np.float64).reshape(-1)
    missing = [name for name in FEATURES if name not in observation_names]
    if missing or len(observation_names) != x.shape[0]:
        raise ValueError(
            f"the observation must hold the features {list(FEATURES)}; it has {observation_names}"
        )
    if not np.isfinite(x).all():
        raise ValueError("the observation holds NaN or infinity; no dose is recommended")
    for name, value in zip(observation_names, x, strict=True):
        check_range(name, float(value))
    population = scope.check_patient(dict(covariates or {}), checked=observation_names if support else ())
    if limits is None:
        limits = ClinicalLimits(interval_h=scope.interval_h)
    elif limits.interval_h != scope.interval_h:
        raise ValueError(
            f"the limits are for doses every {limits.interval_h:g} h but the model doses every "
            f"{scope.interval_h:g} h; give ClinicalLimits(interval_h={scope.interval_h:g}, ...)"
        )
    features = np.array([x[observation_names.index(name)] for name in FEATURES])
    limited = apply_limits(dose, features, dict(covariates or {}), first_dose=first_dose, limits=limits)
    if support is None:
        flags = ["no training-data support is stored with this model: the state was not checked against it"]
    else:
        flags = support.check(x)
    return CheckedDose(
        model_dose_mg=dose,
        limited=limited,
        support_warnings=flags,
        scope=scope,
        population_warnings=population,
    )
