"""How the twins are built: :class:`TwinSettings`, their world and their population PK model."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from vanco_pk.patients import Misspecification
from vanco_pk.pk import GOTI_2018, GotiModel
from vanco_pk.scenario import get_scenario
from vanco_pk.sim_config import SimulatorConfig

__all__ = ["TWIN_COVARIATES", "TWIN_REFITTED", "TwinSettings", "local_prior"]

#: Covariate columns a twin needs from the table (height is optional: Goti 2018 does not use it).
TWIN_COVARIATES: tuple[str, ...] = ("weight_kg", "age", "sex", "dialysis")
#: The population parameters :func:`local_prior` refits: those the simulator can give a twin
#: (:func:`_as_misspecification`); the CrCL cap and the dialysis factor stay Goti 2018's.
TWIN_REFITTED: tuple[str, ...] = ("cl", "volume", "omega2_cl", "omega2_v1", "prop_error", "crcl_exponent")
#: The fields of a refitted model that :meth:`TwinSettings.draw_models` spreads (those the
#: simulator can give a twin, :func:`_as_misspecification`, and the prior's own variances).
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
#: ``TwinSettings.aki`` modes (or an :class:`~vanco_offline.ope.twin.kidney.AKICalibration`).
AKI_MODES: tuple[str, ...] = ("calibrated", "world")


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
    env_options : mapping
        ``VancoPKEnv`` options of the world the data come from (``decision_interval_h``,
        ``episode_days``, ``level_missing_prob``, ``measurement_noise``, ``reward``, ...).
        ``misspecification`` is dropped: the twin's PK model is its prior's.
    model : GotiModel
        The population PK model of the prior and the twins: Goti 2018, or :func:`local_prior`
        (refitted to the logged levels). It may differ from Goti 2018 only in
        :data:`TWIN_REFITTED` and ``v1``, ``v2``, ``q`` (what the simulator can vary).
    refitted_from : GotiModel, optional
        The model ``model`` was refitted from (the published one). Given, the twins carry the
        refit's structural uncertainty (:meth:`draw_models`): draw ``j`` of every stay lives
        in a population model moved from ``model`` by ``u_j`` times the refit's own change,
        ``u_j`` evenly spaced in [-1, 1] (the published model to twice the refit's move).
    aki : ``"calibrated"``, ``"world"`` or AKICalibration
        The twins' AKI hazard: scaled so that the logged doses, replayed on the twins,
        reproduce the logged AKI incidence (``"calibrated"``,
        :func:`~vanco_offline.ope.twin.kidney.calibrate_aki`), the world's as it is
        (``"world"``), or a calibration already computed for these stays and this model.
    batch : int
        Twins simulated at once.
    n_bootstrap, confidence : int, float
        The interval (see :mod:`vanco_offline.ope.twin`).
    seed : int
    """

    n_draws: int = 10
    oversample: int = 8
    proposal_scale: float = 1.5
    env_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: GotiModel = GOTI_2018
    refitted_from: GotiModel | None = None
    aki: Any = "calibrated"
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
            for model in self.draw_models():
                _as_misspecification(model)
        # An AKICalibration (vanco_offline.ope.twin.kidney, which builds on these settings).
        calibration = not isinstance(self.aki, str) and hasattr(self.aki, "multipliers_for")
        if not (calibration or self.aki in AKI_MODES):
            raise ValueError(
                f"TwinSettings.aki = {self.aki!r}; choose one of {list(AKI_MODES)} or an AKICalibration"
            )
        for key in ("patients", "extended_obs", "pk_features"):
            if key in self.env_options:
                raise ValueError(
                    f"TwinSettings.env_options: do not pass {key!r}; the twins and the policy's "
                    "observation are built by the estimator"
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
            \\quad u_j = -1 + 2j / (S - 1)

        for every field of :data:`BAND_FIELDS` (``u = 0`` for a single draw).

        The levels pin the refitted parameters only within the refitted model's structure;
        when the hospital's patients differ from it in what troughs hardly see (the volume),
        the refit stops short or overshoots, and how far it moved from the published model
        is the scale of how wrong either can be.
        """
        if self.refitted_from is None:
            return [self.model] * self.n_draws
        u = np.linspace(-1.0, 1.0, self.n_draws) if self.n_draws > 1 else np.zeros(1)
        ratio = {f: getattr(self.model, f) / getattr(self.refitted_from, f) for f in BAND_FIELDS}
        return [
            dataclasses.replace(
                self.model, **{f: getattr(self.model, f) * ratio[f] ** float(x) for f in BAND_FIELDS}
            )
            for x in u
        ]

    def world(self, aki_multiplier: float = 1.0, model: GotiModel | None = None) -> dict[str, Any]:
        """The twins' environment options: the data's world (scenario, interval, horizon, reward,
        level protocol) with the twin's own PK model in place of the truth's.

        The scenario's ``true_model`` and any ``misspecification`` are what the user cannot
        know; the twins are simulated from ``model``, the model their posterior was drawn under,
        written as a :class:`vanco_pk.patients.Misspecification` of Goti 2018.
        ``aki_multiplier`` scales the scenario's graded AKI hazards (sepsis and vancomycin);
        ``model`` (default :attr:`model`) is one of :meth:`draw_models`.
        """
        options = {k: v for k, v in self.env_options.items() if k != "misspecification"}
        scenario = get_scenario(options.get("scenario", SimulatorConfig.scenario))
        options["scenario"] = dataclasses.replace(
            scenario,
            true_model="goti2018",
            sepsis_aki_per_day=scenario.sepsis_aki_per_day * aki_multiplier,
            vanco_aki_per_day=scenario.vanco_aki_per_day * aki_multiplier,
        )
        options["misspecification"] = _as_misspecification(self.model if model is None else model)
        return options

    def graded_aki(self) -> bool:
        """Whether the world's AKI is the graded hazard that :attr:`aki` can calibrate."""
        scenario = get_scenario(self.env_options.get("scenario", SimulatorConfig.scenario))
        return scenario.aki == "graded" and scenario.sepsis_aki_per_day + scenario.vanco_aki_per_day > 0


def local_prior(table: Any, seed: int = 0, max_stays: int | None = 600) -> GotiModel:
    """Goti 2018 refitted to the levels of the logged ``table`` (:func:`vanco_offline.data.fit_local_model`,
    :data:`TWIN_REFITTED`): the twin's prior from the data alone, never from the true model."""
    from vanco_offline.data.local_model import fit_local_model

    return fit_local_model(table, parameters=TWIN_REFITTED, max_stays=max_stays, seed=seed).model


def _as_misspecification(model: GotiModel) -> Misspecification:
    """``model`` as scale factors on Goti 2018 (ValueError for a field the simulator cannot vary)."""
    fixed = ("crcl_ref", "weight_ref", "dialysis_cl_factor", "dialysis_v1_factor", "crcl_cap")
    differ = [name for name in fixed if getattr(model, name) != getattr(GOTI_2018, name)]
    if differ:
        raise ValueError(
            f"TwinSettings.model differs from Goti 2018 in {differ}, which the simulator cannot give "
            "its twins; refit only cl, volume, v1, v2, omega2_cl, omega2_v1, prop_error, crcl_exponent"
        )
    return Misspecification(
        cl_scale=model.cl / GOTI_2018.cl,
        v1_scale=model.v1 / GOTI_2018.v1,
        v2_scale=model.v2 / GOTI_2018.v2,
        q_scale=model.q / GOTI_2018.q,
        crcl_exponent=model.crcl_exponent,
    )
