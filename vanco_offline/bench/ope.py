"""``vanco-offline bench ope``: off-policy evaluation calibrated on the simulator.

A cohort dosed by the clinician policy is the logged data. A panel of policies of clearly
different quality -- reference policies at several noise levels, trained d3rlpy algorithms
at two training budgets, perturbations -- is evaluated on it by every estimator, and each
estimate is compared with the true value of the policy it estimated: its discounted return
on fresh simulated patients of the same population (the greedy policy for ``fqe``, ``lfqe``
and ``twin``; the softened one for the importance-weighted estimators, which cannot
evaluate a greedy policy). The tables printed are (1) each policy's truths and estimates,
(2) per estimator: Spearman rank correlation with the truth, mean absolute relative error,
mean absolute error over the oracle-random gap, regret@1 (true value lost by deploying the
estimator's favourite, as a fraction of the oracle-random gap), the coverage of the truth by
its 95 % interval and, for the twin, the error and coverage of its attainment estimate.
The seed's criterion ``greedy_q`` (a Q-learner's own Q of its greedy action) is scored on
the algorithms that have one. ``(trunc)`` columns truncate the importance weights at
sqrt(n) times each step's mean weight; ``(mu-hat)`` columns use the fitted behaviour model
instead of the logged ``behavior_prob``: what real ICU data would allow. The algorithms
are trained on a second cohort, so that OPE runs on stays they have not seen.

The data's observation and reward are options: by default the seven features and the
covariates with the environment's trough reward (the run of ``docs/ope.md``, "seven
features"); ``--data-preset default`` (or ``--last-dose --pk-features --reward exposure``)
converts both cohorts as the preset's data section says -- the previous dose, the exposure
tracker's features, the ``exposure`` reward -- trains the algorithms on that, and computes
the truth with the environment's same reward, the algorithms fed the same observation online.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from typing import Any

import numpy as np
import torch
from vanco_pk.targets import REWARDS as REWARD_REGISTRY

__all__ = ["add_arguments", "run"]

#: Targets of issue 15 for the best estimator.
TARGET_COVERAGE = 0.85
TARGET_SPEARMAN = 0.9
TARGET_REGRET = 0.05
TARGET_MARE = 0.15
ESTIMATOR_COLUMNS = ("fqe", "lfqe", "twin", "pdis", "wis", "wpdis", "dr", "wdr")


@dataclasses.dataclass(frozen=True)
class Size:
    stays: int
    fqe_steps: int
    train_steps: int
    truth_patients: int
    bootstrap: int
    twin_draws: int = 10


FULL = Size(
    stays=1000, fqe_steps=6000, train_steps=5000, truth_patients=10_000, bootstrap=1000, twin_draws=10
)
QUICK = Size(stays=300, fqe_steps=3000, train_steps=1500, truth_patients=2000, bootstrap=300, twin_draws=5)
REWARDS = tuple(REWARD_REGISTRY)


@dataclasses.dataclass(frozen=True)
class DataChoice:
    """How both cohorts are converted (``vanco_offline.data.convert`` options) and the truth's reward.

    ``reward=None`` keeps the table's ``reward`` column (the environment's default reward,
    written by ``generate_cohort``) and the environment's default reward for the truth.
    """

    covariates: bool = True
    last_dose: bool = False
    pk_features: bool = False
    reward: str | None = None

    def convert_options(self) -> dict[str, Any]:
        return {
            "fill_unmeasured_level": True,
            "covariates": self.covariates,
            "last_dose": self.last_dose,
            "pk_features": self.pk_features,
            "reward": self.reward,
        }

    def env_options(self) -> dict[str, Any]:
        return {} if self.reward is None else {"reward": self.reward}

    def describe(self) -> str:
        parts = ["seven features"]
        if self.covariates:
            parts.append("covariates")
        if self.last_dose:
            parts.append("previous dose")
        if self.pk_features:
            parts.append("PK exposure features")
        if self.reward is None:
            return ", ".join(parts) + "; the table's reward column (the environment's default reward)"
        return ", ".join(parts) + f"; reward {self.reward!r}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes on 2 cores)")
    parser.add_argument("--stays", type=int, help=f"logged stays (default {FULL.stays}, quick {QUICK.stays})")
    parser.add_argument("--fqe-steps", type=int, help=f"FQE gradient steps (default {FULL.fqe_steps})")
    parser.add_argument("--train-steps", type=int, help=f"training steps per algorithm ({FULL.train_steps})")
    parser.add_argument(
        "--truth-patients", type=int, help=f"simulated patients per true value ({FULL.truth_patients})"
    )
    parser.add_argument("--bootstrap", type=int, help=f"bootstrap resamples ({FULL.bootstrap})")
    parser.add_argument(
        "--twin-draws", type=int, help=f"PK posterior draws (twins) per stay ({FULL.twin_draws})"
    )
    parser.add_argument("--gamma", type=float, default=0.99, help="discount per decision (default 0.99)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cohort, training and FQE")
    parser.add_argument(
        "--epsilon",
        type=float,
        default=0.1,
        help="softening of deterministic policies for importance sampling",
    )
    parser.add_argument(
        "--fqe-history",
        type=int,
        default=1,
        help="steps of history (previous dose, change of every column) in FQE's input (default 1)",
    )
    parser.add_argument(
        "--data-preset",
        metavar="PRESET",
        help="convert the data as a training preset's data section says (covariates, last_dose, "
        "pk_features, reward), e.g. default; its action kind is not used: the panel's algorithms are "
        "discrete. Adds to the flags below",
    )
    parser.add_argument(
        "--last-dose", action="store_true", help="append the previous dose to the observation"
    )
    parser.add_argument(
        "--pk-features",
        action="store_true",
        help="append the exposure tracker's features (MAP CL, estimated AUC24, AUC-500 dose)",
    )
    parser.add_argument(
        "--reward",
        choices=REWARDS,
        help="reward computed by the converter and by the simulator for the truth (default: the table's "
        "reward column, the environment's default reward)",
    )


def data_choice(args: argparse.Namespace) -> DataChoice:
    """The conversion of the run: the flags, plus a preset's data section (ValueError on a conflict)."""
    choice = DataChoice(
        last_dose=bool(getattr(args, "last_dose", False)),
        pk_features=bool(getattr(args, "pk_features", False)),
        reward=getattr(args, "reward", None),
    )
    name = getattr(args, "data_preset", None)
    if not name:
        return choice
    from vanco_offline.configs import load_preset

    data = load_preset(name).data
    if choice.reward is not None and choice.reward != data.reward:
        raise ValueError(
            f"--data-preset {name} converts with the {data.reward!r} reward but --reward {choice.reward} "
            "asks for another: drop one of them"
        )
    return DataChoice(
        covariates=bool(data.covariates),
        last_dose=choice.last_dose or data.last_dose,
        pk_features=choice.pk_features or data.pk_features,
        reward=data.reward,
    )


