"""The benchmark's verdicts: paired patient-level differences with bootstrap 95 % CIs.

Every row of a table is scored on the same test patients, on the same level protocol and
the same action set (:class:`~vanco_bench.offline.cell.CellResult` keeps each
patient's attainment and AKI, the protocol and the action set). A verdict compares a
learned row with a baseline row of the same dataset:

* the point estimate is ``mean(mine) - mean(base)``, each the mean over its seeds and the
  test patients of the per-patient attainment (a patient's share of intervals ending at or
  after 24 h with AUC24 in 400-600);
* the 95 % CI is a percentile bootstrap that resamples the patients (the same draw for both
  rows: the difference is paired by patient) and the seeds (training seeds of a learned row,
  sampling seeds of a stochastic reference; a deterministic reference has one); rows with the
  same number of seeds have them resampled as pairs, which is exact for a row against itself
  and, the runs being independent, estimates the same variance otherwise.

"Best simple baseline" is the baseline of :data:`~vanco_bench.offline.grid.SIMPLE_BASELINES`
with the highest mean attainment on the test patients: choosing it there favours the
baseline, never the learned policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from vanco_bench.offline.cell import CellResult
from vanco_bench.offline.grid import (
    ALGORITHMS,
    DOSE_SET_NAMES,
    PRACTICAL_BASELINES,
    SIMPLE_BASELINES,
)

__all__ = [
    "BASELINE_NAMES",
    "Comparison",
    "compare",
    "headline",
    "paired_difference",
    "panel_table",
    "table_conditions",
    "verdict_lines",
]

#: How a verdict names each baseline.
BASELINE_NAMES: dict[str, str] = {
    "mipd_local490": "Bayesian dose on the refitted prior at AUC 490",
    "mipd_local": "Bayesian dose on the refitted prior at AUC 500",
    "mipd_true": "MIPD with the true prior",
    "mipd": "MIPD with the published Goti prior",
    "BC": "behaviour cloning",
    "clinician": "the clinician",
}
_REPS = 4000


def paired_difference(
    mine: np.ndarray, base: np.ndarray, reps: int = _REPS, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``mean(mine) - mean(base)`` and its bootstrap CI (patients and seeds resampled).

    Parameters
    ----------
    mine, base : array (seeds, patients)
        Per-patient scores of two rows on the same patients, in the same order (a row of one
        seed may be given as shape (patients,)).
    reps : int
        Bootstrap resamples.
    confidence : float
        Coverage of the percentile interval.
    seed : int
        Seed of the resampling.

    Returns
    -------
    (point, low, high)

    Raises
    ------
    ValueError
        The rows do not hold the same number of patients, or hold none.
    """
    a = np.atleast_2d(np.asarray(mine, dtype=np.float64))
    b = np.atleast_2d(np.asarray(base, dtype=np.float64))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] < 2:
        raise ValueError(
            f"paired_difference: shapes {np.shape(mine)} and {np.shape(base)} must be (seeds, patients) "
            "with the same >= 2 patients"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"paired_difference: confidence = {confidence!r} must be in (0, 1)")
    point = float(a.mean() - b.mean())
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    patients = rng.integers(0, n, size=(reps, n))
    seeds_a = rng.integers(0, a.shape[0], size=(reps, a.shape[0]))
    # Rows with as many seeds resample them as pairs (a row against itself differs by 0).
    seeds_b = seeds_a if b.shape[0] == a.shape[0] else rng.integers(0, b.shape[0], size=(reps, b.shape[0]))
    diff = a[seeds_a].mean(axis=1) - b[seeds_b].mean(axis=1)  # (reps, patients)
    values = np.take_along_axis(diff, patients, axis=1).mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    # Rounding of the quantile must not put a point outside its own interval.
    return point, float(min(low, point)), float(max(high, point))


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A learned row against a baseline row of the same dataset (fractions, not percent)."""

    dataset: str
    mine: str
    base: str
    mine_attainment: float
    base_attainment: float
    attainment: tuple[float, float, float]
    aki: tuple[float, float, float]
    n_patients: int
    seeds: tuple[int, int]

    @property
    def word(self) -> str:
        """``better`` / ``worse`` when the attainment CI excludes 0, else ``no difference shown``."""
        _, low, high = self.attainment
        if low > 0:
            return "better"
        if high < 0:
            return "worse"
        return "no difference shown (the CI includes 0)"


def _by_patient(cells: Sequence[CellResult], key: str) -> np.ndarray:
    return np.array([c.by_patient[key] for c in sorted(cells, key=lambda c: c.seed)], dtype=np.float64)


def compare(mine: Sequence[CellResult], base: Sequence[CellResult], reps: int = _REPS) -> Comparison:
    """Paired attainment and AKI differences of the cells of two rows (each row: one cell per seed).

    Raises
    ------
    ValueError
        The rows are not on the same dataset, level protocol and action set, or a cell has no
        per-patient scores (a results.json written before they were kept).
    """
    first, other = mine[0], base[0]
    for cell in (*mine, *base):
        if not cell.by_patient:
            raise ValueError(
                f"{cell.dataset} {cell.algo} seed {cell.seed}: no per-patient scores (rerun the cell); "
                "a paired verdict needs them"
            )
        for field in ("dataset", "protocol", "dose_set"):
            if getattr(cell, field) != getattr(first, field):
                raise ValueError(
                    f"{first.algo} and {cell.algo}: {field} {getattr(first, field)!r} vs "
                    f"{getattr(cell, field)!r}; a verdict compares rows on the same {field} only"
                )
    a, b = _by_patient(mine, "attainment"), _by_patient(base, "attainment")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{first.algo} has {a.shape[1]} test patients, {other.algo} {b.shape[1]}")
    return Comparison(
        dataset=first.dataset,
        mine=first.algo,
        base=other.algo,
        mine_attainment=float(a.mean()),
        base_attainment=float(b.mean()),
        attainment=paired_difference(a, b, reps),
        aki=paired_difference(_by_patient(mine, "aki"), _by_patient(base, "aki"), reps),
        n_patients=a.shape[1],
        seeds=(a.shape[0], b.shape[0]),
    )


def _rows(results: Sequence[CellResult]) -> dict[tuple[str, str], list[CellResult]]:
    rows: dict[tuple[str, str], list[CellResult]] = {}
    for r in results:
        rows.setdefault((r.dataset, r.algo), []).append(r)
    return rows


def _label(baseline: str, variant: str) -> str:
    return f"{baseline} [{variant}]" if baseline in ALGORITHMS and variant else baseline


def headline(
    results: Sequence[CellResult], algo: str = "ResidualVancoIQL", reps: int = _REPS
) -> list[dict[str, Any]]:
    """Per dataset with a row of ``algo``: its comparisons with the best simple baseline, the
    best practical one (no true prior), MIPD with the published prior and the clinician.

    Returns a list of ``{"dataset", "mine", "best", "practical", "mipd", "clinician",
    "baselines"}``: the :class:`Comparison` objects (None where the row is missing) and the
    mean attainment of every simple baseline present.
    """
    from vanco_bench.offline.report import name_and_variant

    rows = _rows(results)
    out = []
    for (dataset, label), cells in rows.items():
        name, variant = name_and_variant(label)
        if name != algo or not all(c.by_patient for c in cells):
            continue
        present = {
            b: rows[(dataset, _label(b, variant))]
            for b in SIMPLE_BASELINES
            if (dataset, _label(b, variant)) in rows
        }
        means = {b: float(_by_patient(c, "attainment").mean()) for b, c in present.items()}
        best = max(means, key=means.__getitem__) if means else None
        practical = [b for b in PRACTICAL_BASELINES if b in means]
        best_practical = max(practical, key=means.__getitem__) if practical else None
        clinician = rows.get((dataset, "clinician"))
        out.append(
            {
                "dataset": dataset,
                "mine": label,
                "best": compare(cells, present[best], reps) if best else None,
                "practical": compare(cells, present[best_practical], reps) if best_practical else None,
                "mipd": compare(cells, present["mipd"], reps) if "mipd" in present else None,
                "clinician": compare(cells, clinician, reps) if clinician else None,
                "baselines": means,
            }
        )
    return out


def _pp(value: tuple[float, float, float]) -> str:
    point, low, high = value
    return f"{point * 100:+.1f} pp [95 % CI {low * 100:+.1f}, {high * 100:+.1f}]"


def _line(c: Comparison, role: str) -> str:
    name = c.base.split(" [")[0]
    what = BASELINE_NAMES.get(name, name)
    return (
        f"{c.dataset}, {c.mine.split(' [')[0]} vs {role} ({what}, `{c.base}`): attainment "
        f"{c.mine_attainment:.1%} vs {c.base_attainment:.1%}, paired difference {_pp(c.attainment)} -> "
        f"{c.word}; AKI {_pp(c.aki)} ({c.n_patients} test patients, {c.seeds[0]} vs {c.seeds[1]} seeds)"
    )


def verdict_lines(headlines: Sequence[dict[str, Any]]) -> list[str]:
    """The verdict lines of :func:`headline`: against the best simple baseline, the best practical
    one when it is another, MIPD with the published prior and the clinician."""
    lines = []
    for h in headlines:
        if h["best"] is not None:
            lines.append(_line(h["best"], "the best simple baseline"))
        if h["practical"] is not None and h["best"] is not None and h["practical"].base != h["best"].base:
            lines.append(_line(h["practical"], "the best baseline without the true prior"))
        if h["mipd"] is not None:
            lines.append(_line(h["mipd"], "MIPD"))
        if h["clinician"] is not None:
            lines.append(_line(h["clinician"], "the clinician"))
    return lines


def panel_table(headlines: Sequence[dict[str, Any]]) -> str:
    """Markdown: per dataset (world), the learned row against the best simple baseline and MIPD."""
    head = [
        "dataset (world)",
        "learned policy",
        "best simple baseline",
        "learned - best [95 % CI]",
        "MIPD (Goti)",
        "learned - MIPD [95 % CI]",
        "AKI learned - best [95 % CI]",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for h in headlines:
        best, mipd = h["best"], h["mipd"]
        mine = (best or mipd).mine_attainment if (best or mipd) else float("nan")
        cells = [
            h["dataset"],
            f"{h['mine'].split(' [')[0]} {mine:.1%}",
            f"{best.base} {best.base_attainment:.1%}" if best else "-",
            _pp(best.attainment).replace("95 % CI ", "") if best else "-",
            f"{mipd.base_attainment:.1%}" if mipd else "-",
            _pp(mipd.attainment).replace("95 % CI ", "") if mipd else "-",
            _pp(best.aki).replace("95 % CI ", "") if best else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_conditions(results: Sequence[CellResult]) -> str:
    """The level protocol and action set of a table, in words; several are named per dataset."""
    seen: dict[str, set[tuple[str, str]]] = {}
    for r in results:
        seen.setdefault(r.dataset, set()).add((r.protocol or "unknown", r.dose_set or "unknown"))
    pairs = {pair for s in seen.values() for pair in s}
    if len(pairs) == 1:
        protocol, dose_set = next(iter(pairs))
        return f"level protocol {protocol} and action set {DOSE_SET_NAMES.get(dose_set, dose_set)}, every row"
    parts = [
        f"{dataset}: " + "; ".join(f"protocol {p}, action set {d}" for p, d in sorted(s))
        for dataset, s in seen.items()
    ]
    return "MIXED protocols or action sets (rows are not comparable across them): " + " | ".join(parts)
