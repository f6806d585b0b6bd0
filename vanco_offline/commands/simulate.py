"""``vanco-offline simulate``: generate a synthetic ICU cohort from ``vanco_pk`` and write it.

Runs :func:`vanco_offline.data.cohort.generate_cohort` with a progress bar and writes the
table as CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``) by the suffix of
``--out``. Examples::

    vanco-offline simulate --patients 1000 --policy clinician --out cohort.parquet
    vanco-offline simulate --patients 1000 --mixture clinician=0.7,mipd=0.2,random=0.1 \\
        --missing-prob 0.5 --option clinician.miss_prob=0.5 --out mixed.csv
    vanco-offline simulate --patients 300 --draws habits --out draws.csv   # level_drawn varies
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from vanco_pk.policies import POLICIES
from vanco_pk.scenario import SCENARIOS
from vanco_pk.targets import REWARDS

from vanco_offline.commands.files import add_overwrite_argument, atomic_output, check_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patients", type=int, required=True, metavar="N", help="number of ICU stays")
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--policy", choices=sorted(POLICIES), default=None, help="behaviour policy of every stay (clinician)"
    )
    who.add_argument(
        "--mixture",
        metavar="NAME=W,...",
        help="policies by stay in exact shares, e.g. clinician=0.7,mipd=0.2,random=0.1",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="output table (.csv, .csv.gz, .parquet)")
    add_overwrite_argument(parser)
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of patients, noise and policies (default 0)"
    )
    sim = parser.add_argument_group("simulator")
    sim.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="icu",
        help="the simulated world: icu (default; levels only when the protocol orders them, a true "
        "population model unlike the dosing prior, changing kidneys, graded AKI) or ideal",
    )
    sim.add_argument(
        "--draws",
        choices=("protocol", "habits"),
        default="protocol",
        help="who orders levels: the dosing team's protocol (default), or clinician habits that vary by "
        "unit and state (vanco_pk.policies.sampling.HabitDraws), written as level_drawn and "
        "level_drawn_prob (what --config residual_draw learns from)",
    )
    sim.add_argument(
        "--noise",
        type=float,
        default=1.0,
        metavar="X",
        help="multiplier of the level's assay error (22.7 %% + 3.4 mg/L at 1; default 1)",
    )
    sim.add_argument(
        "--missing-prob", type=float, default=0.0, metavar="P", help="probability (0-1) a trough is not drawn"
    )
    sim.add_argument(
        "--interval-h", type=float, default=12.0, metavar="H", help="hours between decisions (default 12 h)"
    )
    sim.add_argument("--days", type=float, default=7.0, metavar="D", help="length of a stay (default 7 days)")
    sim.add_argument(
        "--misspecification", choices=("none", "mild", "severe"), default="none", help="true model vs Goti"
    )
    sim.add_argument(
        "--reward", choices=sorted(REWARDS), default="default", help="reward written to the table"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="POLICY.NAME=VALUE",
        help="a policy option, e.g. clinician.miss_prob=0.5 (repeatable)",
    )
    parser.add_argument("--no-truth", action="store_true", help="leave out the true_* ground-truth columns")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_mixture(text: str) -> dict[str, float]:
    """``"clinician=0.7,mipd=0.2"`` -> ``{"clinician": 0.7, "mipd": 0.2}``."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        if not sep:
            raise ValueError(f"--mixture: {part!r} is not NAME=WEIGHT (e.g. clinician=0.7)")
        try:
            out[name.strip()] = float(weight)
        except ValueError:
            raise ValueError(f"--mixture: weight {weight!r} of {name.strip()!r} is not a number") from None
    if not out:
        raise ValueError("--mixture is empty; give NAME=WEIGHT pairs, e.g. clinician=0.7,random=0.3")
    return out


def parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["clinician.miss_prob=0.5"]`` -> ``{"clinician": {"miss_prob": 0.5}}`` (numbers parsed)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        policy, dot, name = key.partition(".")
        if not (sep and dot and policy and name):
            raise ValueError(
                f"--option {item!r} must look like POLICY.NAME=VALUE, e.g. clinician.miss_prob=0.5"
            )
        try:
            parsed: Any = float(value)
        except ValueError:
            parsed = value
        else:
            if not math.isfinite(parsed):
                raise ValueError(f"--option {item!r}: the value must be a finite number, not {value!r}")
            if parsed.is_integer() and "." not in value and "e" not in value.lower():
                parsed = int(value)
        options = out.setdefault(policy.strip(), {})
        if name.strip() in options:
            raise ValueError(f"--option {key.strip()} is given twice; give each option once")
        options[name.strip()] = parsed
    return out


def run(args: argparse.Namespace) -> int:
    from vanco_pk.policies.sampling import HabitDraws
    from vanco_pk.world import World

    from vanco_offline.data.cohort import generate_cohort
    from vanco_offline.data.io import save_table
    from vanco_offline.progress import progress_bar, show_progress

    if not args.out.lower().endswith((".csv", ".csv.gz", ".parquet", ".pq")):
        raise ValueError(f"--out {args.out}: write a .csv, .csv.gz, .parquet or .pq file")
    if args.patients < 1:
        raise ValueError(f"--patients {args.patients} must be at least 1")
    policy: str | dict[str, float] = (
        parse_mixture(args.mixture) if args.mixture else (args.policy or "clinician")
    )
    options = parse_options(args.option)
    for name in ("noise", "missing_prob", "interval_h", "days"):
        if not math.isfinite(getattr(args, name)):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number")
    out = check_output(args.out, args.overwrite, [], "--out")
    world = World.make(
        scenario=args.scenario,
        misspecification=args.misspecification,
        decision_interval_h=args.interval_h,
        episode_days=args.days,
        measurement_noise=args.noise,
        level_missing_prob=args.missing_prob,
        reward=args.reward,
    )
    steps = world.n_steps
    with progress_bar(
        total=args.patients * (steps + 1),
        unit="decision",
        disable=args.quiet or not show_progress(),
        desc="simulating",
    ) as bar:
        table = generate_cohort(
            args.patients,
            policy,
            args.seed,
            policy_options=options,
            true_columns=not args.no_truth,
            progress=bar.update,
            world=world,
            draws=HabitDraws() if args.draws == "habits" else None,
        )
    with atomic_output(out, args.overwrite) as partial:
        save_table(table, partial)
    path = out
    stays = table["stay_id"].nunique()
    shares = table.groupby("behavior_policy", sort=False)["stay_id"].nunique()
    mix = ", ".join(f"{name} {count}" for name, count in shares.items())
    print(f"wrote {len(table):,} rows ({stays:,} stays, {len(table) - stays:,} transitions; {mix}) to {path}")
    return 0