def _size(args: argparse.Namespace) -> Size:
    base = QUICK if args.quick else FULL
    # `is None`, not `or`: an explicit 0 is an error below, not a silent full-size run.
    size = Size(
        **{
            name: default if getattr(args, name, None) is None else getattr(args, name)
            for name, default in dataclasses.asdict(base).items()
        }
    )
    for name, value in dataclasses.asdict(size).items():
        if value < (1 if name == "twin_draws" else 2):
            raise ValueError(f"--{name.replace('_', '-')} must be at least 2, got {value}")
    if not 0.0 < args.gamma <= 1.0:
        raise ValueError(f"--gamma must be in (0, 1], got {args.gamma}")
    if not 0.0 < args.epsilon < 1.0:
        raise ValueError(f"--epsilon must be in (0, 1), got {args.epsilon}")
    if args.fqe_history < 0:
        raise ValueError(f"--fqe-history must be 0 or more steps, got {args.fqe_history}")
    return size


def _train(size: Size, result: Any, gamma: float, seed: int) -> dict[str, Any]:
    """DiscreteVancoIQL (at the full budget and at a fifth of it), DiscreteCQL, DQN and DiscreteBC
    trained on the clinician's data."""
    import d3rlpy
    from d3rlpy.algos import DiscreteBCConfig, DiscreteCQLConfig, DQNConfig
    from d3rlpy.logging import NoopAdapterFactory
    from d3rlpy.models.encoders import VectorEncoderFactory

    from vanco_offline.algos import DiscreteVancoIQLConfig
    from vanco_offline.data import fit_scalers
    from vanco_offline.ope._threads import single_thread

    scaler = fit_scalers(result).observation_scaler
    encoder = VectorEncoderFactory(hidden_units=[64, 64])
    configs = {
        "DiscreteVancoIQL": DiscreteVancoIQLConfig(
            actor_encoder_factory=encoder,
            critic_encoder_factory=encoder,
            value_encoder_factory=encoder,
            gamma=gamma,
            observation_scaler=scaler,
        ),
        "DiscreteCQL": DiscreteCQLConfig(encoder_factory=encoder, gamma=gamma, observation_scaler=scaler),
        "DQN": DQNConfig(encoder_factory=encoder, gamma=gamma, observation_scaler=scaler),
        "DiscreteBC": DiscreteBCConfig(encoder_factory=encoder, observation_scaler=scaler),
    }
    configs["DiscreteVancoIQL short"] = configs["DiscreteVancoIQL"]
    algos = {}
    for name, config in configs.items():
        d3rlpy.seed(seed)
        algo = config.create()
        steps = max(1, size.train_steps // 5) if name.endswith("short") else size.train_steps
        with single_thread():
            algo.fit(
                result.dataset,
                n_steps=steps,
                n_steps_per_epoch=steps,
                logger_adapter=NoopAdapterFactory(),
                show_progress=False,
            )
        algos[name] = algo
    return algos


def _panel(algos: dict[str, Any]) -> list[tuple[str, Any]]:
    """The calibration panel: reference policies, their perturbations, learned policies.

    A deterministic policy is listed once and evaluated greedy (fqe, lfqe, twin) and softened
    (importance sampling); ``e=0.3`` is a perturbation evaluated as that stochastic policy by all.
    """
    from vanco_pk.policies import ClinicianConfig, make_policy

    from vanco_offline.ope import AlgoPolicy, ReferencePolicy

    careful = {
        f.name: getattr(ClinicianConfig(dose_sd=0.05, miss_prob=0.05, error_prob=0.01), f.name)
        for f in dataclasses.fields(ClinicianConfig)
    }
    sloppy = {
        f.name: getattr(ClinicianConfig(dose_sd=0.3, miss_prob=0.7, error_prob=0.15), f.name)
        for f in dataclasses.fields(ClinicianConfig)
    }
    return [
        ("clinician (logged)", ReferencePolicy(make_policy("clinician"), name="clinician")),
        ("clinician careful", ReferencePolicy(make_policy("clinician", **careful), name="clinician careful")),
        ("clinician sloppy", ReferencePolicy(make_policy("clinician", **sloppy), name="clinician sloppy")),
        ("MIPD", ReferencePolicy(make_policy("mipd"), name="MIPD")),
        ("MIPD e=0.3", ReferencePolicy(make_policy("mipd"), epsilon=0.3, name="MIPD")),
        ("oracle", ReferencePolicy(make_policy("oracle"), name="oracle")),
        ("fixed 1 g", ReferencePolicy(make_policy("fixed"), name="fixed 1 g")),
        ("random", ReferencePolicy(make_policy("random"), name="random")),
        (
            "DiscreteVancoIQL pi",
            AlgoPolicy(algos["DiscreteVancoIQL"], stochastic=True, name="DiscreteVancoIQL"),
        ),
        *((name, AlgoPolicy(algo, name=name)) for name, algo in algos.items()),
    ]


def _variants(report: Any, traj: Any, behavior: Any, gamma: float, counts: np.ndarray) -> dict[str, Any]:
    """WIS/WDR again with the same DR model (refitted per resample): truncated weights, and the
    fitted behaviour model instead of the logged probabilities."""
    from vanco_offline.ope import estimate, importance_weights, percentile_interval

    pmf, model = report.target_pmf, report.model
    target = np.take_along_axis(pmf, traj.actions[..., None], axis=2)[..., 0]
    out = {}
    for suffix, mu, clip in (
        ("trunc", traj.behavior_prob, "sqrt_n"),
        ("mu-hat", behavior.logged(traj), None),
    ):
        weights = importance_weights(target, mu, traj.mask, clip)
        for name in ("wis", "wdr"):
            if name == "wis":
                value = float(estimate(name, weights, traj.rewards, gamma))
                reps = estimate(name, weights, traj.rewards, gamma, counts=counts)
            else:
                value = float(
                    estimate(
                        name, weights, traj.rewards, gamma, q_logged=model.q_logged, v_states=model.v_states
                    )
                )
                reps = np.array(
                    [
                        estimate(
                            name,
                            weights,
                            traj.rewards,
                            gamma,
                            counts=c,
                            q_logged=model.replicate_q_logged[b],
                            v_states=model.replicate_v_states[b],
                        )
                        for b, c in enumerate(counts)
                    ]
                )
            out[f"{name} ({suffix})"] = dataclasses.replace(
                report.estimates[name],
                estimator=f"{name} ({suffix})",
                value=value,
                interval=percentile_interval(reps, 0.95),
                weights=weights.diagnostics(),
            )
    return out


def run(args: argparse.Namespace) -> int:
    size = _size(args)
    choice = data_choice(args)
    import logging

    import structlog

    # d3rlpy logs every fit's parameters and epochs at INFO; the bench prints its own tables.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    warnings.filterwarnings("ignore", module="gym")
    from vanco_pk.policies import make_policy

    from vanco_offline.bench.ope_scores import format_scores, score_estimator
    from vanco_offline.data import convert
    from vanco_offline.data.cohort import generate_cohort
    from vanco_offline.ope import (
        BehaviorSettings,
        FQESettings,
        IntervalSettings,
        ReferencePolicy,
        SimulatorTruth,
        TwinSettings,
        evaluate,
        fit_behavior_model,
        simulate_value,
        to_trajectories,
    )
    from vanco_offline.ope.bootstrap import bootstrap_counts
    from vanco_offline.progress import progress_bar

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    # Algorithms learn from one cohort and are evaluated on another (held-out stays): evaluated
    # on their own training data, FQE credits them with that data's lucky outcomes.
    table = generate_cohort(size.stays, "clinician", seed=args.seed)
    result = convert(table, "discrete", **choice.convert_options())
    training = convert(
        generate_cohort(size.stays, "clinician", seed=args.seed + 1), "discrete", **choice.convert_options()
    )
    traj = to_trajectories(result)
    print(
        f"OPE calibration: {traj.n_stays} held-out clinician stays ({traj.n_transitions} transitions, "
        f"horizon {traj.horizon}), gamma {args.gamma:g}; algorithms trained on another {size.stays} "
        f"stays; FQE {size.fqe_steps} steps, history {args.fqe_history}; {size.twin_draws} PK twins per "
        f"stay; truth from {size.truth_patients} fresh simulated patients per policy; {size.bootstrap} "
        f"bootstrap resamples; importance sampling of a greedy policy softened by {args.epsilon:g}\n"
        f"data: {choice.describe()} ({len(result.observation_names)} observation columns; "
        f"rewards {result.report.reward_source})"
    )
    t0 = time.perf_counter()
    behavior = fit_behavior_model(traj, seed=args.seed)
    print(f"\n{behavior.calibration.summary()}  [{time.perf_counter() - t0:.0f} s]")
    print("reliability (all dose probabilities, out of fold):\n" + behavior.calibration.reliability_table())
    t0 = time.perf_counter()
    algos = _train(size, training, args.gamma, args.seed)
    print(
        f"\ntrained {', '.join(algos)} ({size.train_steps} steps each, 'short' {size.train_steps // 5}) "
        f"[{time.perf_counter() - t0:.0f} s]"
    )

    truth_spec = SimulatorTruth(
        n_patients=size.truth_patients, seed=1_000_000 + args.seed, env_options=choice.env_options()
    )
    fqe = FQESettings(n_steps=size.fqe_steps, history=args.fqe_history, seed=args.seed)
    twin = TwinSettings(env_options=choice.env_options(), n_draws=size.twin_draws, seed=args.seed)
    gap_values = {
        name: simulate_value(ReferencePolicy(make_policy(name)), args.gamma, truth_spec).value
        for name in ("oracle", "random")
    }
    gap = gap_values["oracle"] - gap_values["random"]
    counts = bootstrap_counts(traj.n_stays, size.bootstrap, args.seed)
    rows = []
    truth: dict[str, dict[str, float]] = {}
    estimates: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    attainment: dict[str, dict] = {"true": {}, "est": {}, "int": {}}
    greedy: dict[str, float] = {}
    panel = _panel(algos)
    for label, policy in progress_bar(panel, total=len(panel), desc="policies (OPE + truth)", unit="policy"):
        t0 = time.perf_counter()
        report = evaluate(
            policy,
            result,
            table=table,
            gamma=args.gamma,
            behavior=BehaviorSettings(model=behavior, soften=args.epsilon),
            fqe=fqe,
            twin=twin,
            intervals=IntervalSettings(n_bootstrap=size.bootstrap),
            truth=truth_spec,
            seed=args.seed,
        )
        values = {name: report.estimates[name] for name in ESTIMATOR_COLUMNS}
        values.update(_variants(report, traj, behavior, args.gamma, counts))
        for name, est in values.items():
            true_value = report.truth_softened if est.softened and report.truth_softened else report.truth
            truth.setdefault(name, {})[label] = true_value.value
            estimates.setdefault(name, {})[label] = est.value
            intervals.setdefault(name, {})[label] = (est.interval.low, est.interval.high)
        t = report.twin
        attainment["true"][label] = report.truth.attainment
        attainment["est"][label] = t.attainment
        attainment["int"][label] = (t.attainment_interval.low, t.attainment_interval.high)
        if report.greedy_q is not None:
            greedy[label] = report.greedy_q
        rows.append((label, report, values, time.perf_counter() - t0))
        print(f"  {label}: {time.perf_counter() - t0:.0f} s", flush=True)

    columns = [*ESTIMATOR_COLUMNS, "wis (trunc)", "wdr (trunc)", "wis (mu-hat)", "wdr (mu-hat)"]
    print("\nPer policy: true values (simulator; 'soft' = softened for importance sampling) and estimates")
    header = (
        f"{'policy':<24} {'truth':>13} {'soft':>6} {'att':>5} {'twin att':>8} "
        + " ".join(f"{c:>{max(len(c), 7)}}" for c in columns)
        + f" {'greedy_q':>9} {'ESS %':>6} {'support':>8} {'time':>5}"
    )
    print(header + "\n" + "-" * len(header))
    for label, report, values, seconds in rows:
        t = report.truth
        soft = report.truth_softened.value if report.truth_softened is not None else t.value
        ess = report.estimates["pdis"].weights.ess_fraction
        gq = f"{report.greedy_q:9.2f}" if report.greedy_q is not None else f"{'-':>9}"
        print(
            f"{label:<24} {t.value:7.2f}+-{t.std_error:4.2f} {soft:6.2f} {t.attainment:5.1%} "
            f"{report.twin.attainment:8.1%} "
            + " ".join(f"{values[c].value:{max(len(c), 7)}.2f}" for c in columns)
            + f" {gq} {ess:6.1%} {report.support.conditional_mass:8.1%} {seconds:4.0f}s"
        )
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
            (attainment["true"], attainment["est"], attainment["int"]) if name == "twin" else None,
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
    print(
        "{" + ", ".join(f"{s.estimator!r}: {s.coverage:.2f}" for s in scores if s.coverage is not None) + "}"
    )
    print()
    for score in scores:
        if score.estimator in ("fqe", "lfqe", "twin", "wdr"):
            checks = (
                ("coverage", score.coverage or 0.0, TARGET_COVERAGE, ">="),
                ("Spearman", score.spearman, TARGET_SPEARMAN, ">="),
                ("regret@1", score.regret_at_1, TARGET_REGRET, "<="),
                ("MARE", score.mean_abs_relative_error, TARGET_MARE, "<="),
            )
            parts = []
            ok = True
            for what, value, target, op in checks:
                met = value >= target if op == ">=" else value <= target
                ok &= met
                shown = f"{value:.0%}" if what in ("coverage", "regret@1", "MARE") else f"{value:.2f}"
                goal = f"{target:.0%}" if what in ("coverage", "regret@1", "MARE") else f"{target:g}"
                parts.append(f"{what} {shown} ({op} {goal}{'' if met else ', missed'})")
            print(f"target {score.estimator}: " + ", ".join(parts) + f": {'MET' if ok else 'MISSED'}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0
