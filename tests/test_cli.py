"""The `vanco-offline` command: dispatch, help and one-line errors."""

import pytest

from vanco_offline import cli


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in [*cli.COMMANDS, "bench"]:
        assert name in out


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    assert "usage: vanco-offline" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["bench"], ["bench", "--help"], ["bench", "sim", "--quick"]])
def test_bench_without_the_benchmarks_installed_says_how_to_install_them(argv, monkeypatch, capsys):
    # The library never imports the benchmarks: it finds them through entry points, none here.
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("vanco-offline bench: error: no benchmark is installed")
    assert "pip install -e ./benchmarks" in err


def test_user_error_is_one_line_and_exit_2(capsys):
    assert cli.main(["demo", "--patients", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("vanco-offline demo: error: --patients")


def test_demo_refuses_an_unknown_preset_before_any_work(capsys):
    assert cli.main(["demo", "--preset", "nope"]) == 2
    out, err = capsys.readouterr()
    assert "1/5" not in out and err.strip().count("\n") == 0 and "unknown preset 'nope'" in err


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_small(capsys, tmp_path):
    argv = [
        "demo",
        "--patients",
        "40",
        "--steps",
        "200",
        "--eval-patients",
        "20",
        "--fqe-steps",
        "200",
        "--twin-prior",
        "published",
        "--out",
        str(tmp_path / "demo"),
        "--no-plots",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    for row in (
        "| residual (learned) |",
        "| clinician (data) |",
        "| MIPD on the refitted prior, AUC 490 |",
        "| MIPD (Bayesian, published prior) |",
        "| oracle (true PK) |",
    ):
        assert row in out
    assert "Off-policy evaluation of ResidualVancoIQL" in out and "truth" in out
    assert (tmp_path / "demo" / "model.d3").is_file()


def test_a_stale_benchmark_entry_point_is_listed_and_fails_as_an_internal_error(monkeypatch, capsys):
    from importlib.metadata import EntryPoint

    stale = EntryPoint("gone", "no_such_package.gone", cli.BENCHMARK_GROUP)
    monkeypatch.setattr(cli, "entry_points", lambda group: [stale])
    assert cli.benchmarks() == {"gone": ("no_such_package.gone", "")}
    assert cli.main(["bench", "gone"]) == 1  # not the user's mistake: a broken installation
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (ModuleNotFoundError" in err
