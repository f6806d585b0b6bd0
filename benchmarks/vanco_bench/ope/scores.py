"""How well an estimator ranks and values a panel of policies whose true values are known.

Given, for each policy of a panel, its true value (simulator) and each estimator's
estimate with its interval, this computes per estimator:

* Spearman rank correlation between estimates and true values;
* mean absolute relative error ``mean |est - true| / |true|`` (unstable when a true value
  is near 0, so the error relative to the oracle-random gap is given beside it);
* regret@1: the true value lost by deploying the estimator's favourite instead of the
  panel's truly best policy, as a fraction of the oracle-random gap;
* coverage: the share of policies whose interval contains the true value;
* for an estimator that also estimates attainment (the twin): the mean absolute relative
  error of the attainment (fraction of intervals with AUC24 in 400-600) and its coverage.

Each estimator is scored against the truth of the policy it estimated: the policy as given
for ``fqe``, ``lfqe`` and ``twin``, the softened policy for the importance-weighted ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import spearmanr

__all__ = ["EstimatorScore", "score_estimator"]


@dataclasses.dataclass(frozen=True)
class EstimatorScore:
    """Calibration of one estimator over a panel of policies."""

    estimator: str
    n_policies: int
    spearman: float
    mean_abs_relative_error: float
    mean_abs_error_over_gap: float
    regret_at_1: float
    coverage: float | None
    chosen: str
    attainment_error: float | None = None
    attainment_coverage: float | None = None

    def row(self) -> str:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.0%}"

        att = "-" if self.attainment_error is None else f"{self.attainment_error:.3f}"
        return (
            f"{self.estimator:<14} {self.n_policies:>3} {self.spearman:8.2f} "
            f"{self.mean_abs_relative_error:8.2f} {self.mean_abs_error_over_gap:8.3f} "
            f"{self.regret_at_1:9.1%} {pct(self.coverage):>8} {att:>9} {pct(self.attainment_coverage):>8}  "
            f"{self.chosen}"
        )

    @staticmethod
    def header() -> str:
        return (
            f"{'estimator':<14} {'n':>3} {'spearman':>8} {'MARE':>8} {'MAE/gap':>8} {'regret@1':>9} "
            f"{'coverage':>8} {'att MARE':>9} {'att cov':>8}  picks"
        )


def score_estimator(
    name: str,
    truth: Mapping[str, float],
    estimates: Mapping[str, float],
    gap: float,
    intervals: Mapping[str, tuple[float, float]] | None = None,
    attainment: tuple[Mapping[str, float], Mapping[str, float], Mapping[str, tuple[float, float]]]
    | None = None,
) -> EstimatorScore:
    """Score one estimator on the policies it estimated.

    Parameters
    ----------
    name : str
    truth : mapping policy -> true value
    estimates : mapping policy -> estimate (a subset of ``truth``'s policies; NaN skipped)
    gap : float
        True value of the oracle minus that of the random policy (regret's unit).
    intervals : mapping policy -> (low, high), optional
    attainment : (true, estimated, intervals) mappings policy -> attainment, optional

    Raises
    ------
    ValueError
        Fewer than two estimated policies, an estimate for an unknown policy, or gap <= 0.
    """
    if not gap > 0:
        raise ValueError(f"the oracle-random gap must be positive, got {gap!r}")
    unknown = sorted(set(estimates) - set(truth))
    if unknown:
        raise ValueError(f"estimates for policies without a true value: {unknown}")
    names = [k for k, v in estimates.items() if np.isfinite(v)]
    if len(names) < 2:
        raise ValueError(f"{name}: need at least two finite estimates to score, got {len(names)}")
    est = np.array([estimates[k] for k in names])
    true = np.array([truth[k] for k in names])
    rho = float(spearmanr(est, true).statistic)
    chosen = names[int(np.argmax(est))]
    coverage = None
    if intervals is not None:
        hits = [intervals[k][0] <= truth[k] <= intervals[k][1] for k in names if k in intervals]
        coverage = float(np.mean(hits)) if hits else None
    with np.errstate(divide="ignore"):
        relative = np.abs(est - true) / np.abs(true)
    att_error = att_cover = None
    if attainment is not None:
        true_att, est_att, att_int = attainment
        keys = [k for k in names if k in est_att]
        att_error = float(np.mean([abs(est_att[k] - true_att[k]) / true_att[k] for k in keys]))
        att_cover = float(np.mean([att_int[k][0] <= true_att[k] <= att_int[k][1] for k in keys]))
    return EstimatorScore(
        estimator=name,
        n_policies=len(names),
        spearman=rho if not math.isnan(rho) else float("nan"),
        mean_abs_relative_error=float(np.mean(relative)),
        mean_abs_error_over_gap=float(np.mean(np.abs(est - true)) / gap),
        regret_at_1=float((true.max() - truth[chosen]) / gap),
        coverage=coverage,
        chosen=chosen,
        attainment_error=att_error,
        attainment_coverage=att_cover,
    )


def format_scores(scores: Sequence[EstimatorScore]) -> str:
    """The calibration table: one row per estimator."""
    header = EstimatorScore.header()
    return "\n".join([header, "-" * len(header), *(s.row() for s in scores)])
