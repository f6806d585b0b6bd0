"""``evaluate(policy, data) -> OPEReport``: every estimator, its interval and its diagnostics.

The policy is evaluated as it is given -- a greedy policy greedy -- by the estimators that
can (``fqe``, ``lfqe``, ``twin``). Importance sampling cannot evaluate a deterministic policy
(it keeps only the stays that agree with it at every step), so the weighted estimators
evaluate the softened policy ``(1 - epsilon) x policy + epsilon x uniform dose`` and the
report labels their rows "softened" and compares them with the softened policy's truth.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from d3rlpy.dataset import ReplayBufferBase
from vanco_pk.targets import FEATURES

from vanco_offline.data import ConversionResult
from vanco_offline.ope.behavior import BehaviorModel, fit_behavior_model
from vanco_offline.ope.bootstrap import bootstrap_counts, percentile_interval
from vanco_offline.ope.diagnostics import action_support, greedy_q
from vanco_offline.ope.estimators import IS_ESTIMATORS, MODEL_ESTIMATORS, estimate, importance_weights
from vanco_offline.ope.fqe import FQESettings, ModelValues, model_values
from vanco_offline.ope.linear_fqe import LinearFittedQ, LinearFQESettings, fit_linear_fqe
from vanco_offline.ope.policy import AlgoPolicy, EvaluatedPolicy, LoggedContext, as_policy
from vanco_offline.ope.report import Estimate, OPEReport
from vanco_offline.ope.settings import BehaviorSettings, IntervalSettings, SupportSettings
from vanco_offline.ope.trajectories import Trajectories, to_trajectories
from vanco_offline.ope.truth import SimulatorTruth, TrueValue, simulate_value
from vanco_offline.ope.twin import (
    PairedDifference,
    TwinEstimate,
    TwinSettings,
    from_logs,
    paired_difference,
    twin_estimate,
)

__all__ = ["DIRECT_ESTIMATORS", "ESTIMATORS", "evaluate"]

#: Estimators of the policy as given (a greedy policy stays greedy).
DIRECT_ESTIMATORS: tuple[str, ...] = ("fqe", "lfqe", "twin")
ESTIMATORS: tuple[str, ...] = (*DIRECT_ESTIMATORS, *IS_ESTIMATORS, *MODEL_ESTIMATORS)


@dataclasses.dataclass
class _Problem:
    """What every step of :func:`evaluate` reads: the data, the policy as given and as weighted."""

    traj: Trajectories
    context: LoggedContext
    policy: EvaluatedPolicy
    weighted: EvaluatedPolicy
    pmf: np.ndarray
    weighted_pmf: np.ndarray | None
    gamma: float
    counts: np.ndarray
    confidence: float
    notes: list[str]


def evaluate(
    policy: Any,
    data: ConversionResult | ReplayBufferBase | Trajectories,
    *,
    gamma: float = 0.99,
    estimators: Sequence[str] | None = None,
    epsilon: float | None = None,
    name: str | None = None,
    table: Any = None,
    context: LoggedContext | None = None,
    behavior: BehaviorSettings | None = None,
    fqe: FQESettings | None = None,
    linear: LinearFQESettings | None = None,
    twin: TwinSettings | None = None,
    intervals: IntervalSettings | None = None,
    support: SupportSettings | None = None,
    truth: SimulatorTruth | TrueValue | None = None,
    references: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> OPEReport:
    """Off-policy evaluation of ``policy`` on logged stays, with intervals and diagnostics.

    Parameters
    ----------
    policy : d3rlpy algorithm, vanco_pk policy, ndarray (n, H, K) or EvaluatedPolicy
        The policy to evaluate (see :func:`vanco_offline.ope.policy.as_policy`).
    data : ConversionResult, MDPDataset or Trajectories
        The logged stays (a ``ConversionResult`` brings stay ids, observation names and
        the logged ``behavior_prob``).
    gamma : float
        Discount per decision; use the one the policy was trained with.
    estimators : sequence of str, optional
        Any of ``fqe`` (d3rlpy FQE), ``lfqe`` (linear FQE refitted per bootstrap resample),
        ``twin`` (PK digital twins; needs the dosing table), ``pdis``, ``wis``, ``wpdis``,
        ``dr``, ``wdr``. Default: all, ``twin`` only when the table is given.
    epsilon : float, optional
        Evaluate ``(1 - epsilon) * policy + epsilon * uniform`` with every estimator.
        Default: the policy as given; the importance-weighted estimators then evaluate a
        deterministic policy softened by ``behavior.soften`` (0.1), labelled so.
    name : str, optional
    table : pandas.DataFrame, optional
        The dosing table ``data`` was converted from: reference policies replay its stays
        and the twin estimator reads each stay's chart from it.
    context : LoggedContext, optional
        Instead of ``table``: covariates, times, level flags and truth for replaying a
        history-dependent policy.
    behavior : BehaviorSettings, optional
    fqe : FQESettings, optional
    linear : LinearFQESettings, optional
        The linear FQE of ``lfqe`` and the model of ``dr`` and ``wdr``.
    twin : TwinSettings, optional
        Default: ``TwinSettings(world=...)`` with the world of a ``SimulatorTruth``
        given as ``truth`` (the twins take only its interval, horizon and reward: their world is
        built from the logs, :meth:`TwinSettings.twin_world`), else the defaults.
    intervals : IntervalSettings, optional
    support : SupportSettings, optional
    truth : SimulatorTruth or TrueValue, optional
        The simulator's ground truth (computed here from a ``SimulatorTruth``, whose
        ``world.reward`` must be the reward the data were converted with); for a
        softened weighted policy its truth is computed too.
    seed : int
        Seeds the bootstrap, the behaviour model and the twins; FQE is seeded by ``fqe.seed``.

    Returns
    -------
    OPEReport

    Raises
    ------
    ValueError
        Unknown estimator or option, data/policy mismatch, bad probabilities.
    """
    chosen = _check_estimators(
        estimators, table is not None or (context is not None and context.table is not None)
    )
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    if references and "twin" not in chosen:
        raise ValueError("references are compared on the twins: add 'twin' to the estimators")
    behavior = behavior or BehaviorSettings()
    intervals = intervals or IntervalSettings()
    problem = _problem(policy, data, chosen, epsilon, name, table, context, gamma, intervals, behavior, seed)
    traj = problem.traj
    results: dict[str, Estimate] = {}
    neural = _neural_fqe(problem, fqe) if "fqe" in chosen else None
    if neural is not None:
        v0 = neural.initial_values
        reps = problem.counts @ v0 / traj.n_stays
        results["fqe"] = Estimate("fqe", float(v0.mean()), percentile_interval(reps, intervals.confidence))
    if "lfqe" in chosen:
        fit = fit_linear_fqe(traj, problem.pmf, gamma, linear or LinearFQESettings(), problem.counts)
        results["lfqe"] = Estimate(
            "lfqe", fit.value, percentile_interval(fit.replicates, intervals.confidence)
        )
    twin_result, differences = None, []
    if "twin" in chosen:
        twin_result, differences = _twin(problem, twin, truth, references or {}, seed)
        results["twin"] = Estimate("twin", twin_result.value, twin_result.interval)
    behavior_model = _behavior_model(problem, behavior, seed)
    source, dr_model = "-", None
    if any(e in IS_ESTIMATORS + MODEL_ESTIMATORS for e in chosen):
        weighted, source, dr_model = _weighted_estimates(problem, chosen, behavior, behavior_model, linear)
        results.update(weighted)
    results = {e: results[e] for e in chosen}
    returns = traj.returns(gamma)
    logged = Estimate(
        "logged",
        float(returns.mean()),
        percentile_interval(problem.counts @ returns / traj.n_stays, intervals.confidence),
    )
    true_value, true_softened = _truths(problem, truth)
    pol = problem.policy
    return OPEReport(
        policy=pol.describe(),
        n_stays=traj.n_stays,
        n_transitions=traj.n_transitions,
        horizon=traj.horizon,
        gamma=gamma,
        estimates=results,
        behavior_source=source,
        calibration=behavior_model.calibration,
        support=action_support(traj, problem.pmf, behavior_model, support or SupportSettings()),
        logged_return=logged,
        greedy_q=greedy_q(pol.algo, traj) if isinstance(pol, AlgoPolicy) else None,
        truth=true_value,
        fqe_losses=None if neural is None else neural.fitted.losses,
        notes=problem.notes,
        target_pmf=problem.weighted_pmf if problem.weighted_pmf is not None else problem.pmf,
        model=dr_model,
        softened_policy=problem.weighted.describe() if problem.weighted is not pol else None,
        truth_softened=true_softened,
        twin=twin_result,
        fitted_q=neural,
        differences=_with_truth(differences, problem, true_value, truth),
    )


def _check_estimators(estimators: Sequence[str] | None, has_table: bool) -> tuple[str, ...]:
    if estimators is None:
        return tuple(e for e in ESTIMATORS if e != "twin" or has_table)
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown or not estimators:
        raise ValueError(f"unknown estimator(s) {unknown}; choose from {ESTIMATORS}")
    if "twin" in estimators and not has_table:
        raise ValueError("the twin estimator reads each stay's chart from the dosing table: pass table=")
    return tuple(dict.fromkeys(estimators))


def _problem(
    policy: Any,
    data: Any,
    chosen: tuple[str, ...],
    epsilon: float | None,
    name: str | None,
    table: Any,
    context: LoggedContext | None,
    gamma: float,
    intervals: IntervalSettings,
    behavior: BehaviorSettings,
    seed: int,
) -> _Problem:
    """The trajectories, the replay context, the policy as given and as the weighted estimators see it."""
    traj = to_trajectories(data)
    if context is None:
        names = data.observation_names if isinstance(data, ConversionResult) else FEATURES
        context = LoggedContext(observation_names=tuple(names), table=table)
    elif table is not None:
        raise ValueError("give either table= or context=, not both (LoggedContext has a table field)")
    notes: list[str] = []
    # A bare algorithm's PK features use the data's population prior (its conversion options).
    prior = data.population_model if isinstance(data, ConversionResult) else None
    pol = as_policy(policy, epsilon, name, pk_model=prior)
    pmf = pol.logged_pmf(traj, context)
    weighted, weighted_pmf = pol, None
    needs_weights = any(e in IS_ESTIMATORS + MODEL_ESTIMATORS for e in chosen)
    if needs_weights:
        weighted_pmf = pmf
        if epsilon is None and pol.deterministic and pol.epsilon == 0:
            soften = behavior.soften
            weighted = as_policy(pol, soften)
            weighted_pmf = weighted.logged_pmf(traj, context)
            notes.append(
                "the policy is deterministic: fqe, lfqe and twin evaluate it as it is (greedy); importance "
                "sampling would keep only the stays that match it at every step, so pdis/wis/wpdis/dr/wdr "
                f"evaluate the softened policy {1 - soften:g} x policy + {soften:g} x "
                "uniform dose (rows marked 'softened'), a different and worse policy"
            )
    counts = bootstrap_counts(traj.n_stays, intervals.n_bootstrap, seed)
    return _Problem(
        traj, context, pol, weighted, pmf, weighted_pmf, gamma, counts, intervals.confidence, notes
    )


def _neural_fqe(problem: _Problem, settings: FQESettings | None) -> ModelValues:
    algo = problem.policy.algo if isinstance(problem.policy, AlgoPolicy) else None
    return model_values(problem.traj, problem.pmf, problem.gamma, settings or FQESettings(), algo=algo)


def _twin(
    problem: _Problem,
    settings: TwinSettings | None,
    truth: Any,
    references: Mapping[str, Any],
    seed: int,
) -> tuple[TwinEstimate, list[tuple[PairedDifference, EvaluatedPolicy]]]:
    """The policy's twin estimate and, on the same twins, its paired differences to ``references``."""
    if settings is None:
        if isinstance(truth, SimulatorTruth):
            settings = TwinSettings(world=truth.world, seed=seed)
        else:
            settings = TwinSettings(seed=seed)
    settings = dataclasses.replace(settings, n_bootstrap=len(problem.counts), confidence=problem.confidence)
    table, stay_ids = problem.context.table, problem.traj.stay_ids
    if references:  # one kidney for the policy and every reference
        settings = from_logs(settings, table, stay_ids)

    def estimate_of(policy: EvaluatedPolicy) -> TwinEstimate:
        return twin_estimate(
            policy,
            table,
            stay_ids,
            problem.gamma,
            settings,
            problem.context.observation_names,
            problem.traj.horizon,
        )

    result = estimate_of(problem.policy)
    problem.notes.append(result.note)
    differences = []
    for name, reference in references.items():
        ref = as_policy(reference, name=name)
        if ref.name != name:  # an EvaluatedPolicy keeps its own name: the report uses the key
            ref = copy.copy(ref)
            ref.name = name
        ref_estimate = estimate_of(ref)
        for metric in ("value", "attainment"):
            diff = paired_difference(result, ref_estimate, metric, problem.policy.name, ref.name)
            differences.append((diff, ref))
    return result, differences


