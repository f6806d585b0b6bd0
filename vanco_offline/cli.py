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
import ast
import importlib
import importlib.util
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from importlib.metadata import entry_points
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

#: ``vanco-offline bench NAME``: the entry-point group through which benchmarks plug in. Each
#: entry names a module with ``add_arguments(parser)``, ``run(args) -> int`` and a one-line
#: ``HELP``; the project's own are the separate distribution in ``benchmarks/``
#: (``vanco-offline-bench``, package ``vanco_bench``), which the library never imports.
BENCHMARK_GROUP = "vanco_offline.benchmarks"

#: What ``vanco-offline bench`` says when no benchmark is installed (exit code 2).
NO_BENCHMARKS = (
    "no benchmark is installed: they are a separate distribution; from the root of a clone, "
    "pip install -e ./benchmarks"
)


#: Exceptions that mean "the user's input is wrong", reported without a traceback. The library
#: raises ValueError (or a subclass) for bad input and OSError for files; anything else that
#: escapes a command is an internal error.
USER_ERRORS: tuple[type[BaseException], ...] = (CommandError, ValueError, OSError)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that every command cleans up as on Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _build_parser(
    argv: Sequence[str], benches: dict[str, tuple[str, str]] | None = None
) -> argparse.ArgumentParser:
    """The parser; ``benches`` (:func:`benchmarks`) are the subcommands of ``bench``."""
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
    for name, (module, help_text) in (benches or {}).items():
        p = bench_sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen_bench:
            _add_module_arguments(p, module)
    return parser


def benchmarks() -> dict[str, tuple[str, str]]:
    """``name -> (module, one-line help)`` of every benchmark installed under :data:`BENCHMARK_GROUP`.

    Nothing is imported but the benchmarks' top-level package: the help is the module's
    ``HELP`` constant (else the first line of its docstring), read from its source with
    :mod:`ast`, so that ``vanco-offline bench --help`` does not pay for torch and d3rlpy.
    """
    found = {ep.name: ep.module for ep in entry_points(group=BENCHMARK_GROUP)}
    return {name: (found[name], _module_help(found[name])) for name in sorted(found)}


def _module_help(module: str) -> str:
    """A module's ``HELP = "..."`` (else its docstring's first line), read without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except ImportError:  # a stale entry point: running it names the missing module
        return ""
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return ""
    with open(spec.origin, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "HELP" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    return (ast.get_docstring(tree) or "").strip().partition("\n")[0]


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
        # Looked up only for `bench`: no other command pays for reading the installed metadata.
        benches = benchmarks() if argv[:1] == ["bench"] else None
        if benches == {}:
            print(f"{PROG} bench: error: {NO_BENCHMARKS}", file=sys.stderr)
            return 2
        try:
            parser = _build_parser(argv, benches)  # imports the command's module: Ctrl-C may land here too
        except ImportError as exc:  # that module (a stale benchmark entry point, a missing extra)
            if debug:
                raise
            return _import_failed(" ".join(argv[:2]) if argv[:1] == ["bench"] else name, exc)
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
        if isinstance(exc, ImportError):
            return _import_failed(name, exc)
        print(f"{PROG} {name}: error: {_short(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # anything else is a bug of the library, not the user's input
        if args.debug:
            raise
        return _internal(name, exc)
    return int(code or 0)


def _import_failed(name: str, exc: ImportError) -> int:
    """A missing optional package: one line naming its extra, exit 2; any other ImportError is a
    broken installation or a bug (:func:`_internal`)."""
    try:
        message = _as_missing_extra(exc)
    except ImportError as other:
        return _internal(name, other)
    print(f"{PROG} {name}: error: {_short(message)}", file=sys.stderr)
    return 2


def _internal(name: str, exc: BaseException) -> int:
    print(
        f"{PROG} {name}: internal error ({type(exc).__name__}: {_short(exc)}); this is a bug, not a "
        f"problem with your input: run with --debug for the traceback and report it",
        file=sys.stderr,
    )
    return 1


#: Control characters as their escapes: an error is one line, whatever text it quotes.
_ESCAPES = {c: repr(chr(c))[1:-1] for c in (*range(32), 127)}


def _short(exc: object, limit: int = 4000) -> str:
    """An error message on one line (control characters escaped) of at most ``limit``
    characters (a huge input is not echoed whole)."""
    text = str(exc).translate(_ESCAPES)
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


def entry() -> None:
    """The process entry point (the ``vanco-offline`` script, ``python -m vanco_offline.cli``):
    :func:`main`, whose return value is the exit code.

    After an interrupt (130) or SIGTERM (143) the process leaves with ``os._exit``. A Ctrl-C
    that lands while C code runs Python source (torch's import does) leaves CPython's
    "unhandled KeyboardInterrupt" flag set although :func:`main` handled it, and the
    interpreter would then end by SIGINT (exit status -2, measured on 2 of 14 interrupt
    times) instead of the 130 it printed. Nothing is left to clean up by then: ``train``
    removed its run folder before the interrupt reached :func:`main`.
    """
    code = main()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
