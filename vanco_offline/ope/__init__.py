"""Off-policy evaluation: FQE, importance sampling, doubly robust, bootstrap CIs.

Typical use::

    from vanco_offline.ope import SimulatorTruth, evaluate

    report = evaluate(algo, conversion_result, gamma=0.99, truth=SimulatorTruth(n_patients=2000))
    print(report)

See ``docs/ope.md`` for the estimators, the diagnostics and their calibration on the
simulator (``vanco-offline bench ope``).
"""

from vanco_offline.ope.behavior import BehaviorModel, Calibration, fit_behavior_model
from vanco_offline.ope.bootstrap import Interval, bootstrap_counts, percentile_interval
from vanco_offline.ope.estimators import ImportanceWeights, WeightDiagnostics, estimate, importance_weights
from vanco_offline.ope.evaluate import ESTIMATORS, evaluate, greedy_q, model_values, support_check
from vanco_offline.ope.fqe import FittedQ, FQESettings, TargetActionFeed, fit_fqe, fqe_config
from vanco_offline.ope.policy import (
    AlgoPolicy,
    ArrayPolicy,
    EvaluatedPolicy,
    LoggedContext,
    ReferencePolicy,
    as_policy,
)
from vanco_offline.ope.report import Estimate, OPEReport, SupportCheck
from vanco_offline.ope.tabular import TabularMDP
from vanco_offline.ope.trajectories import Trajectories, to_trajectories
from vanco_offline.ope.truth import SimulatorTruth, TrueValue, simulate_value

__all__ = [
    "ESTIMATORS",
    "AlgoPolicy",
    "ArrayPolicy",
    "BehaviorModel",
    "Calibration",
    "Estimate",
    "EvaluatedPolicy",
    "FQESettings",
    "FittedQ",
    "ImportanceWeights",
    "Interval",
    "LoggedContext",
    "OPEReport",
    "ReferencePolicy",
    "SimulatorTruth",
    "SupportCheck",
    "TabularMDP",
    "TargetActionFeed",
    "Trajectories",
    "TrueValue",
    "WeightDiagnostics",
    "as_policy",
    "bootstrap_counts",
    "estimate",
    "evaluate",
    "fit_behavior_model",
    "fit_fqe",
    "fqe_config",
    "greedy_q",
    "importance_weights",
    "model_values",
    "percentile_interval",
    "simulate_value",
    "support_check",
    "to_trajectories",
]