def _with_truth(
    differences: list[tuple[PairedDifference, EvaluatedPolicy]],
    problem: _Problem,
    true_value: TrueValue | None,
    truth: Any,
) -> list[tuple[PairedDifference, float | None]]:
    """Each paired difference with the simulator's true difference (``None`` without a simulator)."""
    out: list[tuple[PairedDifference, float | None]] = []
    names = problem.context.observation_names
    true_refs: dict[str, TrueValue] = {}
    for diff, ref in differences:
        true = None
        if isinstance(truth, SimulatorTruth) and true_value is not None:
            if ref.name not in true_refs:
                true_refs[ref.name] = simulate_value(ref, problem.gamma, truth, names)
            true = getattr(true_value, diff.metric) - getattr(true_refs[ref.name], diff.metric)
        out.append((diff, true))
    return out


def _behavior_model(problem: _Problem, behavior: BehaviorSettings, seed: int) -> BehaviorModel:
    traj = problem.traj
    model = behavior.model
    if model is None:
        return fit_behavior_model(traj, seed=seed)
    expected = (*traj.mask.shape, traj.n_actions)
    if model.probabilities.shape != expected:
        raise ValueError(
            f"the behaviour model was fitted on data of shape {model.probabilities.shape}, not {expected}: "
            "fit it on the same data"
        )
    return model


