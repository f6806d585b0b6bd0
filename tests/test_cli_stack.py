"""The CLI in a researcher's environment: missing optional extras, --debug, colour and NO_COLOR."""

import io
import sys
from pathlib import Path

import pytest
import structlog

from vanco_offline.cli import main
from vanco_offline.progress import configure_output


@pytest.mark.parametrize(
    ("module", "argv", "extra"),
    [
        ("duckdb", ["extract", "mimic", "--mimic-dir", "nowhere", "--out", "x.csv"], "vanco-offline[mimic]"),
        ("minari", ["convert", "--data", "data/sample_cohort.csv", "--minari", "x-v0"], "[minari]"),
    ],
)
def test_a_missing_optional_package_is_one_line_naming_its_extra(monkeypatch, capsys, module, argv, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if not installed
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and extra in err and "Traceback" not in err, err


@pytest.mark.parametrize("where", [0, -1])
def test_debug_shows_the_traceback(where):
    argv = ["extract", "mimic", "--mimic-dir", "/no/such/dir", "--out", "x.csv"]
    argv.insert(where if where == 0 else len(argv), "--debug")
    with pytest.raises(ValueError, match="no such folder"):
        main(argv)


class _Terminal:
    def isatty(self):
        return True

    def write(self, text):
        return len(text)

    def flush(self):
        pass


def _rendered() -> str:
    return structlog.get_config()["processors"][-1](None, "info", {"event": "hello", "step": 1})


def test_d3rlpy_log_colour_follows_no_color_and_the_terminal(monkeypatch):
    import d3rlpy  # noqa: F401  (configures its coloured renderer)

    saved = structlog.get_config()["processors"]
    try:
        monkeypatch.setattr(sys, "stdout", _Terminal())
        monkeypatch.delenv("NO_COLOR", raising=False)
        configure_output()
        assert "\x1b[" in _rendered()
        monkeypatch.setenv("NO_COLOR", "1")
        configure_output()
        assert "\x1b[" not in _rendered()
        monkeypatch.delenv("NO_COLOR")
        monkeypatch.setattr(sys, "stdout", io.StringIO())  # a file or a pipe
        configure_output()
        assert "\x1b[" not in _rendered()
    finally:
        structlog.configure(processors=saved)


@pytest.mark.parametrize(("no_color", "coloured"), [("1", False), ("", True)])
def test_d3rlpy_imported_after_the_cli_starts_follows_the_rule_too(monkeypatch, no_color, coloured):
    """The CLI configures output before a command imports d3rlpy, whose import sets colours."""
    import importlib

    import d3rlpy  # noqa: F401

    name = "d3rlpy.logging.logger"
    saved, module = structlog.get_config()["processors"], sys.modules.pop(name)
    finders = list(sys.meta_path)
    try:
        monkeypatch.setattr(sys, "stdout", _Terminal())
        monkeypatch.setenv("NO_COLOR", no_color)
        configure_output()  # d3rlpy's logger is not imported: the rule waits for it
        importlib.import_module(name)  # runs d3rlpy's structlog.configure(ConsoleRenderer())
        assert ("\x1b[" in _rendered()) is coloured
    finally:
        sys.modules[name] = module
        sys.meta_path[:] = finders
        structlog.configure(processors=saved)


def test_convert_minari_of_a_simulated_cohort_recovers_its_environment(tmp_path, capsys):
    minari = pytest.importorskip("minari")
    from vanco_offline.data import save_table
    from vanco_offline.data.cohort import generate_cohort

    save_table(generate_cohort(6, policy="clinician", seed=1), tmp_path / "sim.csv")
    argv = ["convert", "--data", str(tmp_path / "sim.csv"), "--fill-unmeasured-level"]
    assert main([*argv, "--minari", "vanco/sim-v0", "--minari-root", str(tmp_path / "m")]) == 0
    assert "recover_environment() rebuilds it" in capsys.readouterr().out
    dataset = minari.MinariDataset(tmp_path / "m" / "vanco" / "sim-v0" / "data")
    env = dataset.recover_environment()
    assert env.unwrapped.spec.id == "VancoPK-v0" and env.reset(seed=0)[0].shape == (7,)
    assert dataset.total_episodes == 6


def test_export_onnx_without_onnx_is_one_line_naming_the_extra(
    seven_features_model_dir, monkeypatch, capsys, tmp_path
):
    for module in ("onnx", "onnxscript"):
        monkeypatch.setitem(sys.modules, module, None)
    out = tmp_path / "p.onnx"
    argv = ["export", "--model", str(seven_features_model_dir), "--format", "onnx", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vanco-offline[onnx]" in err, err
    assert not out.exists()
