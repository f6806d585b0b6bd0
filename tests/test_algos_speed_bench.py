"""``vanco-offline bench speed`` runs end to end and refuses bad options (the numbers belong to the bench)."""

from __future__ import annotations

import torch

from vanco_offline.cli import main


def test_speed_bench_prints_its_table(capsys):
    previous = torch.get_num_threads()
    try:
        code = main(["bench", "speed", "--steps", "10", "--repeats", "1", "--hidden", "8,8", "--no-5000"])
    finally:
        torch.set_num_threads(previous)
    out = capsys.readouterr().out
    assert code == 0
    for name in ("d3rlpy IQL", "d3rlpy IQL + FastReplayBuffer", "VancoIQL", "steps/s", "vs IQL"):
        assert name in out, name
    assert torch.get_num_threads() == previous  # the bench restores the thread setting


def test_speed_bench_rejects_bad_options(capsys):
    assert main(["bench", "speed", "--steps", "5"]) == 2
    assert "--steps 5: time at least 10 gradient steps" in capsys.readouterr().err
    assert main(["bench", "speed", "--hidden", "32,x"]) == 2
    assert "--hidden '32,x'" in capsys.readouterr().err
