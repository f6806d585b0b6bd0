"""The sepsis world of ``bench ope``: a central volume that shrinks back after admission."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from vanco_pk.scenario import get_scenario

from vanco_offline.data.cohort import generate_cohort


def test_the_sepsis_volume_is_off_by_default_and_decays_to_the_population_volume_when_on():
    icu = get_scenario("icu")
    base = generate_cohort(12, "clinician", seed=1, scenario=icu)
    off = generate_cohort(
        12, "clinician", seed=1, scenario=dataclasses.replace(icu, sepsis_v1_half_life_h=5.0)
    )
    pd.testing.assert_frame_equal(base, off)
    on = generate_cohort(12, "clinician", seed=1, scenario=dataclasses.replace(icu, sepsis_v1_excess=1.0))
    ratio = (on["true_v1"] / base["true_v1"]).to_numpy()
    hours = on["time_h"].to_numpy()
    np.testing.assert_allclose(ratio, 1.0 + 0.5 ** (hours / 48.0), rtol=1e-3)  # the table rounds true_v1
    with pytest.raises(ValueError, match="sepsis_v1_excess"):
        dataclasses.replace(icu, sepsis_v1_excess=-0.5)
