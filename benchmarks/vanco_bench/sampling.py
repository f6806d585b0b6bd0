"""``vanco-offline bench sampling``: when to draw a level, the frontier of attainment against draws.

Per world of ``--worlds`` (panel worlds, :data:`vanco_pk.scenario.WORLD_PANEL`):

1. **Logs** (seed ``--seed``, ``--log-stays`` stays): the clinician doses, and level orders
   follow :class:`vanco_pk.policies.sampling.HabitDraws` (unit habits of 24-96 h, more
   often after a dose change or a creatinine rise, sometimes skipped), protocol
   ``on_request``; each row records ``level_drawn`` and ``level_drawn_prob``.
2. **The hospital's prior**: :func:`vanco_offline.data.fit_local_model` on the logs
   (``mipd_local`` doses with it).
3. **The learned draw head**: :func:`vanco_offline.algos.sampling_iql.fit_draw_head` on the
   logs replayed with that prior; draws where the learned value exceeds a cost.
4. **Validation patients** (seed ``--seed + 1``) choose, for the design rule (threshold on
   the posterior SD) and the learned head (cost), the operating points: ``A``, the most
   levels at most 70 % of ``mipd_local``'s on its protocol; ``B``, the levels nearest
   ``mipd_local``'s.
5. **Test patients** (seed ``10**9 + 29``; they choose nothing): every policy, MIPD on the
   refitted prior dosing, with: the world's protocol (``mipd_local``, the reference), a
   trough at every decision (the ceiling), fixed 1, 2, 3, 5 and 7 troughs a week, the design
   rule and the learned head at each threshold / cost (``on_request``); and the
   ``residual_draw`` advice as a whole: the ``residual`` preset trained on the same logs
   (its own refit; ResidualVancoIQL) dosing, on the world's protocol and with the learned
   head at the two operating points the MIPD rows chose (:class:`ResidualDosing`).

Prints per world the frontier table (attainment, paired 95 % CI against ``mipd_local``, levels
per week, AKI) and the verdict lines: (A) ``mipd_local``'s attainment with >= 30 % fewer
levels (difference >= 0 and its CI's lower end >= -1 pp), (B) >= +3 pp at no more levels (CI
excluding 0), each also against the design rule at the same operating point; writes the
frontier PNG (``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from vanco_pk.policies import make_policy
from vanco_pk.policies.sampling import FixedDraws, HabitDraws, PosteriorDraws, WithDraws
from vanco_pk.scenario import WORLD_PANEL, get_scenario
from vanco_pk.simulate import simulate
from vanco_pk.targets import ATTAINMENT_DEFINITION, DOSE_GRID_MG, DOSE_MAX_MG, dose_to_grid_index
from vanco_pk.world import World

from vanco_bench.offline.verdict import paired_difference

#: The one-line help of ``vanco-offline bench sampling`` (read by the command without importing this module).
HELP = "when to draw a level: attainment against levels per week"

__all__ = ["generate_sampling_logs", "run_world"]

TEST_SEED = 10**9 + 29
FIXED_PER_WEEK = (1, 2, 3, 5, 7)
THRESHOLDS = (0.14, 0.17, 0.2, 0.23, 0.26, 0.3, 0.35)
COSTS_QUANTILES = (0.5, 0.6, 0.7, 0.8, 0.88, 0.94)
FEWER = 0.7
MARGIN_PP = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--worlds",
        nargs="+",
        default=["icu", "icu_volume", "icu_iov035"],
        choices=sorted(WORLD_PANEL),
        help="panel worlds (default icu icu_volume icu_iov035)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (< 10 min on 2 cores)")
    parser.add_argument(
        "--log-stays", type=int, default=300, help="stays in the logs (default 300; quick 150)"
    )
    parser.add_argument(
        "--val-patients", type=int, default=300, help="validation patients (default 300; quick 150)"
    )
    parser.add_argument(
        "--test-patients", type=int, default=500, help="test patients (default 500; quick 200)"
    )
    parser.add_argument(
        "--steps", type=int, default=3000, help="gradient steps of the draw head (default 3000; quick 1000)"
    )
    parser.add_argument(
        "--label", default="correction", choices=("correction", "distance"), help="the draw head's label"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the logs (validation: seed + 1)")
    parser.add_argument("--out", default="d3rlpy_logs/sampling/frontier.png", help="the frontier PNG")
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this file")


def generate_sampling_logs(
    n_stays: int, seed: int = 0, scenario: Any = "icu", dosing: str = "clinician"
) -> pd.DataFrame:
    """A dosing table whose level orders vary: ``generate_cohort(..., draws=HabitDraws())``.

    Columns of ``generate_cohort`` (no ``true_*``) plus ``level_drawn`` (this row's decision to
    draw a trough at the end of its interval) and ``level_drawn_prob`` (its behaviour
    probability; NaN on a stay's final row, where nothing is decided). ``behavior_prob`` is
    the probability of the logged dose under ``dosing``.
    """
    if not isinstance(n_stays, int) or n_stays < 1:
        raise ValueError(f"n_stays = {n_stays!r} must be a positive integer")
    from vanco_offline.data import generate_cohort

    table = generate_cohort(n_stays, dosing, seed, draws=HabitDraws(), true_columns=False, scenario=scenario)
    return table.drop(columns="behavior_policy")


@dataclasses.dataclass
class Row:
    family: str
    label: str
    protocol: str
    setting: float | None
    attainment: float
    levels: float
    aki: float
    per_patient: np.ndarray = dataclasses.field(repr=False)
    aki_per_patient: np.ndarray = dataclasses.field(repr=False)


def _score(
    policy: Any, seed: int, n: int, world: Any, protocol: str, family: str, label: str, setting=None
) -> Row:
    trace = simulate(policy, seed, n, protocol=protocol, world=World.make(scenario=world))
    return Row(
        family,
        label,
        protocol,
        setting,
        trace.attainment(),
        float(trace.levels_per_week().mean()),
        float(trace.aki.mean()),
        trace.attainment_by_patient(),
        trace.aki.astype(np.float64),
    )


class ResidualDosing:
    """A trained model's dose (``train --config residual``) in :func:`vanco_pk.simulate.simulate`,
    with a Bayesian tracker on the model's own prior kept in step with the doses it gives.

    The draw rules that read a tracker (:class:`~vanco_offline.algos.sampling_iql.LearnedDraws`,
    the design rule) read this one, as ``recommend`` reads the model's chart: an MIPD policy on
    the model's population prior sees the chart (``action_probs``) and is told the dose given
    (``record``), so its tracker holds what the residual policy did, not what MIPD would have.
    """

    name = "residual"

    def __init__(self, model: Any, interval_h: float = 12.0):
        from vanco_offline.rollout import observation_builder

        self.algo = model.algo
        self.interval_h = float(interval_h)
        self.memory = make_policy("mipd", model=model.population_model, interval_h=self.interval_h)
        self.build = observation_builder(model.observation_names, self.interval_h, model.population_model)

    @property
    def tracker(self) -> Any:
        return self.memory.tracker

    def reset(self, covariates: Any, seed: Any = None) -> None:
        self.memory.reset(covariates, seed=seed)
        self.build.reset(covariates)

    def act(self, features: np.ndarray, info: Any) -> np.ndarray:
        from vanco_offline.algos.dosing import predict_dose_mg

        self.memory.action_probs(features, info)  # the chart into the tracker
        dose = predict_dose_mg(self.algo, self.build(features, info))
        # The dose the simulator gives: on the grid, as every row of this benchmark.
        given = DOSE_GRID_MG[dose_to_grid_index(np.clip(dose, 0.0, DOSE_MAX_MG))]
        self.memory.record(given)
        return given


def _residual_model(logs: pd.DataFrame, steps: int, seed: int) -> Any:
    """The ``residual`` preset trained on the logs (its own refit of the prior), in memory."""
    from vanco_offline.configs import load_preset
    from vanco_offline.progress import quiet_d3rlpy
    from vanco_offline.training import train

    quiet_d3rlpy()
    preset = load_preset("residual")
    preset = dataclasses.replace(preset, training=dataclasses.replace(preset.training, seed=seed))
    return train(preset, logs, n_steps=steps, log_root=None, show_progress=False).model


def _pick(rows: Sequence[Row], levels: float, below: bool) -> Row:
    """The row with the most levels at most ``levels`` (``below``), or the levels nearest ``levels``."""
    if below:
        fit = [r for r in rows if r.levels <= levels]
        return max(fit, key=lambda r: r.levels) if fit else min(rows, key=lambda r: r.levels)
    return min(rows, key=lambda r: abs(r.levels - levels))


def design_at(rows: Sequence[Row], levels: float) -> tuple[np.ndarray, str]:
    """The design rule's per-patient attainment at ``levels`` a week on the test patients.

    The mixture of the two thresholds whose levels bracket ``levels`` (each patient dosed by
    one of them, in the proportion that gives ``levels`` on average) has the interpolated
    per-patient attainment; outside the measured range, the nearest threshold.
    """
    design = sorted((r for r in rows if r.family == "design"), key=lambda r: r.levels)
    below = [r for r in design if r.levels <= levels]
    above = [r for r in design if r.levels > levels]
    if not below or not above:
        nearest = min(design, key=lambda r: abs(r.levels - levels))
        return nearest.per_patient, f"design rule, SD > {nearest.setting:g}"
    low, high = below[-1], above[0]
    w = (levels - low.levels) / (high.levels - low.levels)
    mixed = (1 - w) * low.per_patient + w * high.per_patient
    return mixed, f"design rule at {levels:.2f}/week (SD > {low.setting:g} / {high.setting:g}, {w:.2f})"


def run_world(
    world_name: str, sizes: dict[str, int], steps: int, label: str, seed: int, log=print
) -> dict[str, Any]:
    """Everything of the module docstring for one world; returns the rows and the verdicts."""
    from vanco_offline.algos.sampling_iql import LearnedDraws, draw_transitions, fit_draw_head
    from vanco_offline.data import fit_local_model

    world = get_scenario(world_name)
    start = time.perf_counter()
    logs = generate_sampling_logs(sizes["logs"], seed, world)
    fit = fit_local_model(logs, max_stays=min(300, sizes["logs"]))
    model = fit.model
    log(
        f"[{world.name}] logs {sizes['logs']} stays, "
        f"{logs['level_drawn'].sum() / sizes['logs']:.1f} draws a week ordered; "
        f"prior refitted ({time.perf_counter() - start:.0f} s)"
    )
    data = draw_transitions(logs, model, label=label)
    algo = fit_draw_head(data, n_steps=steps, seed=seed)
    log(
        f"[{world.name}] draw head: {len(data.drawn)} decisions, {int(data.drawn.sum())} draws "
        f"({time.perf_counter() - start:.0f} s)"
    )

    def mipd() -> Any:
        return make_policy("mipd", model=model)

    val_seed, n_val, n_test = seed + 1, sizes["val"], sizes["test"]
    # Validation: the reference's levels, then the operating points of the two rules.
    ref_val = _score(mipd(), val_seed, n_val, world, world.sampling, "reference", "mipd_local", "")
    design_val = [
        _score(WithDraws(mipd(), PosteriorDraws(t)), val_seed, n_val, world, "on_request", "design", "", t)
        for t in THRESHOLDS
    ]
    # Costs at quantiles of the learned advantage over the logged decisions.
    q1 = algo.predict_value(data.features, np.ones(len(data.drawn), np.int64))
    q0 = algo.predict_value(data.features, np.zeros(len(data.drawn), np.int64))
    costs = sorted({round(float(c), 4) for c in np.quantile(q1 - q0, COSTS_QUANTILES)})
    learned_val = [
        _score(
            WithDraws(mipd(), LearnedDraws(algo, c)), val_seed, n_val, world, "on_request", "learned", "", c
        )
        for c in costs
    ]
    chosen = {}
    for point, (target, below) in {"A": (FEWER * ref_val.levels, True), "B": (ref_val.levels, False)}.items():
        chosen[point] = {
            "design": _pick(design_val, target, below).setting,
            "learned": _pick(learned_val, target, below).setting,
        }
    log(
        f"[{world.name}] validation: mipd_local {ref_val.levels:.2f} levels/week, {ref_val.attainment:.3f}; "
        f"chosen {chosen} ({time.perf_counter() - start:.0f} s)"
    )
    # Test patients: they choose nothing.
    rows = [
        _score(mipd(), TEST_SEED, n_test, world, world.sampling, "reference", "mipd_local (world protocol)"),
        _score(mipd(), TEST_SEED, n_test, world, "every_decision", "ceiling", "mipd_local, level q12h"),
    ]
    for k in FIXED_PER_WEEK:
        rows.append(
            _score(
                WithDraws(mipd(), FixedDraws(k)),
                TEST_SEED,
                n_test,
                world,
                "on_request",
                "fixed",
                f"mipd_local, fixed {k}/week",
                k,
            )
        )
    for t in THRESHOLDS:
        rows.append(
            _score(
                WithDraws(mipd(), PosteriorDraws(t)),
                TEST_SEED,
                n_test,
                world,
                "on_request",
                "design",
                f"design rule, SD > {t:g}",
                t,
            )
        )
    for c in costs:
        rows.append(
            _score(
                WithDraws(mipd(), LearnedDraws(algo, c)),
                TEST_SEED,
                n_test,
                world,
                "on_request",
                "learned",
                f"learned, cost {c:g}",
                c,
            )
        )
    # The residual_draw advice as a whole: the residual dose, with the head at the chosen costs.
    residual = _residual_model(logs, steps, seed)
    rows.append(
        _score(
            ResidualDosing(residual),
            TEST_SEED,
            n_test,
            world,
            world.sampling,
            "residual",
            "residual (world protocol)",
        )
    )
    for point in ("A", "B"):
        c = chosen[point]["learned"]
        rows.append(
            _score(
                WithDraws(ResidualDosing(residual), LearnedDraws(algo, c)),
                TEST_SEED,
                n_test,
                world,
                "on_request",
                "residual",
                f"residual + learned {point}, cost {c:g}",
                c,
            )
        )
    log(f"[{world.name}] residual_draw scored ({time.perf_counter() - start:.0f} s)")
    ref = rows[0]
    verdicts = []
    for point in ("A", "B"):
        learned = next(r for r in rows if r.family == "learned" and r.setting == chosen[point]["learned"])
        design = next(r for r in rows if r.family == "design" and r.setting == chosen[point]["design"])
        for name, row in (("learned", learned), ("design rule", design)):
            d, lo, hi = paired_difference(row.per_patient, ref.per_patient)
            ratio = row.levels / ref.levels
            if point == "A":
                met = ratio <= FEWER and d >= 0 and lo * 100 >= -MARGIN_PP
            else:
                met = row.levels <= ref.levels * 1.05 and d * 100 >= 3 and lo > 0
            verdicts.append(
                {
                    "point": point,
                    "policy": name,
                    "label": row.label,
                    "levels": row.levels,
                    "ratio": ratio,
                    "diff": d,
                    "lo": lo,
                    "hi": hi,
                    "met": bool(met),
                }
            )
        matched, what = design_at(rows, learned.levels)
        d, lo, hi = paired_difference(learned.per_patient, matched)
        verdicts.append(
            {
                "point": point,
                "policy": "learned - design rule",
                "label": f"{learned.label} vs {what}",
                "levels": learned.levels,
                "ratio": 1.0,
                "diff": d,
                "lo": lo,
                "hi": hi,
                "met": bool(lo > 0),
            }
        )
    log(f"[{world.name}] test done ({time.perf_counter() - start:.0f} s)")
    return {
        "world": world.name,
        "rows": rows,
        "verdicts": verdicts,
        "chosen": chosen,
        "reference_val": ref_val,
        "seconds": time.perf_counter() - start,
    }


def format_world(result: dict[str, Any]) -> str:
    rows, ref = result["rows"], result["rows"][0]
    header = (
        f"{'policy':<34} {'protocol':<15} {'AUC 400-600':>11} {'vs mipd_local (95 % CI)':>25} "
        f"{'levels/wk':>9} {'AKI':>6}"
    )
    lines = [f"world {result['world']}", header, "-" * len(header)]
    for r in rows:
        d, lo, hi = paired_difference(r.per_patient, ref.per_patient)
        ci = "" if r is ref else f"{d * 100:+.1f} [{lo * 100:+.1f}, {hi * 100:+.1f}] pp"
        lines.append(
            f"{r.label:<34} {r.protocol:<15} {r.attainment:>11.3f} {ci:>25} {r.levels:>9.2f} {r.aki:>6.3f}"
        )
    for v in result["verdicts"]:
        what = {"A": ">= 30 % fewer levels at mipd_local's attainment", "B": "+3 pp at mipd_local's levels"}[
            v["point"]
        ]
        if v["policy"] == "learned - design rule":
            lines.append(
                f"  {v['point']}: {v['label']}, same levels: {v['diff'] * 100:+.1f} "
                f"[{v['lo'] * 100:+.1f}, {v['hi'] * 100:+.1f}] pp"
            )
        else:
            lines.append(
                f"verdict {v['point']} ({what}), {v['policy']} [{v['label']}]: "
                f"{'MET' if v['met'] else 'not met'}: "
                f"{v['levels']:.2f} levels/week ({v['ratio'] * 100:.0f} % of mipd_local's), "
                f"{v['diff'] * 100:+.1f} [{v['lo'] * 100:+.1f}, {v['hi'] * 100:+.1f}] pp"
            )
    return "\n".join(lines)


def plot_frontier(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    styles = {
        "fixed": ("s-", "fixed k/week"),
        "design": ("o-", "design rule (posterior SD)"),
        "learned": ("^-", "learned draw head"),
    }
    for ax, result in zip(axes[0], results, strict=True):
        rows = result["rows"]
        for family, (style, name) in styles.items():
            pts = sorted((r.levels, r.attainment * 100) for r in rows if r.family == family)
            ax.plot([x for x, _ in pts], [y for _, y in pts], style, label=name, ms=4)
        for family, marker, name in (
            ("reference", "*", "mipd_local, world protocol"),
            ("ceiling", "D", "mipd_local, q12h"),
        ):
            r = next(r for r in rows if r.family == family)
            ax.plot([r.levels], [r.attainment * 100], marker, ms=10, label=name)
        residual = [r for r in rows if r.family == "residual"]
        if residual:
            ax.plot(
                [r.levels for r in residual],
                [r.attainment * 100 for r in residual],
                "kx",
                ms=8,
                label="residual_draw (residual dose; protocol or learned head)",
            )
        ax.set_title(result["world"])
        ax.set_xlabel("levels drawn per week")
        ax.set_ylabel("AUC 400-600 attainment (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    sizes = {"logs": args.log_stays, "val": args.val_patients, "test": args.test_patients}
    steps = args.steps
    if args.quick:
        sizes = {
            "logs": min(sizes["logs"], 150),
            "val": min(sizes["val"], 150),
            "test": min(sizes["test"], 200),
        }
        steps = min(steps, 1000)
    for name, value in {**sizes, "steps": steps}.items():
        if value < 2:
            raise ValueError(f"bench sampling: {name} = {value} must be at least 2")
    print(
        f"when to draw a level: worlds {', '.join(args.worlds)}; logs {sizes['logs']} stays (seed "
        f"{args.seed}, clinician doses, habit draws), validation {sizes['val']} patients (seed "
        f"{args.seed + 1}), test {sizes['test']} patients (seed {TEST_SEED}), draw head {steps} steps, "
        f"label {args.label}; every policy doses by MIPD on the prior refitted to the logs (mipd_local), "
        "every dose on the 250 mg grid",
        flush=True,
    )
    results = []
    for world in args.worlds:
        result = run_world(world, sizes, steps, args.label, args.seed, log=lambda m: print(m, flush=True))
        results.append(result)
        print(format_world(result), flush=True)
    print(ATTAINMENT_DEFINITION)
    print(
        "levels/wk: troughs (and peaks) drawn per 7 days; AKI: KDIGO at any decision; CIs: paired "
        "patient-level differences, 95 % percentile-bootstrap interval over patients "
        "(vanco_bench.offline.verdict.paired_difference); A met: levels <= 70 % of mipd_local's, "
        f"difference >= 0 and its CI's lower end >= -{MARGIN_PP:g} pp; B met: levels <= 105 % of "
        "mipd_local's, difference >= +3 pp, CI excluding 0; operating points chosen on validation patients"
    )
    for result in results:
        for v in result["verdicts"]:
            if v["policy"] == "learned":
                print(f"target {result['world']} {v['point']}: {'MET' if v['met'] else 'not met'}")
    path = plot_frontier(results, args.out)
    print(f"frontier: {path}")
    if args.json:
        out = [
            {
                "world": r["world"],
                "chosen": r["chosen"],
                "seconds": r["seconds"],
                "verdicts": r["verdicts"],
                "rows": [
                    {
                        k: v
                        for k, v in dataclasses.asdict(row).items()
                        if k not in ("per_patient", "aki_per_patient")
                    }
                    for row in r["rows"]
                ],
            }
            for r in results
        ]
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0
