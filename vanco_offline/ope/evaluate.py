"""``evaluate(policy, data) -> OPEReport``: every estimator, its interval and its diagnostics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from d3rlpy.dataset import ReplayBufferBase
from vanco_pk.targets import FEATURES

from vanco_offline.data import ConversionResult
from vanco_offline.ope.behavior import BehaviorModel, fit_behavior_model
from vanco_offline.ope.bootstrap import bootstrap_counts, percentile_interval
from vanco_offline.ope.estimators import IS_ESTIMATORS, MODEL_ESTIMATORS, estimate, importance_weights
from vanco_offline.ope.fqe import FittedQ, FQESettings, fit_fqe
from vanco_offline.ope.policy import AlgoPolicy, LoggedContext, as_policy
from vanco_offline.ope.report import Estimate, OPEReport, SupportCheck
from vanco_offline.ope.trajectories import Trajectories, to_trajectories
from vanco_offline.ope.truth import SimulatorTruth, TrueValue, simulate_value

__all__ = ["ESTIMATORS", "ModelValues", "evaluate", "greedy_q", "model_values", "support_check"]

ESTIMATORS: tuple[str, ...] = ("fqe", *IS_ESTIMATORS, *MODEL_ESTIMATORS)
#: Softening given to a deterministic policy when importance sampling is asked for.
DEFAULT_EPSILON = 0.1


class ModelValues:
    """FQE's ``Q(s_t, a)`` at every logged step, and what the estimators take from it."""

    def __init__(self, fitted: FittedQ, trajectories: Trajectories, pmf: np.ndarray):
        traj = trajectories
        stay, step = np.nonzero(traj.mask)
        q = np.zeros_like(pmf)
        q[stay, step] = fitted.q_values(traj, stay, step)
        self.fitted = fitted
        self.q_all = q
        self.q_logged = np.take_along_axis(q, traj.actions[..., None], axis=2)[..., 0]
        self.v_states = (q * pmf).sum(axis=2)

    @property
    def initial_values(self) -> np.ndarray:
        return self.v_states[:, 0]


def model_values(
    trajectories: Trajectories, pmf: np.ndarray, gamma: float, settings: FQESettings, algo: Any = None
) -> ModelValues:
    """Fit FQE for the policy ``pmf`` and evaluate its Q at every logged step."""
    return ModelValues(fit_fqe(trajectories, pmf, gamma, settings, algo=algo), trajectories, pmf)


def support_check(
    trajectories: Trajectories,
    pmf: np.ndarray,
    behavior: BehaviorModel,
    threshold: float = 0.01,
    warn_above: float = 0.1,
) -> SupportCheck:
    """How much of the evaluated policy's mass lies on doses the behaviour policy rarely gives."""
    traj = trajectories
    mask = traj.mask
    rare_here = behavior.probabilities < threshold
    conditional = float((pmf * rare_here).sum(axis=2)[mask].mean())
    freq = np.bincount(traj.actions[mask], minlength=traj.n_actions) / traj.n_transitions
    rare = freq < threshold
    marginal = float(pmf[..., rare].sum(axis=-1)[mask].mean()) if rare.any() else 0.0
    return SupportCheck(
        threshold=threshold,
        conditional_mass=conditional,
        marginal_mass=marginal,
        rare_doses=tuple(float(v) for v in traj.action_values[rare]),
        warn_above=warn_above,
    )


def greedy_q(algo: Any, trajectories: Trajectories) -> float | None:
    """The seed's criterion: mean over logged states of the algorithm's Q of its greedy action.

    None for an algorithm without a Q-function (e.g. behaviour cloning).
    """
    obs = trajectories.observations[trajectories.mask].astype(np.float32)
    try:
        values = [
            algo.predict_value(obs[i : i + 8192], algo.predict(obs[i : i + 8192]))
            for i in range(0, len(obs), 8192)
        ]
    except (NotImplementedError, AttributeError, AssertionError):
        return None
    return float(np.mean(np.concatenate(values)))


