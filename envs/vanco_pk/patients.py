"""Simulated ICU patients: covariates, between-patient PK deviations and host traits.

Every random trait of a patient is a transform of one standard-normal draw (inverse-CDF
for truncated distributions), so a patient is a pure function of a row of
:data:`N_PATIENT_DRAWS` normals. The simulator draws that row from the patient's own
random stream; :func:`sample_patients` draws a whole cohort from one generator.

The ICU distributions (:class:`ICUPopulation`) are plausible assumptions shaped after adult
ICU cohorts (MIMIC-IV, eICU: median age ~63 y, ~42 % female, median weight ~80 kg, ~5-10 %
on renal replacement therapy); they are not fitted to any data set. Vancomycin PK
deviations follow the variances of Goti et al. 2018 (see :mod:`vanco_pk.pk`), truncated at
+-3 SD so that no drawn patient is physiologically absurd.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
from scipy.special import ndtr, ndtri

from vanco_pk.pk import GOTI_2018, GotiModel, PKParams, cockcroft_gault, typical_parameters

__all__ = [
    "COVARIATE_LIMITS",
    "ICU_POPULATION",
    "MISSPECIFICATIONS",
    "N_PATIENT_DRAWS",
    "Covariates",
    "ICUPopulation",
    "Misspecification",
    "Patients",
    "get_misspecification",
    "sample_patients",
]

#: Accepted range of each covariate given by a user (generated ones stay inside narrower ranges).
COVARIATE_LIMITS: dict[str, tuple[float, float, str]] = {
    "weight_kg": (30.0, 250.0, "kg"),
    "age": (18.0, 100.0, "years"),
    "sex": (0.0, 1.0, "0 = male, 1 = female"),
    "height_cm": (120.0, 220.0, "cm"),
    "dialysis": (0.0, 1.0, "0 = no, 1 = on dialysis"),
    "creatinine": (0.2, 10.0, "mg/dL, baseline serum creatinine"),
}
_BINARY = ("sex", "dialysis")


@dataclass(frozen=True)
class Covariates:
    """Patient covariates, one entry per patient (1-D arrays of equal length).

    ``creatinine`` is the baseline serum creatinine (mg/dL) at the start of the episode.
    """

    weight_kg: np.ndarray
    age: np.ndarray
    sex: np.ndarray
    height_cm: np.ndarray
    dialysis: np.ndarray
    creatinine: np.ndarray

    def __post_init__(self) -> None:
        arrays = {f.name: np.atleast_1d(np.asarray(getattr(self, f.name), np.float64)) for f in fields(self)}
        n = max(a.shape[0] for a in arrays.values())
        for name, arr in arrays.items():
            if arr.ndim != 1 or arr.shape[0] not in (1, n):
                raise ValueError(
                    f"Covariates.{name} must be a scalar or a 1-D array of length {n}; got shape {arr.shape}"
                )
            arr = np.broadcast_to(arr, (n,)).copy()
            low, high, unit = COVARIATE_LIMITS[name]
            bad = ~((arr >= low) & (arr <= high))
            if name in _BINARY:
                bad |= ~np.isin(arr, (0.0, 1.0))
            if np.any(bad):
                i = int(np.flatnonzero(bad)[0])
                allowed = "must be 0 or 1" if name in _BINARY else f"is outside [{low:g}, {high:g}]"
                raise ValueError(f"Covariates.{name}[{i}] = {float(arr[i]):g} {allowed} ({unit})")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return self.weight_kg.shape[0]

    def __getitem__(self, index) -> Covariates:
        return Covariates(*(np.atleast_1d(getattr(self, f.name)[index]) for f in fields(self)))

    def crcl(self, cap: float | None = GOTI_2018.crcl_cap) -> np.ndarray:
        """Cockcroft-Gault creatinine clearance at baseline, mL/min."""
        return cockcroft_gault(self.age, self.weight_kg, self.sex, self.creatinine, cap=cap)

    def as_dict(self, index: int) -> dict[str, float]:
        """The covariates of patient ``index`` as plain floats (``baseline_creatinine`` named so)."""
        out = {f.name: float(getattr(self, f.name)[index]) for f in fields(self)}
        out["baseline_creatinine"] = out.pop("creatinine")
        return out


@dataclass(frozen=True)
class ICUPopulation:
    """Distributions of the patient generator (plausible assumptions, see the module docstring).

    Truncated normals are ``(mean, sd, low, high)``; log-normal quantities are given by their
    median and the SD of their logarithm.
    """

    female_fraction: float = 0.42
    dialysis_fraction: float = 0.08
    age: tuple[float, float, float, float] = (63.0, 16.0, 18.0, 90.0)
    height_male_cm: tuple[float, float, float, float] = (176.0, 7.0, 150.0, 205.0)
    height_female_cm: tuple[float, float, float, float] = (163.0, 7.0, 140.0, 190.0)
    bmi_median: float = 27.5
    bmi_log_sd: float = 0.22
    weight_range_kg: tuple[float, float] = (45.0, 150.0)
    creatinine_median_male: float = 1.0
    creatinine_median_female: float = 0.8
    creatinine_log_sd: float = 0.45
    creatinine_range: tuple[float, float] = (0.5, 3.0)
    # On renal replacement therapy creatinine is held down by the dialysis (1.5-3 mg/dL).
    dialysis_creatinine_median: float = 2.3
    dialysis_creatinine_log_sd: float = 0.2
    dialysis_creatinine_range: tuple[float, float] = (1.5, 3.0)
    pk_truncation_sd: float = 3.0
    kidney_sensitivity_log_sd: float = 0.4
    bun_ratio: tuple[float, float, float, float] = (15.0, 0.3, 8.0, 30.0)  # median, log SD, range
    burden_range: tuple[float, float] = (0.2, 0.8)
    growth_log_sd: float = 0.25
    wbc: tuple[float, float, float, float] = (7.5, 1.5, 4.5, 11.0)
    temperature: tuple[float, float, float, float] = (36.8, 0.25, 36.2, 37.4)
    heart_rate: tuple[float, float, float, float] = (80.0, 10.0, 55.0, 110.0)
    sbp: tuple[float, float, float, float] = (125.0, 14.0, 95.0, 165.0)


ICU_POPULATION = ICUPopulation()

#: Standard-normal draws per patient (columns of :meth:`Patients.from_normals`).
N_PATIENT_DRAWS = 17
_SEX, _AGE, _HEIGHT, _WEIGHT, _DIALYSIS, _CREATININE = range(6)
_PK = slice(6, 9)
_SENSITIVITY, _BUN, _BURDEN, _GROWTH, _WBC, _TEMP, _HR, _SBP = range(9, 17)


def _truncnorm(z: np.ndarray, mean, sd, low, high) -> np.ndarray:
    lo, hi = ndtr((np.asarray(low) - mean) / sd), ndtr((np.asarray(high) - mean) / sd)
    return mean + sd * ndtri(lo + ndtr(z) * (hi - lo))


def _trunc_lognormal(z: np.ndarray, median, log_sd, low, high) -> np.ndarray:
    return np.exp(_truncnorm(z, np.log(median), log_sd, np.log(low), np.log(high)))


@dataclass(frozen=True)
class Patients:
    """The true description of ``n`` simulated patients (1-D arrays of length ``n``).

    Attributes
    ----------
    covariates : Covariates
    pk_z : array (n, 3)
        Standard-normal deviations of log CL, log V1, log V2; the patient's eta is
        ``pk_z * omega`` of the model that generates the truth (so misspecified
        variabilities scale them).
    kidney_sensitivity : multiplier on the rate of exposure-driven kidney injury (median 1)
    bun_ratio : baseline BUN / creatinine ratio
    burden0 : initial infection burden (fraction of the carrying capacity, 0-1)
    growth_scale : multiplier on the bacterial growth rate (median 1)
    wbc_base, temperature_base, heart_rate_base, sbp_base : the patient's values without infection
    """

    covariates: Covariates
    pk_z: np.ndarray
    kidney_sensitivity: np.ndarray
    bun_ratio: np.ndarray
    burden0: np.ndarray
    growth_scale: np.ndarray
    wbc_base: np.ndarray
    temperature_base: np.ndarray
    heart_rate_base: np.ndarray
    sbp_base: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.covariates)
        for f in fields(self)[1:]:
            arr = np.asarray(getattr(self, f.name), dtype=np.float64)
            expected = (n, 3) if f.name == "pk_z" else (n,)
            if arr.shape != expected:
                raise ValueError(f"Patients.{f.name} has shape {arr.shape}; expected {expected}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"Patients.{f.name} contains NaN or infinite values")
            object.__setattr__(self, f.name, arr)

    def __len__(self) -> int:
        return len(self.covariates)

    def __getitem__(self, index) -> Patients:
        index = np.atleast_1d(np.arange(len(self))[index])
        return Patients(self.covariates[index], *(getattr(self, f.name)[index] for f in fields(self)[1:]))

    @classmethod
    def from_normals(
        cls,
        z: np.ndarray,
        population: ICUPopulation = ICU_POPULATION,
        covariates: Covariates | None = None,
    ) -> Patients:
        """Patients from standard-normal draws ``z`` of shape ``(n, N_PATIENT_DRAWS)``.

        If ``covariates`` is given (length ``n`` or 1) it replaces the drawn covariates; the
        other traits still come from ``z``, so the same draws give the same PK deviations.
        """
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != N_PATIENT_DRAWS:
            raise ValueError(f"z must have shape (n, {N_PATIENT_DRAWS}); got {z.shape}")
        pop = population
        if covariates is None:
            covariates = _draw_covariates(z, pop)
        elif len(covariates) not in (1, len(z)):
            raise ValueError(f"covariates has {len(covariates)} patients; expected 1 or {len(z)}")
        elif len(covariates) == 1 and len(z) > 1:
            covariates = covariates[np.zeros(len(z), dtype=int)]
        cut = pop.pk_truncation_sd
        return cls(
            covariates=covariates,
            pk_z=_truncnorm(z[:, _PK], 0.0, 1.0, -cut, cut),
            kidney_sensitivity=_trunc_lognormal(z[:, _SENSITIVITY], 1.0, pop.kidney_sensitivity_log_sd,
                                                np.exp(-cut * pop.kidney_sensitivity_log_sd),
                                                np.exp(cut * pop.kidney_sensitivity_log_sd)),
            bun_ratio=_trunc_lognormal(z[:, _BUN], *pop.bun_ratio),
            burden0=pop.burden_range[0] + (pop.burden_range[1] - pop.burden_range[0]) * ndtr(z[:, _BURDEN]),
            growth_scale=_trunc_lognormal(z[:, _GROWTH], 1.0, pop.growth_log_sd,
                                          np.exp(-cut * pop.growth_log_sd), np.exp(cut * pop.growth_log_sd)),
            wbc_base=_truncnorm(z[:, _WBC], *pop.wbc),
            temperature_base=_truncnorm(z[:, _TEMP], *pop.temperature),
            heart_rate_base=_truncnorm(z[:, _HR], *pop.heart_rate),
            sbp_base=_truncnorm(z[:, _SBP], *pop.sbp),
        )

    @classmethod
    def typical(cls, covariates: Covariates, pk_z: np.ndarray | None = None) -> Patients:
        """Patients with the given covariates and median traits (``pk_z`` zero unless given).

        Useful for deterministic checks: a "typical patient" has the population-typical PK,
        median kidney sensitivity and growth rate, and a mid-range infection.
        """
        n = len(covariates)
        pk_z = np.zeros((n, 3)) if pk_z is None else np.broadcast_to(np.asarray(pk_z, np.float64), (n, 3))
        return cls.from_normals(np.zeros((n, N_PATIENT_DRAWS)), covariates=covariates)._replace(pk_z=pk_z)

    def _replace(self, **changes) -> Patients:
        return replace(self, **changes)

    def eta(self, model: GotiModel = GOTI_2018) -> np.ndarray:
        """Log-deviations of CL, V1, V2 from the typical values under ``model``, shape (n, 3)."""
        return self.pk_z * model.omega

    def pk_parameters(self, crcl_ml_min: np.ndarray | None = None, model: GotiModel = GOTI_2018) -> PKParams:
        """True individual parameters under ``model`` (at baseline CrCL unless one is given)."""
        cov = self.covariates
        crcl = cov.crcl(model.crcl_cap) if crcl_ml_min is None else np.asarray(crcl_ml_min, dtype=np.float64)
        typical = typical_parameters(cov.weight_kg, np.maximum(crcl, 1e-3), cov.dialysis, model)
        eta = self.eta(model)
        return PKParams(typical.cl * np.exp(eta[:, 0]), typical.v1 * np.exp(eta[:, 1]),
                        typical.v2 * np.exp(eta[:, 2]), typical.q)


def _draw_covariates(z: np.ndarray, pop: ICUPopulation) -> Covariates:
    female = ndtr(z[:, _SEX]) < pop.female_fraction
    dialysis = ndtr(z[:, _DIALYSIS]) < pop.dialysis_fraction
    age = _truncnorm(z[:, _AGE], *pop.age)
    height = np.where(female, _truncnorm(z[:, _HEIGHT], *pop.height_female_cm),
                      _truncnorm(z[:, _HEIGHT], *pop.height_male_cm))
    h2 = (height / 100.0) ** 2
    # BMI is log-normal; truncating it per patient keeps the weight inside its range.
    low, high = pop.weight_range_kg
    weight = h2 * _trunc_lognormal(z[:, _WEIGHT], pop.bmi_median, pop.bmi_log_sd, low / h2, high / h2)
    creatinine = np.where(
        dialysis,
        _trunc_lognormal(z[:, _CREATININE], pop.dialysis_creatinine_median, pop.dialysis_creatinine_log_sd,
                         *pop.dialysis_creatinine_range),
        _trunc_lognormal(z[:, _CREATININE], np.where(female, pop.creatinine_median_female,
                                                     pop.creatinine_median_male),
                         pop.creatinine_log_sd, *pop.creatinine_range),
    )
    return Covariates(weight, age, female.astype(float), height, dialysis.astype(float), creatinine)


def sample_patients(
    n: int, seed: int | np.random.Generator | None = None, population: ICUPopulation = ICU_POPULATION
) -> Patients:
    """Draw ``n`` ICU patients from one seeded generator (same seed, same cohort)."""
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer number of patients; got {n!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return Patients.from_normals(rng.standard_normal((int(n), N_PATIENT_DRAWS)), population)


@dataclass(frozen=True)
class Misspecification:
    """How the true patients' model differs from Goti 2018, which the dosing policies assume.

    In the style of DTR-Bench (Luo et al. 2024): scale factors on the typical values, on the
    between-patient SDs (``omega_scale`` multiplies every omega), and an optional different
    CrCL exponent on clearance. The default is no misspecification.
    """

    cl_scale: float = 1.0
    v1_scale: float = 1.0
    v2_scale: float = 1.0
    q_scale: float = 1.0
    omega_scale: float = 1.0
    crcl_exponent: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"misspecification {f.name} = {value!r} must be a finite number > 0")

    def true_model(self, model: GotiModel = GOTI_2018) -> GotiModel:
        """The model the simulator draws its true patients from."""
        s2 = self.omega_scale**2
        return replace(
            model,
            cl=model.cl * self.cl_scale,
            v1=model.v1 * self.v1_scale,
            v2=model.v2 * self.v2_scale,
            q=model.q * self.q_scale,
            omega2_cl=model.omega2_cl * s2,
            omega2_v1=model.omega2_v1 * s2,
            omega2_v2=model.omega2_v2 * s2,
            crcl_exponent=model.crcl_exponent if self.crcl_exponent is None else self.crcl_exponent,
        )


#: Named settings: ``mild`` and ``severe`` shift clearance down and volume up (sicker, more
#: fluid-overloaded patients than the model's population) and widen the variability.
MISSPECIFICATIONS: dict[str, Misspecification] = {
    "none": Misspecification(),
    "mild": Misspecification(cl_scale=0.85, v1_scale=1.15, omega_scale=1.2),
    "severe": Misspecification(cl_scale=0.7, v1_scale=1.3, v2_scale=1.2, omega_scale=1.5, crcl_exponent=0.6),
}


def get_misspecification(spec: Misspecification | str | dict | None) -> Misspecification:
    """A :class:`Misspecification` from an instance, a preset name, a dict of fields or ``None``."""
    if spec is None:
        return MISSPECIFICATIONS["none"]
    if isinstance(spec, Misspecification):
        return spec
    if isinstance(spec, str):
        if spec not in MISSPECIFICATIONS:
            raise ValueError(f"unknown misspecification {spec!r}; choose one of {sorted(MISSPECIFICATIONS)}")
        return MISSPECIFICATIONS[spec]
    if isinstance(spec, dict):
        names = {f.name for f in fields(Misspecification)}
        unknown = sorted(set(spec) - names)
        if unknown:
            raise ValueError(f"misspecification has unknown field(s) {unknown}; known: {sorted(names)}")
        return Misspecification(**spec)
    raise ValueError(
        "misspecification must be None, a preset name, a dict or a Misspecification; "
        f"got {type(spec).__name__}"
    )
