"""Presets: packaged files, extends, validation messages, and building the algorithm."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from d3rlpy.preprocessing import MinMaxActionScaler, StandardObservationScaler

from vanco_offline.algos import DiscreteVancoIQL, ResidualVancoIQL, VancoIQL
from vanco_offline.configs import (
    DataSettings,
    NetworkSettings,
    Preset,
    TrainingSettings,
    available_presets,
    build_algo,
    load_preset,
)
from vanco_offline.data import convert, generate_cohort

PACKAGED = [
    "base",
    "conservative",
    "default",
    "discrete",
    "residual",
    "residual_draw",
    "run_ok",
    "seed",
    "seven_features",
    "tuned",
]


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_every_packaged_preset_loads_and_builds():
    assert available_presets() == PACKAGED
    for name in PACKAGED:
        preset = load_preset(name)
        assert isinstance(preset, Preset) and preset.name == name and preset.description
        algo = build_algo(preset)
        kinds = {"discrete_vanco_iql": DiscreteVancoIQL, "residual_vanco_iql": ResidualVancoIQL}
        assert isinstance(algo, kinds.get(preset.algo, VancoIQL))


def test_the_seed_and_its_guide_are_carried_by_the_presets():
    seed = load_preset("seed")
    assert dict(seed.config) == {
        "expectile": 0.7,
        "weight_temp": 0.5,
        "actor_learning_rate": 3e-5,
        "critic_learning_rate": 3e-5,
        "check_action_bounds": False,
    }
    assert seed.network == NetworkSettings(hidden_units=(32, 32))
    assert seed.data == DataSettings(reward="seed", observation_scaler="none", action_scaler="none")
    base = load_preset("base")
    # base = the seed's hyperparameters + the fix (clinical action scaling, standardised observations)
    for key in ("expectile", "weight_temp", "actor_learning_rate", "critic_learning_rate"):
        assert base.config[key] == seed.config[key]
    assert base.data == DataSettings(reward="seed", observation_scaler="standard", action_scaler="clinical")
    for name in ("conservative", "run_ok", "tuned"):
        preset = load_preset(name)
        assert 0.5 <= preset.config["expectile"] <= 0.9 and 0.5 <= preset.config["weight_temp"] <= 10
        assert 3e-5 <= preset.config["actor_learning_rate"] <= 1e-4
        assert 5000 <= preset.training.n_steps <= 10000 and preset.network.hidden_units == (32, 32)
    default = load_preset("default")
    # Covariates, previous dose, PK exposure features, the exposure reward; standard
    # observations, clinical doses. seven_features is the same on the seed's observation.
    assert default.data == DataSettings(reward="exposure", covariates=True, last_dose=True, pk_features=True)
    assert load_preset("seven_features").data == DataSettings()
    assert load_preset("seven_features").config == default.config
    assert default.training == TrainingSettings(n_steps=5000, n_steps_per_epoch=1000, seed=0)


def _cohort_dataset(action: str, n_stays: int):
    return convert(generate_cohort(n_stays, seed=4), action, fill_unmeasured_level=True).dataset


def test_build_algo_uses_the_clinical_bounds_and_fits_scalers_on_the_dataset():
    dataset = _cohort_dataset("continuous", 10)
    algo = build_algo(load_preset("default"), dataset)
    scaler = algo.config.action_scaler
    assert isinstance(scaler, MinMaxActionScaler)
    np.testing.assert_array_equal(scaler.minimum, [0.0])
    np.testing.assert_array_equal(scaler.maximum, [3000.0])
    assert isinstance(algo.config.observation_scaler, StandardObservationScaler)
    assert algo.config.observation_scaler.built
    assert list(algo.config.actor_encoder_factory.hidden_units) == [32, 32]
    with pytest.raises(ValueError, match="expects continuous actions but the dataset's action space is"):
        build_algo(load_preset("default"), _cohort_dataset("discrete", 5))


def test_extends_overrides_single_keys_and_resolves_relative_paths(tmp_path):
    _write(
        tmp_path,
        "parent.yaml",
        """\
        extends: run_ok
        config:
          weight_temp: 2.0
    """,
    )
    child = _write(
        tmp_path,
        "child.yaml",
        """\
        extends: parent.yaml
        training:
          n_steps: 2000
    """,
    )
    preset = load_preset(child)
    assert preset.name == "child"
    assert preset.config["weight_temp"] == 2.0  # from parent.yaml
    assert preset.config["actor_learning_rate"] == 1e-4  # from run_ok
    assert preset.config["expectile"] == 0.7  # from base
    assert preset.training == TrainingSettings(n_steps=2000, n_steps_per_epoch=1000, seed=0)


BAD_PRESETS = [
    # (the file after "extends: base", the expected message)
    ("confg: {}", r"unknown key 'confg' in top level; valid keys: \['extends'"),
    ("config:\n  expectle: 0.8", r"unknown key 'expectle' in config for vanco_iql; valid keys: \["),
    ("training:\n  n_step: 10", r"unknown key 'n_step' in training; valid keys: \['n_steps'"),
    ("data:\n  rewards: seed", r"unknown key 'rewards' in data; valid keys"),
    ("network:\n  units: [8]", r"unknown key 'units' in network; valid keys"),
    ("config:\n  expectile: 1.5", r"config: VancoIQLConfig: expectile=1.5 is invalid"),
    ("config:\n  actor_learning_rate: 3e-4", r"must be of type float \(YAML reads 3e-4 as text"),
    ("config:\n  action_scaler: none", r"config.action_scaler cannot be set in config; set it in data"),
    ("data:\n  reward: negative", r"data.reward='negative'; choose one of \['default', 'seed', 'exposure'\]"),
    ("data:\n  pk_features: yes please", r"data.pk_features='yes please' must be true or false"),
    ("training:\n  n_steps: 100", r"training.n_steps=100 must be >= training.n_steps_per_epoch=1000"),
    ("network:\n  hidden_units: 32", r"network.hidden_units=32 must be a list of integers"),
    ("algo: discrete_vanco_iql", r"needs data.action: discrete"),
    ("algo: cql", r"algo='cql'; choose one of \['vanco_iql', 'residual_vanco_iql', 'discrete_vanco_iql'\]"),
]


@pytest.mark.parametrize(("body", "message"), BAD_PRESETS)
def test_bad_presets_name_the_key_the_file_and_the_valid_choices(tmp_path, body, message):
    path = _write(tmp_path, "bad.yaml", f"extends: base\n{body}\n")
    with pytest.raises(ValueError, match=message) as info:
        load_preset(path)
    assert str(info.value).startswith(f"{path}: ")


def test_a_preset_must_be_a_mapping_and_extend_a_known_preset(tmp_path):
    with pytest.raises(ValueError, match="a preset must be a mapping"):
        load_preset(_write(tmp_path, "list.yaml", "- a list\n"))
    with pytest.raises(ValueError, match=r"unknown preset 'nosuch'; available presets: \['base'"):
        load_preset(_write(tmp_path, "orphan.yaml", "extends: nosuch\n"))


def test_discrete_keys_are_checked_against_the_discrete_config(tmp_path):
    # check_action_bounds is VancoIQL's (continuous doses), not DiscreteVancoIQL's.
    path = _write(tmp_path, "d.yaml", "extends: discrete\nconfig:\n  check_action_bounds: false\n")
    with pytest.raises(
        ValueError, match="unknown key 'check_action_bounds' in config for discrete_vanco_iql"
    ):
        load_preset(path)


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    path = _write(tmp_path, "broken.yaml", "extends: base\nconfig:\n  expectile: [0.7\n  weight_temp: 1.0\n")
    with pytest.raises(ValueError, match=rf"{path}:\d+: malformed YAML"):
        load_preset(path)


def test_unknown_names_and_cycles(tmp_path):
    with pytest.raises(ValueError, match=r"unknown preset 'tunned'; available presets: \['base', 'conserv"):
        load_preset("tunned")
    _write(tmp_path, "a.yaml", "extends: b.yaml\n")
    _write(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ValueError, match="'extends' forms a cycle"):
        load_preset(tmp_path / "a.yaml")
    with pytest.raises(OSError):
        load_preset(tmp_path / "missing.yaml")
