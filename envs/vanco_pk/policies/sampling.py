"""When to draw a level: sampling rules, and a dosing policy that draws by one.

A *draw rule* decides, at each decision, whether a trough is drawn at the end of the interval
the dose starts (:func:`vanco_pk.simulate.simulate` calls the policy's ``draw`` after ``act``;
with ``protocol="on_request"`` nothing else is drawn). :class:`WithDraws` joins a dosing policy
(e.g. :class:`vanco_pk.policies.MIPDPolicy`) and a draw rule into one policy of the simulator's
protocol. Rules:

* :class:`HabitDraws`: the clinician behaviour of the logs. Each patient's unit has its own
  habit (a level every ``H`` hours, ``H`` drawn from ``habits_h``); the probability of a draw
  rises with the hours since the last level past ``H``, after a dose change and after a
  creatinine rise, and stays within ``[min_prob, max_prob]`` (orders are sometimes skipped,
  sometimes early), so every state sees both decisions. The probability of the decision
  taken is kept (:attr:`WithDraws.draw_probs`), as ``behavior_prob`` is for the dose.
* :class:`FixedDraws`: ``per_week`` troughs on a fixed schedule (the first before the 4th
  dose, the rest spread over the week).
* :class:`PosteriorDraws`: the Bayesian design rule. Draw when the posterior SD of the log
  AUC of the next 24 h (the dose just chosen repeated, the drug on board counted) exceeds
  ``threshold``. The SD combines the Laplace covariance of the MAP fit,
  :math:`\\Sigma = H^{-1}` (:func:`vanco_pk.estimation.map_hessian`; the prior
  :math:`\\Omega` before any level), with a random walk of log CL since the last level:

  .. math::

     \\mathrm{Var}[\\log AUC] = g^\\top \\Sigma g + g_{CL}^2 \\, \\sigma_d^2 \\,
     \\frac{h_{last} + \\Delta}{24},

  where :math:`g = \\partial \\log AUC / \\partial \\eta` (central differences),
  :math:`h_{last}` the hours since the last level (since admission before one),
  :math:`\\Delta` the decision interval and :math:`\\sigma_d` (``drift_sd_per_day``) the
  day-to-day SD of log CL that the population model lacks (inter-occasion variability).

Every rule returns a probability of drawing per patient (0 or 1 for the deterministic
ones); :class:`WithDraws` draws with its own per-patient stream.

:func:`draw_features` is the state of a draw decision as a vector
(:data:`DRAW_FEATURES`): what a learned draw rule sees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vanco_pk.estimation import forward_auc, map_hessian, predicted_state
from vanco_pk.exposure import ExposureTracker
from vanco_pk.targets import CREATININE, dose_to_grid_index

__all__ = [
    "DRAW_FEATURES",
    "DrawMemory",
    "DrawRule",
    "DrawState",
    "FixedDraws",
    "HabitDraws",
    "PosteriorDraws",
    "WithDraws",
    "auc_uncertainty",
    "draw_features",
    "fixed_schedule",
]

#: The state of a draw decision, in :func:`draw_features` order: the posterior SD of the log
#: AUC of the next 24 h from the MAP fit alone (no drift term), days since the last level
#: (since admission before one), log ratio of the creatinine now to that at the last level
#: (at admission before one), absolute log change of the dose (+250 mg) from the previous
#: decision, levels drawn so far (capped at 5), days since admission, whether any level was
#: drawn, days since the dose last changed (since admission if never) and whether a level was
#: drawn since then (what a trough-guided protocol orders on).
DRAW_FEATURES: tuple[str, ...] = (
    "sd_log_auc",
    "days_since_level",
    "log_creatinine_change",
    "log_dose_change",
    "levels_so_far",
    "days_since_admission",
    "ever_level",
    "days_since_dose_change",
    "level_since_dose_change",
)
_FD = 1e-3


@dataclasses.dataclass(frozen=True)
class DrawState:
    """What a draw rule knows at a decision, arrays (P,).

    Attributes
    ----------
    time_h : decision time (h)
    interval_h : hours to the end of the interval (when the level would be drawn)
    hours_since_level : hours since the last level; since admission before any
    levels : levels drawn so far
    creatinine, creatinine_ref : creatinine now and at the last level (at admission before one)
    dose_mg, previous_dose_mg : dose given now and at the previous decision (NaN at the first)
    hours_since_dose_change : hours since the dose last changed (since admission if never)
    level_since_dose_change : a level was drawn after the dose last changed
    """

    time_h: np.ndarray
    interval_h: float
    hours_since_level: np.ndarray
    levels: np.ndarray
    creatinine: np.ndarray
    creatinine_ref: np.ndarray
    dose_mg: np.ndarray
    previous_dose_mg: np.ndarray
    hours_since_dose_change: np.ndarray
    level_since_dose_change: np.ndarray

    @property
    def dose_changed(self) -> np.ndarray:
        return np.isfinite(self.previous_dose_mg) & (self.dose_mg != self.previous_dose_mg)


class DrawMemory:
    """Per patient: when the last level was drawn, the creatinine then, the previous dose.

    :meth:`observe` each decision (time, creatinine, whether a level was drawn at it, the
    dose given), then :meth:`state` is the :class:`DrawState` of the draw decision.
    """

    def __init__(self, n: int, interval_h: float):
        self.interval_h = float(interval_h)
        self.last_level_h = np.full(n, np.nan)
        self.levels = np.zeros(n)
        self.creatinine_ref = np.full(n, np.nan)
        self.previous_dose = np.full(n, np.nan)
        self.dose = np.full(n, np.nan)
        self.time = np.zeros(n)
        self.creatinine = np.full(n, np.nan)
        self.changed_h = np.zeros(n)
        self.level_since_change = np.zeros(n, bool)

    def observe(
        self, time_h: np.ndarray, creatinine: np.ndarray, measured: np.ndarray, dose: np.ndarray
    ) -> None:
        self.creatinine_ref = np.where(np.isnan(self.creatinine_ref), creatinine, self.creatinine_ref)
        self.last_level_h = np.where(measured, time_h, self.last_level_h)
        self.creatinine_ref = np.where(measured, creatinine, self.creatinine_ref)
        self.levels = self.levels + measured
        self.previous_dose = self.dose
        self.dose = np.asarray(dose, np.float64)
        changed = np.isfinite(self.previous_dose) & (self.dose != self.previous_dose)
        self.level_since_change = (self.level_since_change | measured) & ~changed
        self.changed_h = np.where(changed, time_h, self.changed_h)
        self.time = np.asarray(time_h, np.float64)
        self.creatinine = np.asarray(creatinine, np.float64)

    def state(self) -> DrawState:
        since = np.where(np.isnan(self.last_level_h), self.time, self.time - self.last_level_h)
        return DrawState(
            time_h=self.time.copy(),
            interval_h=self.interval_h,
            hours_since_level=since,
            levels=self.levels.copy(),
            creatinine=self.creatinine.copy(),
            creatinine_ref=self.creatinine_ref.copy(),
            dose_mg=self.dose.copy(),
            previous_dose_mg=self.previous_dose.copy(),
            hours_since_dose_change=self.time - self.changed_h,
            level_since_dose_change=self.level_since_change.copy(),
        )


def auc_uncertainty(tracker: ExposureTracker, dose_mg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior SD of the log AUC of the next ``tracker.horizon_h`` and its CL sensitivity.

    Call after ``tracker.record(dose_mg)`` (the dose of this decision repeated over the
    horizon). Returns ``(sd, g_cl)``, arrays (P,): :math:`\\sqrt{g^\\top \\Sigma g}` with
    :math:`\\Sigma` the inverse Hessian of the MAP objective at the estimate (the prior
    covariance for a patient without a level or with a Hessian that is not positive
    definite) and :math:`g_{CL} = \\partial \\log AUC / \\partial \\eta_{CL}`.
    """
    history = tracker.history()
    eta = tracker.eta
    model = tracker.model
    n = eta.shape[0]
    dose = np.asarray(dose_mg, np.float64).reshape(n)
    rows = np.arange(n)

    def log_auc(e: np.ndarray) -> np.ndarray:
        params, central, peripheral = predicted_state(history, e, model)
        auc = forward_auc(params, central, peripheral, np.unique(dose), tracker.interval_h, tracker.horizon_h)
        column = np.searchsorted(np.unique(dose), dose)
        return np.log(np.maximum(auc[rows, column], 1e-6))

    grad = np.zeros((n, 2))
    for j in range(2):
        step = np.zeros(2)
        step[j] = _FD
        grad[:, j] = (log_auc(eta + step) - log_auc(eta - step)) / (2 * _FD)
    prior = np.diag([model.omega2_cl, model.omega2_v1])
    cov = np.broadcast_to(prior, (n, 2, 2)).copy()
    fitted = np.any(np.isfinite(history.level[:, 1:]), axis=1)
    if np.any(fitted):
        index = np.flatnonzero(fitted)
        hess = map_hessian(_subset(history, index), eta[index], model)
        det = hess[:, 0, 0] * hess[:, 1, 1] - hess[:, 0, 1] ** 2
        ok = (hess[:, 0, 0] > 0) & (det > 0)
        inv = (
            np.stack(
                [
                    np.stack([hess[:, 1, 1], -hess[:, 0, 1]], -1),
                    np.stack([-hess[:, 0, 1], hess[:, 0, 0]], -1),
                ],
                -2,
            )
            / np.where(ok, det, 1.0)[:, None, None]
        )
        cov[index[ok]] = inv[ok]
    var = np.einsum("pi,pij,pj->p", grad, cov, grad)
    return np.sqrt(np.maximum(var, 0.0)), grad[:, 0]


