"""Aggregate the benchmark's cells: IQM with stratified-bootstrap CIs, a markdown table, a plot.

The interquartile mean over seeds is ``scipy.stats.trim_mean(x, 0.25, axis=None)``, the
definition ``rliable.metrics.aggregate_iqm`` uses. Its confidence interval is rliable's
stratified bootstrap (resample runs with replacement within each task, percentile
interval), implemented here with a seeded ``numpy.random.Generator``: ``rliable.library``
cannot be used (its ``arch`` dependency fails to import with pandas 3 in arch 7.x, and
arch 8 removed the ``random_state`` argument rliable passes), and rliable's own bootstrap
draws from numpy's global random state. So rliable is not a dependency.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import trim_mean

from vanco_bench.offline.cell import OPE_ESTIMATORS, CellResult
from vanco_bench.offline.grid import ALGORITHMS, REFERENCE_POLICIES

__all__ = [
    "METRICS",
    "Aggregate",
    "aggregate",
    "format_table",
    "iqm_interval",
    "ope_summary",
    "plot",
]

#: Score -> (column title, format, higher is better).
METRICS: dict[str, tuple[str, str, bool]] = {
    "attainment": ("AUC 400-600 attainment", "{:.1%}", True),
    "target_48h": ("on target by 48 h", "{:.0%}", True),
    "time_to_target_h": ("time to target (h)", "{:.0f}", False),
    "aki_rate": ("AKI rate", "{:.1%}", False),
    "return_": ("return", "{:.2f}", True),
    "dose_at_max": ("doses at 3 g", "{:.0%}", False),
    "levels_per_week": ("levels / week", "{:.1f}", False),
}


def _iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all scores (rliable's ``aggregate_iqm``)."""
    return float(trim_mean(scores, proportiontocut=0.25, axis=None))


