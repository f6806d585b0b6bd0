"""`vanco-offline bench sim`: the speed table of the vector env against the ODE reference."""

from __future__ import annotations

import argparse

import pytest


def test_bench_sim_prints_the_speed_table(capsys):
    from vanco_bench import sim

    parser = argparse.ArgumentParser()
    sim.add_arguments(parser)
    args = parser.parse_args(["--patients", "1", "8", "--seconds", "0.02", "--ode-patient-steps", "2"])
    assert sim.run(args) == 0
    out = capsys.readouterr().out
    assert "| 8 |" in out and "at 8 patients:" in out and "x solve_ivp stepping each patient" in out
    with pytest.raises(ValueError, match="--patients"):
        sim.run(parser.parse_args(["--patients", "0"]))
