"""``vanco-offline bench policies``: the reference dosing policies on the same simulated patients.

Every team (:data:`TEAMS`) doses, in the world ``--scenario`` (default ``icu``; ``ideal`` is
the original one, the panel worlds are :data:`vanco_pk.scenario.WORLD_PANEL`), the same
``--patients`` (default 500) ICU patients -- same covariates, PK, measurement noise and
missing levels, because the vector environment draws all of a patient's randomness at reset
from its seed -- for the whole episode (7 days, a decision every 12 h), on one named level
protocol (``--protocol``; default the world's own, the trough-guided protocol in ``icu``),
every dose on the 250 mg grid, through the one simulator loop
(:func:`vanco_pk.simulate.simulate`). Per team it prints:

* AUC 400-600: :data:`vanco_pk.targets.ATTAINMENT_DEFINITION` (printed under the table);
  ``all steps`` counts every step;
* AUC < 400, AUC > 600: the same share below and above the range;
* by 48 h: share of patients whose AUC24 is in range at some decision up to 48 h;
* AKI: share of patients meeting the KDIGO criteria at some decision;
* levels: troughs drawn per patient (in ``icu`` only when the protocol orders them);
* return: mean undiscounted return (the project's reward);
* > 3 g: doses above 3000 mg (the grid caps them; it must be 0);
* time: wall-clock time of the episode loop relative to the fixed policy's.

Expected order on AUC attainment: oracle >= mipd (true prior, level q12h) >= mipd (true prior)
>= mipd > clinician > fixed > random.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from vanco_pk.policies import make_policy
from vanco_pk.scenario import SAMPLING_PROTOCOLS, SCENARIOS, protocol_for
from vanco_pk.simulate import simulate
from vanco_pk.targets import (
    ATTAINMENT_DEFINITION,
    ATTAINMENT_FROM_H,
    AUC24_TARGET,
    DOSE_MAX_MG,
)
from vanco_pk.world import World

__all__ = ["TEAMS", "evaluate_policy", "run_policies"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patients", type=int, default=500, help="simulated patients (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patients (default 0)")
    parser.add_argument(
        "--policies",
        nargs="+",
        default=list(TEAMS),
        choices=list(TEAMS),
        metavar="TEAM",
        help=f"teams to run (default all: {', '.join(TEAMS)})",
    )
    parser.add_argument(
        "--protocol",
        default="world",
        choices=("world", "own", *SAMPLING_PROTOCOLS),
        help="level protocol of every team: 'world' (default: the world's own, trough_guided in icu), "
        "'own' (each team's: clinician trough-guided, MIPD AUC-guided) or a protocol name",
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
    protocol: str | None = None,
    dose_set: str = "grid",
    world: World | None = None,
) -> dict[str, float]:
    """Run one policy on ``n_patients`` simulated patients and score the clinical outcomes.

    The same ``seed`` gives the same patients (and noise) whatever the policy -- the patients
    of ``generate_cohort(n_patients, name, seed)`` -- and seeds give unrelated patients
    (:func:`vanco_pk.simulate.patient_seeds`). ``protocol`` is the level protocol of every
    patient (``None``: each team's own, :func:`vanco_pk.scenario.protocol_for`). Returns the
    metrics of the module docstring as a dict (``attainment``, ``attainment_all``,
    ``below``, ``above``, ``reached_48h``, ``aki``, ``mean_return``, ``levels``,
    ``doses_over_3g``, ``seconds``) and the per-patient ``attainment_by_patient`` and
    ``aki_by_patient``. ``world`` is the patients' world (default ``World()``, the ``icu``
    scenario).
    """
    if not isinstance(n_patients, int) or n_patients < 1:
        raise ValueError(f"n_patients = {n_patients!r} must be a positive integer")
    world = World() if world is None else world
    policy = make_policy(name, interval_h=world.decision_interval_h, **dict(policy_options or {}))
    start = time.perf_counter()
    trace = simulate(policy, seed, n_patients, protocol=protocol, dose_set=dose_set, world=world)
    seconds = time.perf_counter() - start
    low, high = AUC24_TARGET
    full = trace.time_h >= ATTAINMENT_FROM_H
    return {
        "attainment": trace.attainment(),
        "attainment_all": float(trace.in_range.mean()),
        "below": float((trace.auc24[full] < low).mean()),
        "above": float((trace.auc24[full] > high).mean()),
        "reached_48h": float(trace.in_range[trace.time_h <= 48.0].any(axis=0).mean()),
        "aki": float(trace.aki.mean()),
        "mean_return": float(trace.returns(1.0).mean()),
        "levels": float(trace.levels_by_patient().mean()),
        "peaks": float(trace.peak_measured.sum(axis=0).mean()),
        "doses_over_3g": float(np.sum(trace.dose_mg > DOSE_MAX_MG)),
        "seconds": seconds,
        "attainment_by_patient": trace.attainment_by_patient(),
        "aki_by_patient": trace.aki,
    }


#: The teams of the table: label -> (policy name, options from the world, protocol override).
#: ``mipd (true prior)`` doses through the world's true population model and level error
#: (:attr:`vanco_pk.scenario.Scenario.true_prior`, of the misspecified model where the world
#: is misspecified): the strongest
#: simple Bayesian baseline; ``mipd (true prior, level q12h)`` adds a trough at every decision:
#: the practical ceiling of a level-based policy; the oracle reads the true parameters and drug
#: amounts (perfect information, not reachable by any policy that sees a chart).
TEAMS: dict[str, tuple[str, str | None, str | None]] = {
    "oracle": ("oracle", None, None),
    "mipd (true prior, level q12h)": ("mipd", "true", "every_decision"),
    "mipd (true prior)": ("mipd", "true", None),
    "mipd": ("mipd", None, None),
    "clinician": ("clinician", None, None),
    "fixed": ("fixed", None, None),
    "random": ("random", None, None),
}


def team_policy_options(team: str, world: World) -> dict[str, Any]:
    """The options of ``team``'s policy in ``world`` (the true prior where the team has it)."""
    _, prior, _ = TEAMS[team]
    return {"model": world.scenario.true_prior} if prior == "true" else {}


