"""The draw decision from the table to the recommendation: columns, dataset, training, advice."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from vanco_pk.policies.sampling import DRAW_FEATURES, HabitDraws
from vanco_pk.targets import COVARIATES, FEATURES

from vanco_offline import cli
from vanco_offline.algos.sampling_iql import (
    choose_draw_cost,
    draw_dataset,
    draw_features_at,
    draw_transitions,
)
from vanco_offline.configs import load_preset
from vanco_offline.data import convert, generate_cohort
from vanco_offline.training import train


@pytest.fixture(scope="module")
def logs() -> pd.DataFrame:
    return generate_cohort(40, "clinician", 5, draws=HabitDraws(), true_columns=False)


def test_cohort_with_a_draw_rule_writes_the_decision(logs):
    rows = 15
    final = logs["step"] == rows - 1
    assert not logs.loc[final, "level_drawn"].any() and logs.loc[final, "level_drawn_prob"].isna().all()
    prob = logs.loc[~final, "level_drawn_prob"]
    assert ((prob > 0) & (prob < 1)).all()
    drawn = logs["level_drawn"].to_numpy().reshape(40, rows)
    measured = logs["level_measured"].to_numpy().reshape(40, rows)
    assert np.array_equal(drawn[:, :-1], measured[:, 1:])  # an order is a level at the next decision
    assert 0 < drawn.mean() < 1
    again = generate_cohort(40, "clinician", 5, draws=HabitDraws(), true_columns=False)
    assert again.equals(logs)
    plain = generate_cohort(3, "clinician", 5, true_columns=False)
    assert "level_drawn" not in plain.columns
    with pytest.raises(ValueError, match=r"must be a vanco_pk\.policies\.sampling\.DrawRule"):
        generate_cohort(3, draws="habits")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.assign(level_drawn=2), r"column 'level_drawn' must be 0/1"),
        (lambda t: t.assign(level_drawn="maybe"), r"column 'level_drawn' must be 0/1"),
        (lambda t: t.assign(level_drawn=np.where(t.index == 3, np.nan, 0.0)), r"stay 0 row 3"),
        (lambda t: t.assign(level_drawn_prob=1.0), r"column 'level_drawn_prob' must be in \(0, 1\)"),
        (lambda t: t.assign(level_drawn_prob=-0.2), r"column 'level_drawn_prob' must be in \(0, 1\)"),
        (lambda t: t.drop(columns="level_drawn"), r"'level_drawn_prob' is given without 'level_drawn'"),
    ],
)
def test_bad_draw_columns_are_one_line_errors(logs, edit, message):
    table = edit(logs.copy())
    with pytest.raises(ValueError, match=message) as info:
        convert(table, fill_unmeasured_level=True)
    assert "\n" not in str(info.value)


def test_the_dose_dataset_is_unchanged_by_the_draw_columns(logs):
    options = load_preset("default").data.conversion_settings()
    from vanco_offline.data import convert_with

    with_draws = convert_with(logs, options)
    without = convert_with(logs.drop(columns=["level_drawn", "level_drawn_prob"]), options)
    for a, b in zip(with_draws.dataset.episodes, without.dataset.episodes, strict=True):
        for field in ("observations", "actions", "rewards", "terminated"):
            assert np.array_equal(getattr(a, field), getattr(b, field))


def test_draw_dataset_has_the_draw_as_its_action_and_carries_the_behaviour_probability(logs):
    data = draw_transitions(logs)
    dataset = draw_dataset(data)
    assert dataset.dataset_info.action_space.name == "DISCRETE" and dataset.dataset_info.action_size == 2
    actions = np.concatenate([ep.actions[:, 0] for ep in dataset.episodes])
    assert np.array_equal(actions, data.drawn.astype(int))
    expected = logs["level_drawn_prob"].to_numpy().reshape(40, 15)[:, :-1].ravel()
    assert np.allclose(data.behavior_prob, expected)
    assert np.isnan(draw_transitions(logs.drop(columns="level_drawn_prob")).behavior_prob).all()


def test_draw_state_at_a_decision_is_the_replayed_one(logs):
    data = draw_transitions(logs)
    stay = logs[logs["stay_id"] == 2]
    for k in (0, 6, 13):
        features = draw_features_at(stay.iloc[: k + 1], float(stay["dose_mg"].iloc[k]))
        assert features.shape == (len(DRAW_FEATURES),)
        assert np.array_equal(features, data.features[2 * 14 + k])
    # Without time_h and level_measured: rows 12 h apart and the new-level rule give the same state.
    bare = stay.drop(columns=["time_h", "level_measured"]).iloc[:8]
    assert np.array_equal(draw_features_at(bare, float(bare["dose_mg"].iloc[-1])), data.features[2 * 14 + 7])


def test_the_cost_matches_the_logged_rate():
    rng = np.random.default_rng(0)
    advantage = rng.normal(size=1000)
    drawn = rng.random(1000) < 0.25
    cost = choose_draw_cost(advantage, drawn)
    assert abs((advantage > cost).mean() - drawn.mean()) < 0.002
    with pytest.raises(ValueError, match="both draws and no draws"):
        choose_draw_cost(advantage, np.zeros(1000, bool))


def test_a_draw_preset_refuses_a_table_without_draws_and_a_cost_without_a_head(logs, tmp_path, capsys):
    with pytest.raises(ValueError, match="lacks; train --config residual"):
        train(
            load_preset("residual_draw"),
            logs.drop(columns=["level_drawn", "level_drawn_prob"]),
            log_root=None,
        )
    with pytest.raises(ValueError, match="--draw-cost is the cost of a level"):
        train(load_preset("residual"), logs, log_root=None, draw_cost=0.05)
    plain = tmp_path / "plain.csv"
    logs.drop(columns=["level_drawn", "level_drawn_prob"]).to_csv(plain, index=False)
    code = cli.main(["train", "--config", "residual_draw", "--data", str(plain), "--log-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "'level_drawn'" in err
    assert [p.name for p in tmp_path.iterdir()] == ["plain.csv"]  # refused before any run folder


@pytest.fixture(scope="module")
def draw_model(logs, tmp_path_factory):
    """`train --config residual_draw` on the logs (CLI), and the same with `residual`."""
    root = tmp_path_factory.mktemp("draw")
    data = root / "logs.csv"
    logs.to_csv(data, index=False)
    for preset in ("residual_draw", "residual"):
        argv = ["train", "--config", preset, "--data", str(data), "--steps", "60", "--quiet"]
        assert cli.main([*argv, "--experiment", preset, "--log-dir", str(root)]) == 0
    return root


def _state(row: pd.Series) -> tuple[dict, dict]:
    return {f: row[f] for f in FEATURES}, {c: row[c] for c in COVARIATES}


@pytest.mark.slow
def test_train_save_load_recommend_with_the_draw_advice(logs, draw_model, capsys):
    from vanco_offline.bundle import load_bundle
    from vanco_offline.recommend import CLINICAL_CASES, recommend
    from vanco_offline.trained import load_model

    model = load_model(draw_model / "residual_draw")
    plain = load_model(draw_model / "residual")
    record = model.training["draw_head"]
    assert model.draw_head is not None and plain.draw_head is None and "draw_head" not in plain.training
    assert record["cost"] == model.draw_head.cost and "validation stays" in record["cost_rule"]
    # The cost is chosen so that the head draws on the validation stays as often as the logs.
    assert abs(record["valid_head_per_week"] - record["valid_logged_per_week"]) < 0.3
    saved = json.loads((draw_model / "residual_draw" / "model.json").read_text())
    assert saved["training"]["draw_head"]["cost"] == record["cost"]

    stay = logs[logs["stay_id"] == 7].iloc[:9]
    state, covariates = _state(stay.iloc[-1])
    rec = recommend(model, state, covariates, history=stay)
    same = recommend(plain, state, covariates, history=stay)
    # The dose policy is the residual preset's, trained alike: the same dose, limits and warnings.
    assert rec.dose_mg == pytest.approx(same.dose_mg, abs=1e-3) and rec.warnings == same.warnings
    advice = rec.draw
    assert set(advice) == {"draw", "learned_draw", "value", "cost", "why", "state"}
    assert advice["draw"] == (advice["value"] > advice["cost"])
    features = draw_features_at(model.validate(stay), rec.dose_mg, model.population_model)
    assert advice["value"] == pytest.approx(float(model.draw_head.advantage(features[None])[0]))
    text = str(rec)
    line = next(x for x in text.splitlines() if x.startswith("draw a level"))
    assert ("yes" if advice["draw"] else "no") in line and "learned from the logs" in line
    assert "posterior SD of the next 24 h's log AUC" in line and "since the last level" in line
    assert "draw a level" not in str(same) and "draw" not in same.to_dict()
    assert rec.to_dict()["draw"] == advice

    # A held dose still says HOLD, and the advice asks for the level the hold needs.
    case = CLINICAL_CASES["toxic level"]
    held = recommend(model, case["state"], case["covariates"], history=case["history"])
    assert held.held and str(held).splitlines()[0].startswith("recommended dose      HOLD")
    assert held.draw["draw"] and held.draw["why"].startswith("the dose is held")
    assert any(c.startswith("HOLD") for c in held.limited.clipped_by)

    # The bundle runtime (no torch) gives the same dose and the same advice from the draw state.
    bundle = load_bundle(draw_model / "residual_draw" / "model.safetensors")
    given = {
        **{k: v for k, v in rec.observation.items() if k not in COVARIATES},
        **{c: float(v) for c, v in covariates.items()},
    }
    out = bundle.recommend({**given, "draw_state": advice["state"]})
    assert out["dose_mg"] == pytest.approx(rec.dose_mg, abs=0.05)
    assert out["draw"]["draw"] == advice["draw"]
    assert out["draw"]["value"] == pytest.approx(advice["value"], abs=1e-9)
    assert "not computed" in bundle.recommend(given)["draw"]["why"]
    with pytest.raises(ValueError, match="missing"):
        bundle.recommend({**given, "draw_state": {"sd_log_auc": 0.2}})
    plain_bundle = load_bundle(draw_model / "residual" / "model.safetensors")
    assert "draw" not in plain_bundle.recommend(given)
    with pytest.raises(ValueError, match="no draw head"):
        plain_bundle.recommend({**given, "draw_state": advice["state"]})

    # The CLI prints the advice beside the dose, from the stay's rows.
    csv = draw_model / "stay.csv"
    stay.to_csv(csv, index=False)
    assert cli.main(["recommend", "--model", str(draw_model / "residual_draw"), "--csv", str(csv)]) == 0
    assert "draw a level          " in capsys.readouterr().out
    assert cli.main(["recommend", "--model", str(draw_model / "residual"), "--csv", str(csv)]) == 0
    assert "draw a level" not in capsys.readouterr().out


@pytest.mark.slow
def test_a_bundle_whose_draw_head_was_left_out_is_refused(draw_model, tmp_path):
    from vanco_offline.export import export_bundle
    from vanco_offline.trained import _DESCRIPTION, load_model

    model = load_model(draw_model / "residual_draw")
    meta = json.loads(json.dumps(model.metadata(), default=str))
    path = export_bundle(
        model.algo,
        tmp_path / "model.safetensors",
        observation_names=model.observation_names,
        support=meta["support"],
        model={k: meta[k] for k in _DESCRIPTION},
    )
    with pytest.raises(ValueError, match="records a draw head but its file lacks one"):
        load_model(path)
    # `export` keeps the head: the exported bundle loads as a model with the same advice.
    out = tmp_path / "shared.safetensors"
    assert cli.main(["export", "--model", str(draw_model / "residual_draw"), "--out", str(out)]) == 0
    shared = load_model(out)
    assert shared.draw_head.cost == model.draw_head.cost
    probe = np.random.default_rng(0).random((5, len(DRAW_FEATURES)))
    assert np.array_equal(shared.draw_head.advantage(probe), model.draw_head.advantage(probe))


@pytest.mark.slow
def test_the_bundle_runtime_advises_without_torch(draw_model, tmp_path):
    import subprocess
    import sys

    from vanco_offline.trained import load_model

    model = load_model(draw_model / "residual_draw")
    state = {
        **{n: float(v) for n, v in zip(model.observation_names, model.support.mean, strict=True)},
        "weight_kg": 80.0,
        "age": 60.0,
        "sex": 0,
        "dialysis": 0,
        "draw_state": dict(zip(DRAW_FEATURES, [0.13, 2.5, 0.0, 0.0, 1, 4.0, 1, 3.0, 1], strict=True)),
    }
    (tmp_path / "state.json").write_text(json.dumps(state))
    files = [str(draw_model / "residual_draw" / "model.safetensors"), str(tmp_path / "state.json")]
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['d3rlpy'] = None\n"
        f"from vanco_offline.bundle import main\nsys.exit(main({files!r}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    (result,) = json.loads(run.stdout)
    head = model.draw_head
    value = float(head.advantage(np.array([list(state["draw_state"].values())]))[0])
    assert result["draw"]["value"] == pytest.approx(value) and result["draw"]["draw"] == (value > head.cost)


def test_simulate_writes_varying_draws(tmp_path):
    out = tmp_path / "draws.csv"
    argv = ["simulate", "--patients", "6", "--no-truth", "--quiet", "--out", str(out)]
    assert cli.main([*argv, "--draws", "habits"]) == 0
    table = pd.read_csv(out)
    assert {"level_drawn", "level_drawn_prob"} <= set(table.columns) and 0 < table["level_drawn"].mean() < 1
    assert cli.main([*argv, "--overwrite"]) == 0
    assert "level_drawn" not in pd.read_csv(out).columns


def test_train_checks_the_table_once(logs, monkeypatch):
    """The local refit, the conversion and the draw head read one check of the table (they
    checked it three times, the draw head with a second PK replay)."""
    from vanco_offline.data import validation

    calls = []
    original = validation._check_columns
    monkeypatch.setattr(
        validation, "_check_columns", lambda table: calls.append(len(table)) or original(table)
    )
    train(load_preset("residual_draw"), logs, n_steps=5, log_root=None)
    assert calls == [len(logs)]


def test_the_refit_reads_a_checked_chart_as_it_reads_the_table(logs):
    """``fit_local_model`` on the chart of a checked table (what train gives it) is the fit on
    the table, also when it draws a subset of the stays."""
    from vanco_offline.data import ConversionSettings, fit_local_model
    from vanco_offline.data.pk_replay import chart_of
    from vanco_offline.data.validation import check_table

    options = ConversionSettings(pk_features=True)
    chart = chart_of(check_table(logs, options))
    for max_stays in (None, 30):
        a = fit_local_model(logs, parameters=("cl",), max_stays=max_stays, seed=2, max_evaluations=20)
        b = fit_local_model(chart, parameters=("cl",), max_stays=max_stays, seed=2, max_evaluations=20)
        assert a.model == b.model