def iqm_interval(
    scores: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """IQM of ``scores`` (runs, tasks) and its stratified-bootstrap percentile interval.

    Runs are resampled with replacement independently within each task (column), as
    rliable's ``StratifiedBootstrap`` does.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"scores must be (runs, tasks), got shape {np.shape(scores)}")
    point = float(_iqm(x))
    if x.shape[0] == 1:
        return point, point, point
    rng = np.random.default_rng(seed)
    runs, tasks = x.shape
    index = rng.integers(0, runs, size=(reps, runs, tasks))
    samples = np.take_along_axis(np.broadcast_to(x, (reps, runs, tasks)), index, axis=1)
    values = np.array([_iqm(s) for s in samples])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return point, float(low), float(high)


@dataclasses.dataclass(frozen=True)
class Aggregate:
    """One (dataset, algorithm) row: IQM and CI of each score over seeds, OPE beside the truth."""

    dataset: str
    algo: str
    n_seeds: int
    iqm: dict[str, tuple[float, float, float]]
    ope: dict[str, float]
    ope_note: str
    train_seconds: float


def aggregate(results: Sequence[CellResult], reps: int = 2000, seed: int = 0) -> list[Aggregate]:
    """Group the cells by (dataset, algorithm), in the order they first appear."""
    groups: dict[tuple[str, str], list[CellResult]] = {}
    for r in results:
        groups.setdefault((r.dataset, r.algo), []).append(r)
    rows = []
    for (dataset, algo), cells in groups.items():
        cells = sorted(cells, key=lambda c: c.seed)
        # A results.json written before a metric existed has none of it: that column stays out.
        iqm = {
            m: iqm_interval(np.array([c.scores[m] for c in cells]), reps, seed=seed)
            for m in METRICS
            if all(m in c.scores for c in cells)
        }
        with_ope = [c for c in cells if c.ope]
        ope = {k: float(np.mean([c.ope[k] for c in with_ope if k in c.ope])) for k in _ope_keys(with_ope)}
        note = next((c.ope_note for c in cells if c.ope_note), "")
        seconds = float(np.mean([c.train_seconds for c in cells]))
        rows.append(Aggregate(dataset, algo, len(cells), iqm, ope, note, seconds))
    return rows


def _ope_keys(cells: Sequence[CellResult]) -> list[str]:
    keys = [k for k in (*OPE_ESTIMATORS, "truth", "truth_se") if any(k in c.ope for c in cells)]
    return keys


def _cell(value: tuple[float, float, float], fmt: str) -> str:
    point, low, high = value
    if math.isclose(low, high):
        return fmt.format(point)
    return f"{fmt.format(point)} [{fmt.format(low)}, {fmt.format(high)}]"


def format_table(rows: Sequence[Aggregate], metrics: Sequence[str] = tuple(METRICS)) -> str:
    """Markdown table: one row per (dataset, algorithm); IQM [95 % CI] over seeds."""
    titles = [METRICS[m][0] for m in metrics]
    has_ope = any(r.ope for r in rows)
    ope_titles = ["FQE", "WIS", "WDR", "truth"] if has_ope else []
    head = ["dataset", "algorithm", "seeds", *titles, *ope_titles, "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.dataset, r.algo, str(r.n_seeds)]
        cells += [_cell(r.iqm[m], METRICS[m][1]) if m in r.iqm else "-" for m in metrics]
        if has_ope:
            cells += [f"{r.ope[k]:.2f}" if k in r.ope else "-" for k in (*OPE_ESTIMATORS, "truth")]
        cells.append(f"{r.train_seconds:.0f}" if r.algo.split(" [")[0] in ALGORITHMS else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def name_and_variant(label: str) -> tuple[str, str]:
    """``"IQL [reward exposure]"`` -> ``("IQL", "reward exposure")``; no brackets -> ``(label, "")``."""
    name, bracket, rest = label.partition(" [")
    return (name, rest[:-1]) if bracket and rest.endswith("]") else (label, "")


def ope_summary(rows: Sequence[Aggregate]) -> list[str]:
    """Per OPE estimator, over the rows that have it: mean absolute error against the simulator's
    truth and Spearman's rank correlation with it (does the estimator rank the policies right?)."""
    from scipy.stats import spearmanr

    lines = []
    for est in OPE_ESTIMATORS:
        pairs = np.array([(r.ope[est], r.ope["truth"]) for r in rows if est in r.ope and "truth" in r.ope])
        if len(pairs) < 3:
            continue
        error = float(np.mean(np.abs(pairs[:, 0] - pairs[:, 1])))
        rho = float(spearmanr(pairs[:, 0], pairs[:, 1]).statistic)
        lines.append(
            f"OPE {est.upper()}: mean |estimate - truth| {error:.2f}, Spearman correlation with the truth"
            f" {rho:+.2f} over {len(pairs)} policies"
        )
    return lines


def plot(rows: Sequence[Aggregate], path: str | Path, metric: str = "attainment") -> Path:
    """One panel per dataset: IQM of ``metric`` with its 95 % CI per algorithm (horizontal bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r.dataset for r in rows))
    algos = list(dict.fromkeys(r.algo for r in rows))
    by = {(r.dataset, r.algo): r for r in rows}
    size = (3.2 * len(datasets) + 1.5, 0.32 * len(algos) + 1.2)
    fig, axes = plt.subplots(1, len(datasets), figsize=size, sharey=True, squeeze=False)
    colors = {a: _color(a) for a in algos}
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for y, algo in enumerate(algos):
            row = by.get((dataset, algo))
            if row is None:
                continue
            point, low, high = row.iqm[metric]
            ax.barh(y, point, color=colors[algo], alpha=0.8)
            ax.errorbar(point, y, xerr=[[point - low], [high - point]], fmt="none", ecolor="black", capsize=2)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel(METRICS[metric][0], fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(algos)), algos, fontsize=8)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _color(algo: str) -> str:
    if algo in REFERENCE_POLICIES:
        return "tab:gray"
    return "tab:blue" if "Vanco" in algo else "tab:orange"


def results_to_json(results: Sequence[CellResult]) -> list[dict[str, Any]]:
    """Plain dicts of every cell, for ``results.json``."""
    return [r.as_dict() for r in results]
