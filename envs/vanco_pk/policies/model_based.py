"""Model-informed precision dosing (MIPD) and its oracle: the dose that puts AUC24 at 500.

``mipd`` is today's best practice (Rybak 2020; Bayesian software such as InsightRx,
DoseMeRx, PrecisePK): a MAP estimate of the patient's CL and V1 from the measured levels and
the doses given (:mod:`vanco_pk.estimation`), with the population model as prior and
the population prediction from covariates before any level; then the grid dose whose
predicted AUC over the next 24 h, the dose being repeated at each decision of those 24 h
and the drug already on board counted, is nearest 500 mg*h/L.

``oracle`` applies the same rule with the patient's true parameters and drug amounts, read
from the simulator's ``info`` (``cl``, ``v1``, ``v2``, ``q``, ``central_mg``,
``peripheral_mg``): the physical limit of the rule, limited only by the 250 mg grid and by
the clearance changing within the horizon (kidney injury or recovery).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vanco_pk.estimation import auc_target_dose
from vanco_pk.exposure import ExposureTracker
from vanco_pk.pk import GOTI_2018, GotiModel, PKParams
from vanco_pk.policies.base import N_DOSES, DosingPolicy
from vanco_pk.targets import AUC24_GOAL, CREATININE

__all__ = ["TRUTH_KEYS", "MIPDPolicy", "OraclePolicy"]

#: What the oracle reads from ``info``: the true parameters and drug amounts now.
TRUTH_KEYS = ("cl", "v1", "v2", "q", "central_mg", "peripheral_mg")


def _one_hot(index: np.ndarray) -> np.ndarray:
    out = np.zeros((len(index), N_DOSES))
    out[np.arange(len(index)), index] = 1.0
    return out


class _AUCTargetPolicy(DosingPolicy):
    deterministic = True

    def __init__(self, interval_h: float = 12.0, target_auc: float = AUC24_GOAL, horizon_h: float = 24.0):
        super().__init__(interval_h)
        if not (np.isfinite(target_auc) and target_auc > 0):
            raise ValueError(f"{self.name}: target_auc = {target_auc!r} must be a positive AUC24 (mg*h/L)")
        if not (np.isfinite(horizon_h) and horizon_h >= interval_h):
            raise ValueError(f"{self.name}: horizon_h = {horizon_h!r} must be >= interval_h = {interval_h!r}")
        self.target_auc = float(target_auc)
        self.horizon_h = float(horizon_h)

    def _choose(self, params: PKParams, central: np.ndarray, peripheral: np.ndarray) -> np.ndarray:
        index = auc_target_dose(params, central, peripheral, self.interval_h, self.target_auc, self.horizon_h)
        return _one_hot(index)


class MIPDPolicy(_AUCTargetPolicy):
    """Bayesian (MAP) model-informed dosing toward AUC24 500 mg*h/L (deterministic).

    Parameters
    ----------
    interval_h : hours between decisions
    target_auc : AUC over the horizon to aim at (mg*h/L)
    horizon_h : horizon of the AUC (24 h: AUC24)
    model : population model used as prior and residual error (Goti 2018)

    Attributes
    ----------
    tracker : :class:`vanco_pk.exposure.ExposureTracker`, the policy's Bayesian memory
    eta : (P, 2) current MAP log-deviations of CL and V1 (0 before any level)
    """

    name = "mipd"
    sampling = "auc_guided"

    def __init__(
        self,
        interval_h: float = 12.0,
        target_auc: float = AUC24_GOAL,
        horizon_h: float = 24.0,
        model: GotiModel = GOTI_2018,
    ):
        super().__init__(interval_h, target_auc, horizon_h)
        self.model = model

    def _start(self) -> None:
        # The tracker is the policy's Bayesian memory (one implementation of the MAP refits,
        # shared with the environments' PK features and the data layer).
        self.tracker = ExposureTracker(self.interval_h, self.target_auc, self.horizon_h, self.model)
        self.tracker.reset(self.covariates)

    @property
    def eta(self) -> np.ndarray:
        return self.tracker.eta

    @property
    def fits(self) -> int:
        return self.tracker.fits

    def _pmf(self, info: Mapping[str, Any]) -> np.ndarray:
        peak, offset = self.peak_now
        self.tracker.observe(self.time_now, self.obs_now[:, CREATININE], self.level_now, peak, offset)
        params, central, peripheral = self.tracker.predicted_state()
        return self._choose(params, central, peripheral)

    def _after_record(self, dose: np.ndarray) -> None:
        self.tracker.record(dose)


class OraclePolicy(_AUCTargetPolicy):
    """The MIPD dose rule with the true parameters and drug amounts from ``info`` (deterministic)."""

    name = "oracle"
    needs_truth = True

    def _pmf(self, info: Mapping[str, Any]) -> np.ndarray:
        missing = [k for k in TRUTH_KEYS if k not in info]
        if missing:
            raise ValueError(
                f"oracle: info lacks {missing}; the oracle reads the true parameters and drug amounts from "
                "the simulator's info (or the true_* columns of a generated cohort)"
            )
        truth = {k: self._info_array(info, k) for k in TRUTH_KEYS}
        params = PKParams(truth["cl"], truth["v1"], truth["v2"], truth["q"])
        return self._choose(params, truth["central_mg"], truth["peripheral_mg"])