def _subset(history: Any, index: np.ndarray) -> Any:
    fields = history.__dataclass_fields__
    return type(history)(**{f: None if (v := getattr(history, f)) is None else v[index] for f in fields})


def draw_features(state: DrawState, sd_log_auc: np.ndarray) -> np.ndarray:
    """The draw decision's state as a (P, 9) float32 array (:data:`DRAW_FEATURES`)."""
    ratio = np.log(state.creatinine / state.creatinine_ref)
    previous = np.where(np.isfinite(state.previous_dose_mg), state.previous_dose_mg, state.dose_mg)
    dose_change = np.abs(np.log((state.dose_mg + 250.0) / (previous + 250.0)))
    return np.column_stack(
        [
            sd_log_auc,
            state.hours_since_level / 24.0,
            ratio,
            dose_change,
            np.minimum(state.levels, 5.0),
            state.time_h / 24.0,
            (state.levels > 0).astype(np.float64),
            state.hours_since_dose_change / 24.0,
            state.level_since_dose_change.astype(np.float64),
        ]
    ).astype(np.float32)


class DrawRule:
    """Base class of draw rules: :meth:`probability` of a draw at each patient's decision.

    Attributes
    ----------
    name : label in tables
    needs_tracker : the rule reads the dosing policy's Bayesian memory (``tracker``)
    """

    name = "draw rule"
    needs_tracker = False

    def reset(self, n: int, rngs: Sequence[np.random.Generator]) -> None:
        """New episodes of ``n`` patients; ``rngs`` are their own streams (for habits)."""

    def probability(self, state: DrawState, tracker: ExposureTracker | None) -> np.ndarray:
        """Probability (P,) of drawing a trough at the end of this interval."""
        raise NotImplementedError


