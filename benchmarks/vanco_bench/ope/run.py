"""The run of ``vanco-offline bench ope``: cohorts, panel, every estimator, truth, calibration."""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import torch

from vanco_bench.ope.options import RunSettings, describe, parse
from vanco_bench.ope.panel import panel as calibration_panel
from vanco_bench.ope.panel import train
from vanco_bench.ope.scores import format_scores, score_estimator
from vanco_bench.ope.tables import policy_table, target_lines, twin_table
from vanco_bench.ope.variants import VARIANT_COLUMNS, variants
from vanco_bench.ope.worlds import worlds_options

__all__ = ["ESTIMATOR_COLUMNS", "run"]

ESTIMATOR_COLUMNS = (
    "fqe",
    "lfqe",
    "twin",
    "twin (local)",
    "twin (band)",
    "pdis",
    "wis",
    "wpdis",
    "dr",
    "wdr",
)
#: The estimators whose attainment is scored too.
TWINS = ("twin", "twin (local)", "twin (band)")


def run(args: argparse.Namespace) -> int:
    opts = parse(args)
    worlds = worlds_options(args)
    import logging

    import structlog

    # d3rlpy logs every fit's parameters and epochs at INFO; the bench prints its own tables.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    warnings.filterwarnings("ignore", module="gym")
    if worlds is not None:
        from vanco_bench.ope.worlds import run_worlds

        return run_worlds(opts, worlds)
    return _run(opts)


