"""The ``vanco-offline`` command.

Each subcommand lives in its own module, imported only when that subcommand runs, so that
``vanco-offline --help`` does not pay for importing torch and d3rlpy. A command module
defines ``add_arguments(parser)`` and ``run(args) -> int``.

Bad input (a missing file, a malformed YAML, an unknown preset, an out-of-range value, a
file that is not ours) ends with one line on stderr and exit code 2, never a traceback; so
does a missing optional package, with the extra that installs it
(:mod:`vanco_offline.extras`). Any other exception is a bug of the library, not the user's
mistake: one line saying so ("internal error ... run with --debug") and exit code 1.
``--debug`` (anywhere on the line) shows the traceback instead. Ctrl-C ends with exit code 130,
SIGTERM with 143; either way the command's outputs are whole or absent (train removes its
run folder).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from vanco_offline.commands import CommandError

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
    "extract": ("vanco_offline.commands.extract", "build a dosing table from MIMIC-IV files (DuckDB)"),
}

#: ``vanco-offline bench NAME``: name -> (module, one-line help)
BENCHES: dict[str, tuple[str, str]] = {
    "sim": ("vanco_bench.sim", "simulator speed: vector env vs scipy ODE reference"),
    "policies": ("vanco_bench.policies", "reference dosing policies on simulated patients"),
    "convert": ("vanco_bench.convert", "table -> MDPDataset conversion speed"),
    "speed": ("vanco_bench.speed", "VancoIQL vs d3rlpy IQL gradient steps per second"),
    "ope": ("vanco_bench.ope", "off-policy evaluation calibrated on the simulator"),
    "offline": ("vanco_bench.offline", "VancoIQL vs d3rlpy CQL/BCQ/IQL/BC and clinical dosing"),
    "curves": ("vanco_bench.curves", "learning curves on validation patients; the budgets they pick"),
    "fidelity": ("vanco_bench.fidelity", "simulated ICU statistics beside published figures"),
    "sampling": ("vanco_bench.sampling", "when to draw a level: attainment against levels per week"),
}


#: Exceptions that mean "the user's input is wrong", reported without a traceback. The library
#: raises ValueError (or a subclass) for bad input and OSError for files; anything else that
#: escapes a command is an internal error.
USER_ERRORS: tuple[type[BaseException], ...] = (CommandError, ValueError, OSError)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that every command cleans up as on Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Offline reinforcement learning for vancomycin dosing in the ICU.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error instead of one line"
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
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    argv = [a for a in argv if a != "--debug"]
    previous = _install_sigterm()
    name = argv[0] if argv else PROG
    args = argparse.Namespace(debug=debug)
    try:
        parser = _build_parser(argv)  # imports the command's module: Ctrl-C may land here too
        args = parser.parse_args(argv)
        args.debug = debug
        name = args.command if args.command != "bench" else f"bench {args.bench}"
        return _run(args, name)
    except KeyboardInterrupt as exc:
        # Outputs are written whole or not at all (train removes its run folder): say so.
        if debug:
            raise
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"{PROG} {name}: {how}; {_interrupted(exc, args)}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _install_sigterm() -> Any:
    """SIGTERM raises :class:`Terminated` (the previous handler is returned; None off the main thread)."""
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (a test runner, an embedding application)
        return None


def _run(args: argparse.Namespace, name: str) -> int:
    if args.command == "bench":
        from vanco_offline.commands.common import quiet_d3rlpy

        quiet_d3rlpy()  # a benchmark's output is its table, not d3rlpy's per-fit logs
    from vanco_offline.progress import configure_output

    configure_output()
    try:
        code = importlib.import_module(args._module).run(args)
    except (*USER_ERRORS, ImportError) as exc:
        if args.debug:
            raise
        try:
            message = _as_missing_extra(exc) if isinstance(exc, ImportError) else exc
        except ImportError as other:  # not an optional package: a broken installation or a bug
            return _internal(name, other)
        print(f"{PROG} {name}: error: {_short(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # anything else is a bug of the library, not the user's input
        if args.debug:
            raise
        return _internal(name, exc)
    return int(code or 0)


def _internal(name: str, exc: BaseException) -> int:
    print(
        f"{PROG} {name}: internal error ({type(exc).__name__}: {_short(exc)}); this is a bug, not a "
        f"problem with your input: run with --debug for the traceback and report it",
        file=sys.stderr,
    )
    return 1


def _short(exc: object, limit: int = 4000) -> str:
    """An error message of at most ``limit`` characters (a huge input is not echoed whole)."""
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_missing_extra(exc: ImportError) -> Exception:
    """A missing optional package as one line naming its extra; any other ImportError as is."""
    from vanco_offline.extras import EXTRAS, MissingExtraError, missing_extra

    if isinstance(exc, MissingExtraError):
        return exc
    module = (exc.name or "").split(".")[0]
    if module in EXTRAS:
        return missing_extra(module)
    raise exc


def _interrupted(exc: KeyboardInterrupt, args: argparse.Namespace) -> str:
    """What an interrupted command left: the command's own message, else its output named."""
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    outputs = [getattr(args, name, None) for name in ("out", "output")]
    where = next((str(o) for o in outputs if o), None)
    return f"nothing saved to {where}" if where else "nothing saved"


if __name__ == "__main__":
    sys.exit(main())
