"""A Bayesian exposure tracker: what MIPD software knows of each patient, as features.

:class:`ExposureTracker` follows ``P`` patients through their stays, fed only what a chart
holds -- the covariates, the decision times, the serum creatinine at each decision, the
doses given, the measured troughs and peaks -- and keeps the Bayesian MAP estimate of each
patient's CL and V1 (the Goti 2018 population model as prior, its residual error as
likelihood; :func:`vanco_pk.estimation.map_estimate`, refitted whenever a new level
arrives, from the previous estimate). From it, at every decision, three named features
(:data:`PK_FEATURES`):

* ``pk_cl_map`` (L/h): the MAP clearance at the current creatinine (the population
  prediction from the covariates before any level);
* ``pk_auc24`` (mg*h/L): the estimated AUC of the last 24 h from the doses given
  (:func:`vanco_pk.estimation.trailing_auc`): the exposure the 2020 guideline targets,
  estimated from logged data only, never from the simulator's truth;
* ``pk_dose_auc500`` (mg): the dose that, repeated at each decision of the next 24 h,
  puts the predicted AUC of those 24 h at 500 (the drug on board counted;
  :func:`vanco_pk.estimation.forward_auc` over the dose grid, interpolated linearly
  between grid doses and clipped to 0-3000 mg). MIPD gives the nearest grid dose.

The same object is the memory of the MIPD policy (:class:`vanco_pk.policies.MIPDPolicy`),
of the environments' ``pk_features`` option and ``"exposure"`` reward, and of the data
layer's ``pk_features`` conversion option, so the three agree by construction on the
same levels. Only MIPD is fed peaks (the AUC-guided peak + trough pair): the data tables
carry troughs only, so the environments' and the data layer's features use the troughs.

Protocol, per decision: :meth:`ExposureTracker.observe` (time, creatinine, the level drawn
at this decision or NaN), read the features, then :meth:`ExposureTracker.record` (the dose
given). Features of a decision use the doses of earlier decisions and the levels drawn up to
it, never anything later. The patient is taken as vancomycin-naive at the first decision: a
level drawn there carries no information on the doses that follow and is ignored by the fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vanco_pk.estimation import (
    DoseHistory,
    _take,
    auc_target_dose,
    forward_auc,
    map_estimate,
    predicted_state,
    trailing_auc,
)
from vanco_pk.pk import GOTI_2018, GotiModel, PKParams
from vanco_pk.targets import AUC24_GOAL, DOSE_GRID_MG

__all__ = ["PK_FEATURES", "PK_FEATURE_UNITS", "TRACKER_COVARIATES", "ExposureTracker", "target_dose_mg"]

#: The tracker's features, in observation order.
PK_FEATURES: tuple[str, ...] = ("pk_cl_map", "pk_auc24", "pk_dose_auc500")
PK_FEATURE_UNITS: dict[str, str] = {"pk_cl_map": "L/h", "pk_auc24": "mg*h/L", "pk_dose_auc500": "mg"}
#: Covariates the population model needs (height is not used by Goti 2018).
TRACKER_COVARIATES: tuple[str, ...] = ("weight_kg", "age", "sex", "dialysis")
_CAPACITY = 16


def target_dose_mg(
    auc: np.ndarray, target_auc: float = AUC24_GOAL, grid: np.ndarray = DOSE_GRID_MG
) -> np.ndarray:
    """The dose (mg) whose predicted AUC is ``target_auc``, from the AUC of each grid dose (P, D).

    AUC rises with the dose, so this interpolates linearly between the two grid doses that
    bracket the target; a target below the AUC of no dose gives 0 mg, above the largest
    grid dose's AUC gives the largest grid dose.
    """
    auc = np.asarray(auc, dtype=np.float64)
    rows = np.arange(auc.shape[0])
    upper = np.clip((auc < target_auc).sum(axis=1), 1, auc.shape[1] - 1)
    low, high = auc[rows, upper - 1], auc[rows, upper]
    fraction = np.clip((target_auc - low) / np.maximum(high - low, 1e-12), 0.0, 1.0)
    return grid[upper - 1] + fraction * (grid[upper] - grid[upper - 1])


class ExposureTracker:
    """Bayesian MAP PK estimate and exposure features of ``P`` patients, decision by decision.

    Parameters
    ----------
    interval_h : float
        Hours between decisions assumed by the forward dose rule (the dose is repeated
        every ``interval_h`` over ``horizon_h``).
    target_auc : float
        AUC over the horizon the ``pk_dose_auc500`` feature aims at (mg*h/L).
    horizon_h : float
        Horizon of that AUC, and the window of ``pk_auc24`` (24 h: AUC24).
    model : GotiModel
        Prior and residual error (Goti 2018).

    Attributes
    ----------
    eta : (P, 2) current MAP log-deviations of CL and V1 from typical (0 before any level)
    fits : number of patient refits so far (one per new level)
    steps : decisions observed so far
    """

    def __init__(
        self,
        interval_h: float = 12.0,
        target_auc: float = AUC24_GOAL,
        horizon_h: float = 24.0,
        model: GotiModel = GOTI_2018,
    ):
        if not (np.isfinite(interval_h) and interval_h > 0):
            raise ValueError(
                f"ExposureTracker: interval_h = {interval_h!r} must be a positive number of hours"
            )
        if not (np.isfinite(target_auc) and target_auc > 0):
            raise ValueError(f"ExposureTracker: target_auc = {target_auc!r} must be a positive AUC (mg*h/L)")
        if not (np.isfinite(horizon_h) and horizon_h >= interval_h):
            raise ValueError(
                f"ExposureTracker: horizon_h = {horizon_h!r} must be >= interval_h = {interval_h!r}"
            )
        self.interval_h = float(interval_h)
        self.target_auc = float(target_auc)
        self.horizon_h = float(horizon_h)
        self.model = model
        self._n = 0

    # --- protocol ---------------------------------------------------------------------------

    def reset(self, covariates: Mapping[str, Any]) -> None:
        """Start the stays of ``P`` patients.

        ``covariates`` holds ``weight_kg``, ``age``, ``sex`` (0 male, 1 female) and
        ``dialysis`` (0/1), scalars or arrays of length ``P`` (``info["covariates"]`` of the
        environments works as is; other keys are ignored).
        """
        missing = [c for c in TRACKER_COVARIATES if c not in covariates]
        if missing:
            raise ValueError(
                f"ExposureTracker: covariates lack {missing}; the population PK model needs "
                f"{list(TRACKER_COVARIATES)} (add the covariate columns to the table)"
            )
        raw = {c: np.atleast_1d(np.asarray(covariates[c], dtype=np.float64)) for c in TRACKER_COVARIATES}
        n = max(v.size for v in raw.values())
        cov = {}
        for name, value in raw.items():
            if value.ndim != 1 or value.size not in (1, n):
                raise ValueError(
                    f"ExposureTracker: covariates[{name!r}] has shape {value.shape}; expected ({n},)"
                )
            cov[name] = np.broadcast_to(value, (n,)).copy()
        checks = {
            "weight_kg": (cov["weight_kg"] > 0) & (cov["weight_kg"] < 400),
            "age": (cov["age"] >= 0) & (cov["age"] < 130),
            "sex": np.isin(cov["sex"], (0.0, 1.0)),
            "dialysis": np.isin(cov["dialysis"], (0.0, 1.0)),
        }
        for name, ok in checks.items():
            if not np.all(ok):
                i = int(np.flatnonzero(~ok)[0])
                raise ValueError(
                    f"ExposureTracker: covariates[{name!r}] of patient {i} is {cov[name][i]!r}; expected "
                    + {"weight_kg": "kg in (0, 400)", "age": "years in [0, 130)"}.get(name, "0 or 1")
                )
        self._n = n
        self.covariates = cov
        self.steps = 0
        self.fits = 0
        self.eta = np.zeros((n, 2))
        self._time = np.zeros((n, _CAPACITY))
        self._dose = np.full((n, _CAPACITY), np.nan)
        self._creatinine = np.full((n, _CAPACITY), np.nan)
        self._level = np.full((n, _CAPACITY), np.nan)
        self._peak = np.full((n, _CAPACITY), np.nan)
        self._peak_offset = np.full((n, _CAPACITY), np.nan)
        self._any_peak = False
        self._open = False
        self._cache: dict[str, np.ndarray] = {}

    @property
    def n_patients(self) -> int:
        return self._n

    def observe(
        self, time_h: Any, creatinine: Any, level: Any = None, peak: Any = None, peak_offset_h: Any = None
    ) -> None:
        """A new decision: its time (h), the serum creatinine then (mg/dL), the trough drawn
        just before it (mg/L; NaN, or ``level=None`` for all, where none was drawn) and a peak
        drawn inside the interval that just ended (mg/L, NaN or ``None`` where none) with the
        documented hours from the end of that interval's infusion to its draw.

        A new level or peak refits that patient's MAP estimate from the previous one.
        """
        self._check_started()
        if self._open:
            raise ValueError(
                "ExposureTracker: the previous decision has no dose yet; call record(dose_mg) before the "
                "next observe()"
            )
        time = self._vector(time_h, "time_h")
        scr = self._vector(creatinine, "creatinine")
        drawn = np.full(self._n, np.nan) if level is None else self._vector(level, "level")
        peaks = np.full(self._n, np.nan) if peak is None else self._vector(peak, "peak")
        no_offset = peak_offset_h is None
        offset = np.full(self._n, np.nan) if no_offset else self._vector(peak_offset_h, "peak_offset_h")
        if np.any(np.isfinite(peaks) & ~np.isfinite(offset)):
            i = int(np.flatnonzero(np.isfinite(peaks) & ~np.isfinite(offset))[0])
            raise ValueError(f"ExposureTracker: the peak of patient {i} has no peak_offset_h (hours)")
        bad = ~(np.isfinite(scr) & (scr > 0))
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"ExposureTracker: creatinine of patient {i} at decision {self.steps} is {scr[i]!r}; the "
                "population model needs a positive serum creatinine (mg/dL) at every decision (impute it)"
            )
        if np.any(~np.isfinite(time)):
            i = int(np.flatnonzero(~np.isfinite(time))[0])
            raise ValueError(f"ExposureTracker: time_h of patient {i} is {time[i]!r}; give hours")
        for name, values in (("level", drawn), ("peak", peaks)):
            if np.any(values < 0):
                i = int(np.flatnonzero(values < 0)[0])
                raise ValueError(
                    f"ExposureTracker: {name} of patient {i} is {values[i]!r} mg/L; levels are >= 0"
                )
        k = self.steps
        if k and np.any(time <= self._time[:, k - 1]):
            i = int(np.flatnonzero(time <= self._time[:, k - 1])[0])
            raise ValueError(
                f"ExposureTracker: time_h of patient {i} goes from {self._time[i, k - 1]:g} "
                f"to {time[i]:g} h; decisions must be in increasing time"
            )
        if k == self._time.shape[1]:
            self._time, self._dose, self._creatinine, self._level, self._peak, self._peak_offset = (
                np.concatenate([a, np.full_like(a, fill)], axis=1)
                for a, fill in (
                    (self._time, 0.0),
                    (self._dose, np.nan),
                    (self._creatinine, np.nan),
                    (self._level, np.nan),
                    (self._peak, np.nan),
                    (self._peak_offset, np.nan),
                )
            )
        self._time[:, k] = time
        self._creatinine[:, k] = scr
        self._level[:, k] = drawn
        if k == 0:  # a vancomycin-naive patient: no interval precedes the first decision
            peaks = np.full(self._n, np.nan)
        self._peak[:, k] = peaks
        self._peak_offset[:, k] = np.where(np.isfinite(peaks), offset, np.nan)
        self._any_peak = self._any_peak or bool(np.any(np.isfinite(peaks)))
        self.steps = k + 1
        self._open = True
        self._cache = {}
        # Refit only where a level arrived: nothing else changes the posterior of eta.
        refit = np.flatnonzero(np.isfinite(drawn) | np.isfinite(peaks))
        if refit.size:
            result = map_estimate(_take(self.history(), refit), self.model, eta0=self.eta[refit])
            self.eta[refit] = result.eta
            self.fits += refit.size

    def record(self, dose_mg: Any) -> None:
        """The dose given at the current decision (mg, >= 0)."""
        self._check_started()
        if not self._open:
            raise ValueError("ExposureTracker: record() needs a decision first; call observe(...)")
        dose = self._vector(dose_mg, "dose_mg")
        bad = ~(np.isfinite(dose) & (dose >= 0))
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"ExposureTracker: dose_mg of patient {i} is {dose[i]!r}; give a dose >= 0 mg")
        self._dose[:, self.steps - 1] = dose
        self._open = False

    # --- what it knows ----------------------------------------------------------------------

    def history(self) -> DoseHistory:
        """The chart so far as a :class:`~vanco_pk.policies.DoseHistory` (the open dose is NaN)."""
        self._check_observed()
        k = self.steps
        cov = self.covariates
        return DoseHistory(
            weight_kg=cov["weight_kg"],
            age=cov["age"],
            sex=cov["sex"],
            dialysis=cov["dialysis"],
            time_h=self._time[:, :k].copy(),
            dose_mg=self._dose[:, :k].copy(),
            creatinine=self._creatinine[:, :k].copy(),
            level=self._level[:, :k].copy(),
            peak=self._peak[:, :k].copy() if self._any_peak else None,
            peak_offset_h=self._peak_offset[:, :k].copy() if self._any_peak else None,
        )

    def predicted_state(self) -> tuple[PKParams, np.ndarray, np.ndarray]:
        """MAP parameters at the current decision and the predicted drug amounts (central, peripheral)."""
        if "state" not in self._cache:
            self._cache["state"] = predicted_state(self.history(), self.eta, self.model)
        return self._cache["state"]

    def forward_auc(self, doses_mg: np.ndarray = DOSE_GRID_MG) -> np.ndarray:
        """Predicted AUC over the next ``horizon_h`` of each dose repeated every ``interval_h``, (P, D)."""
        params, central, peripheral = self.predicted_state()
        return forward_auc(params, central, peripheral, doses_mg, self.interval_h, self.horizon_h)

    def target_dose_index(self) -> np.ndarray:
        """Grid index of the dose whose predicted AUC is nearest ``target_auc`` (MIPD's rule)."""
        params, central, peripheral = self.predicted_state()
        return auc_target_dose(params, central, peripheral, self.interval_h, self.target_auc, self.horizon_h)

    def cl(self) -> np.ndarray:
        """MAP clearance (L/h) at the current decision's creatinine."""
        return self.predicted_state()[0].cl

    def auc24(self) -> np.ndarray:
        """Estimated AUC (mg*h/L) of the ``horizon_h`` hours before the current decision."""
        if "auc" not in self._cache:
            self._cache["auc"] = trailing_auc(self.history(), self.eta, self.model, self.horizon_h)
        return self._cache["auc"]

    def target_dose_mg(self) -> np.ndarray:
        """The dose (mg, 0-3000, continuous) that puts the predicted AUC at ``target_auc``."""
        return target_dose_mg(self.forward_auc(), self.target_auc)

    def features(self) -> np.ndarray:
        """:data:`PK_FEATURES` of the current decision, shape (P, 3), float64."""
        return np.stack([self.cl(), self.auc24(), self.target_dose_mg()], axis=1)

    # --- internals --------------------------------------------------------------------------

    def _check_started(self) -> None:
        if not self._n:
            raise ValueError("ExposureTracker: call reset(covariates) first")

    def _check_observed(self) -> None:
        self._check_started()
        if not self.steps:
            raise ValueError("ExposureTracker: no decision yet; call observe(time_h, creatinine, level)")

    def _vector(self, value: Any, name: str) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float64)
        try:
            return np.broadcast_to(arr.reshape(-1) if arr.ndim else arr, (self._n,)).copy()
        except ValueError:
            raise ValueError(
                f"ExposureTracker: {name} has shape {arr.shape}; expected a scalar or ({self._n},)"
            ) from None