def _weighted_estimates(
    problem: _Problem,
    chosen: tuple[str, ...],
    behavior: BehaviorSettings,
    model: BehaviorModel,
    linear: LinearFQESettings | None,
) -> tuple[dict[str, Estimate], str, LinearFittedQ | None]:
    """IS and DR estimates of the weighted (softened) policy; DR's model refitted per resample."""
    traj, pmf = problem.traj, problem.weighted_pmf
    assert pmf is not None
    if behavior.source == "logged" and traj.behavior_prob is None:
        raise ValueError("behavior source 'logged' but the data have no behavior_prob; use 'model'")
    use_logged = traj.behavior_prob is not None and behavior.source != "model"
    mu = traj.behavior_prob if use_logged else model.logged(traj)
    source = "logged behavior_prob" if use_logged else "fitted behaviour model (out-of-fold)"
    if not use_logged and model.n_floored:
        problem.notes.append(
            f"{model.n_floored} logged dose(s) got the behaviour model's floor probability "
            f"{model.floor:g}: their weights are large and uncertain"
        )
    target = np.take_along_axis(pmf, traj.actions[..., None], axis=2)[..., 0]
    weights = importance_weights(target, mu, traj.mask, behavior.clip)
    softened = problem.weighted is not problem.policy
    fit = None
    if any(e in MODEL_ESTIMATORS for e in chosen):
        fit = fit_linear_fqe(traj, pmf, problem.gamma, linear or LinearFQESettings(), problem.counts)
    out: dict[str, Estimate] = {}
    for est in (e for e in chosen if e in IS_ESTIMATORS + MODEL_ESTIMATORS):
        if est in MODEL_ESTIMATORS:
            assert (
                fit is not None and fit.replicate_q_logged is not None and fit.replicate_v_states is not None
            )
            value = float(
                estimate(
                    est, weights, traj.rewards, problem.gamma, q_logged=fit.q_logged, v_states=fit.v_states
                )
            )
            reps = np.array(
                [
                    estimate(
                        est,
                        weights,
                        traj.rewards,
                        problem.gamma,
                        counts=c,
                        q_logged=fit.replicate_q_logged[b],
                        v_states=fit.replicate_v_states[b],
                    )
                    for b, c in enumerate(problem.counts)
                ]
            )
        else:
            value = float(estimate(est, weights, traj.rewards, problem.gamma))
            reps = estimate(est, weights, traj.rewards, problem.gamma, counts=problem.counts)
        out[est] = Estimate(
            est,
            value,
            percentile_interval(reps, problem.confidence),
            weights.diagnostics(),
            softened=softened,
        )
    return out, source, fit


def _truths(problem: _Problem, truth: Any) -> tuple[TrueValue | None, TrueValue | None]:
    """The truth of the policy as given and, when the weighted estimators softened it, of that one."""
    if truth is None or isinstance(truth, TrueValue):
        return truth, None
    names = problem.context.observation_names
    out = []
    for pol in (
        (problem.policy, problem.weighted) if problem.weighted is not problem.policy else (problem.policy,)
    ):
        value = simulate_value(pol, problem.gamma, truth, names)
        if value.horizon != problem.traj.horizon:
            raise ValueError(
                f"the simulator runs {value.horizon} decisions but the longest logged stay has "
                f"{problem.traj.horizon}: give SimulatorTruth the world that generated the data"
            )
        out.append(value)
    return out[0], out[1] if len(out) > 1 else None
