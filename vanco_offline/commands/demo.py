"""``vanco-offline demo``: the whole pipeline on the built-in synthetic cohort.

Generate a cohort dosed by the clinician policy in the simulator, convert it, train a preset
(``residual`` by default: VancoIQL centred on the Bayesian dose of a PK model refitted to the
cohort's own levels), estimate its value off-policy (FQE, the PK digital twins, weighted IS,
weighted doubly robust, with bootstrap intervals, and the twins' paired difference to MIPD on
the refitted prior) beside the simulator's ground truth, roll it out on
new simulated patients beside clinician, MIPD and oracle dosing, print one summary table and
write the plots. Everything is seeded: the same command gives the same numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from datetime import datetime
from pathlib import Path
from typing import Any

#: Stays the twins' prior is refitted on (a population model's few parameters need a few hundred).
_TWIN_FIT_STAYS = 300


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--patients", type=int, default=500, help="stays in the training cohort (default 500)"
    )
    parser.add_argument(
        "--preset",
        default="residual",
        help="the training preset (default residual; see `vanco-offline train`)",
    )
    parser.add_argument("--steps", type=int, help="gradient steps (default: the preset's)")
    parser.add_argument("--eval-patients", type=int, default=300, help="new simulated patients per policy")
    parser.add_argument("--fqe-steps", type=int, default=4000, help="FQE gradient steps (default 4000)")
    parser.add_argument(
        "--twin-prior",
        choices=("band", "published"),
        default="band",
        help="the PK twins' prior: Goti 2018 refitted to the cohort and spread over the refit's band "
        "(default), or Goti 2018 as published (skips the refit)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run folder (default d3rlpy_logs/demo_<timestamp>)")
    parser.add_argument("--no-plots", action="store_true")


def run(args: argparse.Namespace) -> int:
    for name in ("patients", "steps", "eval_patients", "fqe_steps"):
        minimum = 2 if name in ("patients", "eval_patients") else 1
        if getattr(args, name) is not None and getattr(args, name) < minimum:
            raise ValueError(
                f"--{name.replace('_', '-')} must be at least {minimum}, got {getattr(args, name)}"
            )
    from vanco_pk.targets import AUC24_LOG_MIDPOINT

    from vanco_offline.configs import load_preset
    from vanco_offline.data.cohort import BUILTIN_WORLD, builtin_cohort
    from vanco_offline.plots import write_plots
    from vanco_offline.progress import quiet_d3rlpy, show_progress
    from vanco_offline.rollout import EvalPatients, algo_actor, reference_actor, rollout
    from vanco_offline.training import train

    quiet_d3rlpy()
    started = time.perf_counter()
    out = Path(args.out) if args.out else Path("d3rlpy_logs") / f"demo_{datetime.now():%Y%m%d%H%M%S}"

    preset = load_preset(args.preset)  # an unknown preset fails before any work
    print(f"1/5 simulating {args.patients} ICU stays dosed by the clinician policy ...", flush=True)
    table = builtin_cohort(args.patients, seed=args.seed)
    preset = dataclasses.replace(preset, training=dataclasses.replace(preset.training, seed=args.seed))
    steps = preset.training.n_steps if args.steps is None else args.steps
    local = " on a PK model refitted to the cohort's levels" if preset.data.pk_model == "local" else ""
    print(f"2/5 training {preset.algo} (preset '{preset.name}', {steps} steps){local} ...", flush=True)
    result = train(
        preset,
        table,
        data_source="built-in synthetic cohort",
        n_steps=steps,
        experiment=out.name,
        log_root=out.parent,
        show_progress=show_progress(),  # d3rlpy's bar, on a terminal only
    )
    algo = result.model.algo

    print(
        "3/5 off-policy evaluation on the held-out stays (FQE, PK twins, WIS, WDR) and the simulator's "
        "truth ...",
        flush=True,
    )
    ope = off_policy(result, table, seed=args.seed, fqe_steps=args.fqe_steps, twin_prior=args.twin_prior)

    print(
        f"4/5 rolling every policy out on the same {args.eval_patients} new simulated patients ...",
        flush=True,
    )
    # Patients of their own: disjoint from the benchmark's test and validation patients.
    patients = EvalPatients(
        n_patients=args.eval_patients, seed=DEMO_EVAL_SEED + args.seed, world=BUILTIN_WORLD
    )
    actors = {
        f"{preset.name} (learned)": algo_actor(
            algo, result.model.observation_names, pk_model=result.model.population_model
        ),
        "clinician (data)": reference_actor("clinician", seed=args.seed),
        # The best baseline a hospital can run: the same refitted prior, no learning.
        "MIPD on the refitted prior, AUC 490": reference_actor(
            "mipd",
            seed=args.seed,
            model=result.model.population_model,
            target_auc=AUC24_LOG_MIDPOINT,
        ),
        "MIPD (Bayesian, published prior)": reference_actor("mipd", seed=args.seed),
        "oracle (true PK)": reference_actor("oracle", seed=args.seed),
    }
    scores = {name: rollout(act, patients, reset) for name, (act, reset) in actors.items()}

    written = []
    if not args.no_plots:
        print("5/5 writing plots ...", flush=True)
        written = write_plots(result.model, out, log_dir=result.log_dir, table=table)

    print()
    print(_summary(scores))
    print()
    print(ope)
    print()
    print(f"model    {result.model_path}")
    for path in written:
        print(f"plot     {path}")
    print(f"time     {time.perf_counter() - started:.0f} s")
    return 0


#: Seed of the demo's evaluation patients (plus ``--seed``): never a benchmark's test or
#: validation seed (:mod:`vanco_bench.offline.grid`).
DEMO_EVAL_SEED = 3 * 10**9


def _summary(scores: dict) -> str:
    header = (
        "| policy | AUC24 400-600 (per decision) | in target by 48 h | time to target (h) | AKI | "
        "return | doses at 3 g |"
    )
    lines = [header, "|---|---|---|---|---|---|---|"]
    for name, s in scores.items():
        lines.append(
            f"| {name} | {s.attainment:.1%} | {s.target_48h:.1%} | {s.time_to_target_h:.0f} | "
            f"{s.aki_rate:.1%} | {s.return_:+.2f} | {s.dose_at_max:.1%} |"
        )
    return "\n".join(lines)


def off_policy(
    result: Any,
    table: Any,
    seed: int,
    fqe_steps: int,
    truth_patients: int = 1000,
    estimators: tuple[str, ...] = ("fqe", "twin", "wis", "wdr"),
    twin_prior: Any = "band",
) -> Any:
    """The demo's off-policy evaluation of its learned policy on the held-out stays.

    FQE, the PK digital twins, WIS and WDR with 500 bootstrap resamples, beside the simulator's
    truth on ``truth_patients`` fresh patients of the cohort's world with the reward the model
    was trained on. The twins' prior is Goti 2018 refitted to the cohort's levels, spread over
    the refit's band (``twin (band)``, the estimator ``bench ope --worlds`` measured on worlds
    it was not tuned on). ``twin_prior``: ``"band"`` (refitted here, on at most 300 of
    ``table``'s stays), the refitted model when already fitted, or ``"published"`` for the
    Goti 2018 twin. With the twin, the report also holds the paired difference of the learned
    policy to MIPD on the twins' prior (value and attainment, from the same twins and
    resamples), with its true difference. Every interval the report prints carries its
    measured coverage. Each estimate depends on ``seed`` only, not on which other
    ``estimators`` run.
    """
    from vanco_pk.pk import GOTI_2018
    from vanco_pk.policies import make_policy

    from vanco_offline.data.cohort import BUILTIN_WORLD
    from vanco_offline.ope import (
        FQESettings,
        IntervalSettings,
        SimulatorTruth,
        TwinSettings,
        evaluate,
        local_prior,
    )

    algo = result.model.algo
    # The truth scores the reward the model was trained and evaluated on.
    world = dataclasses.replace(BUILTIN_WORLD, reward=result.model.conversion.reward or "default")
    n_bootstrap = 500
    twin, references = None, {}
    if "twin" in estimators:
        prior = GOTI_2018
        if twin_prior == "band":
            prior = local_prior(table, seed=seed, max_stays=_TWIN_FIT_STAYS)
        elif twin_prior != "published":  # a GotiModel never equals a string
            prior = twin_prior
        refitted = prior != GOTI_2018
        # 5 twins per stay, as in the bench ope --worlds run that measured the twin's coverage.
        twin = TwinSettings(
            world=world,
            seed=seed,
            model=prior,
            refitted_from=GOTI_2018 if refitted else None,
            n_draws=5,
            n_bootstrap=n_bootstrap,
        )
        references = {"MIPD (refit)" if refitted else "MIPD": make_policy("mipd", model=prior)}
    return evaluate(
        algo,
        result.valid,
        gamma=algo.config.gamma,
        estimators=estimators,
        table=table,
        fqe=FQESettings(n_steps=fqe_steps, seed=seed),
        twin=twin,
        truth=SimulatorTruth(n_patients=truth_patients, seed=10**6 + seed, world=world),
        intervals=IntervalSettings(n_bootstrap=n_bootstrap),
        references=references,
        seed=seed,
    )
