"""The unrounded Bayesian dose: MIPD's dose rule solved on a 5 mg grid, for the unrounded column.

The reference MIPD of :mod:`vanco_pk.policies` picks the dose of the 250 mg grid whose
predicted AUC24 is nearest its target. In a table on unrounded doses
(``dose_set="continuous"``) the learned policies give any dose, so the Bayesian rows must
too, or the table compares unrounded with rounded: :class:`UnroundedMIPD` keeps the policy's
Bayesian memory (the same MAP fit of the same levels) and picks the dose of
``0, 5, ..., 3000`` mg whose predicted AUC over the horizon is nearest the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from vanco_pk.estimation import auc_target_dose
from vanco_pk.policies.model_based import MIPDPolicy
from vanco_pk.targets import DOSE_MAX_MG

__all__ = ["FINE_DOSES_MG", "UnroundedMIPD"]

#: The doses :class:`UnroundedMIPD` chooses from (mg).
FINE_DOSES_MG = np.arange(0.0, DOSE_MAX_MG + 1.0, 5.0)


class UnroundedMIPD:
    """``policy``'s Bayesian dose on :data:`FINE_DOSES_MG` (the policy protocol of
    :func:`vanco_pk.simulate.simulate`: ``reset``, ``act``)."""

    def __init__(self, policy: MIPDPolicy):
        if not isinstance(policy, MIPDPolicy):
            raise ValueError(f"UnroundedMIPD wraps an MIPD policy, got {type(policy).__name__}")
        self.policy = policy

    def reset(self, covariates: Mapping[str, Any], seed: Any = None) -> None:
        self.policy.reset(covariates, seed=seed)

    def act(self, features: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        p = self.policy
        p.action_probs(features, info)  # the memory and the MAP fit of this decision
        params, central, peripheral = p.tracker.predicted_state()
        index = auc_target_dose(
            params, central, peripheral, p.interval_h, p.target_auc, p.horizon_h, grid=FINE_DOSES_MG
        )
        dose = FINE_DOSES_MG[index]
        p.record(dose)
        return dose
