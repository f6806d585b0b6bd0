"""Every example runs (at a small size here; at its default size each takes under a minute)."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

SMALL = {
    "quickstart.py": ["--patients", "30", "--steps", "100"],
    "own_csv.py": ["--steps", "100"],
    "compare_d3rlpy.py": ["--patients", "30", "--steps", "50", "--eval-patients", "10"],
    "rollout_vanco_pk.py": ["--policy", "clinician"],
    "online_agent.py": ["--steps", "300", "--eval-patients", "10"],
    "sb3_ppo.py": ["--steps", "64", "--eval-patients", "2"],
    "analysis.py": ["--patients", "40", "--steps", "100", "--fqe-steps", "100", "--eval-patients", "10"],
}
EXPECTED = {
    "quickstart.py": "recommended dose",
    "own_csv.py": "recommended dose",
    "compare_d3rlpy.py": "d3rlpy CQL",
    "rollout_vanco_pk.py": "return",
    "online_agent.py": "online SAC",
    "analysis.py": "Off-policy evaluation",
    "sb3_ppo.py": "PPO (online, SB3)",
}
NEEDS = {"sb3_ppo.py": "stable_baselines3"}
#: Over ~10 s even at the small size (training plus FQE or four d3rlpy algorithms): the slow lane.
SLOW = {"analysis.py", "compare_d3rlpy.py"}


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(SMALL)


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in sorted(SMALL)]
)
def test_example_runs(name, monkeypatch, capsys, tmp_path):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    argv = [name, *SMALL[name]]
    if "--log-dir" in (EXAMPLES / name).read_text():
        argv += ["--log-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    assert EXPECTED[name] in capsys.readouterr().out
