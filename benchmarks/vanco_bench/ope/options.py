"""The options of ``vanco-offline bench ope``: sizes, the world and the data's conversion.

The data's observation and reward are the project's one spec,
:class:`vanco_offline.data.options.ConversionSettings` (discrete doses, a never-measured level
filled with 0): by default the seven features and the covariates with the table's trough
reward; ``--data-preset NAME`` takes a preset's ``DataSettings.conversion_settings()``, the flags
add to it. The truth and the twins run with the same reward in the same world
(``--scenario``).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from vanco_pk.scenario import SCENARIOS
from vanco_pk.targets import REWARDS
from vanco_pk.world import World

from vanco_offline.data.options import ConversionSettings

__all__ = [
    "FULL",
    "QUICK",
    "RunSettings",
    "Size",
    "add_arguments",
    "conversion_settings",
    "describe",
    "parse",
]


@dataclasses.dataclass(frozen=True)
class Size:
    """How big a run is: logged stays, gradient steps, truth patients, resamples, twins per stay."""

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


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything a run reads from the command line, validated."""

    size: Size
    conversion: ConversionSettings
    scenario: str
    gamma: float
    seed: int
    epsilon: float
    fqe_history: int

    def world(self, scenario: Any = None) -> World:
        """The world of the truth and the twins: ``scenario`` (default the run's) with the data's
        reward."""
        return World.make(
            scenario=self.scenario if scenario is None else scenario,
            reward=self.conversion.reward or "default",
        )


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
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="icu",
        help="the simulated world of the logged cohort, the truth and the twins (default icu)",
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
        "--worlds",
        nargs="+",
        metavar="WORLD",
        help="leave-one-world-out: choose the twin's settings on --calibrate-on and report every interval "
        "on the other worlds (the world panel and worlds the twin does not model: "
        "vanco_bench.ope.worlds.OPE_WORLDS); replaces --scenario",
    )
    parser.add_argument(
        "--calibrate-on",
        default="icu",
        metavar="WORLD",
        help="with --worlds: the one world every twin setting is chosen on (default icu)",
    )
    parser.add_argument(
        "--estimators",
        nargs="*",
        metavar="NAME",
        help="with --worlds: estimators run beside the twin (default: wis wdr; none: only the twin)",
    )
    parser.add_argument(
        "--bands",
        nargs="+",
        type=float,
        metavar="WIDTH",
        help="with --worlds: the band widths tried on the calibration world (default 0 0.5 1 1.5 2)",
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
        choices=tuple(REWARDS),
        help="reward computed by the converter and by the simulator for the truth (default: the table's "
        "reward column, the environment's default reward)",
    )


def conversion_settings(args: argparse.Namespace) -> ConversionSettings:
    """The run's conversion: the flags, plus a preset's data section (ValueError on a conflict)."""
    flags = {
        "last_dose": bool(getattr(args, "last_dose", False)),
        "pk_features": bool(getattr(args, "pk_features", False)),
    }
    reward = getattr(args, "reward", None)
    name = getattr(args, "data_preset", None)
    if not name:
        return ConversionSettings(
            action="discrete", fill_unmeasured_level=True, covariates=True, reward=reward, **flags
        )
    from vanco_offline.configs import load_preset

    data = load_preset(name).data
    if reward is not None and reward != data.reward:
        raise ValueError(
            f"--data-preset {name} converts with the {data.reward!r} reward but --reward {reward} "
            "asks for another: drop one of them"
        )
    if data.pk_model != "published":
        raise ValueError(
            f"--data-preset {name} refits its PK model to the training table (pk_model {data.pk_model!r}), "
            "which bench ope does not do: choose a preset with the published model"
        )
    preset = data.conversion_settings()
    return dataclasses.replace(
        preset,
        action="discrete",
        last_dose=flags["last_dose"] or preset.last_dose,
        pk_features=flags["pk_features"] or preset.pk_features,
    )


def parse(args: argparse.Namespace) -> RunSettings:
    """The validated options of a run (ValueError naming the flag; nothing is run before)."""
    base = QUICK if args.quick else FULL
    # `is None`, not `or`: an explicit 0 is an error below, not a silent full-size run.
    size = Size(
        **{
            name: default if getattr(args, name, None) is None else getattr(args, name)
            for name, default in dataclasses.asdict(base).items()
        }
    )
    for name, value in dataclasses.asdict(size).items():
        least = 1 if name == "twin_draws" else 2
        if value < least:
            raise ValueError(f"--{name.replace('_', '-')} must be at least {least}, got {value}")
    if not 0.0 < args.gamma <= 1.0:
        raise ValueError(f"--gamma must be in (0, 1], got {args.gamma}")
    if not 0.0 < args.epsilon < 1.0:
        raise ValueError(f"--epsilon must be in (0, 1), got {args.epsilon}")
    if args.fqe_history < 0:
        raise ValueError(f"--fqe-history must be 0 or more steps, got {args.fqe_history}")
    return RunSettings(
        size=size,
        conversion=conversion_settings(args),
        scenario=getattr(args, "scenario", "icu"),
        gamma=args.gamma,
        seed=args.seed,
        epsilon=args.epsilon,
        fqe_history=args.fqe_history,
    )


def describe(options: ConversionSettings) -> str:
    """The observation and reward of a conversion, in words."""
    parts = ["seven features"]
    if options.covariates:
        parts.append("covariates")
    if options.last_dose:
        parts.append("previous dose")
    if options.pk_features:
        parts.append("PK exposure features")
    if options.reward is None:
        return ", ".join(parts) + "; the table's reward column (the environment's default reward)"
    return ", ".join(parts) + f"; reward {options.reward!r}"
