import numpy as np
import pytest

from vanco_offline.clinical import ClinicalLimits, StateSupport, apply_limits, renal_maintenance_cap

ADULT = {"weight_kg": 70.0, "age": 50.0, "sex": 0, "dialysis": 0}


def _state(level=15.0, creatinine=1.0):
    return np.array([level, creatinine, 9.0, 15.0, 37.5, 120.0, 85.0])


def test_safe_dose_passes_unchanged_with_infusion_time():
    out = apply_limits(1000.0, _state(), ADULT, first_dose=False)
    assert out.dose_mg == 1000.0
    assert not out.clipped
    assert out.min_infusion_minutes == pytest.approx(100.0)  # 10 mg/min


def test_small_dose_still_runs_for_an_hour():
    assert apply_limits(250.0, _state(), ADULT, first_dose=False).min_infusion_minutes == 60.0


def test_single_dose_above_3g_is_clipped_and_said():
    out = apply_limits(4500.0, _state(level=0.0), {**ADULT, "weight_kg": 150.0}, first_dose=True)
    assert out.dose_mg == 3000.0
    assert any("single dose limit" in reason for reason in out.clipped_by)


def test_loading_dose_capped_at_35_mg_per_kg():
    out = apply_limits(3000.0, _state(level=0.0), {**ADULT, "weight_kg": 50.0}, first_dose=True)
    assert out.dose_mg == pytest.approx(1750.0)
    assert any("loading dose" in reason for reason in out.clipped_by)


def test_renal_cap_shrinks_with_kidney_function():
    normal = renal_maintenance_cap(0.8, ADULT)
    aki = renal_maintenance_cap(3.5, ADULT)
    assert aki < normal / 2
    out = apply_limits(2000.0, _state(creatinine=3.5), ADULT, first_dose=False)
    assert out.dose_mg == pytest.approx(aki)
    assert any("renal adjustment" in reason for reason in out.clipped_by)


def test_dialysis_lowers_the_renal_cap():
    assert renal_maintenance_cap(4.0, {**ADULT, "dialysis": 1}) < renal_maintenance_cap(4.0, ADULT)


def test_toxic_trough_holds_and_missing_covariates_warn():
    out = apply_limits(1000.0, _state(level=28.0), None, first_dose=False)
    assert out.held and out.dose_mg == 0.0 and out.min_infusion_minutes == 0.0
    assert any("HOLD" in c and "above 20" in c for c in out.clipped_by)
    assert any("not applied" in w for w in out.warnings)


def test_first_dose_inferred_from_unmeasured_level_is_said():
    out = apply_limits(1500.0, _state(level=0.0), ADULT)
    assert any("loading" in w for w in out.warnings)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_dose_is_an_error(bad):
    with pytest.raises(ValueError, match="finite"):
        apply_limits(bad, _state(), ADULT)


def test_negative_dose_clipped_to_zero():
    out = apply_limits(-200.0, _state(), ADULT, first_dose=False)
    assert out.dose_mg == 0.0 and out.clipped


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_auc24"):
        ClinicalLimits(max_auc24=-1)


def test_support_check_flags_far_states_and_round_trips():
    rng = np.random.default_rng(0)
    x = rng.normal([15, 1.0, 9, 15, 37.5, 120, 85], [5, 0.3, 2, 5, 0.5, 15, 10], size=(2000, 7))
    names = ["vanco_level", "creatinine", "wbc", "bun", "temperature", "sbp", "heart_rate"]
    support = StateSupport.fit(x, names)
    assert support.check(x.mean(axis=0)) == []
    far = x.mean(axis=0).copy()
    far[1] = 9.0
    reasons = support.check(far)
    assert any(r.startswith("creatinine = 9") for r in reasons)
    # Every feature inside its own range (2.2 SD < 2.58 SD) but all at once: far from the data.
    odd = x.mean(axis=0) + 2.2 * x.std(axis=0)
    odd_reasons = support.check(odd)
    assert len(odd_reasons) == 1 and "Mahalanobis" in odd_reasons[0]
    assert StateSupport.from_json(support.to_json()).check(odd) == odd_reasons
    inside = np.mean([support.check(row) == [] for row in x[:400]])
    assert inside > 0.95