class HabitDraws(DrawRule):
    """Clinician level orders that vary with the unit's habit and the patient's state.

    With :math:`H` the patient's unit habit (hours; one of ``habits_h``, drawn per patient),
    :math:`h` the hours from the last level (from ``first_h - H`` before any) to the end of
    this interval, the probability of a draw is

    .. math::

        p = \\mathrm{clip}\\big(\\sigma(s (h - H) / 12 + b_{dose} [\\text{dose changed}] +
        b_{cr} [\\text{creatinine rise}]), p_{min}, p_{max}\\big),

    a creatinine rise being +0.3 mg/dL or +25 % since the last level (since admission before
    one). Defaults: habits 24, 48, 72, 96 h (units ordering daily to every four days), the
    first level due before the 4th dose (36 h), ``slope`` 1.5, both boosts 1.5,
    ``min_prob`` 0.03, ``max_prob`` 0.9.
    """

    name = "clinician habits"

    def __init__(
        self,
        habits_h: Sequence[float] = (24.0, 48.0, 72.0, 96.0),
        first_h: float = 36.0,
        slope: float = 1.5,
        dose_change_boost: float = 1.5,
        creatinine_boost: float = 1.5,
        min_prob: float = 0.03,
        max_prob: float = 0.9,
    ):
        habits = np.asarray(habits_h, np.float64)
        if habits.ndim != 1 or habits.size == 0 or not np.all(np.isfinite(habits) & (habits > 0)):
            raise ValueError(f"HabitDraws: habits_h = {habits_h!r} must be positive hours")
        if not (0.0 <= min_prob < max_prob <= 1.0):
            raise ValueError(
                f"HabitDraws: need 0 <= min_prob < max_prob <= 1; got {min_prob!r}, {max_prob!r}"
            )
        for name, value in (("first_h", first_h), ("slope", slope)):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"HabitDraws: {name} = {value!r} must be a positive number")
        self.habits_h = habits
        self.first_h = float(first_h)
        self.slope = float(slope)
        self.dose_change_boost = float(dose_change_boost)
        self.creatinine_boost = float(creatinine_boost)
        self.min_prob = float(min_prob)
        self.max_prob = float(max_prob)
        self.habit = np.zeros(0)

    def reset(self, n: int, rngs: Sequence[np.random.Generator]) -> None:
        self.habit = np.array([self.habits_h[rng.integers(self.habits_h.size)] for rng in rngs])

    def probability(self, state: DrawState, tracker: ExposureTracker | None) -> np.ndarray:
        ever = state.levels > 0
        due = np.where(ever, state.hours_since_level, state.time_h - self.first_h + self.habit)
        due = due + state.interval_h
        rise = (state.creatinine - state.creatinine_ref >= 0.3) | (
            state.creatinine >= 1.25 * state.creatinine_ref
        )
        logit = (
            self.slope * (due - self.habit) / 12.0
            + self.dose_change_boost * state.dose_changed
            + self.creatinine_boost * rise
        )
        return np.clip(1.0 / (1.0 + np.exp(-logit)), self.min_prob, self.max_prob)


