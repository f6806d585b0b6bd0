"""``vanco-offline bench offline``: VancoIQL against d3rlpy's CQL/BCQ/IQL/BC and clinical dosing.

The grid is dataset x algorithm x seed (:mod:`vanco_bench.offline.grid`): every
algorithm trains on the same simulated cohort with the same budget and scalers, and every
policy -- learned or reference -- is rolled out on the same held-out simulated patients
(:mod:`vanco_offline.rollout`). Cells run in parallel on local processes or on
Ray (:mod:`vanco_bench.offline.runner`); the report gives the interquartile mean
over seeds with stratified-bootstrap 95 % CIs and OPE estimates beside the simulator's truth
(:mod:`vanco_bench.offline.report`). ``--tune`` runs the ``seed`` preset's tuning
guide (expectile, temperature, learning rate) through Ray Tune instead.

Every row of a table doses on the same action set (``--dose-set``: the 250 mg grid by
default, or unrounded, :data:`~vanco_bench.offline.grid.DOSE_SET_NAMES`) and samples
levels on the same protocol (``--protocol``: the world's own by default), both named in the
table; the verdicts are paired patient-level differences with bootstrap 95 % CIs
(:mod:`vanco_bench.offline.verdict`) against the strongest simple baselines.
``--worlds`` runs the grid in several worlds of :data:`vanco_pk.scenario.WORLD_PANEL` and
writes the panel table.

Sizes: ``--quick`` (medium-small, ResidualVancoIQL, IQL, BC and the reference policies, 3
seeds, 1,000 steps, 200 patients) and the default (6 datasets, 1,000 steps, 300 patients);
``docs/benchmark.md`` gives the measured wall times and the size that was run.
Results go to ``--out`` (default ``d3rlpy_logs/bench/offline``): ``results.json`` (every
cell, with each test patient's attainment and AKI), ``table.md`` (table and verdicts),
``panel.md`` (the headline per dataset and world) and ``attainment.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

from vanco_pk.scenario import SAMPLING_PROTOCOLS, SCENARIOS, WORLD_PANEL

from vanco_bench.offline.grid import (
    ALGORITHMS,
    DATASETS,
    DOSE_SET_NAMES,
    PK_MODELS,
    REFERENCE_POLICIES,
    SIZES,
    TEST_SEED,
    VALIDATION_SEED,
    CellTask,
    DatasetSettings,
    add_world_arguments,
    world_of,
)
from vanco_bench.offline.variants import REWARD_VARIANTS

#: The one-line help of ``vanco-offline bench offline`` (read by the command without importing this module).
HELP = "VancoIQL vs d3rlpy CQL/BCQ/IQL/BC and clinical dosing"

DEFAULT_OUT = Path("d3rlpy_logs") / "bench" / "offline"
#: Validation patients for --tune: not the test patients of the benchmark table.
TUNE_EVAL_SEED = VALIDATION_SEED
#: Rows that train on their own preset's data (seven features, ``seed`` reward), not the run's variant.
SEED_ROWS = ("VancoIQL (base)", "VancoIQL (seed)")
#: The learned rows that get verdict lines (each against the simple baselines of its dataset).
VERDICT_ROWS = ("ResidualVancoIQL", "VancoIQL", "DiscreteVancoIQL")
ORACLE_NOTE = (
    "oracle: perfect information (reads the true clearance and drug amounts at every decision); no "
    "policy that sees a chart can reach it, so it is no goal's reference"
)

QUICK = {
    "datasets": ["medium"],
    "sizes": ["small"],
    "steps": 1000,
    "eval_patients": 200,
    "ope_steps": 1000,
    "seeds": 3,
    "ope_seeds": 0,
    "data_preset": "residual",
    # The recommended learned policy, one d3rlpy offline RL algorithm, and every simple baseline.
    "algos": [
        "ResidualVancoIQL",
        "IQL",
        "BC",
        "clinician",
        "mipd",
        "mipd_true",
        "mipd_local",
        "mipd_local490",
        "oracle",
    ],
}
# The size of the reported tables (docs/benchmark.md gives its wall time, and why not 5,000 steps).
FULL = {
    "datasets": list(DATASETS),
    "sizes": list(SIZES),
    "steps": 1000,
    "eval_patients": 300,
    "ope_steps": 3000,
    "seeds": 5,
    "ope_seeds": 1,
    "data_preset": "default",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small grid: medium-small, the continuous algorithms and the reference policies, 3 seeds, "
        "1,000 steps, 200 patients, no OPE",
    )
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), help="datasets (default all)")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), help="dataset sizes (default small large)")
    parser.add_argument(
        "--algos",
        nargs="+",
        choices=[*ALGORITHMS, *REFERENCE_POLICIES],
        help="learned algorithms and reference policies (default all)",
    )
    parser.add_argument("--seeds", type=int, help="seeds per cell (default 5; quick 3)")
    parser.add_argument("--steps", type=int, help="gradient steps per algorithm (default 1000)")
    parser.add_argument("--batch-size", type=int, default=256, help="mini-batch size of every algorithm")
    parser.add_argument("--hidden", default="32,32", help="hidden layers of every network (default 32,32)")
    parser.add_argument("--eval-patients", type=int, help="held-out patients (default 300, quick 200)")
    parser.add_argument(
        "--validation",
        action="store_true",
        help=f"score on the validation patients (seed {VALIDATION_SEED}) to make a choice; without it, on "
        f"the "
        f"test patients (seed {TEST_SEED}) of the reported tables, which choose nothing",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config fields set on every learned algorithm that has them (e.g. weight_temp=1 "
        "residual_scale=0.2); a candidate for a choice made with --validation",
    )
    parser.add_argument(
        "--covariates", action="store_true", help="append the covariates to every observation"
    )
    parser.add_argument(
        "--reward-variant",
        default="project",
        choices=list(REWARD_VARIANTS),
        help="train the learned algorithms on a candidate reward (vanco_bench/offline/variants.py)",
    )
    parser.add_argument(
        "--last-dose", action="store_true", help="append the previous dose to every learned observation"
    )
    parser.add_argument(
        "--pk-features",
        action="store_true",
        help="append the Bayesian exposure features (MAP CL, estimated AUC24, AUC-500 dose) to every "
        "learned observation",
    )
    parser.add_argument(
        "--pk-model",
        choices=list(PK_MODELS),
        help="the population prior of every learned algorithm's PK features and exposure reward: "
        "published (Goti 2018) or local (refitted to the dataset's levels); default: the data preset's",
    )
    parser.add_argument(
        "--data-preset",
        metavar="PRESET",
        help="train every learned algorithm on the data a preset asks for (its data.covariates, last_dose, "
        "pk_features, pk_model and an 'exposure' reward; default: the default preset's, the residual "
        "preset's with --quick), seven_features for the seven-feature observation and trough reward; "
        "the flags above add to it. The seed and base rows always train on their own preset's data",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="no training: aggregate the results.json (or results.partial.json) of earlier runs in --out",
    )
    parser.add_argument(
        "--ope-seeds",
        type=int,
        help="seeds per cell that also get FQE/WIS/WDR (0 = none; default 1, quick 0)",
    )
    parser.add_argument("--ope-steps", type=int, help="FQE gradient steps (default 3000, quick 1000)")
    add_world_arguments(parser)
    parser.add_argument(
        "--worlds",
        nargs="+",
        choices=sorted(SCENARIOS),
        metavar="WORLD",
        help="run the grid in each of these worlds (vanco_pk.scenario.WORLD_PANEL: "
        f"{' '.join(WORLD_PANEL)}) instead of --scenario's; panel.md gives the headline per world",
    )
    parser.add_argument(
        "--protocol",
        default="world",
        choices=["world", *SAMPLING_PROTOCOLS],
        help="level protocol of every row, learned and reference alike (default: the world's own, "
        "trough_guided in icu)",
    )
    parser.add_argument(
        "--dose-set",
        default="grid",
        choices=list(DOSE_SET_NAMES),
        help="action set of every row: grid (default, the 250 mg grid a pharmacy gives) or continuous "
        "(unrounded; the MIPD rows then dose in 5 mg steps)",
    )
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the simulated cohorts (default 0)")
    parser.add_argument("--backend", choices=["local", "ray"], default="local", help="local processes or Ray")
    parser.add_argument("--workers", type=int, help="parallel workers (default: the machine's CPUs)")
    parser.add_argument("--ray-address", help="a running Ray cluster (default: start a local one)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="run the tuning grid (expectile x temperature x lr) for VancoIQL in Ray Tune instead",
    )
    parser.add_argument(
        "--tune-storage",
        metavar="PATH_OR_URI",
        help="where Ray Tune stores the sweep: a folder or s3://, gs:// ... (default: OUT/tune)",
    )


def _hidden(text: str) -> tuple[int, ...]:
    try:
        units = tuple(int(u) for u in text.split(","))
    except ValueError:
        raise ValueError(f"--hidden {text!r}: give layer sizes separated by commas, e.g. 32,32") from None
    if not units or min(units) < 1:
        raise ValueError(f"--hidden {text!r}: layer sizes must be positive integers")
    return units


def data_variant(args: argparse.Namespace) -> dict[str, object]:
    """The training data of every learned algorithm: the flags, plus a preset's data section
    (``--data-preset``; default the default preset's, the residual preset's with ``--quick``)."""
    name = getattr(args, "data_preset", None)
    if name is None:
        name = (QUICK if getattr(args, "quick", False) else FULL)["data_preset"]
    return preset_variant(
        name,
        covariates=args.covariates,
        reward_variant=args.reward_variant,
        last_dose=args.last_dose,
        pk_features=getattr(args, "pk_features", False),
        pk_model=getattr(args, "pk_model", None),
    )


def preset_variant(
    name: str | None,
    covariates: bool = False,
    reward_variant: str = "project",
    last_dose: bool = False,
    pk_features: bool = False,
    pk_model: str | None = None,
) -> dict[str, object]:
    """:class:`CellTask`'s data fields for preset ``name``'s data (None: the flags alone), with the
    flags added to it; ``pk_model`` (``published`` or ``local``) overrides the preset's prior.

    Raises
    ------
    ValueError
        ``reward_variant`` is a trough candidate and the preset trains on the ``exposure`` reward.
    """
    variant: dict[str, object] = {
        "covariates": covariates,
        "reward_variant": reward_variant,
        "last_dose": last_dose,
        "pk_features": pk_features,
        "pk_model": pk_model or "published",
    }
    if name:
        from vanco_offline.configs import load_preset

        data = load_preset(name).data
        variant["covariates"] = variant["covariates"] or bool(data.covariates)
        variant["last_dose"] = variant["last_dose"] or data.last_dose
        variant["pk_features"] = variant["pk_features"] or data.pk_features
        if pk_model is None:
            variant["pk_model"] = data.pk_model
        if data.reward == "exposure":
            if reward_variant != "project" and not reward_variant.startswith("exposure"):
                raise ValueError(
                    f"--data-preset {name} trains on the 'exposure' reward; --reward-variant "
                    f"{reward_variant} asks for another (add --data-preset seven_features to try a "
                    "candidate reward on the seven-feature observation)"
                )
            # An exposure-* candidate keeps the preset's observation and changes the AUC term.
            if not reward_variant.startswith("exposure-"):
                variant["reward_variant"] = "exposure"
    return variant


def build_tasks(args: argparse.Namespace) -> list[CellTask]:
    """The grid's cells, in report order: dataset by dataset, algorithm by algorithm, seed by seed."""
    size = QUICK if args.quick else FULL
    n_seeds = size["seeds"] if args.seeds is None else args.seeds
    ope_seeds = size["ope_seeds"] if args.ope_seeds is None else args.ope_seeds
    if n_seeds < 1:
        raise ValueError(f"--seeds {n_seeds}: give at least 1 (the reported tables use 5)")
    if ope_seeds < 0:
        raise ValueError(f"--ope-seeds {ope_seeds} must be >= 0")
    datasets = args.datasets or size["datasets"]
    sizes = args.sizes or size["sizes"]
    algos = args.algos or size.get("algos") or [*ALGORITHMS, *REFERENCE_POLICIES]
    common = {
        "n_steps": args.steps or size["steps"],
        "batch_size": args.batch_size,
        "hidden_units": _hidden(args.hidden),
        "eval_patients": args.eval_patients or size["eval_patients"],
        "ope_steps": args.ope_steps or size["ope_steps"],
    }
    variant = data_variant(args)
    seed_of_patients = VALIDATION_SEED if getattr(args, "validation", False) else TEST_SEED
    overrides = _overrides(getattr(args, "set", []))
    world = world_of(args)
    worlds = getattr(args, "worlds", None) or [world["scenario"]]
    tasks = []
    for name, size_name, scenario in itertools.product(datasets, sizes, worlds):
        spec = DatasetSettings.make(name, size_name, seed=args.data_seed, **{**world, "scenario": scenario})
        for algo in algos:
            # A deterministic reference policy gives the same doses for every seed: one cell.
            for seed in range(1 if _deterministic(algo) else n_seeds):
                # Reference policies carry the variant too: their OPE runs on the learned
                # rows' data and reward (their rollouts do not use it). The seed and base
                # rows keep their presets' observation and reward, whatever the run's.
                data = {} if algo in SEED_ROWS else variant
                fields = _fields_of(algo, overrides)
                tasks.append(
                    CellTask(
                        spec,
                        algo,
                        seed,
                        ope=seed < ope_seeds,
                        eval_seed=seed_of_patients,
                        overrides=fields,
                        protocol=getattr(args, "protocol", "world"),
                        dose_set=getattr(args, "dose_set", "grid"),
                        **common,
                        **data,
                    )
                )
    if overrides and not any(t.overrides for t in tasks):
        raise ValueError(f"--set {sorted(overrides)}: no chosen learned algorithm has these config fields")
    return tasks


