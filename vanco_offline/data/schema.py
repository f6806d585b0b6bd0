"""The dosing-table schema: column names, units and the plausible range of every value.

One row per decision step of one ICU stay (see ``data/README.md``). The ranges are not
clinical targets: they are wide bounds whose only job is to catch a column recorded in the
wrong unit (temperature in °F, creatinine in µmol/L, a level in µg/L), with a hint that says
which unit the values look like and how to convert them.
"""

from __future__ import annotations

import dataclasses
import math

from vanco_pk.exposure import PK_FEATURES, TRACKER_COVARIATES
from vanco_pk.targets import COVARIATES, DOSE_GRID_MG, DOSE_MAX_MG, FEATURE_UNITS, FEATURES

__all__ = [
    "ACTION_SIZE_DISCRETE",
    "BEHAVIOR_PROB",
    "COVARIATES",
    "COVARIATE_UNITS",
    "DONE",
    "DOSE",
    "DOSE_GRID_MG",
    "DOSE_MAX_MG",
    "FEATURES",
    "FEATURE_UNITS",
    "LAST_DOSE",
    "LEVEL",
    "LEVEL_DRAWN",
    "LEVEL_DRAWN_PROB",
    "LEVEL_INDICATOR",
    "LEVEL_MEASURED",
    "PK_FEATURES",
    "RANGES",
    "REWARD",
    "SEX_TEXT",
    "STAY",
    "TIME_COLUMNS",
    "TRACKER_COVARIATES",
    "ValueRange",
]

STAY = "stay_id"
#: Accepted time columns: integer decision steps or hours since admission.
TIME_COLUMNS: tuple[str, ...] = ("step", "time_h")
DOSE = "dose_mg"
REWARD = "reward"
DONE = "done"
BEHAVIOR_PROB = "behavior_prob"
LEVEL = "vanco_level"
#: Name of the optional observation feature that is 1 where a level has been measured.
LEVEL_INDICATOR = "vanco_level_measured"
#: Optional input column: True where a level was drawn at this step (else a changed level is new).
LEVEL_MEASURED = "level_measured"
#: Optional column: True where this row's decision orders a trough at the end of its interval
#: (the draw part of the action of a policy that learns when to sample).
LEVEL_DRAWN = "level_drawn"
#: Optional column: the behaviour probability of the logged ``level_drawn`` decision.
LEVEL_DRAWN_PROB = "level_drawn_prob"
#: Name of the optional observation feature holding the dose given at the previous decision.
LAST_DOSE = "last_dose_mg"

COVARIATE_UNITS: dict[str, str] = {
    "weight_kg": "kg",
    "age": "years",
    "sex": "0 = male, 1 = female",
    "height_cm": "cm",
    "dialysis": "0/1",
}

#: Text values accepted in ``sex`` and the code each maps to.
SEX_TEXT: dict[str, int] = {"m": 0, "male": 0, "f": 1, "female": 1}

ACTION_SIZE_DISCRETE = len(DOSE_GRID_MG)

# A nonzero dose below this is not a vancomycin dose in mg; it is almost surely grams.
MIN_NONZERO_DOSE_MG = 5.0


@dataclasses.dataclass(frozen=True)
class ValueRange:
    """Plausible values of one column and what a value outside them usually means.

    Parameters
    ----------
    low, high : float
        Inclusive bounds, unless ``low_exclusive``.
    unit : str
        The schema's unit, shown in error messages.
    above, below : str
        Hints for values above ``high`` / below ``low``: the likely unit error and the fix.
    low_exclusive : bool
        ``low`` itself is implausible (creatinine cannot be 0).
    """

    low: float
    high: float
    unit: str
    above: str = ""
    below: str = ""
    low_exclusive: bool = False


RANGES: dict[str, ValueRange] = {
    "vanco_level": ValueRange(
        0.0,
        # Overdoses in renal failure reach a few hundred mg/L; a µg/L mix-up gives thousands.
        500.0,
        "mg/L",
        above="these look like µg/L (mg/L × 1000): divide by 1000 to get mg/L",
        below="a concentration cannot be negative",
    ),
    "creatinine": ValueRange(
        0.0,
        25.0,
        "mg/dL",
        low_exclusive=True,
        above="these look like µmol/L: divide by 88.4 to get mg/dL",
        below="serum creatinine must be positive",
    ),
    "wbc": ValueRange(
        0.0,
        500.0,
        "10^9/L",
        above="these look like cells/µL: divide by 1000 to get 10^9/L",
        below="a cell count cannot be negative",
    ),
    "bun": ValueRange(
        0.0,
        300.0,
        "mg/dL",
        above="BUN above 300 mg/dL is implausible: check the unit (BUN in mg/dL = urea in mmol/L × 2.8)",
        below="a concentration cannot be negative",
    ),
    "temperature": ValueRange(
        25.0,
        45.0,
        "degC",
        above="these look like degrees Fahrenheit: convert with (F - 32) * 5 / 9",
        below="below 25 degC is implausible for a living patient: check the unit",
    ),
    "sbp": ValueRange(
        0.0,
        350.0,
        "mmHg",
        above="systolic pressure above 350 mmHg is implausible: check the unit (mmHg)",
        below="a pressure cannot be negative",
    ),
    "heart_rate": ValueRange(
        0.0,
        350.0,
        "bpm",
        above="a heart rate above 350 bpm is implausible: check the unit (beats per minute)",
        below="a heart rate cannot be negative",
    ),
    "weight_kg": ValueRange(
        0.3,
        400.0,
        "kg",
        above="these look like pounds: divide by 2.2046 to get kg",
        below="a body weight below 0.3 kg is implausible: check the unit (kg)",
    ),
    "age": ValueRange(
        0.0,
        120.0,
        "years",
        above="these look like months or days: give the age in years",
        below="an age cannot be negative",
    ),
    "height_cm": ValueRange(
        30.0,
        250.0,
        "cm",
        above="these look like millimetres: divide by 10 to get cm",
        below="these look like metres: multiply by 100 to get cm",
    ),
    "dialysis": ValueRange(0.0, 1.0, "0/1", above="dialysis must be 0 or 1", below="dialysis must be 0 or 1"),
    # Observation columns built from a stay's history (a state given whole, as to the bundle runtime).
    LAST_DOSE: ValueRange(
        0.0, DOSE_MAX_MG, "mg", above="above the 3000 mg single-dose limit", below="a dose cannot be negative"
    ),
    "pk_cl_map": ValueRange(
        0.0,
        50.0,
        "L/h",
        low_exclusive=True,
        above="a clearance above 50 L/h is implausible",
        below="a clearance must be positive",
    ),
    "pk_auc24": ValueRange(
        0.0,
        20000.0,
        "mg*h/L",
        above="an AUC24 above 20000 mg*h/L is implausible",
        below="an AUC cannot be negative",
    ),
    "pk_dose_auc500": ValueRange(
        0.0, DOSE_MAX_MG, "mg", above="above the 3000 mg single-dose limit", below="a dose cannot be negative"
    ),
}

assert set(FEATURES) <= set(RANGES) and set(COVARIATES) - {"sex"} <= set(RANGES)
assert math.isclose(DOSE_MAX_MG, float(DOSE_GRID_MG[-1]))
