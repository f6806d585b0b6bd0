"""bench offline: seeds of one algorithm train together and score as their lone cells (to float rounding)."""

from __future__ import annotations

import pytest
from vanco_bench.offline.cell import run_cell, run_cells
from vanco_bench.offline.grid import CellTask, DatasetSettings

TINY = DatasetSettings.make("medium", "tiny", n_stays=20)


def test_seeds_trained_together_score_as_their_lone_cells():
    tasks = [CellTask(TINY, "VancoIQL", seed, n_steps=20, eval_patients=4, batch_size=64) for seed in (0, 1)]
    together = run_cells(tasks)
    assert [(r.algo, r.seed) for r in together] == [("VancoIQL", 0), ("VancoIQL", 1)]
    assert together[0].scores != together[1].scores
    alone = run_cell(tasks[1])
    assert together[1].scores.keys() == alone.scores.keys()
    for key, value in alone.scores.items():
        assert together[1].scores[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert all(r.train_seconds > 0 for r in together)


def test_seed_groups_join_the_seeds_of_one_cell_even_with_config_overrides():
    from vanco_bench.offline.runner import seed_groups

    tasks = [
        CellTask(TINY, "VancoIQL", 0, overrides={"expectile": 0.8}),
        CellTask(TINY, "BC", 0),
        CellTask(TINY, "VancoIQL", 1, overrides={"expectile": 0.8}),
        CellTask(TINY, "VancoIQL", 2, overrides={"expectile": 0.9}),
    ]
    assert seed_groups(tasks) == [[0, 2], [1], [3]]
