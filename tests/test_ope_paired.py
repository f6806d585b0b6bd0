"""The paired interval of the difference between two policies, from the same twins and resamples."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from vanco_pk.pk import GOTI_2018
from vanco_pk.policies import make_policy

from vanco_offline.data.cohort import generate_cohort
from vanco_offline.ope import TwinSettings, paired_difference, twin_estimate
from vanco_offline.ope.policy import ReferencePolicy


def test_the_paired_difference_shares_every_resample_and_refuses_unpaired_estimates():
    table = generate_cohort(40, "clinician", seed=6, scenario="icu")
    ids = list(dict.fromkeys(table["stay_id"]))
    refit = dataclasses.replace(GOTI_2018, cl=5.0, v1=40.0)
    settings = TwinSettings(model=refit, refitted_from=GOTI_2018, n_draws=3, n_bootstrap=200, seed=6)
    mipd, clinician = (
        twin_estimate(ReferencePolicy(make_policy(name)), table, ids, 0.99, settings)
        for name in ("mipd", "clinician")
    )
    for metric in ("value", "attainment", "aki_rate"):
        diff = paired_difference(mipd, clinician, metric, "MIPD", "clinician")
        assert diff.value == pytest.approx(getattr(mipd, metric) - getattr(clinician, metric))
        reps = mipd.replicates[metric] - clinician.replicates[metric]
        np.testing.assert_allclose([diff.interval.low, diff.interval.high], np.quantile(reps, [0.025, 0.975]))
        # What the two share cancels: narrower than the two intervals side by side.
        width = getattr(mipd, {"value": "interval"}.get(metric, f"{metric.split('_')[0]}_interval"))
        other = getattr(clinician, {"value": "interval"}.get(metric, f"{metric.split('_')[0]}_interval"))
        assert diff.interval.high - diff.interval.low < (width.high - width.low) + (other.high - other.low)
    assert "MIPD - clinician" in str(paired_difference(mipd, clinician, "attainment", "MIPD", "clinician"))
    same = paired_difference(mipd, mipd)
    assert same.value == 0.0 and same.interval.low == same.interval.high == 0.0
    reseeded = twin_estimate(
        ReferencePolicy(make_policy("clinician")), table, ids, 0.99, dataclasses.replace(settings, seed=7)
    )
    with pytest.raises(ValueError, match="same stays, twins and resamples"):
        paired_difference(mipd, reseeded)
    with pytest.raises(ValueError, match="metric"):
        paired_difference(mipd, clinician, "auc")