def run_policies(
    names: Sequence[str] = tuple(TEAMS),
    n_patients: int = 500,
    seed: int = 0,
    protocol: str | None = "world",
    world: World | None = None,
) -> list[dict[str, Any]]:
    """:func:`evaluate_policy` for each team of :data:`TEAMS` on the same patients.

    ``protocol``: ``"world"`` (default) samples every team on the world's own protocol
    (``trough_guided`` in ``icu``), a protocol name samples every team on it, ``None`` on
    each team's own (clinician trough-guided, MIPD AUC-guided). A team whose row names its own
    protocol (the q12h ceiling) keeps it. Rows carry ``policy``, ``protocol`` and ``time_ratio``.
    ``world``: the patients' world (default ``World()``).
    """
    world = World() if world is None else world
    scenario = world.scenario
    rows = []
    for team in names:
        if team not in TEAMS:
            raise ValueError(f"unknown team {team!r}; choose from {list(TEAMS)}")
        name, _, own = TEAMS[team]
        chosen = own or (scenario.sampling if protocol == "world" else protocol)
        result = evaluate_policy(
            name, n_patients, seed, team_policy_options(team, world), protocol=chosen, world=world
        )
        label = chosen or protocol_for(scenario, make_policy(name).sampling)
        rows.append({"policy": team, "protocol": label, **result})
    base = next((r["seconds"] for r in rows if r["policy"] == "fixed"), rows[0]["seconds"])
    for row in rows:
        row["time_ratio"] = row["seconds"] / max(base, 1e-9)
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = (
        f"{'policy':<30} {'protocol':<15} {'AUC 400-600':>11} {'95 % CI':>13} {'AUC<400':>8} {'AUC>600':>8} "
        f"{'by 48 h':>8} {'AKI':>6} {'levels':>6} {'peaks':>5} {'return':>8} {'> 3 g':>6} {'time':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        per = np.asarray(r["attainment_by_patient"])
        half = 1.96 * per.std(ddof=1) / np.sqrt(len(per)) if len(per) > 1 else float("nan")
        ci = f"{r['attainment'] - half:.3f}-{r['attainment'] + half:.3f}"
        lines.append(
            f"{r['policy']:<30} {r['protocol']:<15} {r['attainment']:>11.3f} {ci:>13} {r['below']:>8.3f} "
            f"{r['above']:>8.3f} {r['reached_48h']:>8.3f} {r['aki']:>6.3f} {r['levels']:>6.1f} "
            f"{r['peaks']:>5.1f} "
            f"{r['mean_return']:>8.2f} "
            f"{int(r['doses_over_3g']):>6d} {r['time_ratio']:>6.1f}x"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    world = World.make(
        measurement_noise=args.noise,
        level_missing_prob=args.missing_prob,
        misspecification=args.misspecification,
        scenario=args.scenario,
    )
    protocol = None if args.protocol == "own" else args.protocol
    rows = run_policies(args.policies, args.patients, args.seed, protocol, world=world)
    if args.json:
        out = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()} for r in rows]
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"reference dosing policies on the same {args.patients} simulated patients (scenario "
        f"{world.scenario.name}, seed {args.seed}, "
        f"7 days, 12-h decisions, noise x{args.noise:g}, missing levels {args.missing_prob:g}, "
        f"misspecification {args.misspecification})"
    )
    print(format_table(rows))
    print(ATTAINMENT_DEFINITION)
    print(
        "95 % CI: patient-level normal interval of the attainment; by 48 h: patients in range at a decision "
        "up to 48 h; AKI: KDIGO (measured creatinine) at any decision; levels: troughs drawn per patient, "
        "peaks: peaks drawn; every dose on the 250 mg grid; the oracle reads the true PK (perfect "
        "information, no policy that sees a chart can reach it); 'mipd (true prior, level q12h)' is the "
        "practical ceiling of a level-based policy; time: episode loop vs fixed"
    )
    order = [r["policy"] for r in sorted(rows, key=lambda r: -r["attainment"])]
    print("order on attainment: " + " > ".join(order))
    return 0
