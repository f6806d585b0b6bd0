"""Named worlds of the simulator: ``icu`` (the realistic default), ``ideal`` and the world panel.

A :class:`Scenario` says how levels are drawn, how kidneys change, which population model
generates the true patients and how AKI arises. ``get_scenario("icu")`` is the default of
the environments, the vector environment, ``generate_cohort`` and the benchmarks;
``get_scenario("ideal")`` is the original world (a trough at every decision, exact timing,
patients drawn from the Goti 2018 model that the dosing software also assumes, AKI only
above the toxic thresholds) and reproduces its numbers exactly.

Every option can be overridden: ``get_scenario({"base": "icu", "sampling": "auc_guided"})``
or ``dataclasses.replace(get_scenario("icu"), iov_cl_sd=0.0)``. The sources of the ``icu``
values are in ``docs/simulator.md`` (table "The icu scenario"); values marked there as
assumptions are plausible choices, not fitted to data.

Sampling protocols (``sampling``), each decision being the start of an interval:

* ``every_decision``: a trough at every decision (``ideal``);
* ``trough_guided``: a trough before the 4th dose, then whenever ``level_every_h`` hours
  have passed since the last level, and before the 4th dose of a changed regimen
  (Rybak 2020: troughs at steady state, repeated weekly or more often in unstable renal
  function; ICU practice every 48-72 h);
* ``auc_guided``: Bayesian AUC-guided monitoring: a peak + trough pair from one interval
  within 24-48 h (``auc_first_decision``; the peak ``auc_peak_offset_h`` after the end of
  the infusion), then a trough every ``auc_every_h`` hours (Rybak 2020: two levels, a peak
  1-2 h after the infusion and a trough, preferably in the first 24-48 h, then levels
  every 2-3 days);
* ``on_request``: only levels the agent asks for (see :class:`vanco_pk.sampling.LevelRequest`).

A level requested through the action is drawn in every protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from vanco_pk.pk_model import GOTI_2018, GotiModel
from vanco_pk.validation import check_positive

__all__ = [
    "SAMPLING_PROTOCOLS",
    "SCENARIOS",
    "THAI_ICU",
    "TRUE_MODELS",
    "WORLD_PANEL",
    "Scenario",
    "get_scenario",
    "protocol_for",
]

SAMPLING_PROTOCOLS = ("every_decision", "trough_guided", "auc_guided", "on_request")

#: Two-compartment vancomycin model of critically ill adults in Thailand (138 patients,
#: Dedkaew, Cressey, Punyawudho, Lucksiri; Int J Pharm Pharm Sci 2015;7(9)): CL 3.39 L/h
#: (BSV 13 %), V1 24.92 L (26 %), V2 24.6 L (37 %), CrCL a covariate of CL. The form of the
#: CrCL and weight effects, Q and the reference values are not in the abstract: here CL
#: scales as (CrCL/80)^0.75, V1 as weight/60 kg, Q = 6.5 L/h (Goti 2018) -- assumptions.
THAI_ICU = GotiModel(
    cl=3.39,
    v1=24.92,
    v2=24.6,
    q=6.5,
    crcl_ref=80.0,
    crcl_exponent=0.75,
    weight_ref=60.0,
    dialysis_cl_factor=1.0,
    dialysis_v1_factor=1.0,
    crcl_cap=1.0e4,
    omega2_cl=0.0168,  # log(1 + 0.13^2)
    omega2_v1=0.0654,  # log(1 + 0.26^2)
    omega2_v2=0.1283,  # log(1 + 0.37^2)
)
TRUE_MODELS: dict[str, GotiModel] = {"goti2018": GOTI_2018, "thai_icu": THAI_ICU}


@dataclass(frozen=True)
class Scenario:
    """The world the patients live in. Defaults are the ``ideal`` world.

    Attributes
    ----------
    name : label printed under tables.
    sampling : level protocol, one of :data:`SAMPLING_PROTOCOLS`.
    trough_first_decision : ``trough_guided``: decision before which the first trough is
        drawn (3 = before the 4th dose).
    trough_every_h : ``trough_guided``: hours between repeat troughs.
    auc_first_decision, auc_every_h : the same for ``auc_guided``.
    auc_peak_offset_h : ``auc_guided``: documented hours from the end of the infusion to the
        peak drawn with the first trough (``None``: troughs only).
    level_prop_error, level_add_error_mg_l : assay error of a level (SD of the proportional
        part, additive SD in mg/L); ``None``: the residual error of the true model (Goti
        22.7 % + 3.4 mg/L), scaled by the env's ``measurement_noise``.
    draw_time_sd_h : SD of the draw-time error (h): the chart says the trough was drawn at
        the decision, the real draw is ``|N(0, sd)|`` hours earlier (at most 2 h).
    true_model : population model of the true patients: a :class:`vanco_pk.pk_model.GotiModel`
        or a name of :data:`TRUE_MODELS`; the dosing software keeps Goti 2018 as its prior
        whatever this is.
    iov_cl_sd : SD of the log inter-occasion deviation of CL, redrawn every ``iov_occasion_h``.
    crcl_cap : CrCL cap (mL/min) of the true clearance; ``None``: uncapped (ARC reaches CL).
    arc_prob_young, arc_prob_middle, arc_prob_old : probability of augmented renal clearance
        at age < 50, 50-65, > 65 (septic/trauma ICU patients).
    arc_factor : (median, log SD, low, high) of the GFR multiplier of an ARC patient (its
        creatinine is lower by the same factor, so CrCL >= 130 mL/min is common).
    creatinine_range, creatinine_log_sd : range and spread of the drawn baseline creatinine
        (off dialysis); ``None`` keeps the population's.
    creatinine_assay_cv : proportional error of each creatinine measurement.
    dialysis : ``"goti"`` (Goti's intermittent-HD covariate on every dialysis patient) or
        ``"ihd_crrt"`` (continuous therapy with an effluent-based clearance, or 4-h sessions).
    crrt_fraction : share of dialysis patients on CRRT (the rest on intermittent HD).
    crrt_effluent_ml_kg_h, crrt_sieving : effluent dose and vancomycin sieving coefficient;
        CRRT clearance = effluent * weight * sieving.
    ihd_clearance_ml_min, ihd_session_h, ihd_every_h : dialyser clearance of vancomycin during
        a session, session length and spacing.
    aki : ``"threshold"`` (injury only above AUC 600 / trough 20, ``ideal``) or ``"graded"``.
    sepsis_aki_per_day : baseline AKI hazard (1/day) from sepsis, independent of vancomycin.
    vanco_aki_per_day : vancomycin AKI hazard (1/day) at AUC24 600 mg*h/L.
    vanco_aki_slope : log-hazard rise per 100 mg*h/L of AUC24.
    aki_injury : fraction of the remaining native GFR lost at an AKI event (recovers with the
        kidney model's recovery half-life).
    sepsis_v1_excess : a time-varying central volume (capillary leak and fluid resuscitation in
        sepsis): V1 is ``1 + sepsis_v1_excess`` times the population model's at the start of
        the stay and returns to it with half-life ``sepsis_v1_half_life_h``; 0 (default): off.
    """

    name: str = "ideal"
    sampling: str = "every_decision"
    trough_first_decision: int = 3
    trough_every_h: float = 48.0
    auc_first_decision: int = 2
    auc_every_h: float = 72.0
    auc_peak_offset_h: float | None = 1.0
    level_prop_error: float | None = None
    level_add_error_mg_l: float | None = None
    draw_time_sd_h: float = 0.0
    true_model: str | GotiModel = "goti2018"
    iov_cl_sd: float = 0.0
    iov_occasion_h: float = 24.0
    crcl_cap: float | None = 150.0
    arc_prob_young: float = 0.0
    arc_prob_middle: float = 0.0
    arc_prob_old: float = 0.0
    arc_factor: tuple[float, float, float, float] = (1.4, 0.15, 1.15, 2.0)
    creatinine_range: tuple[float, float] | None = None
    creatinine_log_sd: float | None = None
    creatinine_assay_cv: float = 0.0
    dialysis: str = "goti"
    crrt_fraction: float = 0.7
    crrt_effluent_ml_kg_h: float = 25.0
    crrt_sieving: float = 0.8
    ihd_clearance_ml_min: float = 130.0
    ihd_session_h: float = 4.0
    ihd_every_h: float = 48.0
    aki: str = "threshold"
    sepsis_aki_per_day: float = 0.0
    vanco_aki_per_day: float = 0.0
    vanco_aki_slope: float = 0.0
    aki_injury: float = 0.5
    sepsis_v1_excess: float = 0.0
    sepsis_v1_half_life_h: float = 48.0

    def __post_init__(self) -> None:
        if not isinstance(self.true_model, GotiModel) and self.true_model not in TRUE_MODELS:
            raise ValueError(
                f"Scenario.true_model = {self.true_model!r}; give a GotiModel or one of {list(TRUE_MODELS)}"
            )
        choices = {
            "sampling": SAMPLING_PROTOCOLS,
            "dialysis": ("goti", "ihd_crrt"),
            "aki": ("threshold", "graded"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"Scenario.{name} = {getattr(self, name)!r}; choose one of {list(allowed)}")
        for name in ("trough_first_decision", "auc_first_decision"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"Scenario.{name} = {value!r} must be an integer >= 1")
        check_positive(
            self,
            (
                "trough_every_h",
                "auc_every_h",
                "iov_occasion_h",
                "crrt_effluent_ml_kg_h",
                "crrt_sieving",
                "ihd_clearance_ml_min",
                "ihd_session_h",
                "ihd_every_h",
                "aki_injury",
                "sepsis_v1_half_life_h",
            ),
        )
        check_positive(
            self,
            (
                "draw_time_sd_h",
                "iov_cl_sd",
                "creatinine_assay_cv",
                "sepsis_aki_per_day",
                "vanco_aki_per_day",
                "vanco_aki_slope",
                "arc_prob_young",
                "arc_prob_middle",
                "arc_prob_old",
                "crrt_fraction",
                "level_prop_error",
                "level_add_error_mg_l",
                "auc_peak_offset_h",
                "crcl_cap",
                "creatinine_log_sd",
                "sepsis_v1_excess",
            ),
            allow_zero=True,
            allow_none=True,
        )
        for name in ("arc_prob_young", "arc_prob_middle", "arc_prob_old", "crrt_fraction", "aki_injury"):
            if getattr(self, name) > 1:
                raise ValueError(f"Scenario.{name} = {getattr(self, name)!r} must be <= 1")
        low, high = self.creatinine_range or (0.5, 3.0)
        if not (0.2 <= low < high <= 10):
            raise ValueError(
                f"Scenario.creatinine_range = {self.creatinine_range!r} must be (low, high) within 0.2-10"
            )
        if self.ihd_session_h > self.ihd_every_h:
            raise ValueError("Scenario.ihd_session_h must be <= ihd_every_h")

    @property
    def model(self) -> GotiModel:
        """The population model of the true patients."""
        return self.true_model if isinstance(self.true_model, GotiModel) else TRUE_MODELS[self.true_model]

    @property
    def true_prior(self) -> GotiModel:
        """The prior a Bayesian tool would use if it knew this world: the true population model
        with the world's own level error as residual error (where the world sets one), so that
        the tool neither over- nor under-trusts a level. Not inter-occasion variability, which
        a population prior does not carry."""
        changes = {}
        if self.level_prop_error is not None:
            changes["prop_error"] = self.level_prop_error
        if self.level_add_error_mg_l is not None:
            changes["add_error_mg_l"] = self.level_add_error_mg_l
        return replace(self.model, **changes) if changes else self.model

    @property
    def extra_draws(self) -> bool:
        """Whether the world needs random draws beyond the ``ideal`` ones (never for ``ideal``)."""
        return bool(
            self.draw_time_sd_h > 0
            or self.iov_cl_sd > 0
            or self.creatinine_assay_cv > 0
            or self.aki == "graded"
            or max(self.arc_prob_young, self.arc_prob_middle, self.arc_prob_old) > 0
            or self.dialysis == "ihd_crrt"
            or (self.sampling in ("trough_guided", "auc_guided") and self.auc_peak_offset_h is not None)
        )


IDEAL = Scenario()

ICU = Scenario(
    name="icu",
    sampling="trough_guided",
    level_prop_error=0.075,
    level_add_error_mg_l=1.0,
    draw_time_sd_h=0.5,
    true_model="thai_icu",
    iov_cl_sd=0.2,
    crcl_cap=None,
    arc_prob_young=0.5,
    arc_prob_middle=0.2,
    arc_prob_old=0.05,
    creatinine_range=(0.3, 6.0),
    creatinine_log_sd=0.6,
    creatinine_assay_cv=0.03,
    dialysis="ihd_crrt",
    aki="graded",
    # Calibrated on validation patients (seed 1, 300 per arm) so that AUC-guided MIPD (with
    # its peak + trough pair) vs the trough-guided clinician gives an AKI odds ratio inside
    # Finch 2017 / the 2022 meta-analysis (0.52-0.625); docs/simulator.md has the values.
    sepsis_aki_per_day=0.007,
    vanco_aki_per_day=0.02,
    vanco_aki_slope=0.7,
)

#: The ``icu`` truth with its volume in the published ICU range: V1 and V2 x 1.67, so that
#: its volume (V_area = CL/beta per kg) is ~1.4 L/kg instead of 0.84 (medical ICU patients:
#: about 1.4 L/kg, "nearly twice the quoted value of 0.72 L/kg", Fernandez de Gatta 2007,
#: Intensive Care Med 33:279; the fidelity table's tolerance 0.9-2.0). The factor puts the
#: truth inside that range; its exact value is an assumption.
THAI_ICU_VOLUME = replace(THAI_ICU, v1=THAI_ICU.v1 * 1.67, v2=THAI_ICU.v2 * 1.67)
#: The ``icu`` truth with between-patient CL variability at 35 % (CV) instead of the Thai
#: model's 13 %: the size ICU population analyses report (the audit's figure, ~35 %); the
#: value is an assumption, not fitted.
THAI_ICU_CLVAR = replace(THAI_ICU, omega2_cl=0.1156)  # log(1 + 0.35^2)
#: Both changes: the ``icu`` truth with volume and CL variability in published ICU ranges.
THAI_ICU_PUBLISHED = replace(THAI_ICU_VOLUME, omega2_cl=0.1156)

#: The world panel every headline is reported on: the ``icu`` world and variants that move
#: one assumption each (the true volume, CL variability, inter-occasion variability, the true
#: population model). ``icu_goti``: the true patients are drawn from Goti 2018, the prior the
#: dosing software already uses (a world where the refit can add nothing). IOV 0.2 of ``icu``
#: has no source (assumption): 0 and 0.35 bracket it.
WORLD_PANEL: dict[str, Scenario] = {
    "icu": ICU,
    "icu_volume": replace(ICU, name="icu_volume", true_model=THAI_ICU_VOLUME),
    "icu_clvar": replace(ICU, name="icu_clvar", true_model=THAI_ICU_CLVAR),
    "icu_published": replace(ICU, name="icu_published", true_model=THAI_ICU_PUBLISHED),
    "icu_iov0": replace(ICU, name="icu_iov0", iov_cl_sd=0.0),
    "icu_iov035": replace(ICU, name="icu_iov035", iov_cl_sd=0.35),
    "icu_goti": replace(ICU, name="icu_goti", true_model="goti2018"),
}

SCENARIOS: dict[str, Scenario] = {**WORLD_PANEL, "ideal": IDEAL}


def protocol_for(scenario: Scenario, policy_sampling: str | None) -> str:
    """The level protocol of patients dosed by a policy whose own protocol is ``policy_sampling``.

    A world with a level at every decision (``ideal``) or only on request keeps its rule; in
    the others a trough-guided clinician samples ``trough_guided`` and MIPD ``auc_guided``.
    """
    if policy_sampling is None or scenario.sampling in ("every_decision", "on_request"):
        return scenario.sampling
    return policy_sampling


def get_scenario(spec: Scenario | str | dict[str, Any] | None = "icu") -> Scenario:
    """A :class:`Scenario` from a name (``"icu"``, ``"ideal"``), an instance, or a dict of fields.

    A dict may name its ``base`` (default ``"icu"``) and overrides any field of it;
    ``None`` means ``"icu"``.
    """
    if spec is None:
        return ICU
    if isinstance(spec, Scenario):
        return spec
    if isinstance(spec, str):
        if spec not in SCENARIOS:
            raise ValueError(f"unknown scenario {spec!r}; choose one of {sorted(SCENARIOS)}")
        return SCENARIOS[spec]
    if isinstance(spec, dict):
        spec = dict(spec)
        base = get_scenario(spec.pop("base", "icu"))
        names = {f.name for f in fields(Scenario)}
        unknown = sorted(set(spec) - names)
        if unknown:
            raise ValueError(f"scenario has unknown field(s) {unknown}; known: {sorted(names)}")
        return replace(base, **{"name": f"{base.name}+custom", **spec})
    raise ValueError(f"scenario must be a name, a dict or a Scenario; got {type(spec).__name__}")
