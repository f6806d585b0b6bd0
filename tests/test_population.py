"""The local population model: a Laplace marginal-likelihood refit of Goti 2018 to logged levels."""

from __future__ import annotations

import numpy as np
import pytest
from vanco_pk.pk import GOTI_2018
from vanco_pk.population import model_values, model_with
from vanco_pk.world import World

from vanco_offline.data import ConversionSettings, convert_with
from vanco_offline.data.cohort import generate_cohort
from vanco_offline.data.pk_replay import fit_local_model


@pytest.fixture(scope="module")
def faster_clearance():
    """60 stays of the ideal world whose true typical CL is 40 % above the prior's."""
    return generate_cohort(60, "clinician", seed=3, scenario="ideal", misspecification={"cl_scale": 1.4})


def test_the_fit_finds_the_patients_typical_clearance_and_lowers_the_objective(faster_clearance):
    fit = fit_local_model(faster_clearance, parameters=("cl",), max_evaluations=25)
    assert fit.objective < fit.start_objective
    assert fit.model.cl == pytest.approx(1.4 * GOTI_2018.cl, rel=0.15)
    assert fit.model.v1 == GOTI_2018.v1  # not estimated
    assert fit.patients == 60 and fit.levels > 300
    # Same table, same fit.
    again = fit_local_model(faster_clearance, parameters=("cl",), max_evaluations=25)
    assert again.model == fit.model


def test_conversion_uses_the_given_population_model_and_keeps_it(faster_clearance):
    published = convert_with(
        faster_clearance, ConversionSettings(fill_unmeasured_level=True, pk_features=True)
    )
    options = ConversionSettings(fill_unmeasured_level=True, pk_features=True, pk_model={"cl": 6.3})
    local = convert_with(faster_clearance, options)
    column = list(local.observation_names).index("pk_cl_map")
    first = np.array([e.observations[0, column] for e in local.dataset.episodes])
    first_published = np.array([e.observations[0, column] for e in published.dataset.episodes])
    # Before any level the MAP clearance is the typical one: 6.3 / 4.5 of the published.
    np.testing.assert_allclose(first / first_published, 6.3 / 4.5, rtol=1e-3)
    assert local.population_model.cl == 6.3 and published.population_model is GOTI_2018
    assert ConversionSettings.from_dict(options.to_dict()) == options
    assert options.to_dict()["pk_model"] == {"cl": 6.3}


def test_model_with_checks_fields_and_round_trips():
    model = model_with({"cl": 5.0, "omega2_cl": 0.05})
    assert model.cl == 5.0 and model.omega2_cl == 0.05 and model.v1 == GOTI_2018.v1
    assert model_with(model_values(model)) == model
    assert model_with(None) is GOTI_2018
    with pytest.raises(ValueError, match="unknown population-model field"):
        model_with({"clearance": 5.0})
    with pytest.raises(ValueError, match="pk_model"):
        model_with({"cl": -1.0})
    with pytest.raises(ValueError, match="unknown population-model field"):
        ConversionSettings(pk_model={"clearance": 5.0})


@pytest.mark.slow
def test_a_preset_with_a_local_prior_fits_it_on_the_training_table_and_saves_it(
    monkeypatch, faster_clearance, tmp_path
):
    import vanco_offline.data.pk_replay as pk_replay
    from vanco_offline.configs import load_preset
    from vanco_offline.trained import load_model
    from vanco_offline.training import train

    fit = pk_replay.fit_local_model
    monkeypatch.setattr(
        pk_replay,
        "fit_local_model",
        lambda table, **kw: fit(table, parameters=("cl",), max_evaluations=12, **kw),
    )
    result = train(
        load_preset("residual"), faster_clearance, n_steps=10, log_root=tmp_path, show_progress=False
    )
    saved = dict(result.model.conversion.pk_model)
    assert saved["cl"] > GOTI_2018.cl and saved["v1"] == GOTI_2018.v1
    assert result.model.data["pk_model_fit"]["patients"] == 60
    loaded = load_model(result.model_path)
    assert loaded.population_model == result.model.population_model != GOTI_2018
    # New data is converted through the saved prior, not refitted and not Goti's.
    again = loaded.convert(faster_clearance)
    assert again.population_model == loaded.population_model
    from vanco_offline.recommend import recommend_on_table

    doses = recommend_on_table(loaded, faster_clearance, n=2)
    assert len(doses) == 2 and doses.filter(like="dose").notna().all().all()


def test_the_environment_and_model_env_build_pk_features_on_the_given_prior():
    from vanco_pk.env import VancoPKEnv

    from vanco_offline.rollout import model_env

    index = VancoPKEnv(pk_features=True).observation_names.index("pk_cl_map")
    published, _ = VancoPKEnv(pk_features=True).reset(seed=5)
    local, _ = VancoPKEnv(pk_features=True, pk_model={"cl": 9.0}).reset(seed=5)
    assert local[index] / published[index] == pytest.approx(2.0, rel=1e-4)  # before any level: typical CL
    names = ("vanco_level", "creatinine", "pk_cl_map")
    env = model_env(names, pk_model=model_with({"cl": 9.0}), world=World(reward="exposure"))
    obs, _ = env.reset(seed=5)
    plain, _ = model_env(names, world=World(reward="exposure")).reset(seed=5)
    # The model's columns are rebuilt from the chart's rounded values, as the converter does.
    assert obs[2] / plain[2] == pytest.approx(2.0, rel=1e-4)
    assert obs[2] == pytest.approx(local[index], rel=0.02)
    assert env.unwrapped.pk_model.cl == 9.0  # the exposure reward's tracker shares the prior
