"""When to draw a level: logs whose draws vary, the learned draw head and the bench's statistics."""

from __future__ import annotations

import numpy as np
import pytest
from vanco_bench.sampling import Row, design_at, generate_sampling_logs
from vanco_pk.policies import make_policy
from vanco_pk.policies.sampling import DRAW_FEATURES, WithDraws
from vanco_pk.simulate import simulate

from vanco_offline.algos.sampling_iql import LearnedDraws, draw_transitions, fit_draw_head


@pytest.fixture(scope="module")
def logs():
    return generate_sampling_logs(24, seed=3)


def test_logs_carry_the_draw_decision_and_its_probability(logs):
    rows = 15
    assert len(logs) == 24 * rows
    final = logs["step"] == rows - 1
    assert logs.loc[final, "level_drawn_prob"].isna().all() and not logs.loc[final, "level_drawn"].any()
    prob = logs.loc[~final, "level_drawn_prob"]
    assert ((prob > 0) & (prob < 1)).all()
    drawn = logs["level_drawn"].to_numpy().reshape(24, rows)
    measured = logs["level_measured"].to_numpy().reshape(24, rows)
    # A level ordered at a decision is measured at the next one, and no other level is drawn.
    assert np.array_equal(drawn[:, :-1], measured[:, 1:]) and not measured[:, 0].any()
    assert generate_sampling_logs(24, seed=3).equals(logs)
    assert not generate_sampling_logs(24, seed=4).equals(logs)


def test_draw_transitions_states_and_labels(logs):
    data = draw_transitions(logs)
    assert data.features.shape == (24 * 14, len(DRAW_FEATURES))
    assert np.isfinite(data.features).all()
    assert np.array_equal(data.drawn, logs["level_drawn"].to_numpy().reshape(24, 15)[:, :-1].ravel())
    assert np.all(data.label[~data.drawn] == 0) and np.all(data.label >= 0)
    assert data.label[data.drawn].max() > 0
    assert data.last.sum() == 24
    distance = draw_transitions(logs, label="distance")
    assert np.array_equal(distance.features, data.features)


def test_draw_transitions_refuses_bad_tables(logs):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['level_drawn'\]"):
        draw_transitions(logs.drop(columns=["level_drawn"]))
    with pytest.raises(ValueError, match="label = 'x'"):
        draw_transitions(logs, label="x")
    shuffled = logs.copy()
    shuffled.loc[1, "time_h"] = 100.0
    with pytest.raises(ValueError, match="time_h must increase"):
        draw_transitions(shuffled)


@pytest.mark.slow
def test_learned_head_draws_by_its_cost(logs):
    algo = fit_draw_head(draw_transitions(logs), n_steps=50, seed=0)
    runs = {}
    for cost in (-1e9, 1e9):
        policy = WithDraws(make_policy("mipd"), LearnedDraws(algo, cost))
        runs[cost] = simulate(policy, 5, 4, protocol="on_request")
    assert runs[-1e9].level_requested.all() and not runs[1e9].level_requested.any()
    with pytest.raises(ValueError, match="cost = nan"):
        LearnedDraws(algo, float("nan"))


def test_the_design_rule_at_matched_levels():
    rows = [
        Row("design", "", "on_request", t, 0.0, levels, 0.0, np.full(3, att), np.zeros(3))
        for t, levels, att in ((0.3, 2.0, 0.7), (0.2, 4.0, 0.8))
    ]
    mixed, what = design_at(rows, 3.0)
    assert np.allclose(mixed, 0.75) and "0.50" in what
    nearest, _ = design_at(rows, 9.0)
    assert np.allclose(nearest, 0.8)


def test_bench_refuses_too_few_patients_before_any_work(capsys):
    from vanco_offline import cli

    assert cli.main(["bench", "sampling", "--test-patients", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "test = 1 must be at least 2" in err


@pytest.mark.slow
def test_residual_dosing_keeps_its_tracker_in_step_with_the_doses_given(logs):
    # The residual_draw rows: the residual model doses, the draw head reads a tracker on the
    # model's prior that was told every dose the simulator gave (not MIPD's own choice).
    from vanco_bench.sampling import ResidualDosing, _residual_model

    model = _residual_model(logs, steps=5, seed=0)
    head = fit_draw_head(draw_transitions(logs), n_steps=20, seed=0)
    dosing = ResidualDosing(model)
    policy = WithDraws(dosing, LearnedDraws(head, 0.0))
    trace = simulate(policy, 7, 3, protocol="on_request")
    given = dosing.tracker.history().dose_mg
    assert np.array_equal(given[:, : trace.dose_mg.shape[0]], trace.dose_mg.T)
    assert dosing.tracker.model == model.population_model
    # The same model dosing alone, on the same patients and protocol, gives the same doses
    # until the first level the head ordered differently changes what it sees.
    alone = simulate(ResidualDosing(model), 7, 3, protocol="every_decision")
    assert np.array_equal(alone.dose_mg[0], trace.dose_mg[0])