def _run(opts: RunSettings) -> int:
    from vanco_pk.pk import GOTI_2018
    from vanco_pk.policies import make_policy

    from vanco_offline.data import convert_with
    from vanco_offline.data.cohort import generate_cohort
    from vanco_offline.ope import (
        BehaviorSettings,
        FQESettings,
        IntervalSettings,
        SimulatorTruth,
        TwinSettings,
        evaluate,
        local_prior,
        simulate_value,
        twin_estimate,
    )
    from vanco_offline.ope.behavior import fit_behavior_model
    from vanco_offline.ope.bootstrap import bootstrap_counts
    from vanco_offline.ope.policy import ReferencePolicy, as_policy
    from vanco_offline.ope.report import Estimate
    from vanco_offline.ope.trajectories import to_trajectories
    from vanco_offline.ope.twin import from_logs
    from vanco_offline.progress import progress_bar

    size, seed, gamma = opts.size, opts.seed, opts.gamma
    start = time.perf_counter()
    torch.manual_seed(seed)
    # Algorithms learn from one cohort and are evaluated on another (held-out stays): evaluated
    # on their own training data, FQE credits them with that data's lucky outcomes.
    table = generate_cohort(size.stays, "clinician", seed=seed, scenario=opts.scenario)
    result = convert_with(table, opts.conversion)
    training = convert_with(
        generate_cohort(size.stays, "clinician", seed=seed + 1, scenario=opts.scenario), opts.conversion
    )
    traj = to_trajectories(result)
    print(
        f"OPE calibration in the {opts.scenario!r} world: {traj.n_stays} held-out clinician stays "
        f"({traj.n_transitions} transitions, horizon {traj.horizon}), gamma {gamma:g}; algorithms trained "
        f"on another {size.stays} stays; FQE {size.fqe_steps} steps, history {opts.fqe_history}; "
        f"{size.twin_draws} PK twins per stay (Goti 2018 prior, and refitted to the logged levels); truth "
        f"from {size.truth_patients} "
        f"fresh simulated patients per policy; {size.bootstrap} bootstrap resamples; importance sampling "
        f"of a greedy policy softened by {opts.epsilon:g}\n"
        f"data: {describe(opts.conversion)} ({len(result.observation_names)} observation columns; "
        f"rewards {result.report.reward_source})"
    )
    t0 = time.perf_counter()
    behavior = fit_behavior_model(traj, seed=seed)
    print(f"\n{behavior.calibration.summary()}  [{time.perf_counter() - t0:.0f} s]")
    print("reliability (all dose probabilities, out of fold):\n" + behavior.calibration.reliability_table())
    t0 = time.perf_counter()
    local = local_prior(table, seed=seed)
    fitted = ", ".join(
        f"{k} {getattr(local, k):.4g} ({getattr(GOTI_2018, k):.4g})"
        for k in ("cl", "v1", "v2", "omega2_cl", "omega2_v1", "prop_error", "crcl_exponent")
    )
    print(
        f"\n'twin (local)' prior, Goti 2018 refitted to the logged levels (published values in brackets): "
        f"{fitted} [{time.perf_counter() - t0:.0f} s]"
    )
    t0 = time.perf_counter()
    algos = train(size, training, gamma, seed)
    print(
        f"\ntrained {', '.join(algos)} ({size.train_steps} steps each, 'short' {size.train_steps // 5}) "
        f"[{time.perf_counter() - t0:.0f} s]"
    )

    world = opts.world()
    truth_spec = SimulatorTruth(n_patients=size.truth_patients, seed=1_000_000 + seed, world=world)
    fqe = FQESettings(n_steps=size.fqe_steps, history=opts.fqe_history, seed=seed)
    twin = TwinSettings(world=world, n_draws=size.twin_draws, seed=seed, n_bootstrap=size.bootstrap)
    twin_local = dataclasses.replace(twin, model=local)
    # Calibrated once per twin model: it depends on the stays and the model, not the policy.
    t0 = time.perf_counter()
    twin, twin_local = (from_logs(s, table, traj.stay_ids) for s in (twin, twin_local))
    print(
        f"\ntwins' kidney: 'twin' {twin.aki.describe()}; 'twin (local)' and 'twin (band)' "
        f"x{twin_local.aki.multiplier:.2f} [{time.perf_counter() - t0:.0f} s]"
    )
    twin_band = dataclasses.replace(twin_local, refitted_from=GOTI_2018)
    gap_values = {
        name: simulate_value(ReferencePolicy(make_policy(name)), gamma, truth_spec).value
        for name in ("oracle", "random")
    }
    gap = gap_values["oracle"] - gap_values["random"]
    counts = bootstrap_counts(traj.n_stays, size.bootstrap, seed)
    rows = []
    truth: dict[str, dict[str, float]] = {}
    estimates: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    attainment: dict[str, dict[str, dict]] = {name: {"true": {}, "est": {}, "int": {}} for name in TWINS}
    greedy: dict[str, float] = {}
    policies = calibration_panel(algos)
    for label, policy in progress_bar(
        policies, total=len(policies), desc="policies (OPE + truth)", unit="policy"
    ):
        t0 = time.perf_counter()
        report = evaluate(
            policy,
            result,
            table=table,
            gamma=gamma,
            behavior=BehaviorSettings(model=behavior, soften=opts.epsilon),
            fqe=fqe,
            twin=twin,
            intervals=IntervalSettings(n_bootstrap=size.bootstrap),
            truth=truth_spec,
            seed=seed,
        )
        twins = {"twin": report.twin}
        for name, settings in (("twin (local)", twin_local), ("twin (band)", twin_band)):
            twins[name] = twin_estimate(
                as_policy(policy),
                table,
                traj.stay_ids,
                gamma,
                settings,
                result.observation_names,
                traj.horizon,
            )
        values = {name: report.estimates[name] for name in ESTIMATOR_COLUMNS if name in report.estimates}
        for name in TWINS[1:]:
            values[name] = Estimate(name, twins[name].value, twins[name].interval)
        values.update(variants(report, traj, behavior, gamma, counts))
        for name, est in values.items():
            true_value = report.truth_softened if est.softened and report.truth_softened else report.truth
            truth.setdefault(name, {})[label] = true_value.value
            estimates.setdefault(name, {})[label] = est.value
            intervals.setdefault(name, {})[label] = (est.interval.low, est.interval.high)
        for name, t in twins.items():
            attainment[name]["true"][label] = report.truth.attainment
            attainment[name]["est"][label] = t.attainment
            attainment[name]["int"][label] = (t.attainment_interval.low, t.attainment_interval.high)
        if report.greedy_q is not None:
            greedy[label] = report.greedy_q
        rows.append((label, report, values, twins, time.perf_counter() - t0))
        print(f"  {label}: {time.perf_counter() - t0:.0f} s", flush=True)

    columns = [*ESTIMATOR_COLUMNS, *VARIANT_COLUMNS]
    print("\nPer policy: true values (simulator; 'soft' = softened for importance sampling) and estimates")
    print(policy_table(rows, columns))
    print("\nThe twins' 95 % intervals (* = misses the truth)")
    print(twin_table(rows))
    print(
        f"\noracle {gap_values['oracle']:.2f}, random {gap_values['random']:.2f}: "
        f"oracle-random gap {gap:.2f} (the unit of regret@1 and MAE/gap)"
    )
    scores = [
        score_estimator(
            name,
            truth[name],
            estimates[name],
            gap,
            intervals[name],
            (attainment[name]["true"], attainment[name]["est"], attainment[name]["int"])
            if name in TWINS
            else None,
        )
        for name in columns
    ]
    greedy_truth = {label: truth["fqe"][label] for label in greedy}
    greedy_score = score_estimator("greedy_q*", greedy_truth, greedy, gap) if len(greedy) >= 2 else None
    print(
        "\nCalibration over the panel (95 % intervals; each estimator against the truth of the policy it "
        "estimated; attainment = fraction of intervals with true AUC24 in 400-600)"
    )
    print(format_scores([*scores, *([greedy_score] if greedy_score else [])]))
    if greedy_score:
        print(
            f"* greedy_q: only the {greedy_score.n_policies} Q-learning algorithms have one; "
            "regret@1 among them"
        )
    print("\nMeasured coverage of the 95 % intervals (vanco_offline.ope.report.MEASURED_COVERAGE):")
    covered = {s.estimator: s.coverage for s in scores if s.coverage is not None}
    print("{" + ", ".join(f"{name!r}: {value:.2f}" for name, value in covered.items()) + "}")
    print("\n" + "\n".join(target_lines(scores)))
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0
