"""One cell of the offline benchmark: train (or take a reference policy), roll out, score, OPE.

:func:`run_cell` is a plain function of a picklable :class:`~vanco_bench.offline.grid.CellTask`
returning a plain :class:`CellResult`, so that the local process pool, Ray and Ray Tune all
run the same code. Everything is seeded from the task: the dataset from its spec,
``d3rlpy.seed(task.seed)`` for the networks and mini-batches, the held-out patients from
``task.eval_seed``; on one torch thread a cell gives the same numbers every time.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from vanco_bench.offline.grid import ALGORITHMS, CellTask, build_config
from vanco_offline.rollout import EvalPatients, algo_actor, rollout

__all__ = ["OPE_ESTIMATORS", "CellResult", "run_cell", "run_cells", "seed_action_map", "train", "train_seeds"]

#: OPE estimators reported beside the simulator's truth.
OPE_ESTIMATORS: tuple[str, ...] = ("fqe", "wis", "wdr")
_GAMMA = 0.99


@dataclasses.dataclass(frozen=True)
class CellResult:
    """Scores of one cell.

    Attributes
    ----------
    dataset, algo, seed : str, str, int
        The cell.
    scores : dict
        :class:`~vanco_offline.rollout.RolloutScores` as a dict.
    ope : dict
        ``{estimator: value}`` and ``truth`` / ``truth_se`` (the simulator's value of the
        same, possibly softened, policy); empty when OPE was not asked for.
    ope_note : str
        Why OPE was skipped, or what policy the estimates are for.
    train_seconds : float
        Wall time of ``fit`` (0 for reference policies).
    protocol : str
        The level protocol the patients were sampled on ('' in results written before it was kept).
    dose_set : str
        The action set (``grid`` or ``continuous``; '' likewise).
    by_patient : dict
        ``attainment`` (each test patient's share of intervals in 400-600,
        :meth:`vanco_pk.simulate.Trace.attainment_by_patient`) and ``aki`` (0/1 per patient),
        in patient order: what the paired verdicts resample.
    """

    dataset: str
    algo: str
    seed: int
    scores: dict[str, float]
    ope: dict[str, float]
    ope_note: str
    train_seconds: float
    protocol: str = ""
    dose_set: str = ""
    by_patient: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def seed_action_map(action: np.ndarray) -> np.ndarray:
    """An unscaled policy output (the ``seed`` preset's) read as a dose: [-1, 1] linearly onto 0..3000 mg."""
    return (np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0) + 1.0) * 1500.0


def train(task: CellTask) -> tuple[Any, Any, Any]:
    """Train the task's algorithm on its dataset; returns ``(algo, table, conversion result)``."""
    import d3rlpy
    import torch

    spec = ALGORITHMS[task.algo]
    table, result = task.data()
    config = build_config(spec, task, result)
    d3rlpy.seed(task.seed)
    torch.manual_seed(task.seed)
    algo = config.create(device=False)
    algo.fit(
        result.dataset,
        n_steps=task.n_steps,
        n_steps_per_epoch=task.n_steps,
        show_progress=False,
        save_interval=task.n_steps + 1,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
    )
    return algo, table, result


def train_seeds(tasks: Sequence[CellTask]) -> list[tuple[Any, Any, Any]]:
    """:func:`train` for tasks that differ only in their seed, all seeds at once.

    VancoIQL seeds train as one batched model (:func:`vanco_offline.algos.fit_seeds`, each
    seed equal to its own fit up to float rounding); other algorithms seed after seed.
    """
    from vanco_offline.algos import fit_seeds

    first = tasks[0]
    spec = ALGORITHMS[first.algo]
    table, result = first.data()
    config = build_config(spec, first, result)
    algos = fit_seeds(config, result.dataset, [t.seed for t in tasks], first.n_steps)
    return [(algo, table, result) for algo in algos]


def run_cells(tasks: Sequence[CellTask]) -> list[CellResult]:
    """:func:`run_cell` for tasks that differ only in their seed, trained together by :func:`train_seeds`."""
    if len(tasks) < 2 or not tasks[0].learned:
        return [run_cell(task) for task in tasks]
    start = time.perf_counter()
    trained = train_seeds(tasks)
    seconds = (time.perf_counter() - start) / len(tasks)
    return [run_cell(task, (triple, seconds)) for task, triple in zip(tasks, trained, strict=True)]


