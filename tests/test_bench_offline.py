"""The offline benchmark: a tiny grid end to end, determinism of a cell, the Ray backend, the statistics."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json

import numpy as np
import pytest

from vanco_offline.bench import offline
from vanco_offline.bench.offline.cell import run_cell, seed_action_map
from vanco_offline.bench.offline.grid import ALGORITHMS, CellTask, DatasetSpec, build_config, load_dataset
from vanco_offline.bench.offline.report import aggregate, format_table, iqm_interval, verdicts
from vanco_offline.bench.offline.runner import run_grid
from vanco_offline.rollout import EvalPatients, rollout

TINY = DatasetSpec.make("medium", "tiny", n_stays=20)


def tiny_task(algo: str, seed: int, **kw) -> CellTask:
    options = {"n_steps": 150, "eval_patients": 24, "batch_size": 64}
    options.update(kw)
    return CellTask(TINY, algo, seed, **options)


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key


@pytest.fixture(scope="module")
def tiny_grid():
    """VancoIQL and BC, 2 seeds each, on 2 local spawn processes; the clinician's cells in this process."""
    tasks = [tiny_task(algo, seed) for algo in ("VancoIQL", "BC") for seed in (0, 1)]
    results = run_grid(tasks, backend="local", workers=2)
    clinician = [tiny_task("clinician", seed) for seed in (0, 1)]
    return tasks + clinician, results + [run_cell(task) for task in clinician]


def test_tiny_grid_runs_on_local_processes_and_produces_the_table(tiny_grid):
    tasks, results = tiny_grid
    assert [(r.dataset, r.algo, r.seed) for r in results] == [t.key for t in tasks]
    for r in results:
        s = r.scores
        for key in ("attainment", "target_48h", "aki_rate", "dose_at_max"):
            assert 0.0 <= s[key] <= 1.0, (r.algo, key)
        assert 12.0 <= s["time_to_target_h"] <= 168.0
        assert 0.0 <= s["mean_dose_mg"] <= 3000.0
        assert s["n_patients"] == 24
        assert (r.train_seconds > 0) == (r.algo != "clinician")
    # Two seeds of a learned algorithm train different networks.
    assert results[0].scores != results[1].scores
    rows = aggregate(results, reps=200)
    assert [(row.dataset, row.algo, row.n_seeds) for row in rows] == [
        ("medium-tiny", "VancoIQL", 2),
        ("medium-tiny", "BC", 2),
        ("medium-tiny", "clinician", 2),
    ]
    table = format_table(rows)
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    assert lines[0].startswith("| dataset | algorithm | seeds | AUC 400-600 attainment")
    vanco = rows[0]
    point, low, high = vanco.iqm["attainment"]
    assert low <= point <= high
    assert point == pytest.approx(np.mean([r.scores["attainment"] for r in results[:2]]))
    assert f"{point:.1%}" in lines[2]
    (verdict,) = verdicts(rows)
    gain = (point - rows[2].iqm["attainment"][0]) * 100
    assert f"{gain:+.1f} pp vs clinician" in verdict and "vs d3rlpy: BC " in verdict


def test_cell_is_deterministic_by_seed(tiny_grid):
    tasks, results = tiny_grid
    again = run_cell(tasks[0])  # in this process, not a pool worker: same numbers anyway
    _close(again.scores, results[0].scores)
    clinician = run_cell(tasks[4])
    _close(clinician.scores, results[4].scores)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (optional extra)")
def test_ray_backend_on_a_local_two_cpu_cluster_gives_the_local_numbers(tiny_grid):
    import ray

    tasks, results = tiny_grid
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_grid([tasks[0], tasks[4]], backend="ray")
    finally:
        ray.shutdown()
    assert [r.algo for r in remote] == ["VancoIQL", "clinician"]
    _close(remote[0].scores, results[0].scores)
    _close(remote[1].scores, results[4].scores)


def test_rollout_scores_a_held_dose_and_a_maximum_dose_by_hand():
    # ideal: without drug nobody gets AKI there (icu has a sepsis baseline hazard).
    options = {"level_missing_prob": 0.3, "scenario": "ideal"}
    patients = EvalPatients(n_patients=8, seed=5, env_options=options)
    none = rollout(lambda obs, info: np.zeros(len(obs)), patients)
    assert none.attainment == 0.0 and none.target_48h == 0.0 and none.aki_rate == 0.0
    assert none.time_to_target_h == 168.0  # never on target: censored at the episode length
    assert none.dose_at_max == 0.0 and none.mean_dose_mg == 0.0
    full = rollout(lambda obs, info: np.full(len(obs), 3000.0), patients)
    assert full.dose_at_max == 1.0 and full.mean_dose_mg == 3000.0
    assert full.aki_rate > 0.5 and full.return_ < none.return_


