import numpy as np
import pytest
from vanco_pk import targets


def _obs(level=15.0, creatinine=1.0, wbc=8.0, temperature=37.0):
    return np.array([level, creatinine, wbc, 15.0, temperature, 120.0, 80.0])


def test_well_dosed_step_earns_about_one():
    r = targets.reward(_obs(), 1000.0, _obs(level=15.0))
    assert r == pytest.approx(1.25)


@pytest.mark.parametrize(
    ("level", "expected"),
    [(10.0, 1.0), (20.0, 1.0), (5.0, -0.5), (0.0, -1.0), (25.0, -1.0), (50.0, -3.0), (np.nan, 0.0)],
)
def test_exposure_term_follows_design(level, expected):
    assert targets.exposure_reward(np.array(level)) == pytest.approx(expected)


def test_kidney_term_penalises_rises_only():
    cr = np.array([1.0, 1.0, 1.0, 1.0])
    nxt = np.array([1.3, 1.1, 0.8, 1.0])
    np.testing.assert_allclose(targets.kidney_reward(cr, nxt), [-5.0, -1.0, 0.0, 0.0])


def test_infection_bonus_for_moving_toward_normal():
    worse = targets.infection_reward(np.array(15.0), np.array(16.0), np.array(39.0), np.array(39.5))
    better = targets.infection_reward(np.array(15.0), np.array(13.0), np.array(39.0), np.array(38.5))
    assert worse == 0.0
    assert better == pytest.approx(0.25)


def test_reward_is_vectorised_over_steps():
    obs = np.stack([_obs(), _obs(level=30.0)])
    nxt = np.stack([_obs(level=12.0), _obs(level=35.0, creatinine=1.4)])
    np.testing.assert_allclose(targets.reward(obs, np.zeros(2), nxt), [1.25, -3.0 - 5.0 + 0.25])


def test_seed_reward_is_never_positive():
    rng = np.random.default_rng(0)
    obs = rng.uniform([0, 0.3, 2, 5, 35, 80, 50], [40, 4, 25, 80, 41, 180, 140], size=(500, 7))
    nxt = rng.uniform([0, 0.3, 2, 5, 35, 80, 50], [40, 4, 25, 80, 41, 180, 140], size=(500, 7))
    assert np.all(targets.seed_reward(obs, np.zeros(500), nxt) <= 0.0)


def test_reward_rejects_observations_without_the_seven_features():
    with pytest.raises(ValueError, match="7 features"):
        targets.reward(np.zeros(5), 0.0, np.zeros(5))


def test_dose_grid_is_0_to_3000_in_250_steps():
    assert targets.DOSE_GRID_MG[0] == 0.0
    assert targets.DOSE_GRID_MG[-1] == 3000.0
    assert len(targets.DOSE_GRID_MG) == 13
    np.testing.assert_array_equal(targets.dose_to_grid_index([0, 120, 130, 2999, 5000]), [0, 0, 1, 12, 12])
