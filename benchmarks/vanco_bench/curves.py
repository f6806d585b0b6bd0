"""``vanco-offline bench curves``: learning curves on validation patients, and the budget each picks.

Each algorithm trains once on one benchmark dataset (the offline benchmark's data, scalers
and networks: :mod:`vanco_bench.offline.grid`); at log-spaced gradient steps
(1, 2, 5 x 10^k from ``--first`` to ``--steps``) its greedy policy is rolled out on the
**validation** patients (:data:`VALIDATION_SEED`, never the test patients of the benchmark
table, :data:`TEST_SEED`) and scored on the simulator's truth: AUC24 attainment, AKI, time
to target. The budget of an algorithm is the checkpoint with the highest validation
attainment (:func:`pick_budget`); the benchmark table then reports it at that budget on
the test patients. MIPD and the clinician are scored on the same validation patients as
reference lines.

Output (``--out``, default ``d3rlpy_logs/bench/curves``): ``curves.json`` (every
checkpoint's scores and the budgets picked), ``curves.md`` and ``curves.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vanco_bench.offline.grid import (
    ALGORITHMS,
    DATASETS,
    SIZES,
    TEST_SEED,
    VALIDATION_SEED,
    CellTask,
    DatasetSettings,
    add_world_arguments,
    world_of,
)

#: The one-line help of ``vanco-offline bench curves`` (read by the command without importing this module).
HELP = "learning curves on validation patients; the budgets they pick"

__all__ = [
    "TEST_SEED",
    "VALIDATION_SEED",
    "Curve",
    "checkpoints",
    "learning_curve",
    "pick_budget",
]

DEFAULT_OUT = Path("d3rlpy_logs") / "bench" / "curves"
#: Scores kept at each checkpoint.
SCORES = ("attainment", "aki_rate", "time_to_target_h", "dose_at_max", "mean_dose_mg")


def checkpoints(last: int, first: int = 1000) -> list[int]:
    """Log-spaced gradient steps 1, 2, 5 x 10^k from ``first`` up to ``last`` (``last`` included)."""
    if not 1 <= first <= last:
        raise ValueError(f"checkpoints: need 1 <= first ({first}) <= last ({last})")
    out: list[int] = []
    decade = 10 ** int(np.floor(np.log10(first)))
    while decade <= last:
        out.extend(m * decade for m in (1, 2, 5) if first <= m * decade <= last)
        decade *= 10
    if not out or out[-1] != last:
        out.append(last)
    return out


@dataclasses.dataclass(frozen=True)
class Curve:
    """One algorithm's validation scores at each checkpoint."""

    algo: str
    seed: int
    steps: list[int]
    scores: dict[str, list[float]]
    train_seconds: float

    @property
    def budget(self) -> int:
        return pick_budget(self.steps, self.scores["attainment"])


def pick_budget(steps: Sequence[int], attainment: Sequence[float]) -> int:
    """The checkpoint with the highest validation attainment (the fewer steps on a tie)."""
    if len(steps) != len(attainment) or not steps:
        raise ValueError("pick_budget: give one attainment per checkpoint")
    best = int(np.argmax(np.asarray(attainment, dtype=np.float64)))
    return int(steps[best])