def test_seed_preset_reproduces_the_failure_and_default_fixes_it():
    """The seed's verbatim settings drive the greedy dose to the bound; the default preset does not."""
    seed = run_cell(tiny_task("VancoIQL (seed)", 0, n_steps=1000))
    fixed = run_cell(tiny_task("VancoIQL", 0, n_steps=300))
    # 0.83 after 1,000 steps on ideal-world data, 0.68 on the icu data the benchmark now
    # generates (sparser levels); ~1.0 after the 5,000 steps of the bench.
    assert seed.scores["dose_at_max"] > 0.6
    assert fixed.scores["dose_at_max"] < 0.1
    assert seed_action_map(np.array([-1.0, 0.0, 1.0, 7.0])).tolist() == [0.0, 1500.0, 3000.0, 3000.0]


def test_all_learned_algorithms_share_scalers_budget_and_network():
    _, result = load_dataset(TINY, "continuous")
    _, discrete = load_dataset(TINY, "discrete")
    task = tiny_task("VancoIQL", 0)
    for name, spec in ALGORITHMS.items():
        data = discrete if spec.action == "discrete" else result
        if spec.preset == "residual":  # centred on a PK feature these seven-feature data lack
            with pytest.raises(ValueError, match="pk_features=True"):
                build_config(spec, dataclasses.replace(task, algo=name), data)
            continue
        config = build_config(spec, dataclasses.replace(task, algo=name), data)
        assert config.batch_size == 64, name
        if spec.preset == "seed":
            assert config.observation_scaler is None and config.action_scaler is None
            continue
        mean = np.asarray(config.observation_scaler.mean)
        assert mean.shape == (7,) and mean[4] == pytest.approx(37.0, abs=1.0), name  # temperature column
        if spec.action == "continuous":
            scaler = config.action_scaler
            assert scaler.minimum.tolist() == [0.0] and scaler.maximum.tolist() == [3000.0]
        fields = ("encoder_factory", "actor_encoder_factory")
        encoders = [getattr(config, f) for f in fields if hasattr(config, f)]
        assert encoders and all(e.hidden_units == [32, 32] for e in encoders), name


def test_iqm_and_stratified_bootstrap_interval():
    point, low, high = iqm_interval(np.array([0.0, 1.0, 2.0, 3.0]), reps=500)
    assert point == pytest.approx(1.5)  # mean of the middle two of four
    assert 0.0 <= low <= point <= high <= 3.0 and low < high
    assert iqm_interval(np.array([0.4])) == (0.4, 0.4, 0.4)
    # Stratified: runs are resampled within each task, so a constant task adds no spread.
    scores = np.array([[0.2, 0.5], [0.2, 0.5], [0.2, 0.5]])
    assert iqm_interval(scores, reps=100) == pytest.approx((0.35, 0.35, 0.35))
    assert iqm_interval(np.arange(10.0), seed=3) == iqm_interval(np.arange(10.0), seed=3)


def test_bad_input_names_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown algorithm 'SAC'"):
        CellTask(TINY, "SAC", 0)
    with pytest.raises(ValueError, match=r"CellTask\.n_steps = 0"):
        CellTask(TINY, "VancoIQL", 0, n_steps=0)
    with pytest.raises(ValueError, match="unknown dataset 'expert'"):
        DatasetSpec.make("expert", "small")
    with pytest.raises(ValueError, match=r"overrides .* apply to learned algorithms"):
        CellTask(TINY, "mipd", 0, overrides={"expectile": 0.9})
    # A reference policy carries the run's data variant for its OPE only: its name stands alone.
    assert CellTask(TINY, "mipd", 0, last_dose=True).label == "mipd"
    assert CellTask(TINY, "VancoIQL", 0, last_dose=True).label == "VancoIQL [last dose]"
    with pytest.raises(ValueError, match="unknown reward variant 'auc'"):
        CellTask(TINY, "VancoIQL", 0, reward_variant="auc")
    with pytest.raises(ValueError, match=r"overrides \['alpha'\] are not fields of VancoIQL"):
        _, result = load_dataset(TINY, "continuous")
        build_config(ALGORITHMS["VancoIQL"], tiny_task("VancoIQL", 0, overrides={"alpha": 1.0}), result)
    with pytest.raises(ValueError, match="grid is empty"):
        run_grid([])
    with pytest.raises(ValueError, match="unknown backend 'slurm'"):
        run_grid([tiny_task("BC", 0)], backend="slurm")
    parser = argparse.ArgumentParser()
    offline.add_arguments(parser)
    with pytest.raises(ValueError, match="--hidden '32,x'"):
        offline.build_tasks(parser.parse_args(["--hidden", "32,x"]))
    with pytest.raises(ValueError, match="--seeds 0"):
        offline.build_tasks(parser.parse_args(["--seeds", "0"]))


