"""A pharmacokinetic digital-twin estimator: each logged patient re-dosed in silico by the policy.

For every logged stay ``i``:

1. **Posterior over its PK parameters** from its own chart (covariates, creatinine at each
   decision, doses, measured troughs), under the twin's population model as prior and its
   residual error as likelihood: the MAP estimate of ``eta = (eta_CL, eta_V1)``
   (:func:`vanco_pk.estimation.map_estimate`, the code MIPD and the exposure tracker
   use), a Laplace approximation ``N(eta_MAP, H^-1)`` (:func:`vanco_pk.estimation.map_hessian`)
   widened by ``proposal_scale`` as an importance-sampling proposal, and ``n_draws`` draws
   resampled with weights ``p(eta | chart) / q(eta)`` (sampling-importance-resampling, so a
   skewed or bimodal posterior is not forced into a Gaussian). A stay without a level keeps
   the prior (:mod:`~vanco_offline.ope.twin.posterior`).
2. **Twins**: one simulated patient per draw, with the stay's covariates and baseline
   creatinine, ``CL`` and ``V1`` from the draw, ``V2`` and the traits no chart measures
   (kidney sensitivity to exposure, bacterial growth, baseline vital signs, initial burden)
   drawn from vanco_pk's ICU population (not the data's scenario), the BUN/creatinine ratio
   from the first row.
3. **The kidney held to the logs**: the twins' AKI hazard is scaled so that the logged
   doses, replayed on the twins, reproduce the logged stays' KDIGO AKI incidence
   (:mod:`~vanco_offline.ope.twin.kidney`); draw ``j`` of every stay gets the multiplier of
   the ``j``-th quantile of that calibration's error.
4. **Rollout** of the evaluated policy -- greedy, as deployed, unless it was softened on
   purpose -- on every twin in :class:`vanco_pk.vector.VancoPKVectorEnv`, with the kidney and
   infection dynamics of ``vanco_pk``, the data's reward and interval and the logged level timing.

The value is the mean over stays of each stay's mean discounted return over its twins; the
attainment (fraction of intervals with true AUC24 in 400-600) and AKI rate likewise. The
interval is a bootstrap over stays in which resample ``b`` takes draw ``b mod n_draws`` of
every resampled stay: it carries the sampling of patients, the posterior, the rollout noise
and the AKI calibration. Two policies estimated with the same settings on the same stays
share their twins and resamples: :func:`paired_difference` gives the interval of their
difference.

What it assumes, and where it can be wrong: the twins live in a world built only from what a
hospital knows (:meth:`TwinSettings.twin_world`, :data:`TWIN_ASSUMPTIONS`): the population PK
model and residual error refitted to the logged levels (:func:`local_prior`), the level
timing of the logs, the charted creatinine, the logged AKI incidence, and published values
or stated assumptions for the rest (inter-occasion variability, the shape of the AKI hazard),
with ``vanco_pk``'s kidney and infection models. Nothing is read from the simulator's
scenario of the data (its true model, IOV, assay and draw-time error, ARC, dialysis, AKI
hazard) nor any ``misspecification``. Where the true patients differ from that world, the
twin is biased; ``docs/ope.md`` measures its coverage on worlds it was not tuned on.
"""

from vanco_offline.ope.twin.estimate import PairedDifference, TwinEstimate, paired_difference, twin_estimate
from vanco_offline.ope.twin.kidney import AKICalibration, calibrate_aki, from_logs, logged_aki, replay_aki
from vanco_offline.ope.twin.posterior import PKPosterior, StayTwins, pk_posterior, stay_histories, stay_twins
from vanco_offline.ope.twin.settings import (
    TWIN_ASSUMPTIONS,
    TWIN_COVARIATES,
    TWIN_REFITTED,
    LevelTiming,
    TwinSettings,
    level_timing,
    local_prior,
)

__all__ = [
    "TWIN_ASSUMPTIONS",
    "TWIN_COVARIATES",
    "TWIN_REFITTED",
    "AKICalibration",
    "LevelTiming",
    "PKPosterior",
    "PairedDifference",
    "StayTwins",
    "TwinEstimate",
    "TwinSettings",
    "calibrate_aki",
    "from_logs",
    "level_timing",
    "local_prior",
    "logged_aki",
    "paired_difference",
    "pk_posterior",
    "replay_aki",
    "stay_histories",
    "stay_twins",
    "twin_estimate",
]
