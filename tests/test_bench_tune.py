"""Ray for cluster runs: the runtime_env that ships the code, and a Ray Tune sweep in a chosen storage."""

import importlib.util
import os

import pytest
from vanco_bench.offline.runner import cluster_runtime_env

# Starting Ray and Tune costs ~25 s on 2 cores: opt in with VANCO_TEST_RAY=1 (and the [ray] extra).
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None or os.environ.get("VANCO_TEST_RAY") != "1",
    reason="a Ray Tune run (~25 s): set VANCO_TEST_RAY=1 with the [ray] extra installed",
)


def test_cluster_runtime_env_ships_both_packages():
    env = cluster_runtime_env(pip=["d3rlpy>=2.8.1,<2.9"])
    names = sorted(os.path.basename(p) for p in env["py_modules"])
    assert names == ["vanco_offline", "vanco_pk"]
    assert all(os.path.isfile(os.path.join(p, "__init__.py")) for p in env["py_modules"])
    assert env["pip"] == ["d3rlpy>=2.8.1,<2.9"] and env["env_vars"]["OMP_NUM_THREADS"] == "1"


@needs_ray
def test_tune_sweep_runs_a_trial_and_writes_where_asked(tmp_path):
    import ray
    from test_bench_offline import tiny_task
    from vanco_bench.offline.runner import tune_sweep

    task = tiny_task("VancoIQL", 0, n_steps=20, eval_patients=4, eval_seed=123)
    space = {"expectile": (0.7,), "weight_temp": (3.0,), "learning_rate": (1e-4,)}
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        rows = tune_sweep(task, space, storage_path=str(tmp_path / "tune"))
    finally:
        ray.shutdown()
    assert len(rows) == 1
    row = rows[0]
    assert (row["expectile"], row["weight_temp"], row["learning_rate"]) == (0.7, 3.0, 1e-4)
    assert 0.0 <= row["attainment"] <= 1.0
    assert (tmp_path / "tune" / "vanco_offline_tune").is_dir()
