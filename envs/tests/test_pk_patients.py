"""The ICU patient generator and model misspecification."""

import numpy as np
import pytest
from vanco_pk import pk
from vanco_pk.patients import (
    N_PATIENT_DRAWS,
    Covariates,
    Misspecification,
    Patients,
    get_misspecification,
    sample_patients,
)


def test_same_seed_same_cohort_other_seed_other_cohort():
    a, b, c = sample_patients(50, 1), sample_patients(50, 1), sample_patients(50, 2)
    np.testing.assert_array_equal(a.covariates.weight_kg, b.covariates.weight_kg)
    np.testing.assert_array_equal(a.pk_z, b.pk_z)
    assert not np.allclose(a.covariates.weight_kg, c.covariates.weight_kg)


def test_generated_covariates_are_plausible_icu_patients():
    patients = sample_patients(5000, 0)
    cov = patients.covariates
    assert cov.weight_kg.min() >= 45.0 and cov.weight_kg.max() <= 150.0
    assert cov.age.min() >= 18.0 and cov.age.max() <= 90.0
    assert cov.creatinine.min() >= 0.5 and cov.creatinine.max() <= 3.0
    assert 0.05 < cov.dialysis.mean() < 0.11
    assert 0.38 < cov.sex.mean() < 0.46
    assert 70.0 < np.median(cov.weight_kg) < 90.0
    assert np.median(cov.height_cm[cov.sex == 0]) > np.median(cov.height_cm[cov.sex == 1]) + 8.0
    # Patients on dialysis have the high-normal creatinine that renal replacement holds them at.
    assert cov.creatinine[cov.dialysis == 1].min() >= 1.5
    assert np.abs(patients.pk_z).max() <= 3.0 + 1e-12
    assert abs(patients.pk_z.mean()) < 0.05 and patients.pk_z.std() == pytest.approx(1.0, abs=0.05)
    cl = patients.pk_parameters().cl
    assert 2.0 < np.median(cl) < 4.5  # L/h, the range reported for adult inpatients


def test_fixed_covariates_keep_the_drawn_pk_deviations():
    z = np.random.default_rng(4).standard_normal((3, N_PATIENT_DRAWS))
    drawn = Patients.from_normals(z)
    fixed = Patients.from_normals(z, covariates=Covariates(70.0, 50.0, 0, 175.0, 0, 1.0))
    np.testing.assert_array_equal(fixed.covariates.weight_kg, [70.0] * 3)
    np.testing.assert_array_equal(fixed.pk_z, drawn.pk_z)
    typical = Patients.typical(Covariates(70.0, 50.0, 0, 175.0, 0, 1.0)).pk_parameters()
    expected = pk.typical_parameters(70.0, 87.5, 0)
    assert (typical.cl[0], typical.v1[0]) == pytest.approx((float(expected.cl), float(expected.v1)))


def test_patient_indexing_and_info_dict():
    patients = sample_patients(6, 3)
    one = patients[2]
    assert len(one) == 1
    assert one.covariates.weight_kg[0] == patients.covariates.weight_kg[2]
    info = patients.covariates.as_dict(2)
    assert set(info) == {"weight_kg", "age", "sex", "height_cm", "dialysis", "baseline_creatinine"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("weight_kg", [70.0, 500.0], r"weight_kg\[1\] = 500 is outside \[30, 250\]"),
        ("sex", [0.5], r"sex\[0\] = 0.5 must be 0 or 1"),
        ("creatinine", [np.nan], r"creatinine\[0\] = nan is outside"),
        ("age", [[50.0]], "1-D array"),
    ],
)
def test_bad_covariates_name_the_field_and_patient(field, value, message):
    kwargs = {"weight_kg": 70.0, "age": 50.0, "sex": 0, "height_cm": 175.0, "dialysis": 0, "creatinine": 1.0}
    kwargs[field] = value
    with pytest.raises(ValueError, match=message):
        Covariates(**kwargs)


def test_misspecification_changes_the_truth_not_the_assumed_model():
    patients = sample_patients(200, 9)
    truth = get_misspecification("severe").true_model()
    assert truth.cl == pytest.approx(0.7 * 4.5) and truth.crcl_exponent == 0.6
    assert truth.omega2_cl == pytest.approx(0.1584 * 1.5**2)
    assert pk.GOTI_2018.cl == 4.5
    ratio = patients.pk_parameters(model=truth).cl / patients.pk_parameters().cl
    assert np.median(ratio) < 0.8
    assert get_misspecification({"v1_scale": 1.2}).v1_scale == 1.2
    assert get_misspecification(None) == Misspecification()
    with pytest.raises(ValueError, match="unknown misspecification 'wild'"):
        get_misspecification("wild")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['cl'\]"):
        get_misspecification({"cl": 2.0})
    with pytest.raises(ValueError, match="cl_scale = -1"):
        Misspecification(cl_scale=-1.0)


def test_sample_patients_rejects_a_bad_count():
    with pytest.raises(ValueError, match="positive integer"):
        sample_patients(0)
