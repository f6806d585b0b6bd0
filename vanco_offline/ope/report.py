"""What :func:`vanco_offline.ope.evaluate` returns: estimates with intervals and diagnostics."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from vanco_offline.ope.behavior import Calibration
from vanco_offline.ope.bootstrap import Interval
from vanco_offline.ope.estimators import WeightDiagnostics
from vanco_offline.ope.truth import TrueValue

__all__ = ["Estimate", "OPEReport", "SupportCheck"]

ESTIMATOR_HELP: dict[str, str] = {
    "fqe": "fitted Q evaluation (d3rlpy FQE), mean V(s0) over the logged first states",
    "pdis": "per-decision importance sampling",
    "wis": "weighted (self-normalised) trajectory importance sampling",
    "wpdis": "weighted per-decision importance sampling",
    "dr": "per-decision doubly robust (FQE as the model)",
    "wdr": "weighted doubly robust (FQE as the model)",
}


@dataclasses.dataclass(frozen=True)
class Estimate:
    """One estimator's value with its bootstrap interval over stays.

    Attributes
    ----------
    estimator : str
    value : float
    interval : Interval
        Percentile bootstrap over stays. For ``fqe``, ``dr`` and ``wdr`` the Q-model is held
        fixed across resamples, so the interval omits the model's fitting variance.
    weights : WeightDiagnostics or None
        For importance-weighted estimators.
    """

    estimator: str
    value: float
    interval: Interval
    weights: WeightDiagnostics | None = None


@dataclasses.dataclass(frozen=True)
class SupportCheck:
    """Does the evaluated policy put mass on doses the data rarely has?

    Attributes
    ----------
    threshold : float
        A dose is "rare" at a state when the behaviour model gives it less than this.
    conditional_mass : float
        Mean over logged states of the evaluated policy's mass on doses rare *at that
        state* (behaviour model): what the estimators must extrapolate.
    marginal_mass : float
        Mean mass on dose levels that make up less than ``threshold`` of all logged doses.
    rare_doses : tuple of float
        Those dose levels (mg or action index).
    warn_above : float
        The warning fires when ``conditional_mass`` exceeds this.
    """

    threshold: float
    conditional_mass: float
    marginal_mass: float
    rare_doses: tuple[float, ...]
    warn_above: float

    @property
    def warning(self) -> str | None:
        if self.conditional_mass <= self.warn_above:
            return None
        return (
            f"SUPPORT WARNING: the evaluated policy puts {self.conditional_mass:.0%} of its mass on "
            f"doses the behaviour policy gives with probability < {self.threshold:g} at those states "
            f"({self.marginal_mass:.0%} on dose levels that are < {self.threshold:.0%} of the data: "
            f"{', '.join(f'{d:g}' for d in self.rare_doses) or 'none'}); the estimates extrapolate "
            "beyond the data there and may be far off"
        )


@dataclasses.dataclass
class OPEReport:
    """Off-policy evaluation of one policy on one dataset.

    Attributes
    ----------
    policy : str
        Description of the evaluated policy (says when it was softened).
    n_stays, n_transitions, horizon : int
    gamma : float
    estimates : dict of str to Estimate
    behavior_source : str
        Where the behaviour probabilities of IS came from.
    calibration : Calibration or None
        The behaviour model's out-of-fold calibration.
    support : SupportCheck or None
    logged_return : Estimate
        The behaviour policy's own average discounted return (on-policy, from the data).
    greedy_q : float or None
        The seed's criterion: a d3rlpy algorithm's own learned Q of its greedy action,
        averaged over the data's states. Not an estimate of the policy's value.
    truth : TrueValue or None
        The simulator's ground truth for the same policy.
    fqe_losses : ndarray or None
        FQE's TD loss trace (mean per 200 updates).
    notes : list of str
    target_pmf : ndarray (n, H, K) or None
        The evaluated (softened) policy's probabilities at the logged steps.
    model : ModelValues or None
        FQE's fitted Q and its values at the logged steps (for further estimators).
    """

    policy: str
    n_stays: int
    n_transitions: int
    horizon: int
    gamma: float
    estimates: dict[str, Estimate]
    behavior_source: str
    calibration: Calibration | None
    support: SupportCheck | None
    logged_return: Estimate
    greedy_q: float | None = None
    truth: TrueValue | None = None
    fqe_losses: np.ndarray | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    target_pmf: np.ndarray | None = dataclasses.field(default=None, repr=False)
    model: Any = dataclasses.field(default=None, repr=False)

    def value(self, estimator: str) -> float:
        if estimator not in self.estimates:
            raise KeyError(f"no {estimator!r} estimate; this report has {sorted(self.estimates)}")
        return self.estimates[estimator].value

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.support is not None and self.support.warning:
            out.append(self.support.warning)
        for name, est in self.estimates.items():
            w = est.weights
            if w is not None and w.ess_fraction < 0.05:
                out.append(
                    f"{name}: effective sample size {w.ess:.1f} of {self.n_stays} stays "
                    f"({w.ess_fraction:.1%}); the importance weights rest on very few stays"
                )
                break
        return out

    def table(self) -> str:
        level = next(iter(self.estimates.values())).interval.confidence if self.estimates else 0.95
        header = (
            f"{'estimator':<10} {'value':>9} {f'{level:.0%} CI':>21} {'ESS':>8} {'ESS %':>6} "
            f"{'max w':>6} {'clipped':>7} {'w mean':>7}"
        )
        lines = [header, "-" * len(header)]
        for name, est in self.estimates.items():
            lines.append(_row(name, est))
        lines.append(_row("logged", self.logged_return) + "   (behaviour policy, on-policy)")
        if self.greedy_q is not None:
            lines.append(
                f"{'greedy_q':<10} {self.greedy_q:9.3f}   (the seed's criterion: the algorithm's own Q)"
            )
        if self.truth is not None:
            lines.append(
                f"{'truth':<10} {self.truth.value:9.3f}   +- {self.truth.std_error:.3f} s.e. "
                f"({self.truth.n_patients} fresh simulated patients)"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        head = [
            f"Off-policy evaluation of {self.policy}",
            f"data: {self.n_stays} stays, {self.n_transitions} transitions, horizon {self.horizon}, "
            f"gamma {self.gamma:g}; behaviour probabilities: {self.behavior_source}",
        ]
        if self.calibration is not None:
            head.append(self.calibration.summary())
        parts = ["\n".join(head), self.table()]
        if self.support is not None:
            parts.append(
                f"support: {self.support.conditional_mass:.1%} of the policy's mass on doses with "
                f"behaviour probability < {self.support.threshold:g}; "
                f"{self.support.marginal_mass:.1%} on rare dose levels"
            )
        parts += self.warnings + self.notes
        return "\n".join(parts)


def _row(name: str, est: Estimate) -> str:
    ci = f"[{est.interval.low:8.3f}, {est.interval.high:8.3f}]"
    w = est.weights
    if w is None:
        tail = f"{'-':>8} {'-':>6} {'-':>6} {'-':>7} {'-':>7}"
    else:
        tail = (
            f"{w.ess:8.1f} {w.ess_fraction:6.1%} {w.max_weight_share:6.3f} {w.fraction_clipped:7.1%} "
            f"{w.mean_weight:7.3f}"
        )
    return f"{name:<10} {est.value:9.3f} {ci:>21} {tail}"
