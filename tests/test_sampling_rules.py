"""When to draw a level: the simulator's draw hook and the sampling rules of vanco_pk."""

from __future__ import annotations

import numpy as np
import pytest
from vanco_pk.policies import make_policy
from vanco_pk.policies.sampling import (
    DrawMemory,
    FixedDraws,
    HabitDraws,
    PosteriorDraws,
    WithDraws,
    auc_uncertainty,
    fixed_schedule,
)
from vanco_pk.simulate import simulate
from vanco_pk.world import World


class _Always:
    """MIPD that asks for a level at every decision (or never)."""

    def __init__(self, value: bool):
        self.inner = make_policy("mipd")
        self.value = value

    def reset(self, covariates, seed):
        self.inner.reset(covariates, seed=seed)

    def act(self, features, info):
        return self.inner.act(features, info)

    def draw(self, features, info):
        return np.full(len(features), self.value)


@pytest.mark.parametrize("value", [True, False])
def test_draw_hook_orders_exactly_the_requested_levels_on_request(value):
    trace = simulate(_Always(value), 3, 6, protocol="on_request")
    assert trace.level_requested.all() == value and (~trace.level_requested).all() != value
    assert np.array_equal(trace.level_measured, trace.level_requested)


def test_policy_without_draw_samples_by_its_protocol_and_requests_nothing():
    plain = simulate(make_policy("mipd"), 3, 6, protocol="trough_guided")
    wrapped = simulate(_Always(False), 3, 6, protocol="trough_guided")
    assert not plain.level_requested.any()
    assert np.array_equal(plain.level_measured, wrapped.level_measured)
    assert np.array_equal(plain.dose_mg, wrapped.dose_mg)


def test_draw_of_the_wrong_shape_is_a_clear_error():
    class Bad(_Always):
        def draw(self, features, info):
            return np.ones(2)

    with pytest.raises(ValueError, match=r"draw\(\) gave float64 of shape \(2,\)"):
        simulate(Bad(True), 3, 4, protocol="on_request")


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_fixed_protocols_draw_k_levels_a_week(k):
    schedule = fixed_schedule(k)
    assert len(np.unique(schedule)) == k and schedule.min() == 2 and schedule.max() <= 12
    trace = simulate(WithDraws(make_policy("mipd"), FixedDraws(k)), 4, 5, protocol="on_request")
    assert np.allclose(trace.levels_per_week(), k)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: FixedDraws(0), "per_week = 0"),
        (lambda: FixedDraws(15), "per_week = 15"),
        (lambda: HabitDraws(min_prob=0.5, max_prob=0.4), "min_prob < max_prob"),
        (lambda: HabitDraws(habits_h=(24, -1)), "habits_h"),
        (lambda: PosteriorDraws(-0.1), "threshold = -0.1"),
        (lambda: PosteriorDraws(0.2, drift_sd_per_day=float("nan")), "drift_sd_per_day"),
    ],
)
def test_bad_rule_options_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def _state(since_h, changed=False, rise=False):
    """One patient with a level at 0 h (creatinine 1.0), now at 12 h; the hours since it overridden."""
    memory = DrawMemory(1, 12.0)
    memory.observe(np.array([0.0]), np.array([1.0]), np.array([True]), np.array([1000.0]))
    scr = 1.5 if rise else 1.0
    dose = 1500.0 if changed else 1000.0
    memory.observe(np.array([12.0]), np.array([scr]), np.array([False]), np.array([dose]))
    state = memory.state()
    return type(state)(**{**state.__dict__, "hours_since_level": np.array([since_h])})


def test_habit_probability_rises_with_time_dose_change_and_creatinine_and_stays_in_bounds():
    rule = HabitDraws(habits_h=(48.0,))
    rule.reset(1, [np.random.default_rng(0)])
    p = {h: float(rule.probability(_state(h), None)[0]) for h in (0.0, 24.0, 36.0, 72.0, 200.0)}
    assert p[0.0] == pytest.approx(0.03) and p[200.0] == pytest.approx(0.9)
    assert p[0.0] <= p[24.0] < p[36.0] < p[72.0] <= p[200.0]
    base = float(rule.probability(_state(24.0), None)[0])
    assert float(rule.probability(_state(24.0, changed=True), None)[0]) > base
    assert float(rule.probability(_state(24.0, rise=True), None)[0]) > base


def test_habit_logs_record_the_probability_of_the_decision_taken_and_repeat_with_the_seed():
    runs = []
    for _ in range(2):
        policy = WithDraws(make_policy("clinician"), HabitDraws())
        trace = simulate(policy, 7, 20, protocol="on_request")
        drawn, prob = np.stack(policy.draws), np.stack(policy.draw_probs)
        assert np.array_equal(drawn, trace.level_requested)
        assert np.all((prob >= 0.03 - 1e-12) & (prob <= 0.97 + 1e-12))
        runs.append((drawn, prob, trace.dose_mg))
    for a, b in zip(runs[0], runs[1], strict=True):
        assert np.array_equal(a, b)
    # Units differ: some patients are drawn far more often than others.
    per_patient = runs[0][0].sum(axis=0)
    assert per_patient.max() - per_patient.min() >= 3


def test_posterior_sd_shrinks_with_levels_and_the_design_rule_spans_none_to_all():
    policy = make_policy("mipd")
    trace = simulate(WithDraws(policy, FixedDraws(7)), 2, 8, protocol="on_request")
    sd_after, _ = auc_uncertainty(policy.tracker, trace.dose_mg[-1])
    fresh = make_policy("mipd")
    first = simulate(
        WithDraws(fresh, FixedDraws(1)), 2, 8, protocol="on_request", world=World(episode_days=1)
    )
    sd_before, _ = auc_uncertainty(fresh.tracker, first.dose_mg[-1])
    assert np.all(sd_after < sd_before)
    every = simulate(WithDraws(make_policy("mipd"), PosteriorDraws(0.0)), 2, 8, protocol="on_request")
    never = simulate(WithDraws(make_policy("mipd"), PosteriorDraws(10.0)), 2, 8, protocol="on_request")
    assert every.level_requested.all() and not never.level_requested.any()


def test_design_rule_needs_an_mipd_tracker():
    with pytest.raises(ValueError, match="Bayesian tracker"):
        simulate(WithDraws(make_policy("clinician"), PosteriorDraws(0.2)), 2, 3, protocol="on_request")
