"""The twins' kidney, calibrated on the logged stays' own acute kidney injuries.

A twin's AKI comes from its world's graded hazard (:data:`~vanco_offline.ope.twin.settings.TWIN_AKI`:
a sepsis hazard plus a vancomycin hazard rising with the twin's AUC24) acting on the twin's
exposure. Where the
twin's PK model is not the true patients', its exposures under the same doses differ, and
so does its AKI: in ``icu`` the Goti 2018 twins developed AKI less often than the true
patients under every policy tried (``docs/ope.md``). The logs show how often the logged
patients developed AKI under the logged doses (KDIGO from the charted creatinine), so the
twin can be held to it: :func:`calibrate_aki` replays every stay's logged doses on its
twins with both hazards multiplied by ``m`` over a grid of multipliers (common random
numbers, so the replayed incidence is monotone in ``m``), and takes the ``m`` whose replayed
incidence equals the logged one (linear in ``log m``).

The calibration is itself an estimate: the logged incidence is a proportion of ``n`` stays
and the replayed one a Monte-Carlo mean. :meth:`AKICalibration.multipliers_for` gives the
multipliers that reproduce evenly spaced quantiles of that error; the twin estimator gives
each of its draws one of them, so that its interval carries the calibration's error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import ndtri
from vanco_pk.kidney import kdigo_stage
from vanco_pk.targets import AKI_ABSOLUTE_WINDOW_H
from vanco_pk.vector import VancoPKVectorEnv

from vanco_offline.ope.twin.posterior import StayTwins, stay_twins
from vanco_offline.ope.twin.settings import TwinSettings

__all__ = ["AKICalibration", "calibrate_aki", "logged_aki", "replay_aki"]

#: Multipliers of the twins' AKI hazards the calibration tries (1/4 to 8).
MULTIPLIER_GRID: np.ndarray = 2.0 ** np.linspace(-2.0, 3.0, 11)
#: Twins replayed per calibration: every draw of a stay up to this many twins in all.
_REPLAYED_TWINS = 2000


@dataclasses.dataclass(frozen=True)
class AKICalibration:
    """The twins' AKI hazard multiplier that reproduces the logged AKI incidence.

    Attributes
    ----------
    logged_rate : fraction of logged stays with KDIGO AKI from their charted creatinine
    n_stays : logged stays
    grid : multipliers tried
    replayed_rates : AKI incidence of the twins under the logged doses at each multiplier
    n_replayed : twins replayed at each multiplier
    multiplier : the multiplier whose replayed incidence is ``logged_rate``
    at_bound : whether it lies at the end of :attr:`grid` (the logged incidence is outside
        what the grid reaches)
    """

    logged_rate: float
    n_stays: int
    grid: np.ndarray = dataclasses.field(repr=False)
    replayed_rates: np.ndarray = dataclasses.field(repr=False)
    n_replayed: int
    multiplier: float
    at_bound: bool

    def multiplier_at(self, rate: float) -> float:
        """The multiplier whose replayed AKI incidence is ``rate`` (clipped to the grid)."""
        rates = np.maximum.accumulate(self.replayed_rates)
        return float(np.exp(np.interp(rate, rates, np.log(self.grid))))

    def standard_error(self) -> float:
        """Standard error of ``logged rate - replayed rate`` (binomial, both sides)."""
        p = self.logged_rate
        return float(np.sqrt(p * (1 - p) / self.n_stays + p * (1 - p) / self.n_replayed))

    def multipliers_for(self, k: int) -> np.ndarray:
        """``k`` multipliers reproducing the ``(j + 1/2) / k`` quantiles of the calibration's error."""
        if k == 1:
            return np.array([self.multiplier])
        z = ndtri((np.arange(k) + 0.5) / k)
        rates = np.clip(self.logged_rate + self.standard_error() * z, 0.0, 1.0)
        return np.array([self.multiplier_at(r) for r in rates])

    def describe(self) -> str:
        bound = " (at the end of the grid tried)" if self.at_bound else ""
        return (
            f"AKI hazard x{self.multiplier:.2f}{bound}, calibrated so that the logged doses replayed on the "
            f"twins reproduce the logged AKI incidence {self.logged_rate:.1%} of {self.n_stays} stays"
        )


