"""Reading and writing tables and datasets, Minari round trip, the convert command, the sample cohort."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pandas as pd
import pytest
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer
from test_data_builders import make_table

from vanco_offline.cli import main
from vanco_offline.data import (
    convert,
    export_minari,
    load_dataset,
    load_table,
    save_dataset,
    save_table,
)
from vanco_offline.data.episodes import ConversionResult, make_dataset
from vanco_offline.data.minari_format import _META, _datasets_root
from vanco_offline.data.schema import ACTION_SIZE_DISCRETE

SAMPLE_COHORT = Path(__file__).resolve().parents[1] / "data" / "sample_cohort.csv"


# The reader of the Minari mapping (vanco_offline.data.minari_format's table, right column):
# what a user of the exported dataset does, here to check that the export round-trips.
def import_minari(source: Any, *, root: str | Path | None = None) -> ConversionResult:
    """Read a Minari dataset written by :func:`export_minari` back into a ConversionResult.

    ``source`` is a ``MinariDataset``, a local dataset id (looked up under ``root``), or
    the path of a dataset directory. Datasets from elsewhere are read too when their spaces
    are a flat ``Box`` observation and a 1-D ``Box`` or ``Discrete(13)`` action.
    """
    minari = pytest.importorskip("minari")
    if isinstance(source, minari.MinariDataset):
        dataset = source
    elif isinstance(source, Path) or (isinstance(source, str) and os.path.isdir(source)):
        path = Path(source)
        dataset = minari.MinariDataset(path / "data" if (path / "data").is_dir() else path)
    else:
        with _datasets_root(root):
            dataset = minari.load_dataset(str(source), download=False)
    metadata = dataset.storage.metadata
    meta = json.loads(metadata[_META]) if _META in metadata else {}
    action = meta.get("action") or _action_kind(dataset.action_space)
    indices = dataset.episode_indices
    episode_meta = list(dataset.storage.get_episode_metadata(indices))
    episodes, stays, probs = [], [], []
    for data, info in zip(dataset.iterate_episodes(), episode_meta, strict=True):
        steps = len(data.rewards)
        if steps == 0:
            raise ValueError(f"Minari episode {data.id} has no step; d3rlpy cannot hold it")
        obs = np.asarray(data.observations, dtype=np.float32)
        actions = np.asarray(data.actions)
        actions = actions.reshape(steps, -1).astype(np.int64 if action == "discrete" else np.float32)
        rewards = np.asarray(data.rewards, dtype=np.float32).reshape(-1, 1)
        terminated = bool(data.terminations[-1])
        if terminated:
            obs = obs[:steps]
        else:
            logged = data.infos.get("logged_action") if data.infos else None
            final = np.asarray(logged[-1] if logged is not None else 0).reshape(1, -1).astype(actions.dtype)
            actions = np.concatenate([actions, final])
            rewards = np.concatenate([rewards, np.zeros((1, 1), np.float32)])
        episodes.append(Episode(observations=obs, actions=actions, rewards=rewards, terminated=terminated))
        stay = info.get("options", {}).get("stay_id", data.id)
        stays.append(stay.item() if isinstance(stay, np.generic) else stay)
        if data.infos and "behavior_prob" in data.infos:
            probs.append(np.asarray(data.infos["behavior_prob"], dtype=np.float64)[:steps])
    names = tuple(
        meta.get("observation_names") or (f"x{i}" for i in range(episodes[0].observations.shape[1]))
    )
    return ConversionResult(
        dataset=make_dataset(episodes, action),
        report=None,
        stay_ids=stays,
        behavior_probs=probs if len(probs) == len(episodes) else None,
        observation_names=names,
        action=action,
    )


def _action_kind(space: gymnasium.Space) -> str:
    if isinstance(space, gymnasium.spaces.Discrete) and space.n == ACTION_SIZE_DISCRETE:
        return "discrete"
    if isinstance(space, gymnasium.spaces.Box) and space.shape == (1,):
        return "continuous"
    raise ValueError(
        f"unsupported Minari action space {space}: expected a 1-D Box dose in mg "
        f"or Discrete({ACTION_SIZE_DISCRETE})"
    )


def _assert_same_episodes(a, b) -> None:
    assert len(a.dataset.episodes) == len(b.dataset.episodes)
    for x, y in zip(a.dataset.episodes, b.dataset.episodes, strict=True):
        np.testing.assert_array_equal(x.observations, y.observations)
        np.testing.assert_array_equal(x.actions, y.actions)
        np.testing.assert_array_equal(x.rewards, y.rewards)
        assert x.actions.dtype == y.actions.dtype
        assert x.terminated == y.terminated
    assert a.dataset.transition_count == b.dataset.transition_count
    assert a.dataset.dataset_info.action_space == b.dataset.dataset_info.action_space
    assert a.dataset.dataset_info.action_size == b.dataset.dataset_info.action_size
    assert a.stay_ids == b.stay_ids
    assert a.observation_names == b.observation_names


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".csv.gz"])
def test_table_round_trip(tmp_path, suffix):
    table = make_table(n_stays=3, seed=1, stay_prefix="icu-", never_measured=True, terminal_fraction=0.5)
    back = load_table(save_table(table, tmp_path / f"sub/stays{suffix}"))
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    _assert_same_episodes(
        convert(back, fill_unmeasured_level=True), convert(table, fill_unmeasured_level=True)
    )


def test_table_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"unsupported file type '.xlsx'.*CSV.*Parquet"):
        load_table(tmp_path / "stays.xlsx")
    with pytest.raises(FileNotFoundError, match="no such dosing table file"):
        load_table(tmp_path / "absent.csv")
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(ValueError, match="cannot be read as Parquet"):
        load_table(broken)


@pytest.mark.parametrize("action", ["continuous", "discrete"])
def test_dataset_file_round_trip_keeps_action_space_stays_and_probabilities(tmp_path, action):
    table = make_table(n_stays=4, seed=2, grid_doses=True, behavior_prob=True, terminal_fraction=0.5)
    result = convert(table, action)
    back = load_dataset(save_dataset(result, tmp_path / "set.h5"))
    _assert_same_episodes(result, back)
    assert back.report == result.report
    for p, q in zip(result.behavior_probs, back.behavior_probs, strict=True):
        np.testing.assert_array_equal(p, q)
    # The file is d3rlpy's own format, readable by d3rlpy.
    with open(tmp_path / "set.h5", "rb") as f:
        plain = ReplayBuffer.load(f, InfiniteBuffer())
    assert plain.transition_count == result.dataset.transition_count


def test_dataset_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "absent.h5")
    other = tmp_path / "other.h5"
    with open(other, "w+b") as f:
        convert(make_table()).dataset.dump(f)
    with pytest.raises(ValueError, match="not written by vanco-offline"):
        load_dataset(other)


@pytest.mark.parametrize(("action", "prefix"), [("continuous", None), ("discrete", "icu-")])
def test_minari_round_trip(tmp_path, action, prefix):
    pytest.importorskip("minari")
    table = make_table(
        n_stays=5, seed=3, grid_doses=True, behavior_prob=True, terminal_fraction=0.5, stay_prefix=prefix
    )
    result = convert(table, action)
    exported = export_minari(
        result,
        "vanco/roundtrip-v0",
        root=tmp_path,
        author="vanco-offline tests",
        author_email="tests@example.org",
        code_permalink="https://example.org/vanco-offline",
    )
    assert exported.total_episodes == 5
    assert exported.total_steps == result.dataset.transition_count
    for source in ("vanco/roundtrip-v0", tmp_path / "vanco" / "roundtrip-v0", exported):
        back = import_minari(source, root=tmp_path)
        _assert_same_episodes(result, back)
        for p, q in zip(result.behavior_probs, back.behavior_probs, strict=True):
            np.testing.assert_array_equal(p, q)
    # Minari's own view: T steps, T + 1 observations, the last step terminated or truncated.
    for minari_episode, episode in zip(exported.iterate_episodes(), result.dataset.episodes, strict=True):
        assert len(minari_episode.observations) == len(minari_episode.rewards) + 1
        assert bool(minari_episode.terminations[-1]) == episode.terminated
        assert bool(minari_episode.truncations[-1]) != episode.terminated


def test_convert_command_prints_the_report_and_saves(tmp_path, capsys):
    table = make_table(n_stays=3, seed=4, grid_doses=True, never_measured=True)
    save_table(table, tmp_path / "stays.csv")
    out = tmp_path / "set.h5"
    argv = [
        "convert",
        "--data",
        str(tmp_path / "stays.csv"),
        "--action",
        "discrete",
        "--fill-unmeasured-level",
    ]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Conversion report" in printed and "saved" in printed
    assert load_dataset(out).dataset.dataset_info.action_space == ActionSpace.DISCRETE
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "discrete"


def test_convert_command_reports_bad_input_in_one_line(tmp_path, capsys):
    table = make_table(n_stays=2, seed=5)
    table.loc[1, "temperature"] = 102.0
    save_table(table, tmp_path / "stays.csv")
    assert main(["convert", "--data", str(tmp_path / "stays.csv")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("vanco-offline convert: error: invalid dosing table: column 'temperature'")
    assert main(["convert", "--data", str(tmp_path / "absent.csv")]) == 2
    assert main(["convert", "--data", str(tmp_path / "stays.csv"), "--impute-max-age-steps", "0"]) == 2
    assert "--impute-max-age-steps must be a positive number" in capsys.readouterr().err


@pytest.mark.skipif(
    not SAMPLE_COHORT.exists(), reason="data/sample_cohort.csv is not there yet (issue 4 adds it)"
)
def test_sample_cohort_converts_with_no_exclusions():
    table = load_table(SAMPLE_COHORT)
    for action in ("continuous", "discrete"):
        result = convert(
            table, action, fill_unmeasured_level=True, level_indicator=True, round_doses=action == "discrete"
        )
        report = result.report
        assert report.exclusions == ()
        assert report.transitions_out == result.dataset.transition_count == report.transitions_in
        assert report.transitions_in >= len(table) - table["stay_id"].nunique()
