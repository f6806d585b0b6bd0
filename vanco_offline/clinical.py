"""Clinical safety limits for a recommended dose, and the training data's support.

A learned policy is never allowed to answer unsafely in silence: every recommendation passes
through :func:`apply_limits`, which clips to the clinical limits and says which limit acted,
and :class:`StateSupport`, which flags a patient state unlike any the policy was trained on.

Limits (Rybak et al. 2020 consensus guideline, ASHP/IDSA/PIDS/SIDP):

- single dose at most 3 g;
- infusion rate at most 10 mg/min (so a dose of D mg runs over at least D/10 minutes, and
  never under an hour), reported as the minimum infusion time;
- loading dose (first dose of a course) at most 35 mg/kg of actual body weight;
- renal adjustment of maintenance doses: the dose may not predict a steady-state AUC24 above
  ``max_auc24`` (default 800 mg*h/L, well above the 400-600 target) for a population-typical
  patient with this weight, creatinine clearance and dialysis status (Goti 2018 model);
- a measured trough above 20 mg/L means hold: the dose is 0 mg and the result says so (the
  guideline advises holding the next dose and re-checking the level), never a dose beside a
  "hold".

``interval_h`` is the model's dosing interval (the renal cap is per dose at that interval);
:func:`vanco_offline.safety.check_dose` always sets it from the model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
from vanco_pk.pk import MIN_INFUSION_H, cockcroft_gault, typical_parameters
from vanco_pk.targets import (
    DOSE_MAX_MG,
    FEATURES,
    LOADING_DOSE_MG_PER_KG,
    MAX_INFUSION_RATE_MG_PER_MIN,
    TROUGH_TARGET,
)

__all__ = ["ClinicalLimits", "LimitedDose", "StateSupport", "apply_limits", "renal_maintenance_cap"]

_LEVEL, _CREATININE = FEATURES.index("vanco_level"), FEATURES.index("creatinine")


@dataclass(frozen=True)
class ClinicalLimits:
    """The limits :func:`apply_limits` enforces; defaults follow the 2020 consensus guideline."""

    max_single_dose_mg: float = DOSE_MAX_MG
    max_infusion_rate_mg_per_min: float = MAX_INFUSION_RATE_MG_PER_MIN
    max_loading_dose_mg_per_kg: float = LOADING_DOSE_MG_PER_KG[1]
    max_auc24: float = 800.0
    hold_above_trough_mg_l: float = TROUGH_TARGET[1]
    interval_h: float = 12.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"ClinicalLimits.{name} must be a positive number, got {value!r}")


@dataclass
class LimitedDose:
    """A dose after the clinical limits, with every limit that acted and every warning."""

    requested_mg: float
    dose_mg: float
    min_infusion_minutes: float
    renal_cap_mg: float | None
    clipped_by: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    held: bool = False

    @property
    def clipped(self) -> bool:
        return bool(self.clipped_by)


def apply_limits(
    dose_mg: float,
    observation: np.ndarray,
    covariates: dict[str, float] | None = None,
    *,
    first_dose: bool | None = None,
    limits: ClinicalLimits | None = None,
) -> LimitedDose:
    """Clip a recommended dose to the clinical limits and say which limits acted.

    Parameters
    ----------
    dose_mg : float
        The dose the policy recommends for the next interval.
    observation : array of shape (>= 7,)
        The patient state, the seven features of ``vanco_pk.targets.FEATURES`` first.
    covariates : dict, optional
        ``weight_kg``, ``age``, ``sex`` (0 male, 1 female) and ``dialysis`` (0/1): needed for
        the loading-dose and renal limits; without them those limits cannot be applied and a
        warning says so.
    first_dose : bool, optional
        Whether this is the first dose of the course (a loading dose). When None it is taken
        to be the first dose if no vancomycin level has been measured (level 0 or NaN), with a
        warning that it was inferred.
    """
    limits = limits or ClinicalLimits()
    if not np.isfinite(dose_mg):
        raise ValueError(f"the recommended dose is {dose_mg!r}; a dose must be a finite number of mg")
    obs = np.asarray(observation, dtype=np.float64)
    if obs.shape[-1] < len(FEATURES):
        raise ValueError(f"the observation has {obs.shape[-1]} values; it needs the features {FEATURES}")
    result = LimitedDose(
        requested_mg=float(dose_mg), dose_mg=float(dose_mg), min_infusion_minutes=0.0, renal_cap_mg=None
    )
    if dose_mg < 0:
        result.clipped_by.append(f"a dose cannot be negative (clipped {dose_mg:.0f} -> 0 mg)")
        result.dose_mg = 0.0
    _clip(result, limits.max_single_dose_mg, f"single dose limit {limits.max_single_dose_mg:g} mg")

    level = obs[_LEVEL]
    if first_dose is None:
        first_dose = not (level > 0)
        if first_dose:
            result.warnings.append(
                "no vancomycin level measured: treated as the first (loading) dose; pass first_dose "
                "(--first-dose / --maintenance) if that is wrong"
            )
    covariates = covariates or {}
    missing = [k for k in ("weight_kg", "age", "sex") if k not in covariates]
    if missing:
        result.warnings.append(f"covariates {missing} not given: loading-dose and renal limits not applied")
    elif first_dose:
        weight = float(covariates["weight_kg"])
        cap = limits.max_loading_dose_mg_per_kg * weight
        _clip(result, cap, f"loading dose limit {limits.max_loading_dose_mg_per_kg:g} mg/kg x {weight:g} kg")
    else:
        result.renal_cap_mg = renal_maintenance_cap(obs[_CREATININE], covariates, limits)
        _clip(
            result,
            result.renal_cap_mg,
            f"renal adjustment: above {result.renal_cap_mg:.0f} mg q{limits.interval_h:g}h a typical patient "
            f"with this creatinine clearance exceeds AUC24 {limits.max_auc24:g} mg*h/L",
        )
    if level > limits.hold_above_trough_mg_l:
        # Hold: no dose is printed beside the advice to hold it.
        result.clipped_by.append(
            f"HOLD: measured trough {level:.1f} mg/L is above {limits.hold_above_trough_mg_l:g} mg/L; the "
            "guideline advises holding the next dose and re-checking the level "
            f"(clipped {result.dose_mg:.0f} -> 0 mg)"
        )
        result.dose_mg = 0.0
        result.held = True
    if result.dose_mg > 0:
        minutes = max(MIN_INFUSION_H * 60.0, result.dose_mg / limits.max_infusion_rate_mg_per_min)
        result.min_infusion_minutes = float(minutes)
    return result


def renal_maintenance_cap(
    creatinine_mg_dl: float, covariates: dict[str, float], limits: ClinicalLimits | None = None
) -> float:
    """Largest maintenance dose (mg per interval) keeping a typical patient's AUC24 under the limit."""
    limits = limits or ClinicalLimits()
    crcl = cockcroft_gault(covariates["age"], covariates["weight_kg"], covariates["sex"], creatinine_mg_dl)
    crcl = np.maximum(crcl, 1.0)  # anuric patients: the model's CL floor, not a division by zero
    typical = typical_parameters(covariates["weight_kg"], crcl, covariates.get("dialysis", 0))
    return float(limits.max_auc24 * typical.cl * limits.interval_h / 24.0)


