"""`vanco-offline bench NAME`: the benchmarks found through their entry points, each runnable."""

from __future__ import annotations

import importlib

import pytest

from vanco_offline import cli

#: The benchmarks this distribution registers (benchmarks/pyproject.toml).
OURS = ("convert", "curves", "fidelity", "offline", "ope", "policies", "sampling", "sim", "speed")


def _error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_every_benchmark_is_found_with_its_module_and_help():
    found = cli.benchmarks()
    assert tuple(found) == OURS  # by name, whatever the metadata's order
    for name, (module, help_text) in found.items():
        assert module == f"vanco_bench.{name}"
        loaded = importlib.import_module(module)
        # The help the command read without importing the module is the module's own.
        assert help_text == loaded.HELP and help_text and "\n" not in help_text
        assert callable(loaded.add_arguments) and callable(loaded.run)


def test_bench_help_lists_every_benchmark_without_importing_one(capsys):
    import sys

    before = set(sys.modules)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name, (_, help_text) in cli.benchmarks().items():
        assert name in out and help_text in out
    assert not {m for m in set(sys.modules) - before if m.startswith("vanco_bench.")}


@pytest.mark.parametrize("name", OURS)
def test_every_benchmark_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", name, "--help"])
    assert exit_info.value.code == 0
    assert f"vanco-offline bench {name}" in capsys.readouterr().out


def test_an_unknown_benchmark_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "no_such_bench"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'no_such_bench'" in capsys.readouterr().err


def test_bench_ope_zero_stays_is_an_error(capsys):
    assert "--stays must be at least 2, got 0" in _error(capsys, ["bench", "ope", "--stays", "0"])


def test_convert_benchmark_runs_and_prints_its_table(capsys):
    assert cli.main(["bench", "convert", "--sizes", "30", "300", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "rows/s" in out and "growth" in out and "per 1M rows" in out
    assert cli.main(["bench", "convert", "--sizes", "10"]) == 2


def test_bench_policies_prints_the_table(capsys):
    assert cli.main(["bench", "policies", "--patients", "20", "--policies", "fixed", "random"]) == 0
    out = capsys.readouterr().out
    assert "AUC 400-600" in out and "\nfixed " in out and "\nrandom " in out
    assert "order on attainment:" in out