def test_command_writes_table_json_and_plot(tmp_path, monkeypatch, tiny_grid):
    tasks, results = tiny_grid
    monkeypatch.setattr(offline, "build_tasks", lambda args: tasks)
    monkeypatch.setattr("vanco_offline.bench.offline.runner.run_grid", lambda *a, **k: results)
    parser = argparse.ArgumentParser()
    offline.add_arguments(parser)
    assert offline.run(parser.parse_args(["--out", str(tmp_path)])) == 0
    cells = json.loads((tmp_path / "results.json").read_text())
    assert [c["algo"] for c in cells] == [t.algo for t in tasks]
    table = (tmp_path / "table.md").read_text()
    assert "| medium-tiny | VancoIQL | 2 |" in table and "vs clinician" in table
    assert (tmp_path / "attainment.png").stat().st_size > 1000


def test_reward_variant_with_the_project_numbers_is_the_project_reward(monkeypatch):
    from vanco_pk.targets import FEATURES, reward

    from vanco_offline.bench.offline import variants as offline_variants
    from vanco_offline.bench.offline.variants import RewardVariant, variant_reward

    table, result = load_dataset(TINY, "continuous")
    monkeypatch.setitem(offline_variants.REWARD_VARIANTS, "same", RewardVariant(10.0, 20.0, 10.0))
    same = variant_reward(table, "same")
    steeper = variant_reward(table, "symmetric")
    features = table[list(FEATURES)].to_numpy()
    last = np.r_[table["stay_id"].to_numpy()[1:] != table["stay_id"].to_numpy()[:-1], True]
    expected = reward(features[:-1], table["dose_mg"].to_numpy()[:-1], features[1:])[~last[:-1]]
    np.testing.assert_allclose(same["reward"].to_numpy()[:-1][~last[:-1]], expected, atol=1e-12)
    assert np.isnan(same["reward"].to_numpy()[last]).all()
    low = np.r_[table["vanco_level"].to_numpy()[1:], np.nan] < 10.0
    assert (steeper["reward"].to_numpy()[low & ~last] < same["reward"].to_numpy()[low & ~last]).all()
    with pytest.raises(ValueError, match="unknown reward variant 'auc'"):
        variant_reward(table, "auc")
    # The benchmark trains on the variant's rewards (the converter must not recompute its own).
    _, converted = load_dataset(TINY, "continuous", reward_variant="symmetric")
    trained = np.concatenate([e.rewards[: e.transition_count, 0] for e in converted.dataset.episodes])
    np.testing.assert_allclose(trained, steeper["reward"].to_numpy()[~last], rtol=1e-6)

    _, augmented = load_dataset(TINY, "continuous", last_dose=True)
    assert augmented.observation_names[-1] == "last_dose_mg"
    first = augmented.dataset.episodes[0].observations
    rows = table[table["stay_id"] == augmented.stay_ids[0]]["dose_mg"].to_numpy()
    np.testing.assert_allclose(first[:, -1], np.r_[0.0, rows[:-1]])
    np.testing.assert_allclose(first[:, :-1], result.dataset.episodes[0].observations)


def test_exposure_variants_score_the_converters_auc_estimate():
    from vanco_offline.bench.offline.variants import variant_reward

    table, _ = load_dataset(TINY, "continuous")
    _, computed = load_dataset(TINY, "continuous", reward_variant="exposure")
    assert "'exposure' reward" in computed.report.reward_source
    last = np.r_[table["stay_id"].to_numpy()[1:] != table["stay_id"].to_numpy()[:-1], True]
    trained = np.concatenate([e.rewards[: e.transition_count, 0] for e in computed.dataset.episodes])
    column = variant_reward(table, "exposure")["reward"].to_numpy()
    np.testing.assert_allclose(trained, column[~last], atol=1e-5)
    steep = variant_reward(table, "exposure-steep")["reward"].to_numpy()[~last]
    assert np.all(steep <= trained + 1e-5) and np.any(steep < trained - 0.1)


def test_a_cell_trained_with_pk_features_rolls_out_with_the_same_observation():
    data = {"covariates": True, "last_dose": True, "pk_features": True, "reward_variant": "exposure"}
    task = tiny_task("VancoIQL", 0, **data)
    assert task.label == "VancoIQL [reward exposure, covariates, last dose, PK features]"
    result = run_cell(dataclasses.replace(task, ope=True))
    assert 0.0 <= result.scores["attainment"] <= 1.0
    # OPE on the same observation, and the truth under the exposure reward the policy trained on.
    assert {"fqe", "wis", "wdr", "truth"} <= set(result.ope)
    assert all(np.isfinite(value) for value in result.ope.values())
    _, data = load_dataset(TINY, "continuous", "default", True, "exposure", True, True)
    assert data.observation_names[-3:] == ("pk_cl_map", "pk_auc24", "pk_dose_auc500")


