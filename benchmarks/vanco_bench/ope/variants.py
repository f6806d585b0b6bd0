"""Importance-sampling variants of ``bench ope``: what real ICU data would allow.

``(trunc)`` truncates the importance weights at sqrt(n) times each step's mean weight;
``(mu-hat)`` uses the fitted behaviour model instead of the logged ``behavior_prob``. Both
reuse the report's doubly robust model (refitted per resample) and bootstrap counts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["variants"]

#: The variant columns, in the order the tables print them.
VARIANT_COLUMNS = ("wis (trunc)", "wdr (trunc)", "wis (mu-hat)", "wdr (mu-hat)")


def variants(report: Any, traj: Any, behavior: Any, gamma: float, counts: np.ndarray) -> dict[str, Any]:
    """WIS/WDR again with the same DR model (refitted per resample): truncated weights, and the
    fitted behaviour model instead of the logged probabilities."""
    from vanco_offline.ope.bootstrap import percentile_interval
    from vanco_offline.ope.estimators import estimate, importance_weights

    pmf, model = report.target_pmf, report.model
    target = np.take_along_axis(pmf, traj.actions[..., None], axis=2)[..., 0]
    out = {}
    for suffix, mu, clip in (
        ("trunc", traj.behavior_prob, "sqrt_n"),
        ("mu-hat", behavior.logged(traj), None),
    ):
        weights = importance_weights(target, mu, traj.mask, clip)
        for name in ("wis", "wdr"):
            if name == "wis":
                value = float(estimate(name, weights, traj.rewards, gamma))
                reps = estimate(name, weights, traj.rewards, gamma, counts=counts)
            else:
                value = float(
                    estimate(
                        name, weights, traj.rewards, gamma, q_logged=model.q_logged, v_states=model.v_states
                    )
                )
                reps = np.array(
                    [
                        estimate(
                            name,
                            weights,
                            traj.rewards,
                            gamma,
                            counts=c,
                            q_logged=model.replicate_q_logged[b],
                            v_states=model.replicate_v_states[b],
                        )
                        for b, c in enumerate(counts)
                    ]
                )
            out[f"{name} ({suffix})"] = dataclasses.replace(
                report.estimates[name],
                estimator=f"{name} ({suffix})",
                value=value,
                interval=percentile_interval(reps, 0.95),
                weights=weights.diagnostics(),
            )
    return out