def _deterministic(algo: str) -> bool:
    """Whether ``algo`` is a reference policy that doses without random draws."""
    if algo in ALGORITHMS:
        return False
    from vanco_pk.policies import POLICIES

    name = "mipd" if algo.startswith("mipd") else algo
    return bool(POLICIES[name].deterministic)


def _overrides(items: list[str]) -> dict[str, object]:
    """``["weight_temp=0.5", "n_critics=4", "expectile=0.8"]`` -> ``{"weight_temp": 0.5, "n_critics": 4,
    "expectile": 0.8}``."""
    out: dict[str, object] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--set {item!r}: give KEY=VALUE, e.g. weight_temp=1")
        for kind in (int, float, str):
            try:
                out[key] = kind(text)
                break
            except ValueError:
                continue
    return out


def _fields_of(algo: str, overrides: dict[str, object]) -> dict[str, object]:
    """The overrides that are fields of ``algo``'s config (none for reference policies)."""
    if not overrides or algo not in ALGORITHMS:
        return {}
    from vanco_bench.offline.grid import config_class

    names = {f.name for f in dataclasses.fields(config_class(ALGORITHMS[algo]))}
    return {k: v for k, v in overrides.items() if k in names}


def run(args: argparse.Namespace) -> int:
    if args.tune:
        return _run_tune(args)
    if args.merge:
        return _merge(args)
    from vanco_bench.offline.report import results_to_json
    from vanco_bench.offline.runner import run_grid

    tasks = build_tasks(args)
    start = time.perf_counter()
    print(f"offline benchmark: {len(tasks)} cells on the {args.backend} backend", file=sys.stderr)

    args.out.mkdir(parents=True, exist_ok=True)
    finished = []

    def progress(result, done: int, total: int) -> None:
        # A long grid keeps what it has: --merge can aggregate this file if the run is stopped.
        finished.append(result)
        (args.out / "results.partial.json").write_text(json.dumps(results_to_json(finished)))
        print(
            f"  [{done}/{total}] {result.dataset} {result.algo} seed {result.seed}: "
            f"attainment {result.scores['attainment']:.1%} ({time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
        )

    results = run_grid(
        tasks,
        backend=args.backend,
        workers=args.workers,
        ray_address=args.ray_address,
        progress=progress,
        seeds_together=True,
    )
    wall = time.perf_counter() - start
    t0 = tasks[0]
    header = (
        f"{len(tasks)} cells, {t0.n_steps} steps, batch {t0.batch_size}, hidden {list(t0.hidden_units)}, "
        f"{t0.eval_patients} {'validation' if t0.eval_seed == VALIDATION_SEED else 'test'} patients "
        f"(seed {t0.eval_seed}), {_describe(tasks)}training data "
        f"{next((t.variant for t in tasks if t.learned and t.variant), 'as the project converts it')}, "
        f"backend {args.backend}, wall time {wall:.0f} s"
    )
    _write_report(results, args.out, header)
    (args.out / "results.partial.json").unlink(missing_ok=True)
    return 0


