"""The refit band of the twin: from the published model to twice the refit's move."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from vanco_pk.pk import GOTI_2018
from vanco_pk.policies import make_policy

from vanco_offline.data.cohort import generate_cohort
from vanco_offline.ope import TwinSettings, twin_estimate
from vanco_offline.ope.policy import ReferencePolicy

REFIT = dataclasses.replace(GOTI_2018, cl=5.2, v1=38.3, v2=25.2, omega2_cl=0.05, prop_error=0.05)


def test_the_band_runs_from_the_published_model_to_twice_the_refits_move():
    models = TwinSettings(model=REFIT, refitted_from=GOTI_2018, n_draws=5).draw_models()
    assert models[0].v1 == pytest.approx(GOTI_2018.v1) and models[0].cl == pytest.approx(GOTI_2018.cl)
    assert models[2] == REFIT
    assert models[4].v1 == pytest.approx(REFIT.v1**2 / GOTI_2018.v1)
    assert models[4].prop_error == pytest.approx(REFIT.prop_error**2 / GOTI_2018.prop_error)
    assert TwinSettings(model=REFIT, refitted_from=GOTI_2018, n_draws=1).draw_models() == [REFIT]
    assert TwinSettings(model=REFIT, n_draws=3).draw_models() == [REFIT] * 3


def test_a_refit_the_band_cannot_spread_is_refused():
    start = dataclasses.replace(GOTI_2018, crcl_cap=120.0)
    with pytest.raises(ValueError, match="crcl_cap"):
        TwinSettings(model=REFIT, refitted_from=start, n_draws=3)
    with pytest.raises(ValueError, match="crcl_cap"):
        TwinSettings(model=dataclasses.replace(REFIT, crcl_cap=200.0), refitted_from=GOTI_2018)


def test_each_draw_of_the_banded_twin_lives_in_its_own_band_model(monkeypatch):
    table = generate_cohort(40, "clinician", seed=4, scenario="icu")
    ids = list(dict.fromkeys(table["stay_id"]))
    policy = ReferencePolicy(make_policy("fixed"))
    base = TwinSettings(model=REFIT, n_draws=3, n_bootstrap=100, seed=4)
    banded = dataclasses.replace(base, refitted_from=GOTI_2018)
    worlds = []
    original = TwinSettings.twin_world

    def spy(self, aki_multiplier=1.0, model=None):
        worlds.append(model)
        return original(self, aki_multiplier, model)

    monkeypatch.setattr(TwinSettings, "twin_world", spy)
    plain = twin_estimate(policy, table, ids, 0.99, dataclasses.replace(base, aki="uncalibrated"))
    assert worlds[-3:] == [REFIT] * 3
    worlds.clear()
    est = twin_estimate(policy, table, ids, 0.99, dataclasses.replace(banded, aki="uncalibrated"))
    assert worlds[-3:] == banded.draw_models()
    # Draw 0 is drawn from the posterior under Goti 2018, not under the refit.
    assert not np.allclose(est.posterior.draws[:, 0], plain.posterior.draws[:, 0])
    assert "band" in est.note and "band" not in plain.note


def test_each_twin_variant_is_labelled_by_the_name_its_coverage_is_measured_under():
    assert TwinSettings().label == "twin"
    assert TwinSettings(model=REFIT).label == "twin (local)"
    assert TwinSettings(model=REFIT, refitted_from=GOTI_2018).label == "twin (band)"


def test_the_band_width_scales_the_spread_and_zero_keeps_the_refit():
    half = TwinSettings(model=REFIT, refitted_from=GOTI_2018, n_draws=3, band=0.5).draw_models()
    assert half[0].v1 == pytest.approx(REFIT.v1 * (GOTI_2018.v1 / REFIT.v1) ** 0.5) and half[1] == REFIT
    zero = TwinSettings(model=REFIT, refitted_from=GOTI_2018, n_draws=3, band=0.0)
    assert zero.draw_models() == [REFIT] * 3
    with pytest.raises(ValueError, match="band"):
        TwinSettings(band=-1.0)