def _clip(result: LimitedDose, bound: float, reason: str) -> None:
    if result.dose_mg > bound:
        result.clipped_by.append(f"{reason} (clipped {result.dose_mg:.0f} -> {bound:.0f} mg)")
        result.dose_mg = float(bound)


@dataclass
class StateSupport:
    """Where the training data lies: per-feature ranges and a Mahalanobis radius.

    A state is outside the support when a feature falls outside the central ``coverage`` range
    of the training observations, or when its Mahalanobis distance from the training mean
    exceeds the ``coverage`` quantile of the training distances. Either way the
    recommendation for it is extrapolation and must be flagged.
    """

    names: list[str]
    low: list[float]
    high: list[float]
    mean: list[float]
    precision: list[list[float]]
    radius: float
    coverage: float

    def __post_init__(self) -> None:
        # A support read from a file (model.json, a bundle) may be hand-edited or truncated:
        # check it whole here, so a bad one is one clear error when loaded, not a crash later.
        n = len(self.names) if isinstance(self.names, list) else -1
        if n < 1 or not all(isinstance(name, str) and name for name in self.names):
            raise ValueError(f"the support's names must be a non-empty list of names, got {self.names!r}")
        try:
            vectors = [np.asarray(getattr(self, k), dtype=np.float64) for k in ("low", "high", "mean")]
            precision = np.asarray(self.precision, dtype=np.float64)
            radius, coverage = float(self.radius), float(self.coverage)
        except (TypeError, ValueError):
            raise ValueError("the support holds values that are not numbers") from None
        if any(v.shape != (n,) for v in vectors) or precision.shape != (n, n):
            raise ValueError(f"the support's ranges, mean and precision do not match its {n} features")
        finite = all(np.isfinite(v).all() for v in (*vectors, precision)) and np.isfinite(radius)
        if not finite or not (vectors[0] <= vectors[1]).all() or radius < 0 or not 0 < coverage < 1:
            raise ValueError("the support holds non-finite or inconsistent values (low > high, radius < 0)")

    @classmethod
    def fit(cls, observations: np.ndarray, names: list[str] | tuple[str, ...], coverage: float = 0.995):
        x = np.asarray(observations, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(names) or len(x) < 2 * x.shape[1]:
            raise ValueError(
                f"StateSupport.fit needs an (n, {len(names)}) array with n >= {2 * len(names)}; got {x.shape}"
            )
        tail = (1.0 - coverage) / 2.0
        mean = x.mean(axis=0)
        precision = np.linalg.pinv(np.cov(x, rowvar=False))
        distance = _mahalanobis(x, mean, precision)
        return cls(
            names=list(names),
            low=np.quantile(x, tail, axis=0).tolist(),
            high=np.quantile(x, 1.0 - tail, axis=0).tolist(),
            mean=mean.tolist(),
            precision=precision.tolist(),
            radius=float(np.quantile(distance, coverage)),
            coverage=coverage,
        )

    def check(self, observation: np.ndarray) -> list[str]:
        """Reasons why ``observation`` lies outside the training support (empty when inside)."""
        x = np.asarray(observation, dtype=np.float64).reshape(-1)
        if x.shape[0] != len(self.names):
            raise ValueError(f"the state has {x.shape[0]} values; the model was trained on {self.names}")
        reasons = [
            f"{name} = {value:g} is outside the training range [{low:g}, {high:g}]"
            for name, value, low, high in zip(self.names, x, self.low, self.high, strict=True)
            if not low <= value <= high
        ]
        distance = float(_mahalanobis(x[None], np.asarray(self.mean), np.asarray(self.precision))[0])
        if distance > self.radius:
            reasons.append(
                f"the combination of values is unusual for the training data (Mahalanobis distance "
                f"{distance:.1f} > {self.radius:.1f}, the {100 * self.coverage:g}th percentile)"
            )
        return reasons

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> StateSupport:
        return cls(**json.loads(text))


def _mahalanobis(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    centred = x - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, precision, centred), 0.0))