def _describe(tasks: list[CellTask]) -> str:
    sets = sorted({f"{k}={v}" for t in tasks for k, v in t.overrides.items()})
    return f"config fields set {', '.join(sets)}, " if sets else ""


def _write_report(results: list, out: Path, header: str) -> None:
    """Aggregate the cells and write ``results.json``, ``table.md`` (table and verdicts) and the plot."""
    from vanco_bench.offline.report import (
        aggregate,
        format_table,
        ope_summary,
        plot,
        results_to_json,
    )
    from vanco_bench.offline.verdict import headline, panel_table, table_conditions, verdict_lines

    rows = aggregate(results)
    heads = [h for algo in VERDICT_ROWS for h in headline(results, algo)]
    lines = verdict_lines(heads) + ope_summary(rows)
    if any(r.algo == "oracle" for r in rows):
        lines.append(ORACLE_NOTE)
    conditions = f"Every row on the same test patients, {table_conditions(results)}."
    text = (
        f"{header}\n\n{conditions}\n\n{format_table(rows)}\n\n"
        + "\n".join(f"- {line}" for line in lines)
        + "\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results_to_json(results), indent=1))
    (out / "table.md").write_text(text)
    written = [out / "results.json", out / "table.md"]
    if heads:
        panel = f"{header}\n\n{conditions}\n\n{panel_table(heads)}\n"
        (out / "panel.md").write_text(panel)
        written.append(out / "panel.md")
    figure = plot(rows, out / "attainment.png")
    print(text)
    print(f"wrote {', '.join(map(str, written))}, {figure}")


def _merge(args: argparse.Namespace) -> int:
    from vanco_bench.offline.cell import CellResult
    from vanco_bench.offline.report import name_and_variant

    results: list[CellResult] = []
    seen: set[tuple[str, str, int]] = set()
    for folder in args.merge:
        path = folder / "results.json"
        if not path.exists() and (folder / "results.partial.json").exists():
            path = folder / "results.partial.json"  # a run that was stopped: its finished cells
        try:
            cells = json.loads(path.read_text())
            loaded = [CellResult(**cell) for cell in cells]
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{path}: not a results.json of bench offline ({exc})") from None
        for cell in loaded:
            key = (cell.dataset, cell.algo, cell.seed)
            if key in seen:
                raise ValueError(
                    f"{path}: cell {key} is also in an earlier folder; merge runs of different cells only"
                )
            seen.add(key)
            results.append(cell)
    order = {name: i for i, name in enumerate(dict.fromkeys(c.dataset for c in results))}
    canonical = {name: i for i, name in enumerate([*ALGORITHMS, *REFERENCE_POLICIES])}
    # Dataset by dataset, algorithms in the grid's order, data variants after their algorithm.
    results.sort(key=lambda c: (order[c.dataset], canonical[name_and_variant(c.algo)[0]], c.algo, c.seed))
    _write_report(results, args.out, f"{len(results)} cells merged from {', '.join(map(str, args.merge))}")
    return 0


def _run_tune(args: argparse.Namespace) -> int:
    from vanco_bench.offline.runner import TUNE_SPACE, tune_sweep

    size = QUICK if args.quick else FULL
    algos = args.algos or ["VancoIQL"]
    if len(algos) != 1:
        raise ValueError(f"--tune sweeps one VancoIQL algorithm; got --algos {algos}")
    dataset = (args.datasets or ["medium"])[0]
    size_name = (args.sizes or ["small"])[0]
    task = CellTask(
        DatasetSettings.make(dataset, size_name, seed=args.data_seed, **world_of(args)),
        algos[0],
        0,
        n_steps=args.steps or size["steps"],
        batch_size=args.batch_size,
        hidden_units=_hidden(args.hidden),
        eval_patients=args.eval_patients or size["eval_patients"],
        eval_seed=TUNE_EVAL_SEED,
        **data_variant(args),
    )
    start = time.perf_counter()
    storage = args.tune_storage or (args.out / "tune").resolve()
    rows = tune_sweep(
        task,
        TUNE_SPACE,
        seeds=range(FULL["seeds"] if args.seeds is None else args.seeds),
        workers=args.workers,
        ray_address=args.ray_address,
        storage_path=str(storage),
    )
    wall = time.perf_counter() - start
    from vanco_bench.offline.report import iqm_interval

    groups: dict[tuple[float, float, float], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["expectile"], row["weight_temp"], row["learning_rate"]), []).append(row)
    lines = [
        f"Ray Tune sweep of {algos[0]} on {dataset}-{size_name}: {len(rows)} trials, {task.n_steps} steps, "
        f"{task.eval_patients} validation patients, wall time {wall:.0f} s",
        "",
        "| expectile | beta | lr | seeds | attainment IQM [95% CI] | AKI rate | return |",
        "|---|---|---|---|---|---|---|",
    ]
    for (tau, beta, lr), trials in sorted(groups.items(), key=lambda kv: -_iqm(kv[1], "attainment")):
        att = iqm_interval([t["attainment"] for t in trials])
        lines.append(
            f"| {tau:g} | {beta:g} | {lr:g} | {len(trials)} | {att[0]:.1%} [{att[1]:.1%}, {att[2]:.1%}] | "
            f"{_iqm(trials, 'aki_rate'):.1%} | {_iqm(trials, 'return_'):.2f} |"
        )
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune.md").write_text(text)
    (args.out / "tune.json").write_text(json.dumps(rows, indent=1))
    print(text)
    print(f"wrote {args.out / 'tune.md'}, {args.out / 'tune.json'}")
    return 0


def _iqm(trials: list[dict], key: str) -> float:
    from vanco_bench.offline.report import iqm_interval

    return iqm_interval([t[key] for t in trials], reps=1)[0]
