"""Stay-level splits (tables and datasets agree) and scalers fitted on the training split."""

from __future__ import annotations

import numpy as np
import pytest
from d3rlpy.dataset import BasicTransitionPicker
from d3rlpy.preprocessing import StandardObservationScaler, StandardRewardScaler
from test_data_builders import make_table

from vanco_offline.data import convert, fit_scalers, split_dataset, split_stays, split_table


def test_table_split_is_disjoint_complete_and_seeded():
    table = make_table(n_stays=40, seed=1, stay_prefix="s")
    train, valid, test = split_table(table, (0.7, 0.15, 0.15), seed=3)
    stays = [set(part["stay_id"]) for part in (train, valid, test)]
    assert [len(s) for s in stays] == [28, 6, 6]
    assert not (stays[0] & stays[1] or stays[0] & stays[2] or stays[1] & stays[2])
    assert set.union(*stays) == set(table["stay_id"])
    assert sum(map(len, (train, valid, test))) == len(table)
    again = split_table(table, (0.7, 0.15, 0.15), seed=3)
    assert [set(p["stay_id"]) for p in again] == stays
    other = split_table(table, (0.7, 0.15, 0.15), seed=4)
    assert [set(p["stay_id"]) for p in other] != stays
    # Rows keep their order, so every split is still a valid table.
    for part in (train, valid, test):
        assert part.index.is_monotonic_increasing
        convert(part)


def test_dataset_split_matches_the_table_split_and_keeps_data_aligned():
    table = make_table(n_stays=20, seed=2, behavior_prob=True, terminal_fraction=0.5)
    result = convert(table)
    table_parts = split_table(table, seed=7)
    data_parts = split_dataset(result, seed=7)
    for table_part, data_part in zip(table_parts, data_parts, strict=True):
        assert sorted(data_part.stay_ids) == sorted(set(table_part["stay_id"]))
        direct = convert(table_part)
        assert data_part.dataset.transition_count == direct.dataset.transition_count
        for stay, probs in zip(data_part.stay_ids, data_part.behavior_probs, strict=True):
            i = result.stay_ids.index(stay)
            np.testing.assert_array_equal(probs, result.behavior_probs[i])
    bare = split_dataset(result.dataset, (0.5, 0.5), seed=0)
    assert sum(p.transition_count for p in bare) == result.dataset.transition_count


def test_split_arguments_are_checked():
    with pytest.raises(ValueError, match="sum to 1"):
        split_stays([1, 2, 3], (0.5, 0.6))
    with pytest.raises(ValueError, match=r"split 2 \(fraction 0.1\) of 3 stays would hold no stay"):
        split_stays([1, 2, 3], (0.8, 0.1, 0.1))
    with pytest.raises(ValueError, match="mixed types"):
        split_stays([1, "a"], (0.5, 0.5))


def test_scalers_match_d3rlpys_own_fit_and_use_clinical_action_bounds():
    train, _ = split_dataset(
        convert(make_table(n_stays=12, seed=3, terminal_fraction=0.5)), (0.75, 0.25), seed=0
    )
    scalers = fit_scalers(train, reward=True)
    reference = StandardObservationScaler()
    reference.fit_with_transition_picker(train.dataset.episodes, BasicTransitionPicker())
    np.testing.assert_allclose(scalers.observation_scaler.mean, reference.mean, rtol=1e-6)
    np.testing.assert_allclose(scalers.observation_scaler.std, reference.std, rtol=1e-5)
    assert scalers.action_scaler.minimum.tolist() == [0.0]
    assert scalers.action_scaler.maximum.tolist() == [3000.0]
    rewards = StandardRewardScaler()
    rewards.fit_with_transition_picker(train.dataset.episodes, BasicTransitionPicker())
    assert scalers.reward_scaler.mean == pytest.approx(rewards.mean, rel=1e-6)
    assert scalers.reward_scaler.std == pytest.approx(rewards.std, rel=1e-6)
    assert fit_scalers(train).reward_scaler is None


def test_discrete_datasets_get_no_action_scaler():
    result = convert(make_table(n_stays=4, seed=4, grid_doses=True), "discrete")
    assert fit_scalers(result).action_scaler is None


def test_converted_dataset_and_scalers_train_a_d3rlpy_algorithm():
    import d3rlpy

    train = convert(make_table(n_stays=10, seed=5, terminal_fraction=0.3))
    scalers = fit_scalers(train, reward=True)
    iql = d3rlpy.algos.IQLConfig(
        batch_size=8,
        observation_scaler=scalers.observation_scaler,
        action_scaler=scalers.action_scaler,
        reward_scaler=scalers.reward_scaler,
    ).create(device="cpu:0")
    iql.fit(
        train.dataset,
        n_steps=4,
        n_steps_per_epoch=4,
        show_progress=False,
        save_interval=10,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
    )
    doses = iql.predict(np.concatenate([e.observations for e in train.dataset.episodes]))
    assert doses.shape[1] == 1 and np.all((doses >= 0) & (doses <= 3000))