def test_merge_aggregates_earlier_runs_and_refuses_duplicates(tmp_path, tiny_grid):
    from vanco_offline.bench.offline.report import results_to_json

    _, results = tiny_grid
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "results.json").write_text(json.dumps(results_to_json(results[4:])))  # clinician
    (second / "results.partial.json").write_text(json.dumps(results_to_json(results[:4])))  # a stopped run
    parser = argparse.ArgumentParser()
    offline.add_arguments(parser)
    out = tmp_path / "merged"
    assert offline.run(parser.parse_args(["--merge", str(first), str(second), "--out", str(out)])) == 0
    table = (out / "table.md").read_text()
    rows = [line.split(" | ")[1] for line in table.splitlines() if line.startswith("| medium-tiny")]
    assert rows == ["VancoIQL", "BC", "clinician"]  # the grid's order, whatever the folders' order
    with pytest.raises(ValueError, match="also in an earlier folder"):
        offline.run(parser.parse_args(["--merge", str(first), str(first), "--out", str(out)]))
    (first / "results.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"not a results\.json of bench offline"):
        offline.run(parser.parse_args(["--merge", str(first), "--out", str(out)]))


def test_verdicts_compare_a_data_variant_with_baselines_on_the_same_variant():
    from vanco_offline.bench.offline.report import Aggregate

    def row(algo, attainment, aki=0.01):
        iqm = {"attainment": (attainment, attainment - 0.01, attainment + 0.01), "aki_rate": (aki, aki, aki)}
        return Aggregate("medium-small", algo, 5, iqm, {}, "", 1.0)

    rows = [
        row("VancoIQL [reward exposure, PK features]", 0.61),
        row("IQL [reward exposure, PK features]", 0.62),
        row("BC [reward exposure, PK features]", 0.41),
        row("BC", 0.70),  # another variant's row: not the comparison
        row("DiscreteVancoIQL [reward exposure, PK features]", 0.62),
        row("clinician", 0.43, aki=0.024),
        row("oracle", 0.90, aki=0.0),
        row("mipd", 0.668, aki=0.007),
        row("mipd_local", 0.70, aki=0.007),
    ]
    (verdict,) = verdicts(rows)
    assert verdict.startswith("medium-small, VancoIQL [reward exposure, PK features]:")
    assert "+18.0 pp vs clinician" in verdict and "-> MET" in verdict
    assert "IQL overlap" in verdict and "BC better" in verdict and "gap to oracle 29.0 pp" in verdict
    assert "vs MIPD -5.8 pp (worse), AKI +0.3 pp" in verdict
    assert "half the MIPD-to-oracle gap (+11.6 pp) MISSED" in verdict
    assert "vs MIPD with the local prior -9.0 pp (worse)" in verdict
    (discrete,) = verdicts(rows, "DiscreteVancoIQL")
    assert "+19.0 pp" in discrete and "vs d3rlpy" not in discrete


def test_the_grid_trains_on_the_default_presets_data_and_the_seed_rows_on_the_seeds():
    import argparse

    from vanco_offline.bench import offline

    parser = argparse.ArgumentParser()
    offline.add_arguments(parser)
    rows = ["--algos", "VancoIQL", "IQL", "VancoIQL (seed)", "VancoIQL (base)", "clinician"]
    labels = {t.label for t in offline.build_tasks(parser.parse_args(rows))}
    assert "VancoIQL [reward exposure, covariates, last dose, PK features]" in labels
    assert {"VancoIQL (seed)", "VancoIQL (base)", "clinician"} <= labels
    quick = offline.build_tasks(parser.parse_args(["--quick"]))
    assert "ResidualVancoIQL [reward exposure, covariates, last dose, PK features, local PK model]" in {
        t.label for t in quick
    }
    assert {t.seed for t in quick} == {0, 1, 2} and not any(t.ope for t in quick)
    assert {"mipd", "mipd_local", "BCQ"} <= {t.algo for t in quick}
    seven = {
        t.label for t in offline.build_tasks(parser.parse_args([*rows, "--data-preset", "seven_features"]))
    }
    assert {"VancoIQL", "IQL", "VancoIQL (seed)"} <= seven and not any("[" in label for label in seven)
    with pytest.raises(ValueError, match="add --data-preset seven_features"):
        offline.build_tasks(parser.parse_args(["--reward-variant", "symmetric-12.5"]))
