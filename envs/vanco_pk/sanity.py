"""Clinical sanity tables of the simulator: exposures of standard regimens and their outcomes.

``python -m vanco_pk.sanity`` (or ``vanco-offline bench sim``) prints both tables; the
numbers in ``docs/simulator.md`` come from it with the default arguments.

The exposure table uses the population model alone (no kidney feedback): steady-state
AUC24 is the daily dose over CL, the steady-state trough the closed-form sum of all past
doses, the day-2 AUC the 24-48 h window of the regimen started on a naive patient. The
outcome table runs the full simulator (PK with kidney feedback, infection) for 7 days.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vanco_pk import pk
from vanco_pk.patients import N_PATIENT_DRAWS, Covariates, Patients
from vanco_pk.targets import AUC24_TARGET

__all__ = [
    "ExposureRow",
    "OutcomeRow",
    "exposure_table",
    "format_exposure_table",
    "format_outcome_table",
    "main",
    "outcome_table",
]

TYPICAL = Covariates(weight_kg=70.0, age=50.0, sex=0, height_cm=175.0, dialysis=0, creatinine=1.0)


@dataclass(frozen=True)
class ExposureRow:
    """Exposure of one regimen in one cohort; percentiles are (5th, 50th, 95th)."""

    cohort: str
    regimen: str
    n: int
    auc_ss: tuple[float, float, float]
    trough_ss: tuple[float, float, float]
    auc_day2: tuple[float, float, float]
    in_target_ss: float
    below_target_ss: float
    above_target_ss: float
    in_target_day2: float


def _percentiles(x: np.ndarray) -> tuple[float, float, float]:
    p5, p50, p95 = np.percentile(x, [5, 50, 95])
    return float(p5), float(p50), float(p95)


def _round_to_250(dose: np.ndarray) -> np.ndarray:
    return np.clip(np.round(dose / 250.0) * 250.0, 250.0, 3000.0)


def _exposure(cohort: str, regimen: str, patients: Patients, dose: np.ndarray) -> ExposureRow:
    params = patients.pk_parameters()
    t_inf = pk.infusion_duration_h(dose)
    auc_ss = pk.steady_state_auc24(2.0 * dose, params.cl)
    trough = pk.steady_state_concentrations(params, dose, t_inf, 12.0, [12.0])[:, 0]
    times = np.arange(0.0, 48.0, 12.0)
    doses = np.repeat(dose[:, None], len(times), axis=1)
    day2 = pk.auc24(params, times, doses, t_inf[:, None], [48.0])[:, 0]
    low, high = AUC24_TARGET
    return ExposureRow(
        cohort=cohort,
        regimen=regimen,
        n=len(patients),
        auc_ss=_percentiles(auc_ss),
        trough_ss=_percentiles(trough),
        auc_day2=_percentiles(day2),
        in_target_ss=float(np.mean((auc_ss >= low) & (auc_ss <= high))),
        below_target_ss=float(np.mean(auc_ss < low)),
        above_target_ss=float(np.mean(auc_ss > high)),
        in_target_day2=float(np.mean((day2 >= low) & (day2 <= high))),
    )


def exposure_table(n: int = 1000, seed: int = 0) -> list[ExposureRow]:
    """Exposures of 1 g and 15 mg/kg q12h in a typical patient and in the ICU population.

    The "typical" cohort is ``n`` draws of the between-patient PK variability for a
    70 kg, 50-year-old man with creatinine 1.0 mg/dL (CrCL 87.5 mL/min); the ICU cohort is
    ``n`` patients of the generator. Both use the same seeded draws.
    """
    z = np.random.default_rng(seed).standard_normal((n, N_PATIENT_DRAWS))
    typical = Patients.from_normals(z, covariates=TYPICAL)
    icu = Patients.from_normals(z)
    one_gram = np.full(n, 1000.0)
    typical_name = "70 kg, 50 y, male, SCr 1.0"
    return [
        _exposure(typical_name, "1 g q12h", typical, one_gram),
        _exposure(typical_name, "15 mg/kg q12h (1050 mg)", typical, 15.0 * typical.covariates.weight_kg),
        _exposure("ICU population", "1 g q12h", icu, one_gram),
        _exposure(
            "ICU population", "15 mg/kg q12h (to 250 mg)", icu, _round_to_250(15.0 * icu.covariates.weight_kg)
        ),
    ]


def format_exposure_table(rows: Sequence[ExposureRow]) -> str:
    """A Markdown table of :func:`exposure_table` rows."""

    def pct(p: tuple[float, float, float], digits: int = 0) -> str:
        return f"{p[1]:.{digits}f} [{p[0]:.{digits}f}-{p[2]:.{digits}f}]"

    lines = [
        "| cohort | regimen | n | AUC24 ss median [5th-95th] | trough ss median [5th-95th] "
        "| AUC24 day 2 median [5th-95th] | ss AUC 400-600 | ss < 400 | ss > 600 | day-2 AUC 400-600 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        shares = (r.in_target_ss, r.below_target_ss, r.above_target_ss, r.in_target_day2)
        cells = [r.cohort, r.regimen, str(r.n), pct(r.auc_ss), pct(r.trough_ss, 1), pct(r.auc_day2)]
        lines.append("| " + " | ".join(cells + [f"{s:.0%}" for s in shares]) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class OutcomeRow:
    """Outcomes of one regimen over a 7-day episode in the full simulator."""

    regimen: str
    n: int
    auc_day3_median: float
    auc_day3_in_target: float
    aki: float
    resolved: float
    mean_reward: float


def _weight_based(per_kg_first: float, per_kg: float) -> Callable[[int, dict], np.ndarray]:
    def policy(step: int, info: dict) -> np.ndarray:
        weight = info["covariates"]["weight_kg"]
        return _round_to_250((per_kg_first if step == 0 else per_kg) * weight)

    return policy


def _true_clearance_rule(auc_target: float) -> Callable[[int, dict], np.ndarray]:
    """The dose giving a steady-state AUC24 of ``auc_target`` with the patient's true CL now.

    Not a reference policy (those are in :mod:`vanco_pk.policies`): it reads the truth in
    ``info`` and shows what exposure control alone achieves. The first dose is doubled
    as a loading dose.
    """

    def policy(step: int, info: dict) -> np.ndarray:
        dose = auc_target * info["cl"] / 2.0 * (2.0 if step == 0 else 1.0)
        return np.clip(np.round(dose / 250.0) * 250.0, 0.0, 3000.0)

    return policy


def outcome_table(n: int = 1000, seed: int = 0, scenario: str = "ideal") -> list[OutcomeRow]:
    """Regimens for 7 days in ``n`` generated ICU patients (the same patients for each).

    Fixed regimens (no level-guided adjustment), and a rule that doses each patient to an
    AUC24 of 500 from the true clearance, as a check that the reward ranks target exposure
    above both under- and over-dosing. ``scenario`` is the world (``"ideal"``, the numbers
    quoted in docs/simulator.md, or ``"icu"``).
    """
    from vanco_pk.vector import VancoPKVectorEnv  # gymnasium is only needed here

    regimens: dict[str, Callable[[int, dict], np.ndarray]] = {
        "no vancomycin": lambda step, info: np.zeros(n),
        "7.5 mg/kg q12h (half dose)": _weight_based(7.5, 7.5),
        "1 g q12h": lambda step, info: np.full(n, 1000.0),
        "15 mg/kg q12h": _weight_based(15.0, 15.0),
        "25 mg/kg load, 15 mg/kg q12h": _weight_based(25.0, 15.0),
        "30 mg/kg q12h (double dose)": _weight_based(30.0, 30.0),
        "AUC-500 rule on the true CL": _true_clearance_rule(500.0),
    }
    low, high = AUC24_TARGET
    rows = []
    for name, policy in regimens.items():
        env = VancoPKVectorEnv(n, scenario=scenario)
        _, info = env.reset(seed=seed)
        steps_per_day = round(24.0 / env.world.decision_interval_h)
        total = np.zeros(n)
        aki = np.zeros(n, dtype=bool)
        for step in range(env.world.n_steps):
            _, reward, _, _, info = env.step(policy(step, info)[:, None])
            total += reward
            aki |= info["aki"]
            if step == 3 * steps_per_day - 1:
                auc_day3 = info["auc24"].copy()
        rows.append(
            OutcomeRow(
                regimen=name,
                n=n,
                auc_day3_median=float(np.median(auc_day3)),
                auc_day3_in_target=float(np.mean((auc_day3 >= low) & (auc_day3 <= high))),
                aki=float(aki.mean()),
                resolved=float(np.mean(info["infection_resolved"])),
                mean_reward=float(total.mean() / env.world.n_steps),
            )
        )
    return rows


def format_outcome_table(rows: Sequence[OutcomeRow]) -> str:
    """A Markdown table of :func:`outcome_table` rows."""
    lines = [
        "| regimen (ICU population, 7 days) | n | AUC24 day 3 median | day-3 AUC 400-600 "
        "| KDIGO AKI by day 7 | infection resolved at day 7 | mean reward per step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.regimen} | {r.n} | {r.auc_day3_median:.0f} | {r.auc_day3_in_target:.0%} | {r.aki:.0%} "
            f"| {r.resolved:.0%} | {r.mean_reward:+.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print both sanity tables."""
    parser = argparse.ArgumentParser(prog="python -m vanco_pk.sanity", description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000, help="patients per cohort (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cohorts (default 0)")
    args = parser.parse_args(argv)
    if args.patients < 1:
        parser.error("--patients must be >= 1")
    print(format_exposure_table(exposure_table(args.patients, args.seed)))
    print()
    print(format_outcome_table(outcome_table(args.patients, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
