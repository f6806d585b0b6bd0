"""The ``vanco-offline`` command.

Each subcommand lives in its own module, imported only when that subcommand runs, so that
``vanco-offline --help`` does not pay for importing torch and d3rlpy. A command module
defines ``add_arguments(parser)`` and ``run(args) -> int``.

Bad input (a missing file, a malformed YAML, an unknown preset, an out-of-range value, a
file that is not ours) ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

PROG = "vanco-offline"

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "vanco_offline.commands.demo",
        "generate a synthetic cohort, train VancoIQL, evaluate it against clinician and MIPD dosing",
    ),
    "simulate": ("vanco_offline.commands.simulate", "generate a synthetic ICU cohort from vanco_pk"),
    "convert": ("vanco_offline.commands.convert", "validate a dosing table and convert it to an MDPDataset"),
    "train": ("vanco_offline.commands.train", "train a policy from a preset or YAML config"),
    "evaluate": ("vanco_offline.commands.evaluate", "evaluate a trained model (diagnostics and OPE)"),
    "export": ("vanco_offline.commands.export", "export a trained model (torchscript, onnx, bundle)"),
    "recommend": ("vanco_offline.commands.recommend", "recommend a dose for one patient state"),
    "plot": ("vanco_offline.commands.plot", "plot training curves, dose-response and PK profiles"),
}

#: ``vanco-offline bench NAME``: name -> (module, one-line help)
BENCHES: dict[str, tuple[str, str]] = {
    "sim": ("vanco_offline.bench.sim", "simulator speed: vector env vs scipy ODE reference"),
    "policies": ("vanco_offline.bench.policies", "reference dosing policies on simulated patients"),
    "convert": ("vanco_offline.bench.convert", "table -> MDPDataset conversion speed"),
    "speed": ("vanco_offline.bench.speed", "VancoIQL vs d3rlpy IQL gradient steps per second"),
    "ope": ("vanco_offline.bench.ope", "off-policy evaluation calibrated on the simulator"),
    "offline": ("vanco_offline.bench.offline", "VancoIQL vs d3rlpy CQL/BCQ/IQL/BC and clinical dosing"),
    "fidelity": ("vanco_offline.bench.fidelity", "simulated ICU statistics beside published figures"),
}


class CommandError(Exception):
    """Raised by a command for a user error that deserves one line and exit code 2."""


#: Exceptions that mean "the user's input is wrong", reported without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (CommandError, ValueError, OSError, KeyError)


def _build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Offline reinforcement learning for vancomycin dosing in the ICU.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = argv[0] if argv else None
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _add_module_arguments(p, module)
    bench = sub.add_parser("bench", help="benchmarks that print a table of measured ratios")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    chosen_bench = argv[1] if chosen == "bench" and len(argv) > 1 else None
    for name, (module, help_text) in BENCHES.items():
        p = bench_sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen_bench:
            _add_module_arguments(p, module)
    return parser


def _add_module_arguments(parser: argparse.ArgumentParser, module: str) -> None:
    parser.set_defaults(_module=module)
    importlib.import_module(module).add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # d3rlpy imports the unmaintained `gym`, which prints a warning on import.
    warnings.filterwarnings("ignore", module="gym")
    warnings.filterwarnings("ignore", message=".*Gym has been unmaintained.*")
    parser = _build_parser(argv)
    args = parser.parse_args(argv)
    name = args.command if args.command != "bench" else f"bench {args.bench}"
    if args.command == "bench":
        from vanco_offline.commands.common import quiet_d3rlpy

        quiet_d3rlpy()  # a benchmark's output is its table, not d3rlpy's per-fit logs
    try:
        code = importlib.import_module(args._module).run(args)
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{PROG} {name}: error: {message}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
