"""The interface every reference dosing policy shares, and the memory of an episode.

A policy doses ``P`` patients at once (``P = 1`` for one patient given as scalars). It sees
only what a row of the data schema holds -- the seven features, the covariates, the time --
plus its own memory of the episode: the doses actually given and the levels seen, and when.
The memory is updated with the dose that was *given* (:meth:`DosingPolicy.record`, or the
``dose_mg`` of the next ``info``), not the one the policy would have chosen, so a policy can
replay a logged stay it did not generate and return, at every step, its probability mass
function over :data:`vanco_pk.targets.DOSE_GRID_MG` given that history (what off-policy
evaluation needs).

Step protocol, per decision: :meth:`action_probs` (or :meth:`act`, which samples from it
and records the sampled dose) with the current observation, then the dose given. Repeated
calls at the same decision return the same pmf.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vanco_pk.targets import COVARIATES, CREATININE, DOSE_GRID_MG, FEATURES, LEVEL, dose_to_grid_index

__all__ = ["CHART_KEYS", "N_DOSES", "DosingPolicy", "grid_index", "policy_seeds"]

#: Number of dose-grid levels (0, 250, ..., 3000 mg).
N_DOSES = len(DOSE_GRID_MG)
#: What a chart shows of each decision, the ``info`` keys a non-oracle policy may read: when,
#: whether a trough was drawn, and a peak drawn in the interval that just ended.
CHART_KEYS: tuple[str, ...] = ("time_h", "level_measured", "peak_measured", "peak_level", "peak_offset_h")
_GRID_TOLERANCE_MG = 1e-6
_CAPACITY = 16


def grid_index(dose_mg: np.ndarray | float, where: str = "dose_mg") -> np.ndarray:
    """Grid index of doses that must lie on :data:`DOSE_GRID_MG`; ValueError naming any that do not."""
    dose = np.asarray(dose_mg, dtype=np.float64)
    index = dose_to_grid_index(dose)
    off = ~(np.abs(DOSE_GRID_MG[index] - dose) <= _GRID_TOLERANCE_MG)
    if np.any(off):
        i = int(np.flatnonzero(off.ravel())[0])
        raise ValueError(
            f"{where}: {float(dose.ravel()[i])!r} mg (patient {i}) is not on the dose grid "
            "0, 250, ..., 3000 mg; the reference policies only give grid doses, so an off-grid dose "
            "has probability 0 -- round it with vanco_pk.targets.dose_to_grid_index first"
        )
    return index


def policy_seeds(seed: int | np.random.SeedSequence | None, n: int) -> list[np.random.SeedSequence]:
    """One independent seed sequence per patient, derived from ``seed`` (patient ``i`` keeps its stream)."""
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return root.spawn(n)


class DosingPolicy:
    """Base class: memory of the episode, seeded sampling and the step protocol.

    Subclasses implement :meth:`_pmf` (the pmf of the current decision from the memory)
    and may override :meth:`_start` (after :meth:`reset`) and :meth:`_after_record` (once
    the dose of a decision is known).

    Parameters
    ----------
    interval_h : float
        Hours between decisions, used when ``info`` carries no ``time_h``.

    Attributes
    ----------
    name : str
        Registry name (``make_policy(name)``).
    deterministic : bool
        True when every pmf puts mass 1 on one dose.
    needs_truth : bool
        True when the policy reads the simulator's true state from ``info`` (the oracle).
    """

    name = "base"
    #: Level protocol of the team that doses this way (``None``: the scenario's own); see
    #: :func:`vanco_pk.scenario.protocol_for`.
    sampling: str | None = None
    deterministic = False
    needs_truth = False

    def __init__(self, interval_h: float = 12.0):
        if not (np.isfinite(interval_h) and interval_h > 0):
            raise ValueError(f"interval_h = {interval_h!r} must be a positive number of hours")
        self.interval_h = float(interval_h)
        self._n = 0

    # --- public API ------------------------------------------------------------------------

    def reset(
        self,
        covariates: Mapping[str, Any] | Any,
        seed: int | np.random.SeedSequence | list[np.random.SeedSequence] | None = None,
    ) -> None:
        """Start new episodes for one or ``P`` patients.

        Parameters
        ----------
        covariates : mapping or :class:`vanco_pk.patients.Covariates`
            ``weight_kg``, ``age``, ``sex`` (0 male, 1 female), ``height_cm`` and
            ``dialysis`` (0/1), scalars for one patient or arrays of length ``P``
            (``info["covariates"]`` of the environments works as is).
        seed : int, SeedSequence or list of SeedSequence, optional
            Seeds the policy's own random stream, one per patient (a list gives them
            explicitly, so patient ``i`` draws the same numbers in any batch).
        """
        cov, scalar = _covariates(covariates)
        n = len(cov["weight_kg"])
        self._scalar = scalar
        self._n = n
        self.covariates = cov
        if isinstance(seed, list | tuple):
            if len(seed) != n:
                raise ValueError(f"seed list has {len(seed)} entries; give one per patient ({n})")
            seqs = [s if isinstance(s, np.random.SeedSequence) else np.random.SeedSequence(s) for s in seed]
        else:
            seqs = policy_seeds(seed, n)
        self._rngs = [np.random.default_rng(s) for s in seqs]
        self.steps = 0
        self._time = np.zeros((n, _CAPACITY))
        self._dose = np.full((n, _CAPACITY), np.nan)
        self._level = np.full((n, _CAPACITY), np.nan)  # a level drawn at that step, else NaN
        self._peak = np.full((n, _CAPACITY), np.nan)  # a peak drawn in the interval before that step
        self._peak_offset = np.full((n, _CAPACITY), np.nan)
        self._obs = np.full((n, _CAPACITY, len(FEATURES)), np.nan)
        self._last_level = np.full(n, np.nan)  # value of the latest level seen (for change detection)
        self._open = False  # the current decision has no dose yet
        self._cached: np.ndarray | None = None
        self._start()

    @property
    def n_patients(self) -> int:
        return self._n

    def action_probs(self, obs: np.ndarray, info: Mapping[str, Any] | None = None) -> np.ndarray:
        """Probability of each dose-grid level at this decision, shape (13,) or (P, 13).

        ``obs`` holds the seven :data:`vanco_pk.targets.FEATURES` first (extra columns are
        ignored); its level is the last measured one (NaN, or 0 with
        ``info["level_measured"]`` False, while never measured). ``info`` may carry
        ``time_h`` (else decisions are ``interval_h`` apart), ``level_measured`` (whether
        the level was drawn at this step; else a changed value counts as a new level),
        ``peak_level``, ``peak_offset_h`` and ``peak_measured`` (a peak drawn inside the
        previous interval, the documented hours from the end of its infusion, and whether one
        was drawn; without ``peak_measured`` a finite ``peak_level`` counts) and ``dose_mg``
        (the dose given at the previous decision, if not recorded).
        """
        self._check_started()
        info = {} if info is None else info
        obs = self._observation(obs)
        time = self._info_array(info, "time_h")
        if self._open:
            if time is None or np.allclose(time, self._time[:, self.steps - 1]):
                return self._output(self._cached)
            given = self._info_array(info, "dose_mg")
            if given is None:
                raise ValueError(
                    f"{self.name}: a new decision at time_h={time.tolist()[:3]} but the dose of the previous "
                    "one is unknown; call record(dose_mg) after each decision, or pass info['dose_mg']"
                )
            self.record(given)
        if time is None:
            time = self._time[:, self.steps - 1] + self.interval_h if self.steps else np.zeros(self._n)
        self._append(obs, time, self._level_flags(obs, info))
        peak = self._info_array(info, "peak_level")
        if peak is not None:
            offset = self._info_array(info, "peak_offset_h")
            if offset is None:
                raise ValueError(
                    f"{self.name}: info has peak_level but no peak_offset_h (hours after the infusion)"
                )
            measured = self._info_array(info, "peak_measured")
            drawn = np.isfinite(peak) if measured is None else (measured > 0) & np.isfinite(peak)
            self._peak[:, self.steps - 1] = np.where(drawn, peak, np.nan)
            self._peak_offset[:, self.steps - 1] = np.where(drawn, offset, np.nan)
        self._cached = np.asarray(self._pmf(info), dtype=np.float64)
        self._open = True
        return self._output(self._cached)

    def prob(self, obs: np.ndarray, info: Mapping[str, Any] | None, dose_mg: np.ndarray | float):
        """Probability of giving ``dose_mg`` (on the grid) at this decision."""
        pmf = np.atleast_2d(self.action_probs(obs, info))
        index = np.broadcast_to(grid_index(dose_mg), (self._n,))
        out = pmf[np.arange(self._n), index]
        return float(out[0]) if self._scalar else out

    def act(self, obs: np.ndarray, info: Mapping[str, Any] | None = None):
        """Sample a dose (mg) from this decision's pmf with the policy's own stream, and record it."""
        pmf = np.atleast_2d(self.action_probs(obs, info))
        u = np.array([rng.random() for rng in self._rngs])
        cdf = np.cumsum(pmf, axis=1)
        index = np.minimum((cdf < (u * cdf[:, -1])[:, None]).sum(axis=1), N_DOSES - 1)
        dose = DOSE_GRID_MG[index]
        self.record(dose)
        return float(dose[0]) if self._scalar else dose

    def record(self, dose_mg: np.ndarray | float) -> None:
        """Tell the policy the dose given at the current decision (any dose >= 0 mg, on the grid or not)."""
        self._check_started()
        if not self._open:
            raise ValueError(f"{self.name}: record() needs a decision first; call action_probs(obs, info)")
        dose = np.broadcast_to(np.asarray(dose_mg, dtype=np.float64), (self._n,)).copy()
        bad = ~(np.isfinite(dose) & (dose >= 0))
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{self.name}: dose_mg[{i}] = {dose[i]!r} must be a finite dose >= 0 mg")
        self._dose[:, self.steps - 1] = dose
        self._open = False
        self._after_record(dose)

    def history(self) -> dict[str, np.ndarray]:
        """The memory so far: ``time_h``, ``dose_mg`` (NaN for an open decision), ``level``
        (drawn at that step, else NaN), ``peak`` and ``peak_offset_h`` (a peak drawn in the
        interval before that step, else NaN) and the observations, arrays of shape (P, steps)."""
        k = self.steps
        return {
            "time_h": self._time[:, :k].copy(),
            "dose_mg": self._dose[:, :k].copy(),
            "level": self._level[:, :k].copy(),
            "peak": self._peak[:, :k].copy(),
            "peak_offset_h": self._peak_offset[:, :k].copy(),
            "observations": self._obs[:, :k].copy(),
        }

    # --- hooks -------------------------------------------------------------------------------

    def _start(self) -> None:
        """Called at the end of :meth:`reset`."""

    def _pmf(self, info: Mapping[str, Any]) -> np.ndarray:
        """The (P, 13) pmf of the current decision (memory holds the current observation)."""
        raise NotImplementedError

    def _after_record(self, dose: np.ndarray) -> None:
        """Called once the dose of the current decision is known."""

    # --- helpers for subclasses -----------------------------------------------------------------

    @property
    def time_now(self) -> np.ndarray:
        return self._time[:, self.steps - 1]

    @property
    def obs_now(self) -> np.ndarray:
        return self._obs[:, self.steps - 1]

    @property
    def level_now(self) -> np.ndarray:
        """The level drawn at the current step, NaN if none."""
        return self._level[:, self.steps - 1]

    @property
    def peak_now(self) -> tuple[np.ndarray, np.ndarray]:
        """The peak drawn in the interval that ended at the current step and its hours after the
        end of the infusion (NaN if none)."""
        return self._peak[:, self.steps - 1], self._peak_offset[:, self.steps - 1]

    def _info_array(self, info: Mapping[str, Any], key: str) -> np.ndarray | None:
        if key not in info:
            return None
        value = np.asarray(info[key], dtype=np.float64)
        try:
            return np.broadcast_to(value.reshape(-1) if value.ndim else value, (self._n,)).copy()
        except ValueError:
            raise ValueError(
                f"{self.name}: info[{key!r}] has shape {value.shape}; expected a scalar or ({self._n},)"
            ) from None

    # --- internals ----------------------------------------------------------------------------

    def _check_started(self) -> None:
        if not self._n:
            raise ValueError(f"{self.name}: call reset(covariates, seed) before dosing")

    def _output(self, pmf: np.ndarray) -> np.ndarray:
        return pmf[0].copy() if self._scalar else pmf.copy()

    def _observation(self, obs: np.ndarray) -> np.ndarray:
        arr = np.asarray(obs, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[0] != self._n or arr.shape[1] < len(FEATURES):
            raise ValueError(
                f"{self.name}: obs has shape {np.shape(obs)}; expected ({self._n}, >= {len(FEATURES)}) "
                f"with the features {FEATURES} first"
            )
        arr = arr[:, : len(FEATURES)]
        scr = arr[:, CREATININE]
        bad = ~(np.isfinite(scr) & (scr > 0))
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{self.name}: creatinine of patient {i} at step {self.steps} is {scr[i]!r}; the policies "
                "need a positive serum creatinine (mg/dL) at every decision (impute it before scoring)"
            )
        return arr

    def _level_flags(self, obs: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        level = obs[:, LEVEL]
        if "level_measured" in info:
            flags = np.broadcast_to(np.asarray(info["level_measured"], dtype=bool).reshape(-1), (self._n,))
            flags = flags & np.isfinite(level)
        else:
            flags = np.isfinite(level) & ~(level == self._last_level)
        return flags

    def _append(self, obs: np.ndarray, time: np.ndarray, new_level: np.ndarray) -> None:
        k = self.steps
        if k and np.any(time <= self._time[:, k - 1]):
            i = int(np.flatnonzero(time <= self._time[:, k - 1])[0])
            raise ValueError(
                f"{self.name}: time_h of patient {i} goes from {self._time[i, k - 1]:g} to {time[i]:g} h; "
                "decisions must be in increasing time"
            )
        if k == self._time.shape[1]:
            grow = self._time.shape[1]
            self._time = np.concatenate([self._time, np.zeros((self._n, grow))], axis=1)
            self._dose = np.concatenate([self._dose, np.full((self._n, grow), np.nan)], axis=1)
            self._level = np.concatenate([self._level, np.full((self._n, grow), np.nan)], axis=1)
            self._peak = np.concatenate([self._peak, np.full((self._n, grow), np.nan)], axis=1)
            self._peak_offset = np.concatenate([self._peak_offset, np.full((self._n, grow), np.nan)], axis=1)
            self._obs = np.concatenate([self._obs, np.full((self._n, grow, len(FEATURES)), np.nan)], axis=1)
        self._time[:, k] = time
        self._obs[:, k] = obs
        level = obs[:, LEVEL]
        self._level[:, k] = np.where(new_level, level, np.nan)
        self._last_level = np.where(np.isfinite(level), level, self._last_level)
        self.steps = k + 1


def _covariates(covariates: Mapping[str, Any] | Any) -> tuple[dict[str, np.ndarray], bool]:
    if not isinstance(covariates, Mapping):
        names = ("weight_kg", "age", "sex", "height_cm", "dialysis")
        if all(hasattr(covariates, n) for n in names):
            covariates = {n: getattr(covariates, n) for n in names}
        else:
            raise ValueError(
                f"covariates must be a mapping with {COVARIATES} or a vanco_pk.patients.Covariates; "
                f"got {type(covariates).__name__}"
            )
    missing = [c for c in COVARIATES if c not in covariates]
    if missing:
        raise ValueError(f"covariates lack {missing}; the policies need {COVARIATES} (a nomogram uses them)")
    raw = {c: np.asarray(covariates[c], dtype=np.float64) for c in COVARIATES}
    scalar = all(v.ndim == 0 for v in raw.values())
    n = max(v.size for v in raw.values())
    out = {}
    for name, value in raw.items():
        if value.ndim > 1 or value.size not in (1, n):
            raise ValueError(f"covariates[{name!r}] has shape {value.shape}; expected a scalar or ({n},)")
        out[name] = np.broadcast_to(value.reshape(-1), (n,)).copy()
    checks = {
        "weight_kg": (out["weight_kg"] > 0) & (out["weight_kg"] < 400),
        "age": (out["age"] >= 0) & (out["age"] < 130),
        "sex": np.isin(out["sex"], (0.0, 1.0)),
        "height_cm": np.isnan(out["height_cm"]) | ((out["height_cm"] > 30) & (out["height_cm"] < 260)),
        "dialysis": np.isin(out["dialysis"], (0.0, 1.0)),
    }
    for name, ok in checks.items():
        if not np.all(ok):
            i = int(np.flatnonzero(~ok)[0])
            raise ValueError(
                f"covariates[{name!r}] of patient {i} is {out[name][i]!r}: expected "
                + {
                    "weight_kg": "kg in (0, 400)",
                    "age": "years in [0, 130)",
                    "sex": "0 (male) or 1 (female)",
                    "height_cm": "cm in (30, 260) or NaN",
                    "dialysis": "0 or 1",
                }[name]
            )
    return out, scalar