def logged_aki(history: Any, lengths: np.ndarray) -> np.ndarray:
    """Whether each logged stay has KDIGO AKI (:func:`vanco_pk.kidney.kdigo_stage`) at any charted row.

    The baseline is the stay's first charted creatinine; the absolute criterion compares each
    value with the lowest of the previous 48 h, as the simulator does. Missing values are skipped.
    """
    time = np.asarray(history.time_h, dtype=np.float64)
    scr = np.asarray(history.creatinine, dtype=np.float64)
    n, width = scr.shape
    valid = np.isfinite(scr) & (np.arange(width)[None, :] < np.asarray(lengths)[:, None])
    first = np.argmax(valid, axis=1)
    baseline = scr[np.arange(n), first]
    aki = np.zeros(n, dtype=bool)
    for k in range(1, width):
        earlier = valid[:, :k] & (time[:, k : k + 1] - time[:, :k] <= AKI_ABSOLUTE_WINDOW_H + 1e-9)
        recent = np.where(earlier, scr[:, :k], np.inf).min(axis=1)
        recent = np.minimum(recent, np.where(valid[:, k], scr[:, k], np.inf))
        stage = kdigo_stage(np.where(valid[:, k], scr[:, k], 0.0), baseline, recent)
        aki |= valid[:, k] & (k > first) & (stage > 0)
    return aki


def replay_aki(
    twins: StayTwins, settings: TwinSettings, multipliers: Sequence[float], draws: int | None = None
) -> np.ndarray:
    """AKI of the twins replaying their stay's logged doses: bool ``(len(multipliers), n * draws)``.

    A twin's AKI counts up to its stay's last charted row (the creatinine after the last
    logged dose is not charted); the same seeds serve every multiplier.
    """
    n, s = twins.shape
    draws = s if draws is None else min(draws, s)
    index = (np.arange(n)[:, None] * s + np.arange(draws)[None, :]).ravel()
    stay = np.repeat(np.arange(n), draws)
    doses = np.nan_to_num(twins.history.dose_mg)[stay]
    last = twins.lengths[stay] - 1
    out = np.zeros((len(multipliers), len(index)), dtype=bool)
    for m, multiplier in enumerate(multipliers):
        world = settings.twin_world(float(multiplier))
        for start in range(0, len(index), settings.batch):
            rows = np.arange(start, min(len(index), start + settings.batch))
            env = VancoPKVectorEnv(num_envs=len(rows), patients=twins.patients[index[rows]], world=world)
            env.reset(seed=[int(v) for v in twins.seeds[index[rows]]])
            aki = np.zeros(len(rows), dtype=bool)
            for t in range(env.world.n_steps):
                dose = doses[rows, t] if t < doses.shape[1] else np.zeros(len(rows))
                info = env.step(dose.reshape(-1, 1))[4]
                aki |= np.asarray(info["aki"], dtype=bool) & (t < last[rows])
            env.close()
            out[m, rows] = aki
    return out


def calibrate_aki(
    table: Any, stay_ids: Sequence[Any], settings: TwinSettings, twins: StayTwins | None = None
) -> AKICalibration:
    """The AKI hazard multiplier of ``settings``' twins that reproduces the logged AKI incidence.

    ``twins``, if given, must be those of ``settings`` without a refit band.

    Raises
    ------
    ValueError
        No stay has two creatinine values.
    """
    # Under the model itself, the centre of any refit band (TwinSettings.draw_models).
    settings = dataclasses.replace(settings, refitted_from=None).with_logs(table, stay_ids)
    twins = stay_twins(table, stay_ids, settings) if twins is None else twins
    n, s = twins.shape
    logged = logged_aki(twins.history, twins.lengths)
    if not (twins.lengths >= 2).any():
        raise ValueError("calibrate_aki: no logged stay has two charted creatinine values")
    draws = max(1, min(s, _REPLAYED_TWINS // max(n, 1)))
    rates = replay_aki(twins, settings, MULTIPLIER_GRID, draws).mean(axis=1)
    partial = AKICalibration(
        logged_rate=float(logged.mean()),
        n_stays=n,
        grid=MULTIPLIER_GRID,
        replayed_rates=rates,
        n_replayed=n * draws,
        multiplier=1.0,
        at_bound=False,
    )
    multiplier = partial.multiplier_at(partial.logged_rate)
    at_bound = bool(multiplier <= MULTIPLIER_GRID[0] * 1.0001 or multiplier >= MULTIPLIER_GRID[-1] * 0.9999)
    return dataclasses.replace(partial, multiplier=multiplier, at_bound=at_bound)


def from_logs(settings: TwinSettings, table: Any, stay_ids: Sequence[Any]) -> TwinSettings:
    """``settings`` with all the twins learn from the logged stays: the level timing
    (:meth:`TwinSettings.with_logs`) and the AKI hazard multiplier that reproduces the logged
    AKI incidence (:func:`calibrate_aki`), so that every policy evaluated with them shares one
    kidney. Settings already calibrated (or ``aki="uncalibrated"``) keep their kidney."""
    settings = settings.with_logs(table, stay_ids)
    if isinstance(settings.aki, AKICalibration) or settings.aki == "uncalibrated":
        return settings
    return dataclasses.replace(settings, aki=calibrate_aki(table, stay_ids, settings))
