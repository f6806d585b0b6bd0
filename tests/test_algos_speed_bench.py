"""``vanco-offline bench speed`` runs end to end and refuses bad options (the numbers belong to the bench)."""

from __future__ import annotations

import argparse
import logging

import pytest
import structlog
import torch

from vanco_offline.bench import speed
from vanco_offline.cli import main


@pytest.fixture
def d3rlpy_info_logs_on():
    # As right after `import d3rlpy`, which configures structlog to print every level. The
    # CLI quietens d3rlpy before running a bench, but in a fresh process d3rlpy is imported
    # later, by the bench itself, and that import undoes it: so the bench must quieten it.
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**saved)


def test_speed_bench_prints_its_table_and_nothing_else(capsys, d3rlpy_info_logs_on):
    parser = argparse.ArgumentParser()
    speed.add_arguments(parser)
    args = parser.parse_args(["--steps", "10", "--repeats", "1", "--hidden", "8,8", "--no-5000"])
    previous = torch.get_num_threads()
    try:
        code = speed.run(args)
    finally:
        torch.set_num_threads(previous)
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("VancoIQL vs d3rlpy IQL: whole fit() of 10 steps on 2100 transitions")
    assert lines[1].split()[:3] == ["network", "algorithm", "threads"]
    # Three or four rows (the same-threads row only when torch defaults to several threads),
    # and no d3rlpy log line in between.
    assert 3 <= len(lines[2:-1]) <= 4 and all(line.startswith("[8, 8] ") for line in lines[2:-1]), out
    for name in ("d3rlpy IQL", "d3rlpy IQL + FastReplayBuffer", "VancoIQL", "steps/s", "vs IQL"):
        assert name in out, name
    assert lines[-1].startswith("load average")
    assert torch.get_num_threads() == previous  # the bench restores the thread setting


def test_speed_bench_rejects_bad_options(capsys):
    assert main(["bench", "speed", "--steps", "5"]) == 2
    assert "--steps 5: time at least 10 gradient steps" in capsys.readouterr().err
    assert main(["bench", "speed", "--hidden", "32,x"]) == 2
    assert "--hidden '32,x'" in capsys.readouterr().err
