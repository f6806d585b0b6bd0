"""The evaluated policy as a distribution over grid doses, on logged stays and in the simulator.

Every estimator needs the evaluated policy's probability of each grid dose at each logged
decision. Three kinds of policy provide it:

* a d3rlpy algorithm (:class:`AlgoPolicy`): it acts on the observation alone, so its dose
  at every logged state is one ``algo.predict`` call; a continuous dose counts as the
  250 mg grid level it rounds to (doses are drawn up in 250 mg steps);
* a reference policy of ``vanco_pk.policies`` (:class:`ReferencePolicy`): history
  dependent, so each logged stay is *replayed* through it (it is told the logged doses,
  whatever it would have given) and it returns its pmf given that history;
* precomputed probabilities (:class:`ArrayPolicy`), e.g. from a tabular problem.

A deterministic policy puts probability 0 on every dose but one, so importance sampling
keeps only the stays in which it agreed with the clinician at every step: with 13 doses
and 14 decisions that is almost none. ``epsilon`` makes the evaluated policy
``(1 - epsilon) * pi + epsilon * uniform`` -- a real, deployable policy (it deviates at
random with probability ``epsilon``) whose value every estimator and the simulator's
ground truth then measure. :func:`vanco_offline.ope.evaluate` says in its report when it
evaluated a softened policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from vanco_pk.targets import COVARIATES, DOSE_GRID_MG, FEATURES

from vanco_offline.ope.trajectories import Trajectories

__all__ = ["AlgoPolicy", "ArrayPolicy", "EvaluatedPolicy", "LoggedContext", "ReferencePolicy", "as_policy"]


@dataclasses.dataclass(frozen=True)
class LoggedContext:
    """What a history-dependent policy needs beyond the observations to replay logged stays.

    Attributes
    ----------
    covariates : mapping of str to ndarray (n,), optional
        ``weight_kg``, ``age``, ``sex``, ``height_cm``, ``dialysis`` of each stay.
    time_h : ndarray (n, H), optional
        Decision times (else the policy's interval apart).
    level_measured : ndarray (n, H) of bool, optional
        Whether a level was drawn at each step.
    truth : mapping of str to ndarray (n, H), optional
        The simulator's true state, for the oracle.
    observation_names : tuple of str
        Names of the observation columns.
    table : pandas.DataFrame, optional
        The dosing table the data were converted from. When given, reference policies are
        scored with ``vanco_offline.data.cohort.score_table`` (covariates, times, level
        flags and, for the oracle, the ``true_*`` columns all come from it) and the other
        fields are not needed.
    """

    observation_names: tuple[str, ...] = FEATURES
    table: Any = None
    covariates: Mapping[str, np.ndarray] | None = None
    time_h: np.ndarray | None = None
    level_measured: np.ndarray | None = None
    truth: Mapping[str, np.ndarray] | None = None


class EvaluatedPolicy:
    """Base class: a dosing policy's pmf over the ``K`` grid actions, softened by ``epsilon``.

    Subclasses implement :meth:`_logged_pmf` and, to be simulated, :meth:`simulator_policy`.
    """

    name: str = "policy"
    deterministic: bool = False
    epsilon: float = 0.0

    def logged_pmf(self, trajectories: Trajectories, context: LoggedContext | None = None) -> np.ndarray:
        """Probability of each grid action at each logged step, shape (n, H, K), softened."""
        pmf = np.asarray(self._logged_pmf(trajectories, context or LoggedContext()), dtype=np.float64)
        expected = (*trajectories.mask.shape, trajectories.n_actions)
        if pmf.shape != expected:
            raise ValueError(
                f"policy {self.name!r} gave probabilities of shape {pmf.shape}, expected {expected}"
            )
        _check_pmf(pmf[trajectories.mask], self.name)
        return soften(pmf, self.epsilon)

    def _logged_pmf(self, trajectories: Trajectories, context: LoggedContext) -> np.ndarray:
        raise NotImplementedError

    def simulator_policy(self, observation_names: Sequence[str], interval_h: float = 12.0) -> Any:
        """An object with ``reset(covariates, seed)``, ``action_probs(obs, info)`` and
        ``record(dose_mg)`` (the ``vanco_pk.policies`` protocol) that acts in the simulator;
        the caller applies ``epsilon``. ``observation_names`` are the data's observation
        columns, ``interval_h`` the environment's decision interval."""
        raise ValueError(f"policy {self.name!r} cannot act in the simulator (it is a table of probabilities)")

    def describe(self) -> str:
        if self.epsilon > 0:
            return f"{self.name}, softened: {1 - self.epsilon:g} x policy + {self.epsilon:g} x uniform dose"
        return self.name


def soften(pmf: np.ndarray, epsilon: float) -> np.ndarray:
    """``(1 - epsilon) * pmf + epsilon / K``."""
    if epsilon == 0:
        return pmf
    return (1.0 - epsilon) * pmf + epsilon / pmf.shape[-1]


def _check_epsilon(epsilon: float) -> float:
    if not 0.0 <= float(epsilon) < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon!r}")
    return float(epsilon)


