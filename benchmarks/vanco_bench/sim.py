"""``vanco-offline bench sim``: simulator speed against the scipy ODE reference, and sanity tables.

Speed: steps the native vector env (:class:`vanco_pk.vector.VancoPKVectorEnv`, full
physiology: PK, kidney, infection, observation, reward, info, autoreset) at 1, 64 and 1024
patients and prints patient-steps per second. The baseline does the same patient-steps
with ``scipy.integrate.solve_ivp`` on the same two-compartment model
(:func:`vanco_pk.pk_reference.ode_propagate`) in two ways: one patient at a time (a loop,
as a simulator built on an ODE solver runs), and all patients stacked into one ODE system
(the fastest way to use ``solve_ivp``). The baseline integrates only the PK, so the ratios
understate the gap. Targets: >= 200,000 patient-steps/s at 1024 patients and
>= 50x the ODE reference.

Sanity: the exposure and outcome tables of :mod:`vanco_pk.sanity` (``--sanity``), the
numbers quoted in ``docs/simulator.md``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from vanco_pk.patients import sample_patients
from vanco_pk.pk import infusion_duration_h
from vanco_pk.pk_reference import ode_propagate
from vanco_pk.sanity import exposure_table, format_exposure_table, format_outcome_table, outcome_table
from vanco_pk.vector import VancoPKVectorEnv

TARGET_PATIENT_STEPS_PER_S = 200_000
TARGET_RATIO = 50.0
DOSE_MG = 1000.0
INTERVAL_H = 12.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--patients", type=int, nargs="+", default=[1, 64, 1024], help="vector env sizes (default 1 64 1024)"
    )
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="time each vector env size for about this long (default 1)"
    )
    parser.add_argument(
        "--ode-patient-steps",
        type=int,
        default=64,
        help="patient-steps timed for the ODE baselines (their rate per patient-step is flat; default 64)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated patients")
    parser.add_argument(
        "--sanity", action="store_true", help="also print the exposure and outcome sanity tables"
    )
    parser.add_argument("--sanity-patients", type=int, default=1000, help="patients per sanity cohort")


def _vector_rate(n: int, seconds: float, seed: int) -> float:
    env = VancoPKVectorEnv(n)
    env.reset(seed=seed)
    actions = np.full((n, 1), DOSE_MG, dtype=np.float32)
    env.step(actions)  # the first call pays for lazy allocations
    steps, elapsed = 0, 0.0
    start = time.perf_counter()
    while steps < 50 or elapsed < seconds:
        for _ in range(10):
            env.step(actions)
        steps += 10
        elapsed = time.perf_counter() - start
    return steps * n / elapsed


def _ode_rates(n: int, patient_steps: int, seed: int) -> tuple[float, float]:
    """Patient-steps/s of solve_ivp one patient at a time, and all ``n`` stacked in one system."""
    params = sample_patients(n, seed).pk_parameters()
    t_inf = infusion_duration_h(DOSE_MG)
    a1, a2 = np.zeros(n), np.zeros(n)
    loop_steps = max(1, min(n, patient_steps))
    start = time.perf_counter()
    for i in range(loop_steps):
        ode_propagate(params[i], a1[i], a2[i], DOSE_MG, t_inf, INTERVAL_H)
    loop_rate = loop_steps / (time.perf_counter() - start)
    # Stacked: repeat whole-cohort steps until about `patient_steps` have been done.
    repeats = max(1, patient_steps // n)
    start = time.perf_counter()
    for _ in range(repeats):
        a1, a2, _, _ = ode_propagate(params, a1, a2, DOSE_MG, t_inf, INTERVAL_H)
    stacked_rate = repeats * n / (time.perf_counter() - start)
    return loop_rate, stacked_rate


def speed_table(sizes: list[int], seconds: float, ode_patient_steps: int, seed: int) -> str:
    """The speed table as Markdown (measured now, in this process)."""
    lines = [
        "| patients | vector env patient-steps/s | solve_ivp loop patient-steps/s "
        "| solve_ivp stacked patient-steps/s | x loop | x stacked |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for n in sizes:
        vector = _vector_rate(n, seconds, seed)
        loop, stacked = _ode_rates(n, ode_patient_steps, seed)
        cells = [f"{n}", f"{vector:,.0f}", f"{loop:,.0f}", f"{stacked:,.0f}"]
        lines.append("| " + " | ".join([*cells, f"{vector / loop:,.0f}", f"{vector / stacked:,.1f}"]) + " |")
        if n == max(sizes):
            speed_ok = "meets" if vector >= TARGET_PATIENT_STEPS_PER_S else "MISSES"
            loop_ok = "meets" if vector / loop >= TARGET_RATIO else "MISSES"
            verdicts.append(
                f"at {n} patients: {vector:,.0f} patient-steps/s ({speed_ok} the "
                f"{TARGET_PATIENT_STEPS_PER_S:,} target); {vector / loop:,.0f}x solve_ivp stepping each "
                f"patient ({loop_ok} the {TARGET_RATIO:.0f}x target); {vector / stacked:,.1f}x solve_ivp "
                "on all patients stacked in one system (PK only, no target)"
            )
    return "\n".join([*lines, "", *verdicts])


def run(args: argparse.Namespace) -> int:
    sizes = list(args.patients)
    if any(n < 1 for n in sizes):
        raise ValueError(f"--patients: every size must be >= 1; got {sizes}")
    if not args.seconds > 0 or args.ode_patient_steps < 1:
        raise ValueError("--seconds must be > 0 and --ode-patient-steps >= 1")
    if args.sanity_patients < 1:
        raise ValueError("--sanity-patients must be >= 1")
    print(
        "Simulator speed (vanco_pk vector env vs scipy solve_ivp on the same PK model, 12-h steps, 1 g doses)"
    )
    print()
    print(speed_table(sizes, args.seconds, args.ode_patient_steps, args.seed))
    if args.sanity:
        print()
        print("Exposure sanity (population PK model, no kidney feedback)")
        print()
        print(format_exposure_table(exposure_table(args.sanity_patients, args.seed)))
        print()
        print("Outcome sanity (full simulator, fixed regimens, no level-guided adjustment)")
        print()
        print(format_outcome_table(outcome_table(args.sanity_patients, args.seed)))
    return 0
