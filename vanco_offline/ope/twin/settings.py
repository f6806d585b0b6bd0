"""How the twins are built: :class:`TwinSettings`, their world and their population PK model.

The twins live in a world built only from what a hospital knows (:meth:`TwinSettings.twin_world`),
never from the simulator's scenario of the data:

* from the logs: the population PK model (:func:`local_prior`, with its band) and its
  residual error (each stay's posterior likelihood), the level timing (:func:`level_timing`, from the
  charted level times), each stay's covariates and baseline creatinine (the chart), the AKI
  incidence (the twins' hazard is calibrated to the logged KDIGO AKI,
  :mod:`~vanco_offline.ope.twin.kidney`);
* from the literature or stated assumptions, the constants below (:data:`TWIN_ASSUMPTIONS`
  names each with its source).

The decision interval, the horizon and the reward are the user's own choices and are taken
from ``TwinSettings.world`` (:data:`USER_OPTIONS`); the rest of that world (the scenario and
its true model, ``measurement_noise``, ``level_missing_prob``, ...) is where the data came
from and is not read by the twins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from vanco_pk.pk import GOTI_2018, GotiModel
from vanco_pk.scenario import Scenario
from vanco_pk.world import World

from vanco_offline.data.pk_replay import level_changes

__all__ = [
    "TWIN_ASSUMPTIONS",
    "TWIN_COVARIATES",
    "TWIN_REFITTED",
    "LevelTiming",
    "TwinSettings",
    "level_timing",
    "local_prior",
]

#: Covariate columns a twin needs from the table (height is optional: Goti 2018 does not use it).
TWIN_COVARIATES: tuple[str, ...] = ("weight_kg", "age", "sex", "dialysis")
#: The population parameters :func:`local_prior` refits; the CrCL cap and the dialysis factor
#: stay Goti 2018's.
TWIN_REFITTED: tuple[str, ...] = ("cl", "volume", "omega2_cl", "omega2_v1", "prop_error", "crcl_exponent")
#: The fields of a refitted model that :meth:`TwinSettings.draw_models` spreads (the refitted
#: ones and the prior's own variances).
BAND_FIELDS: tuple[str, ...] = (
    "cl",
    "v1",
    "v2",
    "q",
    "omega2_cl",
    "omega2_v1",
    "prop_error",
    "crcl_exponent",
)
#: ``TwinSettings.aki`` modes (or an :class:`~vanco_offline.ope.twin.kidney.AKICalibration`):
#: the twins' hazard scaled to the logged AKI incidence, or :data:`TWIN_AKI` as it is.
AKI_MODES: tuple[str, ...] = ("calibrated", "uncalibrated")
#: Fields of the data's world the twins take from ``TwinSettings.world`` (the user's choices).
USER_OPTIONS: tuple[str, ...] = ("decision_interval_h", "episode_days", "reward")

#: Assay error of a simulated level (proportional SD, additive SD in mg/L): a hospital knows its
#: laboratory's imprecision; assumption 7.5 % + 1.0 mg/L, the order of vancomycin immunoassay
#: imprecision. The refit's residual error (assay plus model misfit and variability between
#: occasions) is the likelihood of each stay's posterior, not the noise of a measurement.
TWIN_LEVEL_ERROR: tuple[float, float] = (0.075, 1.0)
#: Inter-occasion variability of CL (log SD) of the twins: the only published vancomycin IOV
#: found (Anderson et al. 2007, preterm neonates, IOV variance 0.0149 on CL), an assumption
#: for adults in the ICU (docs/simulator.md, table "The icu scenario", found no adult value).
TWIN_IOV_CL_SD: float = 0.122
#: Hours per occasion of that variability (assumption: one a day).
TWIN_IOV_OCCASION_H: float = 24.0
#: Proportional error of a charted creatinine (enzymatic assay CV 2-4 %; assumption: 3 %).
TWIN_CREATININE_ASSAY_CV: float = 0.03
#: Hours from the end of the infusion to a documented peak (Rybak 2020: 1-2 h).
TWIN_PEAK_OFFSET_H: float = 1.0
#: The shape of the twins' graded AKI hazard before :mod:`~vanco_offline.ope.twin.kidney`
#: scales it to the logged incidence: a baseline sepsis hazard, a vancomycin hazard at AUC24
#: 600 rising by ``vanco_aki_slope`` (log) per 100 mg*h/L, and the GFR lost at an event. The
#: slope is the one that reproduces the published AUC- vs trough-guided AKI odds ratio
#: (Finch 2017 OR 0.52; 2022 meta-analysis 0.625; docs/simulator.md); the split between the
#: two hazards and the injury are assumptions. Only their level is fitted (to the logs).
TWIN_AKI: Mapping[str, float] = {
    "sepsis_aki_per_day": 0.007,
    "vanco_aki_per_day": 0.02,
    "vanco_aki_slope": 0.7,
    "aki_injury": 0.5,
}
#: What the twins' world takes from where (printed by ``bench ope`` and in docs/ope.md).
TWIN_ASSUMPTIONS: Mapping[str, str] = {
    "population PK model": "refitted to the logged levels (local_prior), with the refit's band",
    "posterior likelihood": "the refit's residual error (proportional; Goti 2018's additive 3.4 mg/L)",
    "level assay error": f"{TWIN_LEVEL_ERROR[0]:.1%} + {TWIN_LEVEL_ERROR[1]:g} mg/L (the laboratory's "
    "imprecision; assumption, the order of immunoassay CVs)",
    "level timing": "the logged level times (level_timing)",
    "draw-time error": "none: the chart's time is the draw time (assumption)",
    "renal function": "each stay's charted creatinine at the start (Cockcroft-Gault CrCL, capped at "
    "Goti 2018's 150 mL/min), vanco_pk creatinine kinetics after",
    "dialysis": "Goti 2018's dialysis covariate on the logged dialysis flag",
    "IOV of CL": f"log SD {TWIN_IOV_CL_SD} every {TWIN_IOV_OCCASION_H:g} h (Anderson 2007, neonates: "
    "assumption for adults)",
    "creatinine assay": f"{TWIN_CREATININE_ASSAY_CV:.0%} CV (assumption, enzymatic assays 2-4 %)",
    "AKI": "graded hazard of TWIN_AKI (slope from Finch 2017), level calibrated to the logged KDIGO AKI",
}


@dataclasses.dataclass(frozen=True)
class LevelTiming:
    """When the logs draw levels: the twins' level protocol.

    Attributes
    ----------
    sampling : ``"every_decision"`` or ``"trough_guided"`` (:data:`vanco_pk.scenario.SAMPLING_PROTOCOLS`)
    first_decision : decision before which the first trough is drawn (the median over stays)
    every_h : hours between scheduled troughs (the 90th percentile of the gaps between a
        stay's levels: earlier repeats follow a changed regimen)
    n_levels : logged levels it was estimated from
    """

    sampling: str
    first_decision: int
    every_h: float
    n_levels: int


def level_timing(table: Any, stay_ids: Any = None, interval_h: float = 12.0) -> LevelTiming:
    """The level protocol the logged level times show (columns ``stay_id``, ``time_h``, and
    ``level_measured`` or ``vanco_level``; ``stay_ids`` restricts the stays).

    A level at 90 % or more of the decisions after the first is ``every_decision``; otherwise
    ``trough_guided`` with :class:`LevelTiming`'s estimates.

    Raises
    ------
    ValueError
        No logged level, or a missing column.
    """
    missing = [c for c in ("stay_id", "time_h", "vanco_level") if c not in table]
    if missing:
        raise ValueError(f"level_timing: the table lacks the column(s) {missing}")
    rows = table if stay_ids is None else table[table["stay_id"].isin(list(stay_ids))]
    level = rows["vanco_level"].to_numpy(np.float64)
    if "level_measured" in rows:
        drawn = rows["level_measured"].to_numpy(dtype=bool) & np.isfinite(level)
    else:
        # The data layer's one new-level rule: a carried-forward value is not a new level
        # (each stay's rows are one block, as the schema requires).
        row_start = (
            pd.Series(np.arange(len(rows))).groupby(rows["stay_id"].to_numpy(), sort=False).transform("min")
        )
        drawn = level_changes(level, row_start.to_numpy())
    start = rows.groupby("stay_id", sort=False)["time_h"].transform("min").to_numpy(np.float64)
    decision = np.rint((rows["time_h"].to_numpy(np.float64) - start) / interval_h).astype(int)
    if not drawn.any():
        raise ValueError("level_timing: no logged level (level_measured / vanco_level) in the table")
    levels = rows.loc[drawn, ["stay_id", "time_h"]].assign(decision=decision[drawn])
    first = levels.groupby("stay_id", sort=False)["decision"].min()
    gaps = levels.groupby("stay_id", sort=False)["time_h"].diff().dropna().to_numpy()
    after_first = (decision >= 1).sum()
    if after_first and drawn[decision >= 1].mean() >= 0.9:
        return LevelTiming("every_decision", 1, float(interval_h), int(drawn.sum()))
    every = float(np.percentile(gaps, 90)) if len(gaps) else 48.0
    return LevelTiming(
        "trough_guided",
        max(1, int(np.median(first.to_numpy()))),
        max(float(interval_h), every),
        int(drawn.sum()),
    )


@dataclasses.dataclass(frozen=True)
class TwinSettings:
    """How the twins are built and run.

    Attributes
    ----------
    n_draws : int
        Posterior draws (twins) per logged stay.
    oversample : int
        Proposal draws per kept draw in the importance resampling.
    proposal_scale : float
        The Laplace covariance is multiplied by ``proposal_scale ** 2`` for the proposal
        (heavier than the posterior, so the importance weights stay bounded).
    world : vanco_pk.World
        The data's world: the twins take only :data:`USER_OPTIONS` from it (interval,
        horizon, reward); the rest describes the world the data came from, which the twins
        do not know (:meth:`twin_world`).
    model : GotiModel
        The population PK model of the prior and the twins: Goti 2018, or :func:`local_prior`
        (refitted to the logged levels).
    refitted_from : GotiModel, optional
        The model ``model`` was refitted from (the published one). Given, the twins carry the
        refit's structural uncertainty (:meth:`draw_models`): draw ``j`` of every stay lives
        in a population model moved from ``model`` by ``u_j`` times the refit's own change,
        ``u_j`` evenly spaced in [-band, band].
    band : float
        The band's half-width in units of the refit's own change: 1 spans the published model
        to twice the refit's move; 0 keeps every draw in ``model``. The default is the width
        chosen on the calibration world of ``bench ope --worlds`` (docs/ope.md).
    aki : ``"calibrated"``, ``"uncalibrated"`` or AKICalibration
        The twins' AKI hazard (:data:`TWIN_AKI`): scaled so that the logged doses, replayed on
        the twins, reproduce the logged AKI incidence (``"calibrated"``,
        :func:`~vanco_offline.ope.twin.kidney.calibrate_aki`), as it is (``"uncalibrated"``),
        or a calibration already computed for these stays and this model.
    timing : LevelTiming, optional
        The twins' level protocol; ``None``: estimated from the logs (:func:`level_timing`)
        by the estimator (:meth:`with_logs`).
    batch : int
        Twins simulated at once.
    n_bootstrap, confidence : int, float
        The interval (see :mod:`vanco_offline.ope.twin`).
    seed : int
    """

    n_draws: int = 10
    oversample: int = 8
    proposal_scale: float = 1.5
    world: World = dataclasses.field(default_factory=World)
    model: GotiModel = GOTI_2018
    refitted_from: GotiModel | None = None
    band: float = 1.0
    aki: Any = "calibrated"
    timing: LevelTiming | None = None
    batch: int = 5000
    n_bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_draws", "oversample", "batch", "n_bootstrap"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"TwinSettings.{name} must be a positive integer, got {getattr(self, name)!r}"
                )
        if not (np.isfinite(self.band) and self.band >= 0.0):
            raise ValueError(f"TwinSettings.band must be a finite width >= 0, got {self.band!r}")
        if not self.proposal_scale >= 1.0:
            raise ValueError(f"TwinSettings.proposal_scale must be >= 1, got {self.proposal_scale!r}")
        if self.refitted_from is not None:
            fixed = [
                f.name
                for f in dataclasses.fields(GotiModel)
                if f.name not in BAND_FIELDS
                and getattr(self.model, f.name) != getattr(self.refitted_from, f.name)
            ]
            if fixed:
                raise ValueError(
                    f"TwinSettings.refitted_from differs from the model in {fixed}, which the refit band "
                    f"does not spread; it spreads {list(BAND_FIELDS)}"
                )
        # An AKICalibration (vanco_offline.ope.twin.kidney, which builds on these settings).
        calibration = not isinstance(self.aki, str) and hasattr(self.aki, "multipliers_for")
        if not (calibration or self.aki in AKI_MODES):
            raise ValueError(
                f"TwinSettings.aki = {self.aki!r}; choose one of {list(AKI_MODES)} or an AKICalibration"
            )
        if not isinstance(self.world, World):
            raise ValueError(
                f"TwinSettings.world must be a vanco_pk.World (World.make(...)), "
                f"got {type(self.world).__name__}"
            )

    @property
    def label(self) -> str:
        """``twin`` (published prior), ``twin (local)`` (another prior) or ``twin (band)``
        (:attr:`refitted_from` given): the name ``bench ope`` measures its coverage under."""
        if self.refitted_from is not None:
            return "twin (band)"
        return "twin" if self.model == GOTI_2018 else "twin (local)"

    def draw_models(self) -> list[GotiModel]:
        """The population model of each draw ``j``: ``model``, or with :attr:`refitted_from`

        .. math:: \\theta_j = \\theta \\, (\\theta / \\theta_{published})^{u_j},
            \\quad u_j = b \\, (-1 + 2j / (S - 1))

        for every field of :data:`BAND_FIELDS`, ``b`` = :attr:`band` (``u = 0`` for a single draw).

        The levels pin the refitted parameters only within the refitted model's structure;
        when the hospital's patients differ from it in what troughs hardly see (the volume),
        the refit stops short or overshoots, and how far it moved from the published model
        is the scale of how wrong either can be.
        """
        if self.refitted_from is None:
            return [self.model] * self.n_draws
        u = self.band * np.linspace(-1.0, 1.0, self.n_draws) if self.n_draws > 1 else np.zeros(1)
        ratio = {f: getattr(self.model, f) / getattr(self.refitted_from, f) for f in BAND_FIELDS}
        return [
            dataclasses.replace(
                self.model, **{f: getattr(self.model, f) * ratio[f] ** float(x) for f in BAND_FIELDS}
            )
            for x in u
        ]

    def with_logs(self, table: Any, stay_ids: Any) -> TwinSettings:
        """These settings with :attr:`timing` estimated from the logged stays when it is ``None``."""
        if self.timing is not None:
            return self
        return dataclasses.replace(self, timing=level_timing(table, stay_ids, self.world.decision_interval_h))

    def scenario(self, aki_multiplier: float = 1.0, model: GotiModel | None = None) -> Scenario:
        """The twins' world as a :class:`vanco_pk.scenario.Scenario`, from :attr:`timing`,
        ``model`` (default :attr:`model`, or one of :meth:`draw_models`) and the constants of
        this module (:data:`TWIN_ASSUMPTIONS`); both graded AKI hazards times ``aki_multiplier``.

        Raises
        ------
        ValueError
            :attr:`timing` not yet estimated (:meth:`with_logs`).
        """
        if self.timing is None:
            raise ValueError(
                "TwinSettings.timing is not set: estimate it from the logs first "
                "(TwinSettings.with_logs(table, stay_ids)); the twin estimator does this itself"
            )
        model = self.model if model is None else model
        return Scenario(
            name="twin",
            sampling=self.timing.sampling,
            trough_first_decision=self.timing.first_decision,
            trough_every_h=self.timing.every_h,
            auc_peak_offset_h=TWIN_PEAK_OFFSET_H,
            level_prop_error=TWIN_LEVEL_ERROR[0],
            level_add_error_mg_l=TWIN_LEVEL_ERROR[1],
            draw_time_sd_h=0.0,
            true_model=model,
            iov_cl_sd=TWIN_IOV_CL_SD,
            iov_occasion_h=TWIN_IOV_OCCASION_H,
            crcl_cap=None,
            creatinine_assay_cv=TWIN_CREATININE_ASSAY_CV,
            dialysis="goti",
            aki="graded",
            sepsis_aki_per_day=TWIN_AKI["sepsis_aki_per_day"] * aki_multiplier,
            vanco_aki_per_day=TWIN_AKI["vanco_aki_per_day"] * aki_multiplier,
            vanco_aki_slope=TWIN_AKI["vanco_aki_slope"],
            aki_injury=TWIN_AKI["aki_injury"],
        )

    def twin_world(self, aki_multiplier: float = 1.0, model: GotiModel | None = None) -> World:
        """The twins' world: :meth:`scenario` and :data:`USER_OPTIONS` from :attr:`world`
        (nothing else of the data's world)."""
        return World(
            scenario=self.scenario(aki_multiplier, model),
            **{name: getattr(self.world, name) for name in USER_OPTIONS},
        )


def local_prior(table: Any, seed: int = 0, max_stays: int | None = 600) -> GotiModel:
    """Goti 2018 refitted to the levels of the logged ``table`` (:func:`vanco_offline.data.fit_local_model`,
    :data:`TWIN_REFITTED`): the twin's prior from the data alone, never from the true model."""
    from vanco_offline.data.pk_replay import fit_local_model

    return fit_local_model(table, parameters=TWIN_REFITTED, max_stays=max_stays, seed=seed).model
