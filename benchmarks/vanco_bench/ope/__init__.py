"""``vanco-offline bench ope``: off-policy evaluation calibrated on the simulator.

A cohort dosed by the clinician policy is the logged data. A panel of policies of clearly
different quality -- reference policies at several noise levels, trained d3rlpy algorithms
at two training budgets, perturbations -- is evaluated on it by every estimator, and each
estimate is compared with the true value of the policy it estimated: its discounted return
on fresh simulated patients of the same population (the greedy policy for ``fqe``, ``lfqe``
and ``twin``; the softened one for the importance-weighted estimators, which cannot
evaluate a greedy policy). The tables printed are (1) each policy's truths and estimates,
(2) per estimator: Spearman rank correlation with the truth, mean absolute relative error,
mean absolute error over the oracle-random gap, regret@1 (true value lost by deploying the
estimator's favourite, as a fraction of the oracle-random gap), the coverage of the truth by
its 95 % interval and, for the twin, the error and coverage of its attainment estimate.
The seed's criterion ``greedy_q`` (a Q-learner's own Q of its greedy action) is scored on
the algorithms that have one. ``(trunc)`` columns truncate the importance weights at
sqrt(n) times each step's mean weight; ``(mu-hat)`` columns use the fitted behaviour model
instead of the logged ``behavior_prob``: what real ICU data would allow. The algorithms
are trained on a second cohort, so that OPE runs on stays they have not seen.

The data's observation and reward are one :class:`~vanco_offline.data.ConversionSettings`
(:mod:`~vanco_bench.ope.options`): by default the seven features and the covariates
with the environment's trough reward; ``--data-preset default`` converts both cohorts as
the preset says -- the previous dose, the exposure tracker's features, the ``exposure``
reward -- trains the algorithms on that, and computes the truth with the environment's same
reward, the algorithms fed the same observation online. ``--scenario`` picks the world
(``icu`` or ``ideal``) of the cohorts, the truth and the twins. The twin runs twice: ``twin``
with the Goti 2018 prior (what ``evaluate`` does by default) and ``twin (local)`` with Goti
2018 refitted to the logged levels (:func:`vanco_offline.ope.local_prior`).

``--worlds W1 W2 ...`` replaces the single world by a leave-one-world-out calibration
(:mod:`.worlds`): the twin's band width is chosen on one world (``--calibrate-on``) and
every interval -- the twin's value, attainment, AKI and paired difference to MIPD on the
refitted prior, and the importance-weighted estimators' -- is scored on the others,
including worlds whose structure the twin does not model.

Modules: :mod:`.options` (flags, sizes, conversion), :mod:`.panel` (the policies),
:mod:`.variants` (importance-sampling variants), :mod:`.scores` (Spearman, MARE, regret@1,
coverage), :mod:`.tables` (printing and the targets), :mod:`.run` (the run), :mod:`.worlds`
(held out by world).
"""

from vanco_bench.ope.options import add_arguments
from vanco_bench.ope.run import run

#: The one-line help of ``vanco-offline bench ope`` (read by the command without importing this module).
HELP = "off-policy evaluation calibrated on the simulator"

__all__ = ["add_arguments", "run"]
