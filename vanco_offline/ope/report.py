"""What :func:`vanco_offline.ope.evaluate` returns: estimates with intervals and diagnostics."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from vanco_offline.ope.behavior import Calibration
from vanco_offline.ope.bootstrap import Interval
from vanco_offline.ope.estimators import WeightDiagnostics
from vanco_offline.ope.truth import TrueValue

__all__ = [
    "COVERAGE_SOURCE",
    "IN_SAMPLE_COVERAGE",
    "MEASURED_COVERAGE",
    "ActionSupport",
    "Estimate",
    "OPEReport",
    "coverage_label",
]

ESTIMATOR_HELP: dict[str, str] = {
    "fqe": "fitted Q evaluation (d3rlpy FQE), mean V(s0) over the logged first states",
    "lfqe": "linear backward-induction FQE, refitted on every bootstrap resample",
    "twin": "PK digital twins of the logged patients (MAP + importance-resampled posterior, rollouts)",
    "pdis": "per-decision importance sampling",
    "wis": "weighted (self-normalised) trajectory importance sampling",
    "wpdis": "weighted per-decision importance sampling",
    "dr": "per-decision doubly robust (linear FQE as the model, refitted per resample)",
    "wdr": "weighted doubly robust (linear FQE as the model, refitted per resample)",
}

#: Coverage of each interval held out by world: the share of panel policies whose 95 %
#: interval held the truth in worlds its settings were not chosen on (``vanco-offline bench
#: ope --worlds``, the run named in :data:`COVERAGE_SOURCE`; docs/ope.md). Keys: an estimator,
#: or a twin variant followed by ``attainment``, ``aki``, ``difference`` (the paired value
#: difference to MIPD on the refitted prior) or ``attainment difference``.
MEASURED_COVERAGE: dict[str, float] = {
    "twin (band)": 0.78,
    "twin (band) attainment": 0.90,
    "twin (band) aki": 0.97,
    "twin (band) difference": 0.93,
    "twin (band) attainment difference": 0.90,
    "wis": 0.16,
    "wdr": 0.36,
}
COVERAGE_SOURCE = (
    "`bench ope --worlds icu ... --calibrate-on icu --stays 200 --truth-patients 1000 --twin-draws 5 "
    "--bootstrap 200` (commit afe0786): band width chosen on icu, 13 policies in each of 7 held-out worlds "
    "(icu_volume, icu_clvar, icu_published, icu_iov0, icu_iov035, icu_goti, icu_sepsis_volume); "
    "twin value 71/91 (95 % CI 68-86 %), the lowest world 23 % (icu_iov035); wis and wdr from the same "
    "run with --estimators wis wdr --bands 1 (commit be997c0) (docs/ope.md, docs/results/ope_worlds*.txt)"
)
#: Coverage measured only in the world the settings were chosen in (in-sample), for the
#: estimators not yet run held out (:data:`IN_SAMPLE_SOURCE`).
IN_SAMPLE_COVERAGE: dict[str, float] = {
    "fqe": 0.14,
    "lfqe": 0.21,
    "pdis": 0.14,
    "wpdis": 0.57,
    "dr": 0.21,
}
IN_SAMPLE_SOURCE = (
    "`bench ope --data-preset default --stays 1000 --truth-patients 10000 --twin-draws 5 --bootstrap 300 "
    "--fqe-steps 2000 --train-steps 2000` in the icu world only (commit 78af72c): 14 policies "
    "(docs/ope.md, docs/results/ope_icu_full.txt)"
)


def coverage_label(estimator: str, confidence: float = 0.95) -> str:
    """How often such an interval held the truth: ``covers NN%*`` (held out by world),
    ``covers NN%+`` (in-sample only) or ``uncalibrated``."""
    if abs(confidence - 0.95) > 1e-9:
        return "uncalibrated"
    if estimator in MEASURED_COVERAGE:
        return f"covers {MEASURED_COVERAGE[estimator]:.0%}*"
    if estimator in IN_SAMPLE_COVERAGE:
        return f"covers {IN_SAMPLE_COVERAGE[estimator]:.0%}+"
    return "uncalibrated"


@dataclasses.dataclass(frozen=True)
class Estimate:
    """One estimator's value with its bootstrap interval over stays.

    Attributes
    ----------
    estimator : str
    value : float
    interval : Interval
        Percentile bootstrap over stays. For ``fqe`` the Q-model is held fixed across
        resamples (the interval omits its fitting error); ``lfqe``, ``dr`` and ``wdr`` refit
        their linear Q on every resample; ``twin`` resamples stays and twins.
    weights : WeightDiagnostics or None
        For importance-weighted estimators.
    softened : bool
        The estimate is of the softened policy (importance sampling), not of the policy as given.
    """

    estimator: str
    value: float
    interval: Interval
    weights: WeightDiagnostics | None = None
    softened: bool = False


@dataclasses.dataclass(frozen=True)
class ActionSupport:
    """Does the evaluated policy put mass on doses the data rarely has (action support)?

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
    support : ActionSupport or None
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
        The probabilities at the logged steps of the policy the weighted estimators evaluated.
    model : LinearFittedQ or None
        The DR model (linear FQE of that policy, with its per-resample refits).
    softened_policy : str or None
        The softened policy of the weighted estimators, when it is not the policy as given.
    truth_softened : TrueValue or None
        Its simulator truth.
    twin : TwinEstimate or None
        The twin estimator's attainment, AKI rate and posterior.
    fitted_q : ModelValues or None
        The d3rlpy FQE fit of ``fqe``.
    differences : list of (PairedDifference, float or None)
        Paired twin differences of this policy to a reference
        (:func:`vanco_offline.ope.paired_difference`), each with the simulator's true
        difference when known; printed under the twin's outcomes.
    """

    policy: str
    n_stays: int
    n_transitions: int
    horizon: int
    gamma: float
    estimates: dict[str, Estimate]
    behavior_source: str
    calibration: Calibration | None
    support: ActionSupport | None
    logged_return: Estimate
    greedy_q: float | None = None
    truth: TrueValue | None = None
    fqe_losses: np.ndarray | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    target_pmf: np.ndarray | None = dataclasses.field(default=None, repr=False)
    model: Any = dataclasses.field(default=None, repr=False)
    softened_policy: str | None = None
    truth_softened: TrueValue | None = None
    twin: Any = dataclasses.field(default=None, repr=False)
    fitted_q: Any = dataclasses.field(default=None, repr=False)
    differences: list[tuple[Any, float | None]] = dataclasses.field(default_factory=list)

    def truth_for(self, estimator: str) -> TrueValue | None:
        """The truth an estimator's value is to be compared with (the softened policy's for IS/DR)."""
        est = self.estimates.get(estimator)
        if est is not None and est.softened:
            return self.truth_softened
        return self.truth

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
            f"{'estimator':<10} {'of':<8} {'value':>9} {f'{level:.0%} CI':>21} {'interval':>12} {'ESS':>8} "
            f"{'ESS %':>6} {'max w':>6} {'clipped':>7} {'w mean':>7}"
        )
        lines = [header, "-" * len(header)]
        for name, est in self.estimates.items():
            lines.append(_row(name, est, coverage_key=self.coverage_key(name)))
        lines.append(_row("logged", self.logged_return, label="-") + "   (behaviour policy, on-policy)")
        if self.greedy_q is not None:
            lines.append(
                f"{'greedy_q':<10} {'policy':<8} {self.greedy_q:9.3f}   "
                "(the seed's criterion: the algorithm's own Q)"
            )
        for label, truth in (("policy", self.truth), ("softened", self.truth_softened)):
            if truth is not None:
                lines.append(
                    f"{'truth':<10} {label:<8} {truth.value:9.3f}   +- {truth.std_error:.3f} s.e. "
                    f"({truth.n_patients} fresh simulated patients)"
                )
        keys = [self.coverage_key(n) for n in self.estimates]
        if self.twin is not None or any(k in MEASURED_COVERAGE for k in keys):
            lines.append(
                "* share of panel policies whose 95 % interval held the truth in worlds it was not tuned "
                f"on: {COVERAGE_SOURCE}"
            )
        if any(k in IN_SAMPLE_COVERAGE for k in keys):
            lines.append(
                f"+ the same share in the one world it was measured in (in-sample): {IN_SAMPLE_SOURCE}"
            )
        if self.twin is not None:
            t = self.twin
            a, k = t.attainment_interval, t.aki_interval
            line = (
                f"twin outcomes: AUC24 400-600 attainment {t.attainment:.1%} [{a.low:.1%}, {a.high:.1%}] "
                f"({coverage_label(t.label + ' attainment')}), AKI {t.aki_rate:.1%} "
                f"[{k.low:.1%}, {k.high:.1%}] ({coverage_label(t.label + ' aki')})"
            )
            if self.truth is not None and np.isfinite(self.truth.attainment):
                line += f"; truth {self.truth.attainment:.1%} and {self.truth.aki_rate:.1%}"
            lines.append(line)
        for diff, true in self.differences:
            key = diff.label + (" difference" if diff.metric == "value" else f" {diff.metric} difference")
            line = f"paired difference, {diff} ({coverage_label(key)})"
            if true is not None:
                line += f"; truth {true:+.1%}" if diff.metric != "value" else f"; truth {true:+.3f}"
            lines.append(line)
        return "\n".join(lines)

    def coverage_key(self, name: str) -> str:
        """The name under which ``name``'s interval coverage was measured (:data:`MEASURED_COVERAGE`):
        the twin's variant (``twin``, ``twin (local)``, ``twin (band)``) for ``twin``."""
        return self.twin.label if name == "twin" and self.twin is not None else name

    def __str__(self) -> str:
        head = [
            f"Off-policy evaluation of {self.policy}"
            + (f" (importance sampling: {self.softened_policy})" if self.softened_policy else ""),
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


def _row(name: str, est: Estimate, label: str | None = None, coverage_key: str | None = None) -> str:
    ci = f"[{est.interval.low:8.3f}, {est.interval.high:8.3f}]"
    label = label or ("softened" if est.softened else "policy")
    calibration = "-" if name == "logged" else coverage_label(coverage_key or name, est.interval.confidence)
    w = est.weights
    if w is None:
        tail = f"{'-':>8} {'-':>6} {'-':>6} {'-':>7} {'-':>7}"
    else:
        tail = (
            f"{w.ess:8.1f} {w.ess_fraction:6.1%} {w.max_weight_share:6.3f} {w.fraction_clipped:7.1%} "
            f"{w.mean_weight:7.3f}"
        )
    return f"{name:<10} {label:<8} {est.value:9.3f} {ci:>21} {calibration:>12} {tail}"
