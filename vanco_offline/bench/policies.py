"""``vanco-offline bench policies``: the reference dosing policies on the same simulated patients.

Every policy doses, in the world ``--scenario`` (default ``icu``; ``ideal`` is the original
one), the same ``--patients`` (default 500) ICU patients -- same covariates, PK,
measurement noise and missing levels, because the vector environment draws all of a
patient's randomness at reset from its seed -- for the whole episode (7 days, a decision
every 12 h). Per policy it prints:

* AUC 400-600: :data:`vanco_pk.targets.ATTAINMENT_DEFINITION` (printed under the table);
  ``all steps`` counts every step;
* AUC < 400, AUC > 600: the same share below and above the range;
* by 48 h: share of patients whose AUC24 is in range at some decision up to 48 h;
* AKI: share of patients meeting the KDIGO criteria at some decision;
* levels: troughs drawn per patient (in ``icu`` only when the protocol orders them);
* return: mean undiscounted return (the project's reward);
* > 3 g: doses above 3000 mg (the grid caps them; it must be 0);
* time: wall-clock time of the episode loop relative to the fixed policy's.

Expected order on AUC attainment: oracle >= mipd > clinician > fixed > random.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from vanco_pk.policies import CHART_KEYS, POLICIES, TRUTH_KEYS, make_policy
from vanco_pk.scenario import SCENARIOS, get_scenario, protocol_for
from vanco_pk.targets import (
    ATTAINMENT_DEFINITION,
    ATTAINMENT_FROM_H,
    AUC24_TARGET,
    COVARIATES,
    DOSE_MAX_MG,
    auc_attainment,
)
from vanco_pk.vector import VancoPKVectorEnv

from vanco_offline.data.cohort import cohort_seeds

__all__ = ["evaluate_policy", "run_policies"]

ORDER = ("oracle", "mipd", "clinician", "fixed", "random")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patients", type=int, default=500, help="simulated patients (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patients (default 0)")
    parser.add_argument(
        "--policies", nargs="+", default=list(ORDER), choices=sorted(POLICIES), help="policies to run"
    )
    parser.add_argument(
        "--noise", type=float, default=1.0, help="measurement noise multiplier (1 = Goti 2018 residual error)"
    )
    parser.add_argument(
        "--missing-prob", type=float, default=0.0, help="probability that a trough is not measured"
    )
    parser.add_argument(
        "--misspecification", choices=("none", "mild", "severe"), default="none", help="true model vs Goti"
    )
    parser.add_argument(
        "--scenario", choices=sorted(SCENARIOS), default="icu", help="the simulated world (default icu)"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")


def evaluate_policy(
    name: str,
    n_patients: int = 500,
    seed: int = 0,
    policy_options: Mapping[str, Any] | None = None,
    **env_options: Any,
) -> dict[str, float]:
    """Run one policy on ``n_patients`` simulated patients and score the clinical outcomes.

    The same ``seed`` gives the same patients (and noise) whatever the policy -- the patients
    of ``generate_cohort(n_patients, name, seed)`` -- and seeds give unrelated patients
    (:func:`vanco_offline.data.cohort.cohort_seeds`). Returns the
    metrics of the module docstring as a dict (``attainment``, ``attainment_all``,
    ``below``, ``above``, ``reached_48h``, ``aki``, ``mean_return``, ``levels``,
    ``doses_over_3g``, ``seconds``). ``env_options`` go to the vector env (``scenario``
    among them; default ``icu``).
    """
    if not isinstance(n_patients, int) or n_patients < 1:
        raise ValueError(f"n_patients = {n_patients!r} must be a positive integer")
    env = VancoPKVectorEnv(num_envs=n_patients, **env_options)
    policy = make_policy(name, interval_h=env.config.decision_interval_h, **dict(policy_options or {}))
    env_seeds, policy_seeds, _ = cohort_seeds(seed, n_patients)
    obs, info = env.reset(seed=env_seeds)
    env.set_sampling(protocol_for(env.config.scenario, policy.sampling))
    policy.reset({c: info["covariates"][c] for c in COVARIATES}, seed=policy_seeds)
    steps = env.config.n_steps
    auc = np.zeros((steps, n_patients))
    times = np.zeros(steps)
    total = np.zeros(n_patients)
    levels = np.zeros(n_patients)
    over = 0
    start = time.perf_counter()
    for k in range(steps):
        features = np.asarray(obs, np.float64).copy()
        features[:, 0] = info["raw_level"]  # NaN while never measured
        seen = {key: info[key] for key in CHART_KEYS}
        if policy.needs_truth:
            seen.update({key: info[key] for key in TRUTH_KEYS})
        dose = np.atleast_1d(policy.act(features, seen))
        over += int(np.sum(dose > DOSE_MAX_MG))
        obs, reward, _, _, info = env.step(dose.reshape(n_patients, 1))
        total += reward
        levels += info["level_measured"]
        auc[k] = info["auc24"]
        times[k] = float(info["time_h"][0])
    seconds = time.perf_counter() - start
    low, high = AUC24_TARGET
    in_range = (auc >= low) & (auc <= high)
    full = times >= ATTAINMENT_FROM_H
    env.close()
    return {
        "attainment": auc_attainment(auc, times),
        "attainment_all": float(in_range.mean()),
        "below": float((auc[full] < low).mean()),
        "above": float((auc[full] > high).mean()),
        "reached_48h": float(in_range[times <= 48.0].any(axis=0).mean()),
        "aki": float(np.mean(info["aki_so_far"])),
        "mean_return": float(total.mean()),
        "levels": float(levels.mean()),
        "doses_over_3g": float(over),
        "seconds": seconds,
    }


def run_policies(
    names: Sequence[str] = ORDER, n_patients: int = 500, seed: int = 0, **env_options: Any
) -> list[dict[str, Any]]:
    """:func:`evaluate_policy` for each name on the same patients; rows with ``policy`` and ``time_ratio``."""
    rows = [{"policy": name, **evaluate_policy(name, n_patients, seed, **env_options)} for name in names]
    base = next((r["seconds"] for r in rows if r["policy"] == "fixed"), rows[0]["seconds"])
    for row in rows:
        row["time_ratio"] = row["seconds"] / max(base, 1e-9)
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = (
        f"{'policy':<10} {'AUC 400-600':>11} {'all steps':>9} {'AUC<400':>8} {'AUC>600':>8} "
        f"{'by 48 h':>8} {'AKI':>6} {'levels':>6} {'return':>8} {'> 3 g':>6} {'time':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['policy']:<10} {r['attainment']:>11.3f} {r['attainment_all']:>9.3f} {r['below']:>8.3f} "
            f"{r['above']:>8.3f} {r['reached_48h']:>8.3f} {r['aki']:>6.3f} {r['levels']:>6.1f} "
            f"{r['mean_return']:>8.2f} "
            f"{int(r['doses_over_3g']):>6d} {r['time_ratio']:>6.1f}x"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    env_options = {
        "measurement_noise": args.noise,
        "level_missing_prob": args.missing_prob,
        "misspecification": args.misspecification,
        "scenario": args.scenario,
    }
    rows = run_policies(args.policies, args.patients, args.seed, **env_options)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"reference dosing policies on the same {args.patients} simulated patients (scenario "
        f"{get_scenario(args.scenario).name}, seed {args.seed}, "
        f"7 days, 12-h decisions, noise x{args.noise:g}, missing levels {args.missing_prob:g}, "
        f"misspecification {args.misspecification})"
    )
    print(format_table(rows))
    print(ATTAINMENT_DEFINITION)
    print(
        "by 48 h: patients in range at a decision up to 48 h; AKI: KDIGO (measured creatinine) at any "
        "decision; levels: troughs drawn per patient; time: episode loop vs fixed"
    )
    order = [r["policy"] for r in sorted(rows, key=lambda r: -r["attainment"])]
    print("order on attainment: " + " > ".join(order))
    return 0
