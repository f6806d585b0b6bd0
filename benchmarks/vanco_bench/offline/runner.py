"""Run the benchmark's cells in parallel: local processes or a Ray cluster; the tuning sweep in Ray Tune.

Every backend runs :func:`~vanco_bench.offline.cell.run_cell` on picklable
:class:`~vanco_bench.offline.grid.CellTask` objects, one cell per worker and one
torch thread per worker (a [32, 32] update gains nothing from more and two busy threads per
worker would fight over the cores), so the backends give the same numbers.

Ray is an optional extra (``pip install "ray[tune]"``); it is imported only by
``backend="ray"`` and :func:`tune_sweep`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vanco_bench.offline.cell import CellResult, run_cell, run_cells
from vanco_bench.offline.grid import CellTask

__all__ = ["BACKENDS", "TUNE_SPACE", "cluster_runtime_env", "run_grid", "tune_sweep", "worker_init"]

BACKENDS = ("local", "ray")
#: The tuning grid (the base/conservative/run_ok/tuned presets' guide): expectile, temperature, lr.
TUNE_SPACE: dict[str, tuple[float, ...]] = {
    "expectile": (0.5, 0.7, 0.9),
    "weight_temp": (0.5, 3.0, 10.0),
    "learning_rate": (3e-5, 1e-4),
}


def worker_init() -> None:
    """Per-worker setup: one torch thread, d3rlpy's per-step log lines silenced."""
    import logging
    import warnings

    import structlog
    import torch

    torch.set_num_threads(1)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    warnings.filterwarnings("ignore", module="gym")
    warnings.filterwarnings("ignore", message=".*Gym has been unmaintained.*")


def _run_in_worker(task: CellTask) -> CellResult:
    worker_init()
    return run_cell(task)