def fixed_schedule(
    per_week: int, interval_h: float = 12.0, first_h: float = 36.0, last_h: float = 156.0
) -> np.ndarray:
    """Decision indices (0-based) at whose interval's end a :class:`FixedDraws` trough is drawn.

    ``per_week`` troughs in a week: the first at ``first_h`` (before the 4th dose of a 12-h
    regimen), the others ``min(168 / per_week, (last_h - first_h) / (per_week - 1))`` hours
    apart, each rounded to the nearest interval end.
    """
    if not (isinstance(per_week, int | np.integer) and 1 <= per_week <= 168 / interval_h):
        raise ValueError(
            f"FixedDraws: per_week = {per_week!r} must be an integer from 1 to {168 / interval_h:g}"
        )
    first = first_h / interval_h - 1
    last = last_h / interval_h - 1
    spacing = 168.0 / interval_h / per_week
    if per_week > 1:
        spacing = min(spacing, (last - first) / (per_week - 1))
    index = np.round(first + spacing * np.arange(per_week)).astype(int)
    if len(np.unique(index)) != per_week:
        raise ValueError(f"FixedDraws: {per_week} troughs a week do not fit {interval_h:g}-h intervals")
    return index


class FixedDraws(DrawRule):
    """``per_week`` troughs on the fixed schedule of :func:`fixed_schedule` (the first week)."""

    def __init__(self, per_week: int, interval_h: float = 12.0):
        self.schedule = fixed_schedule(per_week, interval_h)
        self.per_week = int(per_week)
        self.name = f"fixed {per_week}/week"

    def probability(self, state: DrawState, tracker: ExposureTracker | None) -> np.ndarray:
        index = np.rint(state.time_h / state.interval_h).astype(int)
        return np.isin(index, self.schedule).astype(np.float64)


