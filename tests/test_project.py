"""The README's commands and CI stay in step."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ci_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in lines if line.startswith("python3 -m venv")]
    assert len(commands) == 1, ".ci/run must run exactly one setup-and-test command"
    return commands[0]


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    assert f"```bash\n{_ci_command()}\n```" in readme


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```bash\n")[1:3]
    first, second = (block.split("\n```")[0] for block in blocks)
    assert first.endswith("vanco-offline demo")
    assert second == _ci_command()


def test_the_test_command_installs_every_distribution_whose_tests_it_runs():
    # testpaths runs envs/tests and benchmarks/tests: the benchmarks are found through their
    # entry points only once installed. The demo needs neither the benchmarks nor their install.
    readme = (ROOT / "README.md").read_text()
    demo = readme.split("```bash\n")[1].split("\n```")[0]
    assert "-e ./envs" in _ci_command() and "-e ./benchmarks" in _ci_command()
    assert "./benchmarks" not in demo