def run_cell(task: CellTask, trained: tuple[tuple[Any, Any, Any], float] | None = None) -> CellResult:
    """Run one cell: train or build the policy, score it on the held-out patients, OPE if asked.

    ``trained``: ``((algo, table, conversion result), seconds)`` already trained for this task.
    """
    patients = EvalPatients(
        n_patients=task.eval_patients,
        seed=task.eval_seed,
        world=task.dataset.world,
        gamma=_GAMMA,
        dose_set=task.dose_set,
    )
    if not task.learned:
        name, options = task.reference()
        actor, reset = _reference(task, name, options)
        scores = rollout(actor, patients, reset, protocol=task.sampling)
        ope, note = _reference_ope(task) if task.ope else ({}, "")
        return _result(task, scores, ope, note, 0.0)
    if trained is None:
        start = time.perf_counter()
        algo, _, result = train(task)
        seconds = time.perf_counter() - start
    else:
        (algo, _, result), seconds = trained
    seed_reading = ALGORITHMS[task.algo].preset == "seed"
    interval = task.dataset.world.decision_interval_h
    actor, reset = algo_actor(
        algo,
        result.observation_names,
        seed_action_map if seed_reading else None,
        interval_h=interval,
        pk_model=result.population_model,
    )
    scores = rollout(actor, patients, reset, protocol=task.sampling)
    ope: dict[str, float] = {}
    note = ""
    if task.ope:
        if seed_reading:
            note = "no OPE: an unscaled output is not a dose in mg (read as one only for the rollout)"
        elif task.reward_variant not in ("project", "exposure"):
            note = "no OPE for a candidate reward (the simulator does not compute it)"
        else:
            ope, note = _learned_ope(task, algo, result)
    return _result(task, scores, ope, note, seconds)


def _result(task: CellTask, scores: Any, ope: dict[str, float], note: str, seconds: float) -> CellResult:
    trace = scores.trace
    by_patient = {
        "attainment": trace.attainment_by_patient().tolist(),
        "aki": trace.aki.astype(np.float64).tolist(),
    }
    return CellResult(
        task.dataset.label,
        task.label,
        task.seed,
        scores.as_dict(),
        ope,
        note,
        seconds,
        protocol=task.sampling,
        dose_set=task.dose_set,
        by_patient=by_patient,
    )


def _reference(task: CellTask, name: str, options: dict[str, Any]) -> tuple[Any, Any]:
    """The reference policy's actor and reset, sampling with the cell's seed; on unrounded doses
    an MIPD row doses in 5 mg steps (:class:`~vanco_bench.offline.baselines.UnroundedMIPD`).
    The actor carries the policy's ``needs_truth`` (:func:`vanco_offline.rollout.policy_actor`)."""
    from vanco_pk.policies import make_policy

    from vanco_bench.offline.baselines import UnroundedMIPD
    from vanco_offline.rollout import policy_actor

    policy = make_policy(name, **options)
    if task.dose_set == "continuous" and name == "mipd":
        policy = UnroundedMIPD(policy)
    return policy_actor(policy, task.seed)


def _ope_reward(task: CellTask, reward: str) -> str:
    """The reward the simulator's truth scores: the exposure reward for that variant, else ``reward``."""
    return "exposure" if task.reward_variant == "exposure" else reward


def _truth(task: CellTask, reward: str):
    from vanco_offline.ope import SimulatorTruth

    return SimulatorTruth(
        n_patients=task.eval_patients,
        seed=task.eval_seed,
        world=dataclasses.replace(task.dataset.world, reward=reward),
        batch=task.eval_patients,
    )


def _summary(report: Any) -> tuple[dict[str, float], str]:
    out = {name: float(est.value) for name, est in report.estimates.items()}
    if report.truth is not None:
        out["truth"] = float(report.truth.value)
        out["truth_se"] = float(report.truth.std_error)
    return out, report.policy


def _learned_ope(task: CellTask, algo: Any, result: Any) -> tuple[dict[str, float], str]:
    from vanco_offline.ope import FQESettings, evaluate

    spec = ALGORITHMS[task.algo]
    report = evaluate(
        algo,
        result,
        gamma=_GAMMA,
        estimators=OPE_ESTIMATORS,
        name=task.label,
        fqe=FQESettings(n_steps=task.ope_steps, seed=task.seed),
        truth=_truth(task, _ope_reward(task, spec.reward)),
        seed=task.seed,
    )
    return _summary(report)


def _reference_ope(task: CellTask) -> tuple[dict[str, float], str]:
    from vanco_pk.policies import make_policy

    from vanco_offline.ope import FQESettings, evaluate

    # The learned rows' data variant, so that a reference policy's estimates and truth are
    # on the same observation and reward as theirs.
    table, result = task.data("discrete", "default")
    name, options = task.reference()
    report = evaluate(
        make_policy(name, **options),
        result,
        gamma=_GAMMA,
        estimators=OPE_ESTIMATORS,
        name=task.algo,
        table=table,
        fqe=FQESettings(n_steps=task.ope_steps, seed=task.seed),
        truth=_truth(task, _ope_reward(task, "default")),
        seed=task.seed,
    )
    return _summary(report)