class PosteriorDraws(DrawRule):
    """The Bayesian design rule: draw when the posterior SD of the next 24 h's log AUC exceeds ``threshold``.

    Parameters
    ----------
    threshold : float
        SD of the log AUC (0.2 is about +-20 %), chosen on validation patients.
    drift_sd_per_day : float
        SD of the day-to-day random walk of log CL (module docstring); 0.2 by default, an
        assumption in the range of the inter-occasion variability reported for vancomycin.
    """

    needs_tracker = True

    def __init__(self, threshold: float, drift_sd_per_day: float = 0.2):
        if not (np.isfinite(threshold) and threshold >= 0):
            raise ValueError(f"PosteriorDraws: threshold = {threshold!r} must be a number >= 0")
        if not (np.isfinite(drift_sd_per_day) and drift_sd_per_day >= 0):
            raise ValueError(f"PosteriorDraws: drift_sd_per_day = {drift_sd_per_day!r} must be >= 0")
        self.threshold = float(threshold)
        self.drift_sd_per_day = float(drift_sd_per_day)
        self.name = f"design rule (SD > {threshold:g})"

    def total_sd(self, state: DrawState, tracker: ExposureTracker) -> np.ndarray:
        """The posterior SD of the next 24 h's log AUC, drift included."""
        sd, g_cl = auc_uncertainty(tracker, state.dose_mg)
        days = (state.hours_since_level + state.interval_h) / 24.0
        return np.sqrt(sd**2 + (g_cl * self.drift_sd_per_day) ** 2 * days)

    def probability(self, state: DrawState, tracker: ExposureTracker | None) -> np.ndarray:
        if tracker is None:
            raise ValueError("PosteriorDraws needs a dosing policy with a Bayesian tracker (MIPD)")
        return (self.total_sd(state, tracker) > self.threshold).astype(np.float64)


class WithDraws:
    """A dosing policy that also decides when to draw a level (the simulator's ``draw``).

    Parameters
    ----------
    dosing : a policy of :func:`vanco_pk.simulate.simulate`'s protocol (MIPD for the rules
        that read its ``tracker``)
    rule : DrawRule
    label : name in tables (default ``"<dosing> + <rule>"``)

    Attributes
    ----------
    sampling : ``"on_request"``: the rule alone orders levels
    draw_probs : per decision, the (P,) probability of the draw decision taken (behaviour
        probability of ``level_drawn``)
    draws : per decision, the (P,) decisions
    dose_probs : per decision, the (P,) probability of the dose given under ``dosing``
        (its ``action_probs``; 1 for a policy without one)
    """

    sampling = "on_request"

    def __init__(self, dosing: Any, rule: DrawRule, label: str | None = None):
        self.dosing = dosing
        self.rule = rule
        self.needs_truth = bool(getattr(dosing, "needs_truth", False))
        self.interval_h = float(getattr(dosing, "interval_h", 12.0))
        self.label = label or f"{getattr(dosing, 'name', 'policy')} + {rule.name}"
        self.draw_probs: list[np.ndarray] = []
        self.draws: list[np.ndarray] = []
        self.dose_probs: list[np.ndarray] = []

    def reset(self, covariates: Mapping[str, Any], seed: Sequence[np.random.SeedSequence]) -> None:
        seeds = list(seed)
        self.dosing.reset(covariates, seed=seeds)
        # A child stream per patient that does not disturb the dosing policy's own.
        rngs = [
            np.random.default_rng(np.random.SeedSequence(s.entropy, spawn_key=(*s.spawn_key, 29)))
            for s in seeds
        ]
        self._rngs = rngs
        n = len(seeds)
        self._memory = DrawMemory(n, self.interval_h)
        self.rule.reset(n, rngs)
        self.draw_probs = []
        self.draws = []
        self.dose_probs = []

    def act(self, features: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        pmf = None
        if hasattr(self.dosing, "action_probs"):
            pmf = np.atleast_2d(self.dosing.action_probs(features, info))
        dose = np.asarray(self.dosing.act(features, info), np.float64).reshape(-1)
        if pmf is None:
            self.dose_probs.append(np.ones(len(dose)))
        else:
            self.dose_probs.append(pmf[np.arange(len(dose)), dose_to_grid_index(dose)])
        measured = np.asarray(info.get("level_measured", np.zeros(len(dose), bool)), bool).reshape(-1)
        measured = measured & np.isfinite(np.asarray(features)[:, 0])
        time = np.asarray(info["time_h"], np.float64).reshape(-1)
        self._memory.observe(time, np.asarray(features, np.float64)[:, CREATININE], measured, dose)
        return dose

    def draw(self, features: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        tracker = getattr(self.dosing, "tracker", None) if self.rule.needs_tracker else None
        if self.rule.needs_tracker and not isinstance(tracker, ExposureTracker):
            raise ValueError(f"{self.rule.name} reads the Bayesian tracker of an MIPD dosing policy")
        prob = np.asarray(self.rule.probability(self._memory.state(), tracker), np.float64)
        u = np.array([rng.random() for rng in self._rngs])
        drawn = u < prob
        self.draws.append(drawn)
        self.draw_probs.append(np.where(drawn, prob, 1.0 - prob))
        return drawn
