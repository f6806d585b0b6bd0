"""Off-policy evaluation: FQE, linear FQE, PK digital twins, importance sampling, doubly robust, CIs.

Typical use::

    from vanco_offline.ope import SimulatorTruth, evaluate

    report = evaluate(algo, conversion_result, gamma=0.99, truth=SimulatorTruth(n_patients=2000))
    print(report)

The public face is small: :func:`evaluate` and its report, the settings it takes, the
simulator's truth, and the twin estimator with the paired difference of two policies. The
building blocks live in their modules (``vanco_offline.ope.policy``, ``.bootstrap``,
``.estimators``, ``.fqe``, ``.linear_fqe``, ``.behavior``, ``.trajectories``, ``.twin``, ...).
See ``docs/ope.md`` for the estimators, the diagnostics and their calibration on the
simulator, held out by world (``vanco-offline bench ope --worlds``).
"""

from vanco_offline.ope.evaluate import evaluate
from vanco_offline.ope.fqe import FQESettings
from vanco_offline.ope.report import OPEReport
from vanco_offline.ope.settings import BehaviorSettings, IntervalSettings
from vanco_offline.ope.truth import SimulatorTruth, simulate_value
from vanco_offline.ope.twin import TwinSettings, local_prior, paired_difference, twin_estimate

__all__ = [
    "BehaviorSettings",
    "FQESettings",
    "IntervalSettings",
    "OPEReport",
    "SimulatorTruth",
    "TwinSettings",
    "evaluate",
    "local_prior",
    "paired_difference",
    "simulate_value",
    "twin_estimate",
]