def seed_groups(tasks: Sequence[CellTask]) -> list[list[int]]:
    """Indices of the tasks that differ only in their seed, group by group in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        # repr, not the task: its overrides mapping is not hashable.
        groups.setdefault(repr(dataclasses.replace(task, seed=0)), []).append(i)
    return list(groups.values())


def run_grid(
    tasks: Sequence[CellTask],
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    progress: Callable[[CellResult, int, int], None] | None = None,
    seeds_together: bool = False,
) -> list[CellResult]:
    """Run every task and return the results in the order of ``tasks``.

    Parameters
    ----------
    tasks : sequence of CellTask
    backend : {"local", "ray"}
        ``local``: a ``concurrent.futures`` process pool with the spawn start method (no
        torch state forked into the workers). ``ray``: one Ray task per cell with
        ``num_cpus=1``, on the cluster at ``ray_address`` or on a local one.
    workers : int, optional
        Local processes (default: the machine's CPUs), or the CPUs of a local Ray cluster
        started here.
    ray_address : str, optional
        Address of a running Ray cluster (``ray://host:10001`` or ``auto``).
    progress : callable, optional
        ``progress(result, done, total)`` after each finished cell.
    seeds_together : bool
        Local backend: the cells that differ only in their seed run in one process and
        train together (:func:`~vanco_bench.offline.cell.run_cells`; VancoIQL's
        seeds as one batched model, several times the throughput). A cell's networks then
        equal those of its lone :func:`run_cell` to float rounding, not bit for bit.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if not tasks:
        raise ValueError("the grid is empty: give at least one dataset, algorithm and seed")
    if workers is not None and workers < 1:
        raise ValueError(f"workers = {workers!r} must be >= 1")
    if backend == "ray":
        return _run_ray(tasks, workers, ray_address, progress)
    n_workers = min(workers or os.cpu_count() or 1, len(tasks))
    results: list[CellResult | None] = [None] * len(tasks)
    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=context, initializer=worker_init)
    groups = seed_groups(tasks) if seeds_together else [[i] for i in range(len(tasks))]
    done = 0
    with pool:
        futures = {pool.submit(run_cells, [tasks[i] for i in group]): group for group in groups}
        for future in concurrent.futures.as_completed(futures):
            for i, result in zip(futures[future], future.result(), strict=True):
                results[i] = result
                done += 1
                if progress is not None:
                    progress(result, done, len(tasks))
    return [r for r in results if r is not None]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError(
            'the ray backend needs Ray: pip install "ray[tune]" (or use --backend local)'
        ) from None
    return ray


def cluster_runtime_env(pip: Sequence[str] = ()) -> dict[str, Any]:
    """Ray ``runtime_env`` for a cluster run: this checkout's code travels to every worker.

    ``py_modules`` uploads the ``vanco_offline`` and ``vanco_pk`` package folders, so the
    nodes need only Ray and the dependencies (torch, d3rlpy, ...) preinstalled, or listed in
    ``pip`` to be installed per job. One torch thread per worker, as the local backend.
    """
    import vanco_pk

    import vanco_offline

    env: dict[str, Any] = {
        "py_modules": [os.path.dirname(vanco_offline.__file__), os.path.dirname(vanco_pk.__file__)],
        "env_vars": {"OMP_NUM_THREADS": "1"},
    }
    if pip:
        env["pip"] = list(pip)
    return env


def _ensure_ray(ray: Any, workers: int | None, address: str | None) -> bool:
    """Connect to (or start) Ray; True when this call started it (and should shut it down).

    A cluster (``address``) gets :func:`cluster_runtime_env`, so its nodes need not have
    this package installed; a local cluster runs this machine's installation.
    """
    if ray.is_initialized():
        return False
    if address is not None:
        ray.init(address=address, runtime_env=cluster_runtime_env(), log_to_driver=False)
    else:
        ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    return True


def _run_ray(tasks, workers, address, progress) -> list[CellResult]:
    ray = _import_ray()
    started = _ensure_ray(ray, workers, address)
    try:
        remote = ray.remote(num_cpus=1)(_run_in_worker)
        refs = [remote.remote(task) for task in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[CellResult | None] = [None] * len(tasks)
        pending = list(refs)
        done = 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            result = ray.get(ready[0])
            results[index[ready[0]]] = result
            done += 1
            if progress is not None:
                progress(result, done, len(tasks))
        return [r for r in results if r is not None]
    finally:
        if started:
            ray.shutdown()


def _tune_trainable(config: Mapping[str, Any]) -> dict[str, float]:
    worker_init()
    base: CellTask = config["task"]
    overrides = {
        "expectile": float(config["expectile"]),
        "weight_temp": float(config["weight_temp"]),
        "actor_learning_rate": float(config["learning_rate"]),
        "critic_learning_rate": float(config["learning_rate"]),
    }
    result = run_cell(dataclasses.replace(base, overrides=overrides))
    return {**result.scores, "seed": result.seed}


def tune_sweep(
    task: CellTask,
    space: Mapping[str, Sequence[float]] = TUNE_SPACE,
    seeds: Sequence[int] = (0,),
    workers: int | None = None,
    ray_address: str | None = None,
    storage_path: str | None = None,
) -> list[dict[str, Any]]:
    """A Ray Tune grid search (:data:`TUNE_SPACE`) over VancoIQL's expectile, temperature and lr.

    Each trial is :func:`run_cell` of ``task`` (a VancoIQL-family algorithm) with the
    trial's ``expectile``, ``weight_temp`` and learning rate (actor and critic), one trial
    per grid point and seed. Score trials on *validation* patients (``task.eval_seed``
    different from the benchmark's test patients) to keep the test patients out of tuning.
    ``storage_path`` is where Tune keeps the experiment (``vanco_offline_tune/`` under it):
    a local folder, or a URI that pyarrow's filesystems know (``s3://...``, ``gs://...``)
    so that a cluster's trials write where every node can reach; default Tune's own
    (``~/ray_results``).

    Returns
    -------
    list of dict
        One row per trial: the grid point, the seed and the rollout scores.
    """
    from vanco_bench.offline.grid import ALGORITHMS

    if task.algo not in ALGORITHMS or ALGORITHMS[task.algo].preset is None:
        raise ValueError(f"tune_sweep tunes a VancoIQL preset algorithm; {task.algo!r} is not one")
    unknown = sorted(set(space) - set(TUNE_SPACE))
    if unknown:
        raise ValueError(f"tune space keys {unknown} unknown; choose from {sorted(TUNE_SPACE)}")
    ray = _import_ray()
    from ray import tune

    started = _ensure_ray(ray, workers, ray_address)
    try:
        param_space: dict[str, Any] = {
            "task": task,
            **{k: tune.grid_search(list(map(float, space.get(k, TUNE_SPACE[k])[:]))) for k in TUNE_SPACE},
        }
        if len(seeds) > 1:
            param_space["task"] = tune.grid_search([dataclasses.replace(task, seed=s) for s in seeds])
        tuner = tune.Tuner(
            tune.with_resources(_tune_trainable, {"cpu": 1}),
            param_space=param_space,
            tune_config=tune.TuneConfig(metric="attainment", mode="max"),
            run_config=tune.RunConfig(name="vanco_offline_tune", storage_path=storage_path, verbose=0),
        )
        grid = tuner.fit()
        rows = []
        for result in grid:
            if result.error is not None:
                raise RuntimeError(f"a tuning trial failed: {result.error}")
            cfg = result.config
            rows.append(
                {
                    "expectile": cfg["expectile"],
                    "weight_temp": cfg["weight_temp"],
                    "learning_rate": cfg["learning_rate"],
                    **{k: v for k, v in result.metrics.items() if k in _SCORE_KEYS},
                }
            )
        rows.sort(key=lambda r: (r["expectile"], r["weight_temp"], r["learning_rate"], r["seed"]))
        return rows
    finally:
        if started:
            ray.shutdown()


_SCORE_KEYS = (
    "attainment",
    "target_48h",
    "time_to_target_h",
    "aki_rate",
    "return_",
    "discounted_return",
    "dose_at_max",
    "mean_dose_mg",
    "seed",
)
