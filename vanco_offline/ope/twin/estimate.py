"""The twin estimator: the policy rolled out on every logged stay's twins."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from vanco_pk.targets import FEATURES

from vanco_offline.ope.bootstrap import Interval, bootstrap_counts, percentile_interval
from vanco_offline.ope.policy import EvaluatedPolicy
from vanco_offline.ope.truth import roll_out
from vanco_offline.ope.twin.kidney import AKICalibration, calibrate_aki
from vanco_offline.ope.twin.posterior import PKPosterior, stay_twins, twin_streams
from vanco_offline.ope.twin.settings import TwinSettings

__all__ = ["METRICS", "PairedDifference", "TwinEstimate", "paired_difference", "twin_estimate"]

#: What a twin estimate estimates: the attribute of :class:`TwinEstimate` and its printed name.
METRICS: dict[str, str] = {"value": "value", "attainment": "attainment", "aki_rate": "AKI"}


@dataclasses.dataclass(frozen=True)
class TwinEstimate:
    """The twin estimator's results for one policy.

    ``value``, ``attainment`` and ``aki_rate`` with their intervals; ``per_stay`` holds each
    stay's twin-mean discounted return; ``posterior`` the PK posterior; ``aki_calibration``
    the twins' AKI hazard calibration (``None`` where the published hazard was used uncalibrated); ``label``
    the variant (:attr:`TwinSettings.label`). ``replicates`` maps each of :data:`METRICS` to
    its bootstrap replicates ``(n_bootstrap,)``; ``pairing`` identifies the twins and resamples
    they were computed on (:func:`paired_difference` pairs only estimates that share them).
    """

    value: float
    interval: Interval
    attainment: float
    attainment_interval: Interval
    aki_rate: float
    aki_interval: Interval
    per_stay: np.ndarray = dataclasses.field(repr=False)
    posterior: PKPosterior = dataclasses.field(repr=False)
    n_twins: int = 0
    aki_calibration: AKICalibration | None = dataclasses.field(default=None, repr=False)
    label: str = "twin"
    note: str = ""
    replicates: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
    pairing: str = ""


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """``policy - reference`` in one metric of :data:`METRICS`, from the same twins and resamples.

    ``interval`` is the percentile interval of the per-resample differences: both estimates
    share every resampled stay, twin, posterior draw, AKI multiplier and band model, so what
    they share cancels and the interval is the difference's own.
    """

    policy: str
    reference: str
    metric: str
    value: float
    interval: Interval
    label: str = "twin"

    def __str__(self) -> str:
        pct = self.metric != "value"
        fmt = (lambda v: f"{v:+.1%}") if pct else (lambda v: f"{v:+.3f}")
        return (
            f"{METRICS[self.metric]} {self.policy} - {self.reference}: {fmt(self.value)} "
            f"[{fmt(self.interval.low)}, {fmt(self.interval.high)}]"
        )


def paired_difference(
    estimate: TwinEstimate,
    reference: TwinEstimate,
    metric: str = "value",
    policy: str = "policy",
    reference_name: str = "reference",
) -> PairedDifference:
    """The paired interval of ``estimate - reference`` in ``metric`` (:data:`METRICS`).

    Raises
    ------
    ValueError
        An unknown metric, or estimates not computed on the same twins and resamples (other
        stays, settings or seed).
    """
    if metric not in METRICS:
        raise ValueError(f"paired_difference: metric {metric!r}; choose one of {list(METRICS)}")
    if not estimate.pairing or estimate.pairing != reference.pairing:
        raise ValueError(
            "paired_difference: the two twin estimates were not computed on the same stays, twins and "
            "resamples (give both twin_estimate calls the same table, stays and TwinSettings)"
        )
    reps = estimate.replicates[metric] - reference.replicates[metric]
    confidence = estimate.interval.confidence
    return PairedDifference(
        policy=policy,
        reference=reference_name,
        metric=metric,
        value=float(getattr(estimate, metric) - getattr(reference, metric)),
        interval=percentile_interval(reps, confidence),
        label=estimate.label,
    )


def twin_estimate(
    policy: EvaluatedPolicy,
    table: Any,
    stay_ids: Sequence[Any],
    gamma: float,
    settings: TwinSettings | None = None,
    observation_names: Sequence[str] = FEATURES,
    horizon: int | None = None,
) -> TwinEstimate:
    """Value, attainment and AKI rate of ``policy`` on digital twins of the logged stays.

    Parameters
    ----------
    policy : EvaluatedPolicy
        Rolled out as it is (greedy unless its ``epsilon`` softens it).
    table : pandas.DataFrame
        The dosing table of the logged stays (covariates, times, creatinine, doses, levels).
    stay_ids : sequence
        The stays to twin (the data's).
    gamma : float
    settings : TwinSettings, optional (default: TwinSettings())
    observation_names : sequence of str
        The observation a d3rlpy algorithm was trained on (rebuilt in the rollout).
    horizon : int, optional
        Decisions of the logged stays: checked against the twins' world.

    Raises
    ------
    ValueError
        Missing table columns, stays not in the table, a world whose horizon is not the data's,
        a calibration computed for other stays.
    """
    if not isinstance(policy, EvaluatedPolicy):
        raise ValueError(
            f"twin_estimate needs an EvaluatedPolicy (vanco_offline.ope.policy.as_policy), got {type(policy)}"
        )
    settings = (TwinSettings() if settings is None else settings).with_logs(table, stay_ids)
    twins = stay_twins(table, stay_ids, settings)
    n, s = twins.shape
    calibration = _calibration(table, stay_ids, settings, twins)
    multipliers = np.ones(s) if calibration is None else calibration.multipliers_for(s)
    models = settings.draw_models()
    if settings.refitted_from is not None:
        # The two spreads are independent: pair them in a fixed shuffled order, not extreme with extreme.
        multipliers = multipliers[np.random.default_rng(settings.seed).permutation(s)]
    boot_rng = twin_streams(settings.seed)[1][2]
    grid = {name: np.empty((n, s)) for name in ("r", "a", "k")}
    # Draw-major: draw j of every stay runs in the world of multiplier j.
    for j in range(s):
        world = settings.twin_world(float(multipliers[j]), models[j])
        for start in range(0, n, settings.batch):
            stays = np.arange(start, min(n, start + settings.batch))
            index = stays * s + j
            out = roll_out(
                policy,
                gamma,
                [int(v) for v in twins.seeds[index]],
                int(twins.seeds[index[0]]) + 1_000_003 * settings.seed,
                observation_names,
                world,
                twins.patients[index],
            )
            if horizon is not None and out.horizon != horizon:
                raise ValueError(
                    f"the twins' world runs {out.horizon} decisions but the logged stays have "
                    f"{horizon}: give TwinSettings the world that generated the data"
                )
            for name, values in (("r", out.returns), ("a", out.attainment), ("k", out.aki)):
                grid[name][stays, j] = values
    counts = bootstrap_counts(n, settings.n_bootstrap, boot_rng)
    # Resample b takes draw b mod S of every resampled stay: one world (multiplier) per resample.
    pick = np.arange(settings.n_bootstrap) % s

    def replicates(values: np.ndarray) -> np.ndarray:
        chosen = values[:, pick].T  # (B, n)
        return (counts * chosen).sum(axis=1) / n

    reps = {name: replicates(grid[key]) for name, key in zip(METRICS, ("r", "a", "k"), strict=True)}
    pairing = repr(
        (
            settings.seed,
            settings.n_bootstrap,
            settings.confidence,
            s,
            settings.label,
            settings.model,
            settings.band if settings.refitted_from is not None else None,
            tuple(np.round(multipliers, 12).tolist()),
            settings.timing,
            gamma,
            tuple(str(x) for x in stay_ids),
        )
    )

    per_stay = grid["r"].mean(axis=1)
    prior = {
        "twin": "Goti 2018 prior",
        "twin (local)": "Goti 2018 refitted to the logged levels",
        "twin (band)": "Goti 2018 refitted to the logged levels, spread over the refit's band "
        f"(+-{settings.band:g} times the refit's change)",
    }[settings.label]
    kidney = "the published AKI hazard, uncalibrated" if calibration is None else calibration.describe()
    held = ["stays", "posteriors"]
    held += [] if calibration is None else ["the AKI calibration"]
    held += [] if settings.refitted_from is None else ["the refit's band"]
    note = (
        f"{settings.label}: {prior}, vanco_pk kidney/infection dynamics, {kidney}; its interval holds "
        f"the sampling of {', '.join(held)}, not the rest of the twin model's error"
    )
    return TwinEstimate(
        value=float(per_stay.mean()),
        interval=percentile_interval(reps["value"], settings.confidence),
        attainment=float(grid["a"].mean()),
        attainment_interval=percentile_interval(reps["attainment"], settings.confidence),
        aki_rate=float(grid["k"].mean()),
        aki_interval=percentile_interval(reps["aki_rate"], settings.confidence),
        per_stay=per_stay,
        posterior=twins.posterior,
        n_twins=n * s,
        aki_calibration=calibration,
        label=settings.label,
        note=note,
        replicates=reps,
        pairing=pairing,
    )


def _calibration(
    table: Any, stay_ids: Sequence[Any], settings: TwinSettings, twins: Any
) -> AKICalibration | None:
    if isinstance(settings.aki, AKICalibration):
        if settings.aki.n_stays != len(stay_ids):
            raise ValueError(
                f"TwinSettings.aki was calibrated on {settings.aki.n_stays} stays, not these {len(stay_ids)}"
            )
        return settings.aki
    if settings.aki == "uncalibrated":
        return None
    return calibrate_aki(table, stay_ids, settings, None if settings.refitted_from else twins)
