"""The printed tables of ``bench ope``: each policy's truths and estimates, and the targets.

The calibration table itself (one row per estimator) is :func:`~vanco_bench.ope.scores.format_scores`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vanco_bench.ope.scores import EstimatorScore

__all__ = ["TARGETS", "policy_table", "target_lines", "twin_table"]

#: Targets of issue 15 for the best estimator: (what, target, direction).
TARGETS: tuple[tuple[str, float, str], ...] = (
    ("coverage", 0.85, ">="),
    ("Spearman", 0.9, ">="),
    ("regret@1", 0.05, "<="),
    ("MARE", 0.15, "<="),
)
#: The estimators checked against the targets.
TARGETED = ("fqe", "lfqe", "twin", "twin (local)", "twin (band)", "wdr")


def policy_table(rows: Sequence[tuple[str, Any, dict[str, Any], Any, float]], columns: Sequence[str]) -> str:
    """Per policy: its true value (+- s.e.), the softened policy's, the true and each twin's
    attainment (``rows[i][3]`` maps a twin estimator's name to its TwinEstimate), every
    estimator's estimate, greedy_q, the ESS, the support and the time."""
    twin_names = list(rows[0][3]) if rows else []
    header = (
        f"{'policy':<24} {'truth':>13} {'soft':>6} {'att':>5} "
        + "".join(f"{n + ' att':>{len(n) + 5}}" for n in twin_names)
        + " "
        + " ".join(f"{c:>{max(len(c), 7)}}" for c in columns)
        + f" {'greedy_q':>9} {'ESS %':>6} {'support':>8} {'time':>5}"
    )
    lines = [header, "-" * len(header)]
    for label, report, values, twins, seconds in rows:
        t = report.truth
        soft = report.truth_softened.value if report.truth_softened is not None else t.value
        ess = report.estimates["pdis"].weights.ess_fraction
        gq = f"{report.greedy_q:9.2f}" if report.greedy_q is not None else f"{'-':>9}"
        lines.append(
            f"{label:<24} {t.value:7.2f}+-{t.std_error:4.2f} {soft:6.2f} {t.attainment:5.1%} "
            + "".join(f"{twins[n].attainment:{len(n) + 5}.1%}" for n in twin_names)
            + " "
            + " ".join(f"{values[c].value:{max(len(c), 7)}.2f}" for c in columns)
            + f" {gq} {ess:6.1%} {report.support.conditional_mass:8.1%} {seconds:4.0f}s"
        )
    return "\n".join(lines)


def twin_table(rows: Sequence[tuple[str, Any, dict[str, Any], Any, float]]) -> str:
    """Per policy: the truth and each twin estimator's value with its 95 % interval, ``*`` where
    the interval misses the truth."""
    names = list(rows[0][3]) if rows else []
    width = 26
    lines = [f"{'policy':<24} {'truth':>13} " + " ".join(f"{n:>{width}}" for n in names)]
    lines.append("-" * len(lines[0]))
    for label, report, _, twins, _ in rows:
        t = report.truth
        cells = []
        for n in names:
            est = twins[n]
            miss = " " if est.interval.covers(t.value) else "*"
            cells.append(
                f"{f'{est.value:.2f} [{est.interval.low:.2f}, {est.interval.high:.2f}]{miss}':>{width}}"
            )
        lines.append(f"{label:<24} {t.value:7.2f}+-{t.std_error:4.2f} " + " ".join(cells))
    return "\n".join(lines)


def target_lines(scores: Sequence[EstimatorScore]) -> list[str]:
    """One line per targeted estimator: each target, met or missed, and the verdict."""
    out = []
    for score in scores:
        if score.estimator not in TARGETED:
            continue
        values = {
            "coverage": score.coverage or 0.0,
            "Spearman": score.spearman,
            "regret@1": score.regret_at_1,
            "MARE": score.mean_abs_relative_error,
        }
        parts, ok = [], True
        for what, target, op in TARGETS:
            value = values[what]
            met = value >= target if op == ">=" else value <= target
            ok &= met
            percent = what != "Spearman"
            shown = f"{value:.0%}" if percent else f"{value:.2f}"
            goal = f"{target:.0%}" if percent else f"{target:g}"
            parts.append(f"{what} {shown} ({op} {goal}{'' if met else ', missed'})")
        out.append(f"target {score.estimator}: " + ", ".join(parts) + f": {'MET' if ok else 'MISSED'}")
    return out
