"""ResidualVancoIQL: centred on the PK dose, bounded correction, saved and loaded, checked columns."""

from __future__ import annotations

import dataclasses

import d3rlpy
import numpy as np
import pytest
import torch

from vanco_offline.algos import ResidualVancoIQL, ResidualVancoIQLConfig
from vanco_offline.algos.residual_iql import PRIOR_DOSE_FEATURE, check_prior_column
from vanco_offline.configs import build_algo, load_preset, make_config
from vanco_offline.data import convert, fit_scalers, generate_cohort


@pytest.fixture(scope="module")
def pk_data():
    table = generate_cohort(12, {"clinician": 1.0}, seed=3, level_missing_prob=0.3)
    return convert(
        table.drop(columns=["reward"]),
        "continuous",
        reward="exposure",
        fill_unmeasured_level=True,
        covariates=True,
        last_dose=True,
        pk_features=True,
    )


def _algo(result, **options):
    preset = load_preset("residual")
    scalers = fit_scalers(result)
    config = dataclasses.replace(
        make_config(preset),
        observation_scaler=scalers.observation_scaler,
        action_scaler=scalers.action_scaler,
        **options,
    )
    d3rlpy.seed(0)
    algo = config.create(device=False)
    algo.build_with_dataset(result.dataset)
    return algo


def _observations(result) -> np.ndarray:
    return np.concatenate([ep.observations for ep in result.dataset.episodes]).astype(np.float32)


def test_the_policy_doses_the_prior_plus_a_bounded_correction(pk_data):
    assert pk_data.observation_names[-1] == PRIOR_DOSE_FEATURE
    algo = _algo(pk_data, residual_scale=0.1)
    x = _observations(pk_data)
    prior_mg = np.clip(x[:, -1], 0.0, 3000.0)
    dose = algo.predict(x)[:, 0]
    assert np.all(np.abs(dose - prior_mg) <= 150.0 + 1e-3)  # 0.1 of the scaled range = 150 mg
    # With the policy's output layer at zero the residual vanishes: the dose is the prior.
    with torch.no_grad():
        for p in algo.impl.modules.policy._mu.parameters():
            p.zero_()
    np.testing.assert_allclose(algo.predict(x)[:, 0], prior_mg, atol=0.05)


def test_the_actor_loss_is_the_likelihood_of_the_logged_dose_around_the_prior(pk_data):
    # The policy learns where the logged dose lies relative to the prior: the loss is the
    # advantage-weighted Gaussian log-likelihood at prior(s) + rho * tanh(mu(s)), not at tanh(mu(s)).
    from types import SimpleNamespace

    from vanco_offline.algos.torch.vanco_iql_impl import normal_log_prob

    algo = _algo(pk_data, residual_scale=0.1)
    impl, nets = algo.impl, algo.impl.modules
    x = torch.as_tensor(
        algo.observation_scaler.transform_numpy(_observations(pk_data)[:32]), dtype=torch.float32
    )
    actions = torch.full((32, 1), 0.3)
    batch = SimpleNamespace(observations=x, actions=actions)
    q_target = torch.zeros(32, 1)
    with torch.no_grad():
        loss, weights = impl.actor_loss(nets, batch, q_target)
        out = nets.policy(x)
        loc = impl.prior(x) + 0.1 * out.squashed_mu
        expected = -(weights * normal_log_prob(actions, loc, out.logstd.exp())).mean()
        plain = -(weights * normal_log_prob(actions, out.squashed_mu, out.logstd.exp())).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert float(loss) != pytest.approx(float(plain), rel=1e-3)


def test_with_q_candidates_the_critic_picks_one_of_the_doses_in_the_band(pk_data):
    algo = _algo(pk_data, residual_scale=0.2, q_candidates=5)
    x = _observations(pk_data)
    prior_mg = np.clip(x[:, -1], 0.0, 3000.0)
    offsets = np.clip(prior_mg[:, None] + np.linspace(-300.0, 300.0, 5)[None, :], 0.0, 3000.0)
    dose = algo.predict(x)[:, 0]
    assert np.all(np.min(np.abs(offsets - dose[:, None]), axis=1) < 0.05)
    with pytest.raises(ValueError, match="q_candidates=1"):
        ResidualVancoIQLConfig(q_candidates=1)


def test_it_trains_saves_and_loads_with_the_same_doses(pk_data, tmp_path):
    algo = _algo(pk_data, residual_scale=0.5)
    algo.fit(
        pk_data.dataset,
        n_steps=20,
        n_steps_per_epoch=20,
        show_progress=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
    )
    x = _observations(pk_data)
    path = tmp_path / "model.d3"
    algo.save(str(path))
    loaded = d3rlpy.load_learnable(str(path))
    assert isinstance(loaded, ResidualVancoIQL) and loaded.config.residual_scale == 0.5
    np.testing.assert_allclose(loaded.predict(x), algo.predict(x), atol=1e-4)
    # The torch-free bundle adds the prior dose too (the exporter refuses one that does not).
    from vanco_offline.bundle import load_bundle
    from vanco_offline.export import export_bundle

    bundle = export_bundle(
        algo, tmp_path / "b.safetensors", observation_names=list(pk_data.observation_names)
    )
    np.testing.assert_allclose(load_bundle(bundle).predict(x[:50]), algo.predict(x[:50])[:, 0], atol=0.5)
    picker = _algo(pk_data, q_candidates=3)
    with pytest.raises(ValueError, match="q_candidates=3 picks its dose with the critics"):
        export_bundle(picker, tmp_path / "q.safetensors", observation_names=list(pk_data.observation_names))


def test_a_residual_on_data_without_the_pk_dose_is_refused_by_name(pk_data):
    config = ResidualVancoIQLConfig()
    check_prior_column(config, pk_data.observation_names)
    with pytest.raises(ValueError, match="names 'pk_auc24', not 'pk_dose_auc500'"):
        check_prior_column(dataclasses.replace(config, prior_index=-2), pk_data.observation_names)
    with pytest.raises(ValueError, match="pk_features: true"):
        from vanco_offline.configs.presets import _build

        _build({"algo": "residual_vanco_iql", "data": {"pk_features": False}}, "x", "x.yaml")
    with pytest.raises(ValueError, match="residual_scale=0"):
        ResidualVancoIQLConfig(residual_scale=0.0)
    assert isinstance(build_algo(load_preset("residual"), pk_data.dataset), ResidualVancoIQL)
