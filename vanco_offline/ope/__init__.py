"""Off-policy evaluation: FQE, linear FQE, PK digital twins, importance sampling, doubly robust, CIs.

Typical use::

    from vanco_offline.ope import SimulatorTruth, evaluate

    report = evaluate(algo, conversion_result, gamma=0.99, truth=SimulatorTruth(n_patients=2000))
    print(report)

See ``docs/ope.md`` for the estimators, the diagnostics and their calibration on the
simulator (``vanco-offline bench ope``).
"""

from vanco_offline.ope.behavior import BehaviorModel, Calibration, fit_behavior_model
from vanco_offline.ope.bootstrap import Interval, bootstrap_counts, percentile_interval
from vanco_offline.ope.diagnostics import action_support, greedy_q
from vanco_offline.ope.estimators import ImportanceWeights, WeightDiagnostics, estimate, importance_weights
from vanco_offline.ope.evaluate import ESTIMATORS, evaluate
from vanco_offline.ope.fqe import (
    FittedQ,
    FQESettings,
    ModelValues,
    TargetActionFeed,
    fit_fqe,
    fqe_config,
    model_values,
)
from vanco_offline.ope.linear_fqe import LinearFittedQ, LinearFQESettings, fit_linear_fqe
from vanco_offline.ope.policy import (
    AlgoPolicy,
    ArrayPolicy,
    EvaluatedPolicy,
    LoggedContext,
    ReferencePolicy,
    as_policy,
)
from vanco_offline.ope.report import ActionSupport, Estimate, OPEReport
from vanco_offline.ope.settings import BehaviorSettings, IntervalSettings, SupportSettings
from vanco_offline.ope.trajectories import Trajectories, to_trajectories
from vanco_offline.ope.truth import SimulatorTruth, TrueValue, simulate_value
from vanco_offline.ope.twin import (
    AKICalibration,
    PKPosterior,
    TwinEstimate,
    TwinSettings,
    calibrate_aki,
    local_prior,
    pk_posterior,
    twin_estimate,
)

__all__ = [
    "ESTIMATORS",
    "AKICalibration",
    "ActionSupport",
    "AlgoPolicy",
    "ArrayPolicy",
    "BehaviorModel",
    "BehaviorSettings",
    "Calibration",
    "Estimate",
    "EvaluatedPolicy",
    "FQESettings",
    "FittedQ",
    "ImportanceWeights",
    "Interval",
    "IntervalSettings",
    "LinearFQESettings",
    "LinearFittedQ",
    "LoggedContext",
    "ModelValues",
    "OPEReport",
    "PKPosterior",
    "ReferencePolicy",
    "SimulatorTruth",
    "SupportSettings",
    "TargetActionFeed",
    "Trajectories",
    "TrueValue",
    "TwinEstimate",
    "TwinSettings",
    "WeightDiagnostics",
    "action_support",
    "as_policy",
    "bootstrap_counts",
    "calibrate_aki",
    "estimate",
    "evaluate",
    "fit_behavior_model",
    "fit_fqe",
    "fit_linear_fqe",
    "fqe_config",
    "greedy_q",
    "importance_weights",
    "local_prior",
    "model_values",
    "percentile_interval",
    "pk_posterior",
    "simulate_value",
    "to_trajectories",
    "twin_estimate",
]
