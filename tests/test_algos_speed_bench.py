"""``vanco-offline bench speed`` runs end to end and refuses bad options (the numbers belong to the bench)."""

from __future__ import annotations

import argparse
import logging

import pytest
import structlog
import torch
from vanco_bench import speed

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
    args = parser.parse_args(
        ["--steps", "10", "--repeats", "1", "--hidden", "8,8", "--no-5000", "--seeds", "2"]
    )
    previous = torch.get_num_threads()
    try:
        code = speed.run(args)
    finally:
        torch.set_num_threads(previous)
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("VancoIQL vs d3rlpy IQL: whole fit() of 10 steps on 2100 transitions")
    assert "device cpu:0" in lines[0]
    assert lines[1].split()[:4] == ["network", "batch", "algorithm", "threads"]
    # Four or five rows (the same-threads row only when torch defaults to several threads),
    # then the seeds line, its verdict and the load line; no d3rlpy log line in between.
    rows = [line for line in lines[2:] if line.startswith("[8, 8] ")]
    assert 4 <= len(rows) <= 5 and lines[2 : 2 + len(rows)] == rows, out
    assert all(line.split()[2] == "256" for line in rows)
    for name in (
        "d3rlpy IQL compile_graph=True",
        "d3rlpy IQL + FastReplayBuffer",
        "VancoIQL",
        "vs IQL graph",
    ):
        assert name in out, name
    assert lines[2 + len(rows)].startswith("2 VancoIQL seeds, [32, 32], batch 256, 10 steps each: vectorised")
    assert lines[3 + len(rows)].startswith("2 seeds vectorised: ")
    assert lines[-1].startswith("load average") and len(lines) == 5 + len(rows)
    assert torch.get_num_threads() == previous  # the bench restores the thread setting


def test_speed_bench_rejects_bad_options(capsys):
    assert main(["bench", "speed", "--steps", "5"]) == 2
    assert "--steps 5: time at least 10 gradient steps" in capsys.readouterr().err
    assert main(["bench", "speed", "--hidden", "32,x"]) == 2
    assert "--hidden '32,x'" in capsys.readouterr().err
    assert (
        main(
            ["bench", "speed", "--device", "cuda:7"]
            if not torch.cuda.is_available()
            else ["bench", "speed", "--device", "cuda:999"]
        )
        == 2
    )
    assert "device 'cuda:" in capsys.readouterr().err
    assert main(["bench", "speed", "--seeds", "-1"]) == 2
    assert "--seeds -1: must be >= 0" in capsys.readouterr().err


def test_train_refuses_a_device_this_machine_lacks(capsys):
    assert main(["train", "--device", "nonsense", "--steps", "10"]) == 2
    assert "device 'nonsense': not a torch device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "--device", "cuda:0", "--steps", "10"]) == 2
        assert capsys.readouterr().err.strip().endswith("torch.cuda.is_available() is False); use cpu")