def _check_pmf(pmf: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(pmf)) or np.any(pmf < -1e-9):
        raise ValueError(f"policy {name!r} gave probabilities that are negative or not finite")
    sums = pmf.sum(axis=-1)
    if np.any(np.abs(sums - 1.0) > 1e-6):
        raise ValueError(
            f"policy {name!r} gave probabilities that do not sum to 1 "
            f"(one sums to {sums.flat[np.argmax(np.abs(sums - 1))]:.6g})"
        )


class ArrayPolicy(EvaluatedPolicy):
    """Precomputed probabilities of every grid action at every logged step, (n, H, K)."""

    def __init__(self, pmf: np.ndarray, name: str = "array policy", epsilon: float = 0.0):
        self.pmf = np.asarray(pmf, dtype=np.float64)
        if self.pmf.ndim != 3:
            raise ValueError(
                f"ArrayPolicy needs probabilities of shape (stays, steps, actions), got {self.pmf.shape}"
            )
        self.name = name
        self.epsilon = _check_epsilon(epsilon)
        self.deterministic = bool(np.all(np.isclose(self.pmf.max(axis=-1), 1.0)))

    def _logged_pmf(self, trajectories: Trajectories, context: LoggedContext) -> np.ndarray:
        return self.pmf


class AlgoPolicy(EvaluatedPolicy):
    """A trained d3rlpy algorithm's greedy dose (``algo.predict``), as a one-hot grid pmf.

    Parameters
    ----------
    algo : d3rlpy QLearningAlgoBase
        Discrete algorithms predict a grid index; continuous ones a dose in mg, assigned to
        the grid level it rounds to.
    epsilon : float
        Softening (see the module docstring); greedy policies need it for IS.
    name : str, optional
    stochastic : bool
        Evaluate the algorithm's own action distribution instead of its greedy action; needs
        ``algo.predict_action_probabilities`` (DiscreteVancoIQL's categorical policy).
    pk_model : GotiModel, optional
        The population prior of its PK features in simulator rollouts (the conversion's
        ``population_model``; None: Goti 2018).
    """

    def __init__(
        self,
        algo: Any,
        epsilon: float = 0.0,
        name: str | None = None,
        stochastic: bool = False,
        pk_model: Any = None,
    ):
        if not hasattr(algo, "predict") or getattr(algo, "impl", None) is None:
            raise ValueError(
                "AlgoPolicy needs a built d3rlpy algorithm "
                "(fit it, or call build_with_dataset and load_model)"
            )
        if stochastic and not callable(getattr(algo, "predict_action_probabilities", None)):
            raise ValueError(
                f"stochastic=True needs an algorithm with predict_action_probabilities(); "
                f"{type(algo).__name__} has none: evaluate its greedy policy with epsilon > 0"
            )
        self.algo = algo
        self.epsilon = _check_epsilon(epsilon)
        self.stochastic = stochastic
        self.deterministic = not stochastic
        self.name = name or type(algo).__name__
        self.discrete = algo.get_action_type().name == "DISCRETE"
        self.pk_model = pk_model

    def probabilities(self, observations: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """The algorithm's pmf over the grid for each observation row (one-hot when greedy)."""
        x = np.asarray(observations, dtype=np.float32)
        chunks = [x[i : i + 8192] for i in range(0, len(x), 8192)]
        k = len(grid)
        if self.stochastic:
            pmf = np.concatenate([np.asarray(self.algo.predict_action_probabilities(c)) for c in chunks])
            if pmf.shape != (len(x), k):
                raise ValueError(
                    f"{self.name} gave probabilities of shape {pmf.shape}, expected ({len(x)}, {k})"
                )
            return pmf.astype(np.float64)
        action = np.concatenate([np.asarray(self.algo.predict(c)) for c in chunks])
        if self.discrete:
            index = action.reshape(-1).astype(np.int64)
        else:
            edges = (grid[1:] + grid[:-1]) / 2.0
            index = np.searchsorted(edges, action.reshape(len(x), -1)[:, 0], side="right").astype(np.int64)
        if index.min() < 0 or index.max() >= k:
            raise ValueError(f"{self.name} chose action {int(index.max())}, outside the {k} actions")
        return np.eye(k)[index]

    def _logged_pmf(self, trajectories: Trajectories, context: LoggedContext) -> np.ndarray:
        traj = trajectories
        if not self.discrete and not traj.continuous and traj.n_actions != len(DOSE_GRID_MG):
            raise ValueError(
                f"{self.name} gives doses in mg but the dataset's {traj.n_actions} discrete actions "
                f"are not the {len(DOSE_GRID_MG)}-level dose grid"
            )
        grid = traj.action_values if traj.continuous else DOSE_GRID_MG[: traj.n_actions]
        n, horizon, d = traj.observations.shape
        pmf = self.probabilities(traj.observations.reshape(n * horizon, d), grid)
        return pmf.reshape(n, horizon, traj.n_actions)

    def simulator_policy(self, observation_names: Sequence[str], interval_h: float = 12.0) -> Any:
        return _AlgoDosing(self, tuple(observation_names), float(interval_h), self.pk_model)


class ReferencePolicy(EvaluatedPolicy):
    """A ``vanco_pk.policies`` dosing policy (clinician, MIPD, oracle, random, fixed).

    On logged data each stay is replayed through it (``vanco_pk.policies.replay``); this
    needs the stays' covariates, times and level flags: from the dosing table
    (``evaluate(..., table=table)``, scored by ``vanco_offline.data.cohort.score_table``),
    else the covariates from the observation (data converted with ``covariates=True``).
    """

    def __init__(self, policy: Any, epsilon: float = 0.0, name: str | None = None):
        for method in ("reset", "action_probs", "record"):
            if not callable(getattr(policy, method, None)):
                raise ValueError(
                    f"ReferencePolicy needs a vanco_pk.policies policy; {policy!r} has no {method}()"
                )
        self.policy = policy
        self.epsilon = _check_epsilon(epsilon)
        self.name = name or getattr(policy, "name", type(policy).__name__)
        self.deterministic = bool(getattr(policy, "deterministic", False))

    def _logged_pmf(self, trajectories: Trajectories, context: LoggedContext) -> np.ndarray:
        from vanco_pk.policies import replay

        traj = trajectories
        if traj.n_actions != len(DOSE_GRID_MG):
            raise ValueError(
                f"reference policies dose on the {len(DOSE_GRID_MG)}-level grid; "
                f"this dataset has {traj.n_actions} actions"
            )
        if context.table is not None:
            return _scored_from_table(self.policy, context.table, traj)
        covariates = _covariates(traj, context, self.name)
        truth = context.truth
        if getattr(self.policy, "needs_truth", False) and truth is None:
            raise ValueError(
                f"policy {self.name!r} reads the simulator's true state; pass LoggedContext(truth=...) "
                "or a simulated cohort's table, which has the true_* columns (evaluate(..., table=table))"
            )
        doses = DOSE_GRID_MG[traj.actions] if not traj.continuous else traj.raw_actions
        time_h = context.time_h
        if time_h is not None:
            time_h = _pad_time(np.asarray(time_h, dtype=np.float64), traj.mask)
        return replay(
            self.policy,
            covariates,
            traj.observations,
            doses,
            time_h=time_h,
            level_measured=context.level_measured,
            truth=truth,
        )

    def simulator_policy(self, observation_names: Sequence[str], interval_h: float = 12.0) -> Any:
        return self.policy


def _scored_from_table(policy: Any, table: Any, traj: Trajectories) -> np.ndarray:
    """The policy's pmf at every logged step, by replaying the table's stays (``score_table``)."""
    from vanco_offline.data.cohort import score_table

    scores = score_table(table, policy)
    rows_of = table.groupby("stay_id", sort=False).indices
    out = np.full((*traj.mask.shape, traj.n_actions), 1.0 / traj.n_actions)
    for i, (stay, length) in enumerate(zip(traj.stay_ids, traj.lengths.tolist(), strict=True)):
        rows = rows_of.get(stay)
        if rows is None or len(rows) < length:
            raise ValueError(
                f"stay {stay!r} of the dataset has {length} transitions but the table has "
                f"{0 if rows is None else len(rows)} rows for it: pass the table the data were converted from"
            )
        rows = np.sort(rows)[:length]
        dose = table["dose_mg"].to_numpy(np.float64)[rows]
        logged = traj.raw_actions[i, :length] if traj.continuous else DOSE_GRID_MG[traj.actions[i, :length]]
        if not np.allclose(dose, logged):
            raise ValueError(
                f"stay {stay!r}: the table's doses {dose.tolist()} differ from the dataset's "
                f"{logged.tolist()}; pass the table the data were converted from"
            )
        out[i, :length] = scores.pmf[rows]
    return out


def _covariates(traj: Trajectories, context: LoggedContext, name: str) -> Mapping[str, np.ndarray]:
    if context.covariates is not None:
        cov = {k: np.asarray(v, dtype=np.float64) for k, v in context.covariates.items()}
        short = [k for k, v in cov.items() if v.shape != (traj.n_stays,)]
        if short:
            raise ValueError(f"LoggedContext covariates {short} need one value per stay ({traj.n_stays})")
        return cov
    names = list(context.observation_names)
    missing = [c for c in COVARIATES if c not in names]
    if missing:
        raise ValueError(
            f"policy {name!r} replays logged stays and needs each patient's {list(COVARIATES)}; the "
            f"observation lacks {missing}: pass the dosing table (evaluate(..., table=table)) or "
            "convert the table with covariates=True"
        )
    return {c: traj.observations[:, 0, names.index(c)].astype(np.float64) for c in COVARIATES}


def _pad_time(time_h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Decision times with padded steps continuing at the stay's last interval."""
    if time_h.shape != mask.shape:
        raise ValueError(f"time_h has shape {time_h.shape}, expected (stays, steps) = {mask.shape}")
    out = time_h.copy()
    lengths = mask.sum(axis=1)
    for i in np.flatnonzero(lengths < mask.shape[1]):
        last = lengths[i] - 1
        step = time_h[i, last] - time_h[i, last - 1] if last > 0 else 12.0
        out[i, last + 1 :] = time_h[i, last] + step * np.arange(1, mask.shape[1] - last)
    return out


class _AlgoDosing:
    """A d3rlpy algorithm behind the ``vanco_pk.policies`` protocol, for simulator rollouts.

    The algorithm was trained on the data layer's observation columns; the offline
    benchmark's :class:`~vanco_offline.rollout.ObservationBuilder` rebuilds them
    from the environment's observation and ``info`` as the converter builds them from a
    cohort table (rounded chart values, covariates, the previous dose, the exposure tracker's
    features replayed from the doses given and the levels drawn), so that the truth rollout
    and the logged data show a policy the same state.
    """

    def __init__(
        self, policy: AlgoPolicy, observation_names: tuple[str, ...], interval_h: float, pk_model: Any = None
    ):
        from vanco_pk.pk import GOTI_2018

        from vanco_offline.rollout import observation_builder

        self.policy = policy
        self.build = observation_builder(observation_names, interval_h, pk_model or GOTI_2018)

    def reset(self, covariates: Mapping[str, Any], seed: Any = None) -> None:
        self.build.reset(covariates)

    def inputs(self, obs: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        """The observation the algorithm is fed at this decision (call once per decision: the
        exposure tracker is told the dose given since the previous call)."""
        return self.build(obs, info)

    def action_probs(self, obs: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        return self.policy.probabilities(self.inputs(obs, info), DOSE_GRID_MG)

    def record(self, dose_mg: Any) -> None:
        """Nothing to remember: the builder reads the dose given from the next ``info``."""


def as_policy(
    policy: Any, epsilon: float | None = None, name: str | None = None, pk_model: Any = None
) -> EvaluatedPolicy:
    """Wrap a d3rlpy algorithm, a ``vanco_pk`` policy or an (n, H, K) array as an :class:`EvaluatedPolicy`.

    ``epsilon=None`` keeps an :class:`EvaluatedPolicy`'s own softening and means 0 otherwise;
    ``pk_model`` is a d3rlpy algorithm's PK-feature prior (:class:`AlgoPolicy`).
    """
    if isinstance(policy, EvaluatedPolicy):
        if epsilon is not None and epsilon != policy.epsilon:
            policy = dataclasses.replace(policy) if dataclasses.is_dataclass(policy) else _copy(policy)
            policy.epsilon = _check_epsilon(epsilon)
        return policy
    eps = 0.0 if epsilon is None else epsilon
    if isinstance(policy, np.ndarray):
        return ArrayPolicy(policy, name=name or "array policy", epsilon=eps)
    if hasattr(policy, "predict") and hasattr(policy, "get_action_type"):
        return AlgoPolicy(policy, epsilon=eps, name=name, pk_model=pk_model)
    if callable(getattr(policy, "action_probs", None)):
        return ReferencePolicy(policy, epsilon=eps, name=name)
    raise ValueError(
        f"cannot evaluate {type(policy).__name__}: give a d3rlpy algorithm, a vanco_pk.policies policy "
        "(make_policy(...)), an array of probabilities (stays, steps, actions) or an EvaluatedPolicy"
    )


def _copy(policy: EvaluatedPolicy) -> EvaluatedPolicy:
    clone = object.__new__(type(policy))
    clone.__dict__.update(policy.__dict__)
    return clone
