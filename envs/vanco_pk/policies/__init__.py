"""Reference dosing policies: the clinician behaviour policy, MIPD, the oracle and two floors.

Every policy gives doses on :data:`vanco_pk.targets.DOSE_GRID_MG` and has an exact
probability mass function over its 13 levels, so it can be used both to generate data and
to score logged data (importance sampling). ``make_policy(name, **options)`` builds one::

    policy = make_policy("clinician", miss_prob=0.2)
    obs, info = env.reset(seed=0)
    policy.reset(info["covariates"], seed=0)
    while True:
        obs, reward, terminated, truncated, info = env.step([policy.act(obs, info)])
        if terminated or truncated:
            break

:func:`replay` returns a policy's pmf at each step of logged stays (arrays);
``vanco_offline.data.cohort.behavior_probabilities`` does the same from a dosing table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vanco_pk.estimation import DoseHistory, MAPResult, auc_target_dose, forward_auc, map_estimate
from vanco_pk.policies.base import CHART_KEYS, N_DOSES, DosingPolicy, grid_index, policy_seeds
from vanco_pk.policies.clinician import NOMOGRAM, ClinicianPolicy, ClinicianSettings, nomogram_regimen
from vanco_pk.policies.model_based import TRUTH_KEYS, MIPDPolicy, OraclePolicy
from vanco_pk.policies.simple import FixedPolicy, RandomPolicy

__all__ = [
    "CHART_KEYS",
    "NOMOGRAM",
    "N_DOSES",
    "POLICIES",
    "TRUTH_KEYS",
    "ClinicianPolicy",
    "ClinicianSettings",
    "DoseHistory",
    "DosingPolicy",
    "FixedPolicy",
    "MAPResult",
    "MIPDPolicy",
    "OraclePolicy",
    "RandomPolicy",
    "auc_target_dose",
    "forward_auc",
    "grid_index",
    "make_policy",
    "map_estimate",
    "nomogram_regimen",
    "policy_seeds",
    "replay",
]

#: Registry of ``make_policy`` names.
POLICIES: dict[str, type[DosingPolicy]] = {
    "clinician": ClinicianPolicy,
    "mipd": MIPDPolicy,
    "oracle": OraclePolicy,
    "random": RandomPolicy,
    "fixed": FixedPolicy,
}


def make_policy(name: str, **options: Any) -> DosingPolicy:
    """A reference dosing policy by name.

    Parameters
    ----------
    name : {"clinician", "mipd", "oracle", "random", "fixed"}
    **options
        Keyword arguments of the policy class: ``interval_h`` for all; the
        :class:`ClinicianSettings` fields for ``clinician``; ``target_auc`` and ``horizon_h``
        for ``mipd`` and ``oracle``; ``dose_mg`` for ``fixed``.
    """
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose one of {sorted(POLICIES)}")
    try:
        return POLICIES[name](**options)
    except TypeError as exc:
        raise ValueError(f"policy {name!r}: bad option(s) {sorted(options)}: {exc}") from None


def replay(
    policy: DosingPolicy,
    covariates: Mapping[str, Any],
    observations: np.ndarray,
    doses_mg: np.ndarray,
    time_h: np.ndarray | None = None,
    level_measured: np.ndarray | None = None,
    truth: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The policy's pmf at every step of ``P`` logged stays of ``T`` decisions each.

    The memory is fed the logged doses, whatever the policy would have given, so the result
    is the probability of each grid dose given the logged history (for importance sampling).

    Parameters
    ----------
    policy : DosingPolicy
        Reset here, one patient per stay.
    covariates : mapping of arrays (P,)
    observations : array (P, T, >= 7)
        Rows of the stays (the seven features first).
    doses_mg : array (P, T)
        Logged doses; the last one may be NaN (the final observation of a stay).
    time_h : array (P, T), optional
        Decision times (else ``policy.interval_h`` apart).
    level_measured : bool array (P, T), optional
        Whether a level was drawn at each step (else a changed level counts as new).
    truth : mapping of arrays (P, T), optional
        :data:`TRUTH_KEYS` for the oracle.

    Returns
    -------
    numpy.ndarray of shape (P, T, 13)
    """
    obs = np.asarray(observations, dtype=np.float64)
    doses = np.asarray(doses_mg, dtype=np.float64)
    if obs.ndim != 3 or doses.shape != obs.shape[:2]:
        raise ValueError(
            f"replay: observations must be (stays, steps, >= 7) and doses (stays, steps); got {obs.shape} "
            f"and {doses.shape}"
        )
    n, steps = doses.shape
    policy.reset({k: np.broadcast_to(np.asarray(v, np.float64), (n,)) for k, v in covariates.items()}, seed=0)
    out = np.zeros((n, steps, N_DOSES))
    for k in range(steps):
        info: dict[str, Any] = {}
        if time_h is not None:
            info["time_h"] = np.asarray(time_h)[:, k]
        if level_measured is not None:
            info["level_measured"] = np.asarray(level_measured)[:, k]
        if truth is not None:
            info.update({key: np.asarray(value)[:, k] for key, value in truth.items()})
        out[:, k] = np.atleast_2d(policy.action_probs(obs[:, k], info))
        if k < steps - 1 or np.all(np.isfinite(doses[:, k])):
            policy.record(doses[:, k])
    return out
