"""Table -> MDPDataset: counts, observations, actions, rewards, terminals, discrete grid, report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import BasicTransitionPicker, MDPDataset
from hypothesis import given, settings
from test_data_builders import make_table, stay_blocks, tables
from vanco_pk.targets import COVARIATES, DOSE_GRID_MG, FEATURES, get_reward_function

from vanco_offline.data import CarryForward, convert

FAST = settings(max_examples=25, deadline=None)


def _terminal(block: pd.DataFrame) -> bool:
    return bool(block["done"].iloc[-1]) if "done" in block else False


@FAST
@given(tables())
def test_random_valid_tables_keep_every_step(table):
    result = convert(table)
    blocks = stay_blocks(table)
    final_rewards = sum(_terminal(b) and "reward" in b and not np.isnan(b["reward"].iloc[-1]) for b in blocks)
    dataset = result.dataset
    assert dataset.transition_count == len(table) - len(blocks) + final_rewards
    assert result.report.transitions_in == result.report.transitions_out == dataset.transition_count
    assert result.report.exclusions == ()
    assert result.stay_ids == [b["stay_id"].iloc[0] for b in blocks]
    assert len(dataset.episodes) == len(blocks)
    for episode, block in zip(dataset.episodes, blocks, strict=True):
        n = len(episode.observations)
        terminal = _terminal(block)
        assert episode.terminated == terminal
        has_final = terminal and "reward" in block and not np.isnan(block["reward"].iloc[-1])
        assert n == (len(block) - 1 if terminal and not has_final else len(block))
        np.testing.assert_array_equal(episode.observations, block[list(FEATURES)].to_numpy(np.float32)[:n])
        np.testing.assert_array_equal(episode.actions[:, 0], block["dose_mg"].to_numpy(np.float32)[:n])
        assert episode.transition_count == len(block) - 1 + has_final
    if "behavior_prob" in table:
        flat = np.concatenate(
            [
                b["behavior_prob"].to_numpy()[: e.transition_count]
                for b, e in zip(blocks, dataset.episodes, strict=True)
            ]
        )
        np.testing.assert_array_equal(result.flat_behavior_prob(), flat)


@FAST
@given(tables(reward=False, terminal_fraction=0.5))
def test_computed_reward_is_the_targets_reward_of_consecutive_rows(table):
    result = convert(table)
    reward = get_reward_function("default")
    picker = BasicTransitionPicker()
    for episode, block in zip(result.dataset.episodes, stay_blocks(table), strict=True):
        features = block[list(FEATURES)].to_numpy(np.float64)
        doses = block["dose_mg"].to_numpy()
        for t in range(episode.transition_count):
            expected = reward(features[t], doses[t], features[t + 1])
            assert picker(episode, t).reward[0] == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_terminal_and_timeout_stays_follow_d3rlpy_semantics():
    table = make_table(n_stays=2, rows=(4, 4), seed=1)
    table["done"] = [False, False, False, True, False, False, False, False]
    result = convert(table)
    terminal, timeout = result.dataset.episodes
    assert (terminal.terminated, len(terminal.observations), terminal.transition_count) == (True, 3, 3)
    assert (timeout.terminated, len(timeout.observations), timeout.transition_count) == (False, 4, 3)
    picker = BasicTransitionPicker()
    last = picker(terminal, 2)
    assert last.terminal == 1.0
    # The terminal transition's reward was computed with the last row's state.
    rows = table[list(FEATURES)].to_numpy()
    expected = get_reward_function("default")(rows[2], 0.0, rows[3])
    assert last.reward[0] == pytest.approx(expected)
    assert result.report.terminal_stays == 1 and result.report.timeout_stays == 1
    # d3rlpy's own flat constructor, fed with the same episodes, counts the same transitions.
    flat = MDPDataset(
        observations=np.concatenate([terminal.observations, timeout.observations]),
        actions=np.concatenate([terminal.actions, timeout.actions]),
        rewards=np.concatenate([terminal.rewards, timeout.rewards]),
        terminals=np.array([0, 0, 1, 0, 0, 0, 0], dtype=np.float32),
        timeouts=np.array([0, 0, 0, 0, 0, 0, 1], dtype=np.float32),
        action_space=ActionSpace.CONTINUOUS,
    )
    assert flat.transition_count == result.dataset.transition_count == 6


def test_terminal_stay_with_a_final_reward_steps_into_the_absorbing_state():
    table = make_table(n_stays=1, rows=(3, 3), seed=2)
    table["done"] = [False, False, True]
    table["reward"] = [0.5, -1.0, 2.0]
    episode = convert(table).dataset.episodes[0]
    assert (len(episode.observations), episode.transition_count, episode.terminated) == (3, 3, True)
    np.testing.assert_array_equal(episode.rewards[:, 0], [0.5, -1.0, 2.0])


def test_single_row_stays_are_reported_exclusions():
    single = make_table(n_stays=1, rows=(1, 1), seed=4).assign(stay_id=999)
    table = pd.concat([make_table(n_stays=2, rows=(3, 3), seed=3), single], ignore_index=True)
    result = convert(table)
    (exclusion,) = result.report.exclusions
    assert (exclusion.stay_id, exclusion.rows, exclusion.transitions) == (999, 1, 0)
    assert "single row" in exclusion.reason
    assert result.report.stays == 3 and result.report.episodes == 2 == len(result.dataset.episodes)
    assert result.stay_ids == [100, 101]
    assert "excluded stay 999" in str(result.report)


def test_only_single_row_stays_is_an_error():
    with pytest.raises(ValueError, match="no transitions"):
        convert(make_table(n_stays=3, rows=(1, 1)))


def test_integer_mg_doses_stay_continuous_and_discrete_maps_to_the_grid():
    table = make_table(n_stays=3, seed=5, grid_doses=True)
    continuous = convert(table, "continuous").dataset
    assert continuous.dataset_info.action_space == ActionSpace.CONTINUOUS
    assert continuous.dataset_info.action_size == 1
    assert continuous.episodes[0].actions.dtype == np.float32
    discrete = convert(table, "discrete")
    info = discrete.dataset.dataset_info
    assert (info.action_space, info.action_size) == (ActionSpace.DISCRETE, len(DOSE_GRID_MG))
    for episode, block in zip(discrete.dataset.episodes, stay_blocks(table), strict=True):
        np.testing.assert_array_equal(DOSE_GRID_MG[episode.actions[:, 0]], block["dose_mg"].to_numpy())
    assert discrete.report.action_unit.startswith("dose-grid index")


def test_off_grid_doses_need_an_explicit_rounding_that_is_reported():
    table = make_table(n_stays=2, seed=6, grid_doses=True)
    table.loc[1, "dose_mg"] = 1130.0
    with pytest.raises(ValueError, match=r"off the 250 mg grid.*stay 100 row 1 \(= 1130\).*round_doses=True"):
        convert(table, "discrete")
    result = convert(table, "discrete", round_doses=True)
    assert result.dataset.episodes[0].actions[1, 0] == 5  # 1250 mg
    assert any("rounded 1 dose(s)" in n and "largest rounding error 120 mg" in n for n in result.report.notes)
    with pytest.raises(ValueError, match=r"round_doses=True .* needs action='discrete'"):
        convert(table, round_doses=True)


def test_covariates_and_level_indicator_extend_the_observation_in_order():
    table = make_table(n_stays=3, seed=7, covariates=True, never_measured=True)
    result = convert(table, covariates=True, fill_unmeasured_level=True, level_indicator=True)
    assert result.observation_names == (*FEATURES, *COVARIATES, "vanco_level_measured")
    assert result.report.observation_names == result.observation_names
    episode, block = result.dataset.episodes[0], stay_blocks(table)[0]
    n = len(episode.observations)
    np.testing.assert_array_equal(
        episode.observations[:, 7:12], block[list(COVARIATES)].to_numpy(np.float32)[:n]
    )
    measured = block["vanco_level"].notna().to_numpy()[:n]
    np.testing.assert_array_equal(episode.observations[:, -1], measured.astype(np.float32))
    np.testing.assert_array_equal(episode.observations[~measured, 0], 0.0)
    chosen = convert(table, covariates=("age", "weight_kg"), fill_unmeasured_level=True)
    assert chosen.observation_names == (*FEATURES, "weight_kg", "age")
    with pytest.raises(ValueError, match=r"covariates=True but the table has none"):
        convert(make_table(), covariates=True)
    with pytest.raises(ValueError, match=r"covariates \['height_cm'\] were requested"):
        convert(make_table().assign(age=50.0), covariates=("height_cm",))


def test_reward_column_is_used_and_may_be_empty_only_on_final_rows():
    table = make_table(n_stays=2, rows=(3, 3), seed=8, reward=True)
    result = convert(table)
    assert result.report.reward_source == "from the table's reward column"
    np.testing.assert_array_equal(
        result.dataset.episodes[0].rewards[:2, 0], table["reward"].to_numpy(np.float32)[:2]
    )
    table.loc[5, "reward"] = 3.0  # the timeout stay's final observation
    assert any("not used" in note for note in convert(table).report.notes)


def test_an_explicit_reward_replaces_the_tables_column_and_says_so():
    table = make_table(n_stays=3, rows=(4, 4, 4), seed=8, reward=True)
    result = convert(table, reward="seed")
    assert "'seed'" in result.report.reward_source
    assert result.report.reward_summary["max"] <= 0.0
    assert any("replaced by the computed 'seed' reward" in note for note in result.report.notes)
    assert convert(table).report.reward_source == "from the table's reward column"


def test_seed_reward_is_never_positive():
    result = convert(make_table(n_stays=5, seed=9), reward="seed")
    assert result.report.reward_summary["max"] <= 0.0
    assert "'seed'" in result.report.reward_source


def test_report_reads_as_a_table_and_serialises():
    table = make_table(n_stays=4, seed=10, never_measured=True, terminal_fraction=0.5)
    table.loc[2, "creatinine"] = np.nan
    table["sex"] = "F"
    table["unit"] = "MICU"
    result = convert(table, impute=CarryForward(max_age_steps=2), fill_unmeasured_level=True)
    report = result.report
    text = str(report)
    for expected in ("Conversion report", "transitions", "creatinine 1", "never measured", "ignored columns"):
        assert expected in text
    assert report.imputed == {"creatinine": 1}
    assert report.ignored_columns == ("unit",)
    assert any(note.startswith("sex: mapped") for note in report.notes)
    again = type(report).from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report


def test_same_table_same_dataset():
    table = make_table(n_stays=6, seed=11, terminal_fraction=0.5, behavior_prob=True)
    first, second = convert(table), convert(table)
    for a, b in zip(first.dataset.episodes, second.dataset.episodes, strict=True):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.rewards, b.rewards)
    assert first.report == second.report


def test_compact_buffer_indexes_transitions_like_d3rlpys_infinite_buffer():
    from d3rlpy.dataset import InfiniteBuffer

    from vanco_offline.data.episodes import CompactBuffer

    episodes = convert(make_table(n_stays=5, seed=12, terminal_fraction=0.5)).dataset.episodes
    compact, reference = CompactBuffer(), InfiniteBuffer()
    for episode in episodes:
        for i in range(episode.transition_count):
            compact.append(episode, i)
            reference.append(episode, i)
    assert compact.transition_count == len(compact) == reference.transition_count
    assert list(compact.episodes) == list(reference.episodes)
    for index in range(-1, reference.transition_count):
        (a, i), (b, j) = compact[index], reference[index]
        assert a is b and i == j
    with pytest.raises(ValueError, match="transitions in order: got index 0, expected"):
        compact.append(episodes[-1], 0)