def learning_curve(task: CellTask, steps: Sequence[int]) -> Curve:
    """Train ``task``'s algorithm for ``max(steps)`` gradient steps, scoring it at each of ``steps``.

    Everything is seeded from ``task`` (data, networks, mini-batches, patients
    ``task.eval_seed``), as a cell of the offline benchmark.
    """
    import d3rlpy
    import torch

    from vanco_bench.offline.cell import seed_action_map
    from vanco_bench.offline.grid import build_config
    from vanco_offline.rollout import EvalPatients, algo_actor, rollout

    spec = ALGORITHMS[task.algo]
    _, result = task.data()
    patients = EvalPatients(n_patients=task.eval_patients, seed=task.eval_seed, world=task.dataset.world)
    interval = task.dataset.world.decision_interval_h
    action_map = seed_action_map if spec.preset == "seed" else None
    wanted = sorted(set(int(s) for s in steps))
    scores: dict[str, list[float]] = {name: [] for name in SCORES}
    scoring = [0.0]

    def score(algo: Any, epoch: int, total_step: int) -> None:
        if total_step not in wanted:
            return
        start = time.perf_counter()
        actor, reset = algo_actor(
            algo, result.observation_names, action_map, interval_h=interval, pk_model=result.population_model
        )
        out = rollout(actor, patients, reset).as_dict()
        for name in SCORES:
            scores[name].append(float(out[name]))
        scoring[0] += time.perf_counter() - start

    config = build_config(spec, task, result)
    d3rlpy.seed(task.seed)
    torch.manual_seed(task.seed)
    algo = config.create(device=False)
    start = time.perf_counter()
    algo.fit(
        result.dataset,
        n_steps=wanted[-1],
        n_steps_per_epoch=wanted[-1],
        show_progress=False,
        save_interval=wanted[-1] + 1,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        callback=score,
    )
    seconds = time.perf_counter() - start - scoring[0]
    return Curve(task.label, task.seed, wanted, scores, seconds)


def _reference_scores(name: str, task: CellTask) -> dict[str, float]:
    from vanco_offline.rollout import EvalPatients, reference_actor, rollout

    patients = EvalPatients(n_patients=task.eval_patients, seed=task.eval_seed, world=task.dataset.world)
    policy, options = dataclasses.replace(task, algo=name).reference()
    actor, reset = reference_actor(policy, seed=task.seed, **options)
    return rollout(actor, patients, reset).as_dict()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", default="medium", choices=list(DATASETS), help="dataset (default medium)"
    )
    parser.add_argument("--size", default="small", choices=list(SIZES), help="dataset size (default small)")
    parser.add_argument(
        "--algos",
        nargs="+",
        default=["VancoIQL", "ResidualVancoIQL", "IQL", "CQL", "BCQ", "BC"],
        choices=list(ALGORITHMS),
        help="learned algorithms (default: VancoIQL ResidualVancoIQL IQL CQL BCQ BC)",
    )
    parser.add_argument("--steps", type=int, default=10000, help="last checkpoint (default 10,000)")
    parser.add_argument("--first", type=int, default=1000, help="first checkpoint (default 1,000)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--patients", type=int, default=200, help="validation patients (default 200)")
    parser.add_argument("--data-preset", default="default", help="training data of every algorithm (default)")
    add_world_arguments(parser)
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the simulated cohort (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="algorithms trained in parallel (default 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="no training: one table and plot from the curves.json of earlier runs on the same dataset",
    )


def build_tasks(args: argparse.Namespace) -> list[CellTask]:
    from vanco_bench.offline import SEED_ROWS, preset_variant

    variant = preset_variant(args.data_preset)
    spec = DatasetSettings.make(args.dataset, args.size, seed=args.data_seed, **world_of(args))
    return [
        CellTask(
            spec,
            algo,
            args.seed,
            n_steps=args.steps,
            eval_patients=args.patients,
            eval_seed=VALIDATION_SEED,
            **({} if algo in SEED_ROWS else variant),
        )
        for algo in args.algos
    ]


def _curve_in_worker(item: tuple[CellTask, list[int]]) -> Curve:
    from vanco_bench.offline.runner import worker_init

    worker_init()
    return learning_curve(*item)