def evaluate(
    policy: Any,
    data: ConversionResult | ReplayBufferBase | Trajectories,
    *,
    gamma: float = 0.99,
    estimators: Sequence[str] = ESTIMATORS,
    epsilon: float | None = None,
    name: str | None = None,
    table: Any = None,
    context: LoggedContext | None = None,
    behavior: Literal["auto", "logged", "model"] = "auto",
    behavior_model: BehaviorModel | None = None,
    fqe: FQESettings | None = None,
    clip: float | str | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    support_threshold: float = 0.01,
    support_warn: float = 0.1,
    truth: SimulatorTruth | TrueValue | None = None,
    seed: int = 0,
) -> OPEReport:
    """Off-policy evaluation of ``policy`` on logged stays, with intervals and diagnostics.

    Parameters
    ----------
    policy : d3rlpy algorithm, vanco_pk policy, ndarray (n, H, K) or EvaluatedPolicy
        The policy to evaluate (see :func:`vanco_offline.ope.as_policy`).
    data : ConversionResult, MDPDataset or Trajectories
        The logged stays (a ``ConversionResult`` brings stay ids, observation names and
        the logged ``behavior_prob``).
    gamma : float
        Discount per decision; use the one the policy was trained with.
    estimators : sequence of str
        Any of ``fqe``, ``pdis``, ``wis``, ``wpdis``, ``dr``, ``wdr``.
    epsilon : float, optional
        Evaluate ``(1 - epsilon) * policy + epsilon * uniform``. Default: 0.1 for a
        deterministic policy when an importance-weighted estimator is asked for (IS of a
        deterministic policy keeps almost no stay), else 0. Stated in the report.
    name : str, optional
    table : pandas.DataFrame, optional
        The dosing table ``data`` was converted from: reference policies replay its stays
        (``vanco_offline.data.cohort.score_table``).
    context : LoggedContext, optional
        Instead of ``table``: covariates, times, level flags and truth for replaying a
        history-dependent policy.
    behavior : {"auto", "logged", "model"}
        Behaviour probabilities for IS: the logged ``behavior_prob`` ("auto" when present)
        or the fitted behaviour model.
    behavior_model : BehaviorModel, optional
        A model already fitted on the same data (reused across policies); else one is fitted
        here (also for the support check).
    fqe : FQESettings, optional
        FQE hyperparameters (default ``FQESettings()``).
    clip : float or "sqrt_n", optional
        Upper bound on cumulative importance weights; "sqrt_n" truncates each step's
        weights at sqrt(n) times their mean (:func:`~vanco_offline.ope.importance_weights`).
    n_bootstrap, confidence : int, float
        Percentile bootstrap over stays.
    support_threshold, support_warn : float
        See :class:`~vanco_offline.ope.report.SupportCheck`.
    truth : SimulatorTruth or TrueValue, optional
        The simulator's ground truth (computed here from a ``SimulatorTruth``, whose
        ``env_options["reward"]`` must be the reward the data were converted with, e.g.
        ``"exposure"``; an algorithm is fed its observation columns rebuilt online).
    seed : int
        Seeds the bootstrap, the behaviour model and (unless ``fqe.seed`` differs) nothing
        else; FQE is seeded by ``fqe.seed``.

    Returns
    -------
    OPEReport
        ``print(report)`` shows the table.

    Raises
    ------
    ValueError
        Unknown estimator or option, data/policy mismatch, bad probabilities.
    """
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown or not estimators:
        raise ValueError(f"unknown estimator(s) {unknown}; choose from {ESTIMATORS}")
    if behavior not in ("auto", "logged", "model"):
        raise ValueError(f"behavior must be 'auto', 'logged' or 'model', got {behavior!r}")
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    traj = to_trajectories(data)
    if context is None:
        names = data.observation_names if isinstance(data, ConversionResult) else FEATURES
        context = LoggedContext(observation_names=tuple(names), table=table)
    elif table is not None:
        raise ValueError("give either table= or context=, not both (LoggedContext has a table field)")
    notes: list[str] = []
    weighted = [e for e in estimators if e in IS_ESTIMATORS + MODEL_ESTIMATORS]
    pol = as_policy(policy, epsilon, name)
    if epsilon is None and pol.deterministic and pol.epsilon == 0 and weighted:
        pol = as_policy(pol, DEFAULT_EPSILON)
        notes.append(
            "the policy is deterministic, so importance sampling would keep only stays that match it at "
            "every step; every estimate (and the truth) is for the softened policy "
            f"{1 - DEFAULT_EPSILON:g} x policy + {DEFAULT_EPSILON:g} x uniform dose "
            "(pass epsilon=0 with estimators=('fqe',) for the greedy one)"
        )
    pmf = pol.logged_pmf(traj, context)

    if behavior_model is None:
        behavior_model = fit_behavior_model(traj, seed=seed)
    elif behavior_model.probabilities.shape != pmf.shape:
        raise ValueError(
            f"behavior_model was fitted on data of shape {behavior_model.probabilities.shape}, "
            f"not {pmf.shape}: fit it on the same data"
        )
    if behavior == "logged" and traj.behavior_prob is None:
        raise ValueError("behavior='logged' but the data have no behavior_prob; use behavior='model'")
    use_logged = traj.behavior_prob is not None and behavior != "model"
    mu = traj.behavior_prob if use_logged else behavior_model.logged(traj)
    source = "logged behavior_prob" if use_logged else "fitted behaviour model (out-of-fold)"
    if not use_logged and behavior_model.n_floored:
        notes.append(
            f"{behavior_model.n_floored} logged dose(s) got the behaviour model's floor probability "
            f"{behavior_model.floor:g}: their weights are large and uncertain"
        )
    target_logged = np.take_along_axis(pmf, traj.actions[..., None], axis=2)[..., 0]
    weights = importance_weights(target_logged, mu, traj.mask, clip)

    model: ModelValues | None = None
    if "fqe" in estimators or any(e in MODEL_ESTIMATORS for e in estimators):
        algo = pol.algo if isinstance(pol, AlgoPolicy) else None
        model = model_values(traj, pmf, gamma, fqe or FQESettings(), algo=algo)

    counts = bootstrap_counts(traj.n_stays, n_bootstrap, seed)
    results: dict[str, Estimate] = {}
    for est in estimators:
        if est == "fqe":
            assert model is not None
            v0 = model.initial_values
            value, reps = float(v0.mean()), counts @ v0 / traj.n_stays
            results[est] = Estimate(est, value, percentile_interval(reps, confidence))
            continue
        extra = {}
        if est in MODEL_ESTIMATORS:
            assert model is not None
            extra = {"q_logged": model.q_logged, "v_states": model.v_states}
        value = float(estimate(est, weights, traj.rewards, gamma, **extra))
        reps = estimate(est, weights, traj.rewards, gamma, counts=counts, **extra)
        results[est] = Estimate(est, value, percentile_interval(reps, confidence), weights.diagnostics())
    returns = traj.returns(gamma)
    logged = Estimate(
        "logged", float(returns.mean()), percentile_interval(counts @ returns / traj.n_stays, confidence)
    )
    support = support_check(traj, pmf, behavior_model, support_threshold, support_warn)

    true_value = truth if isinstance(truth, TrueValue) or truth is None else None
    if isinstance(truth, SimulatorTruth):
        true_value = simulate_value(pol, gamma, truth, context.observation_names)
        if true_value.horizon != traj.horizon:
            raise ValueError(
                f"the simulator runs {true_value.horizon} decisions but the longest logged stay has "
                f"{traj.horizon}: give SimulatorTruth the env_options that generated the data"
            )
    return OPEReport(
        policy=pol.describe(),
        n_stays=traj.n_stays,
        n_transitions=traj.n_transitions,
        horizon=traj.horizon,
        gamma=gamma,
        estimates=results,
        behavior_source=source,
        calibration=behavior_model.calibration,
        support=support,
        logged_return=logged,
        greedy_q=greedy_q(pol.algo, traj) if isinstance(pol, AlgoPolicy) else None,
        truth=true_value,
        fqe_losses=None if model is None else model.fitted.losses,
        notes=notes,
        target_pmf=pmf,
        model=model,
    )
