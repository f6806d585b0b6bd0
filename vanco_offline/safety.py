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
  message names the likely unit error;
- booleans (``first_dose``, ``dialysis``) are ``true``/``false``, 0/1, or the text
  ``"true"``/``"false"``/``"yes"``/``"no"``/``"1"``/``"0"``; anything else is an error (the
  text ``"false"`` is false, never truthy);
- ``sex`` is 0 (male) or 1 (female) (number or text), or one of :data:`vanco_offline.data.schema.SEX_TEXT`
  (``m``, ``male``, ``f``, ``female``, any case);
- ``null`` is an error, except a ``vanco_level`` that was never measured.

This module needs numpy and ``vanco_pk`` only (no torch, no d3rlpy), so the bundle runtime
applies it on a machine without torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from vanco_pk.targets import COVARIATES, DOSE_MAX_MG, FEATURES

from vanco_offline.clinical import ClinicalLimits, LimitedDose, StateSupport, apply_limits

__all__ = [
    "BOOLEAN_TEXT",
    "CheckedDose",
    "UnsafeDose",
    "check_dose",
    "check_range",
    "parse_bool",
    "parse_covariates",
    "parse_number",
    "parse_sex",
    "parse_state",
]

#: Text accepted for a boolean field, and its value.
BOOLEAN_TEXT: dict[str, bool] = {
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "1": True,
    "0": False,
}

#: A model's raw dose beyond this margin outside 0-3000 mg is not a policy's output: refused.
_OUTPUT_MARGIN_MG = 1.0


class UnsafeDose(ValueError):
    """The model's answer cannot be given to a patient (non-finite, or outside what a policy outputs)."""


def _load_schema() -> ModuleType:
    """``vanco_offline.data.schema``, also where d3rlpy and torch are missing (the bundle runtime).

    ``vanco_offline.data``'s ``__init__`` imports d3rlpy; the schema module itself needs only
    ``vanco_pk``, so without torch it is loaded from its file alone.
    """
    name = "vanco_offline.data.schema"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in ("torch", "d3rlpy"):
            raise
    if "_vanco_offline_schema" in sys.modules:
        return sys.modules["_vanco_offline_schema"]
    spec = importlib.util.spec_from_file_location(
        "_vanco_offline_schema", Path(__file__).with_name("data") / "schema.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_vanco_offline_schema"] = module
    spec.loader.exec_module(module)
    return module


_SCHEMA = _load_schema()
RANGES = _SCHEMA.RANGES
SEX_TEXT: dict[str, int] = _SCHEMA.SEX_TEXT


def check_range(name: str, value: float) -> None:
    """ValueError when ``value`` lies outside the schema's plausible range for ``name``."""
    spec = RANGES.get(name)
    if spec is None:
        return
    below = value <= spec.low if spec.low_exclusive else value < spec.low
    if below or value > spec.high:
        hint = spec.above if value > spec.high else spec.below
        raise ValueError(
            f"{name} = {value:g} {spec.unit} is outside the plausible range "
            f"[{spec.low:g}, {spec.high:g}]: {hint}"
        )


def parse_number(name: str, raw: Any, where: str = "the state") -> float:
    """A finite number in the schema's range; ``raw`` must already be a number (not text, not bool)."""
    if raw is None:
        raise ValueError(f"{where}'s {name!r} is null; give a number")
    if isinstance(raw, bool | np.bool_) or not isinstance(raw, int | float | np.integer | np.floating):
        raise ValueError(f"{where}'s {name!r} is {raw!r} ({type(raw).__name__}); give a number")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"{where}'s {name!r} is {raw!r}; give a finite number")
    check_range(name, value)
    return value


def parse_bool(name: str, raw: Any, where: str = "the state") -> bool:
    """``True``/``False``, 0/1, or one of :data:`BOOLEAN_TEXT`; anything else is an error."""
    if isinstance(raw, bool | np.bool_):
        return bool(raw)
    if isinstance(raw, int | float | np.integer | np.floating) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in BOOLEAN_TEXT:
        return BOOLEAN_TEXT[raw.strip().lower()]
    raise ValueError(
        f"{where}'s {name!r} is {raw!r}; give true or false (also accepted: 0/1, {', '.join(BOOLEAN_TEXT)})"
    )


def parse_sex(raw: Any, where: str = "the state") -> int:
    """0 (male) or 1 (female), from 0/1 or the text of :data:`SEX_TEXT` in any case."""
    if isinstance(raw, str) and raw.strip().lower() in {**SEX_TEXT, "0": 0, "1": 1}:
        return {**SEX_TEXT, "0": 0, "1": 1}[raw.strip().lower()]
    if not isinstance(raw, bool | np.bool_) and isinstance(raw, int | float | np.integer | np.floating):
        if raw in (0, 1):
            return int(raw)
    accepted = ", ".join(["0 (male)", "1 (female)", *(repr(k) for k in SEX_TEXT)])
    raise ValueError(f"{where}'s 'sex' is {raw!r}; accepted values: {accepted}")


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


@dataclass
class CheckedDose:
    """A model's dose after the safety layer: the limited dose and the out-of-support flags."""

    model_dose_mg: float
    limited: LimitedDose
    support_warnings: list[str]

    @property
    def dose_mg(self) -> float:
        return self.limited.dose_mg

    @property
    def warnings(self) -> list[str]:
        return [*self.limited.clipped_by, *self.limited.warnings, *self.support_warnings]


def check_dose(
    model_dose_mg: float,
    observation: np.ndarray,
    observation_names: list[str],
    covariates: Mapping[str, float] | None,
    *,
    support: StateSupport | None,
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
    covariates : mapping, optional
        Parsed by :func:`parse_covariates`; the loading and renal caps need weight, age and sex.
    support : StateSupport or None
        The training data's support; None flags that no support check was possible.
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
    features = np.array([x[observation_names.index(name)] for name in FEATURES])
    limited = apply_limits(
        dose, features, dict(covariates or {}) or None, first_dose=first_dose, limits=limits
    )
    if support is None:
        flags = ["no training-data support is stored with this model: the state was not checked against it"]
    else:
        flags = support.check(x)
    return CheckedDose(model_dose_mg=dose, limited=limited, support_warnings=flags)