def run(args: argparse.Namespace) -> int:
    if args.merge:
        return _merge(args)
    steps = checkpoints(args.steps, args.first)
    tasks = build_tasks(args)
    start = time.perf_counter()
    label = f"{args.dataset}-{args.size}"
    print(f"learning curves on {label}: {len(tasks)} algorithms, checkpoints {steps}", file=sys.stderr)
    names = ("mipd", "mipd_local", "clinician") if tasks[0].pk_model == "local" else ("mipd", "clinician")
    references = {name: _reference_scores(name, tasks[0]) for name in names}
    curves: list[Curve] = []
    if args.workers > 1:
        import concurrent.futures
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=context) as pool:
            curves = list(pool.map(_curve_in_worker, [(t, steps) for t in tasks]))
    else:
        from vanco_bench.offline.runner import worker_init

        worker_init()
        for task in tasks:
            curves.append(learning_curve(task, steps))
            print(f"  {task.algo}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    wall = time.perf_counter() - start
    header = (
        f"Learning curves on {label} (data seed {args.data_seed}), training seed {args.seed}, "
        f"{args.patients} validation patients (seed {VALIDATION_SEED}), data "
        f"{tasks[0].variant or 'as the project converts it'}, wall time {wall:.0f} s"
    )
    payload = {
        "dataset": label,
        "seed": args.seed,
        "validation_seed": VALIDATION_SEED,
        "patients": args.patients,
        "header": header,
        "references": references,
        "curves": [dict(dataclasses.asdict(c), budget=c.budget) for c in curves],
    }
    _write(payload, curves, args.out)
    return 0


def _write(payload: dict[str, Any], curves: Sequence[Curve], out: Path) -> None:
    text = format_curves(curves, payload["references"], payload["header"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "curves.json").write_text(json.dumps(payload, indent=1))
    (out / "curves.md").write_text(text)
    title = f"{payload['dataset']}, validation patients"
    figure = plot_curves(curves, payload["references"], out / "curves.png", title=title)
    print(text)
    print(f"wrote {out / 'curves.json'}, {out / 'curves.md'}, {figure}")


def _merge(args: argparse.Namespace) -> int:
    payloads = []
    for folder in args.merge:
        path = folder / "curves.json"
        try:
            payloads.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a curves.json of bench curves ({exc})") from None
    keys = {(p["dataset"], p["validation_seed"], p["patients"]) for p in payloads}
    if len(keys) != 1:
        raise ValueError(f"--merge: runs on different datasets or validation patients {sorted(keys)}")
    fields = {f.name for f in dataclasses.fields(Curve)}
    curves = [Curve(**{k: v for k, v in c.items() if k in fields}) for p in payloads for c in p["curves"]]
    merged = dict(payloads[0])
    merged["header"] = "; ".join(p["header"] for p in payloads)
    merged["curves"] = [dict(dataclasses.asdict(c), budget=c.budget) for c in curves]
    _write(merged, curves, args.out)
    return 0


def format_curves(curves: Sequence[Curve], references: dict[str, dict[str, float]], header: str) -> str:
    """The curves as a markdown table (attainment / AKI per checkpoint) and the budgets picked."""
    steps = sorted({s for c in curves for s in c.steps})
    lines = [
        header,
        "",
        "| algorithm | " + " | ".join(f"{s:,}" for s in steps) + " | budget (validation) | train s |",
        "|---|" + "---|" * (len(steps) + 2),
    ]
    for c in curves:
        cells = []
        for s in steps:
            if s in c.steps:
                i = c.steps.index(s)
                cells.append(f"{c.scores['attainment'][i]:.1%} / {c.scores['aki_rate'][i]:.1%}")
            else:
                cells.append("")
        lines.append(
            f"| {c.algo.split(' [')[0]} | " + " | ".join(cells) + f" | {c.budget:,} | {c.train_seconds:.0f} |"
        )
    for name, ref in references.items():
        lines.append(
            f"| {name} (reference) | "
            + " | ".join(f"{ref['attainment']:.1%} / {ref['aki_rate']:.1%}" for _ in steps)
            + " | - | - |"
        )
    lines += [
        "",
        "Cells: AUC24 400-600 attainment / AKI rate of the greedy policy on the validation patients. "
        "Budget: the checkpoint with the highest validation attainment.",
    ]
    return "\n".join(lines) + "\n"


def plot_curves(
    curves: Sequence[Curve], references: dict[str, dict[str, float]], path: Path, title: str = ""
) -> Path:
    """Attainment and AKI against gradient steps (log axis), references as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, ax, label in (
        ("attainment", axes[0], "AUC24 400-600 attainment"),
        ("aki_rate", axes[1], "AKI rate"),
    ):
        for c in curves:
            ax.plot(c.steps, c.scores[key], marker="o", label=c.algo.split(" [")[0])
        for name, style in (("mipd", "--"), ("mipd_local", "-."), ("clinician", ":")):
            if name in references:
                ax.axhline(references[name][key], color="grey", linestyle=style, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("gradient steps")
        ax.set_ylabel(label)
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
