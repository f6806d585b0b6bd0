"""The one simulator loop: roll any dosing policy out on a batch of patients and keep the trace.

Every scorer of a policy -- the offline benchmark's rollouts, the off-policy evaluation's
ground truth, ``bench policies``, the fidelity table and synthetic cohorts -- calls
:func:`simulate` and reads its :class:`Trace`; the one attainment of every table is
:meth:`Trace.attainment` (:data:`vanco_pk.targets.ATTAINMENT_DEFINITION`).

Policy protocol (what :func:`simulate` calls; the reference policies of
:mod:`vanco_pk.policies` implement it, learned models through an adapter):

* ``reset(covariates, seed)``: new episodes; ``covariates`` maps each of
  :data:`vanco_pk.targets.COVARIATES` to an array (P,), ``seed`` is a list of one
  ``numpy.random.SeedSequence`` per patient (the policy's own stream);
* ``act(features, info) -> doses (P,)`` in mg: ``features`` are the seven
  :data:`vanco_pk.targets.FEATURES` as charted (the level is NaN while none was ever
  measured), ``info`` the chart (:data:`CHART_VIEW`) and, for a policy whose
  ``needs_truth`` is True (the oracle), the true state (:data:`TRUTH_KEYS`);
* optional attributes ``sampling`` (the level protocol of the team that doses this way,
  :func:`vanco_pk.scenario.protocol_for`) and ``needs_truth``;
* optional ``draw(features, info) -> bool (P,)``, called after ``act`` at each decision
  with the same arguments: True orders a trough at the end of the interval that dose starts
  (:meth:`vanco_pk.vector.VancoPKVectorEnv.request_level`, drawn on top of the protocol;
  with ``protocol="on_request"`` the policy alone decides when levels are drawn).

Doses are given on the action set ``dose_set``: ``"grid"`` (default) rounds every dose to
the nearest of :data:`vanco_pk.targets.DOSE_GRID_MG` (0, 250, ..., 3000 mg: what a pharmacy
gives), ``"continuous"`` gives it as the policy says, clipped to 0-3000 mg. A table
compares policies on one action set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from vanco_pk.env import charted_level
from vanco_pk.policies.base import CHART_KEYS
from vanco_pk.policies.model_based import TRUTH_KEYS
from vanco_pk.scenario import SAMPLING_PROTOCOLS, protocol_for
from vanco_pk.targets import (
    ATTAINMENT_FROM_H,
    AUC24_TARGET,
    COVARIATES,
    DOSE_GRID_MG,
    DOSE_MAX_MG,
    FEATURES,
    chart_round,
    dose_to_grid_index,
)
from vanco_pk.vector import VancoPKVectorEnv
from vanco_pk.world import World

__all__ = [
    "CHART_VIEW",
    "DOSE_SETS",
    "Trace",
    "chart_covariates",
    "chart_features",
    "patient_seeds",
    "simulate",
]

#: What a policy that does not need the truth sees of ``info`` at each decision: the chart
#: keys of the reference policies, the dose given at the previous decision, the charted
#: level (0 with ``level_known`` False while never measured: :func:`vanco_pk.env.charted_level`)
#: and the patient's covariates.
CHART_VIEW: tuple[str, ...] = (*CHART_KEYS, "dose_mg", "raw_level", "level_known", "covariates")
DOSE_SETS = ("grid", "continuous")


def patient_seeds(
    seed: int, n: int
) -> tuple[list[int], list[np.random.SeedSequence], np.random.SeedSequence]:
    """Per-patient environment seeds, per-patient policy seed sequences and a spare seed sequence.

    All derive from one ``SeedSequence(seed)``, so different seeds give unrelated patients
    (the vector env's own ``seed + i`` convention would make seeds 0 and 1 share all but one
    patient) and patient ``i`` is the same in a batch of any size.
    """
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed = {seed!r} must be a non-negative integer")
    env_seq, policy_seq, spare = np.random.SeedSequence(int(seed)).spawn(3)
    return [int(s) for s in env_seq.generate_state(n, np.uint64)], policy_seq.spawn(n), spare


@dataclasses.dataclass(frozen=True)
class Trace:
    """What happened to ``P`` patients over ``T`` decision intervals (arrays (T, P) unless noted).

    Attributes
    ----------
    time_h : (T,) end of each interval (h).
    dose_mg : dose given at the start of each interval.
    auc24 : true AUC over the 24 h before the interval's end (mg*h/L).
    trough : true concentration at the interval's end (mg/L).
    reward : the environment's reward of the interval.
    level_measured : a trough was drawn at the interval's end.
    level_requested : the policy's ``draw`` asked for a trough at the interval's end (all
        False for a policy without ``draw``).
    peak_measured : a peak was drawn inside the interval.
    aki_so_far : KDIGO AKI (measured creatinine) at or before the interval's end.
    interval_h : hours between decisions.
    chart : optional; per decision (T + 1 of them, the last being the final observation) the
        charted features (P, 7) and the full ``info`` (``keep_chart=True``).
    final_dose_mg : (P,) the dose the policy would give at the final observation
        (``final_decision=True``), else None.
    """

    time_h: np.ndarray
    dose_mg: np.ndarray
    auc24: np.ndarray
    trough: np.ndarray
    reward: np.ndarray
    level_measured: np.ndarray
    peak_measured: np.ndarray
    aki_so_far: np.ndarray
    interval_h: float
    level_requested: np.ndarray | None = dataclasses.field(default=None, repr=False)
    chart: tuple[tuple[np.ndarray, dict[str, Any]], ...] | None = dataclasses.field(default=None, repr=False)
    final_dose_mg: np.ndarray | None = dataclasses.field(default=None, repr=False)

    @property
    def n_patients(self) -> int:
        return self.dose_mg.shape[1]

    @property
    def in_range(self) -> np.ndarray:
        """(T, P): the true AUC24 at the interval's end is in 400-600 mg*h/L."""
        low, high = AUC24_TARGET
        return (self.auc24 >= low) & (self.auc24 <= high)

    def attainment_by_patient(self) -> np.ndarray:
        """(P,) each patient's share of intervals ending at or after 24 h with AUC24 in 400-600.

        The one attainment (:data:`vanco_pk.targets.ATTAINMENT_DEFINITION`); its mean over
        patients is :meth:`attainment`.
        """
        full = self.time_h >= ATTAINMENT_FROM_H
        return self.in_range[full].mean(axis=0)

    def attainment(self) -> float:
        """:data:`vanco_pk.targets.ATTAINMENT_DEFINITION`, over all patients."""
        return float(self.attainment_by_patient().mean())

    @property
    def aki(self) -> np.ndarray:
        """(P,) KDIGO AKI at any decision of the episode."""
        return self.aki_so_far[-1]

    def returns(self, gamma: float = 1.0) -> np.ndarray:
        """(P,) sum of ``gamma ** t * reward``."""
        discount = gamma ** np.arange(self.reward.shape[0])
        return (discount[:, None] * self.reward).sum(axis=0)

    def levels_by_patient(self) -> np.ndarray:
        """(P,) troughs drawn over the episode (peaks not counted)."""
        return self.level_measured.sum(axis=0).astype(np.float64)

    def levels_per_week(self) -> np.ndarray:
        """(P,) troughs and peaks drawn per 7 days."""
        hours = self.interval_h * len(self.time_h)
        drawn = self.level_measured.sum(axis=0) + self.peak_measured.sum(axis=0)
        return drawn * 168.0 / hours


def chart_features(obs: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
    """The seven features as a chart shows them: rounded (:data:`vanco_pk.targets.CHART_DECIMALS`),
    the level NaN while none was ever measured."""
    features = np.asarray(obs, np.float64)[:, : len(FEATURES)].copy()
    features[:, 0] = charted_level(info)
    for j, name in enumerate(FEATURES):
        features[:, j] = chart_round(name, features[:, j])
    return features


def chart_covariates(info: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The covariates of ``info`` as a chart shows them (rounded)."""
    return {c: chart_round(c, info["covariates"][c]) for c in COVARIATES}


def _chart_info(info: Mapping[str, Any], covariates: dict[str, np.ndarray], truth: bool) -> dict[str, Any]:
    view = {key: info[key] for key in CHART_VIEW if key != "covariates"}
    view["raw_level"] = chart_round("vanco_level", view["raw_level"])
    view["covariates"] = covariates
    if truth:
        view.update({key: info[key] for key in TRUTH_KEYS})
    return view


def simulate(
    policy: Any,
    seeds: int | Sequence[int],
    n_patients: int | None = None,
    *,
    policy_seeds: Sequence[np.random.SeedSequence] | None = None,
    protocol: str | Sequence[str] | None = None,
    dose_set: str = "grid",
    keep_chart: bool = False,
    final_decision: bool = False,
    on_step: Callable[[int], None] | None = None,
    world: World | None = None,
    patients: Any = None,
) -> Trace:
    """Roll ``policy`` out on patients of :class:`vanco_pk.vector.VancoPKVectorEnv` and trace it.

    Parameters
    ----------
    policy : object
        The policy protocol of the module docstring.
    seeds : int or sequence of int
        The patients: environment seeds, one per patient, or an int ``s`` with ``n_patients``
        (patients ``patient_seeds(s, n_patients)``: the patients of
        ``generate_cohort(n_patients, ..., seed=s)``).
    n_patients : int, optional
        With an int ``seeds``.
    policy_seeds : list of SeedSequence, optional
        The policy's stream per patient; default those of :func:`patient_seeds` for an int
        ``seeds``, else spawned from the first environment seed.
    protocol : str or sequence of str, optional
        Level protocol per patient (:data:`vanco_pk.scenario.SAMPLING_PROTOCOLS`); default
        the protocol of the team that doses this way in this world
        (:func:`vanco_pk.scenario.protocol_for` with ``policy.sampling``). A table whose
        policies should sample alike names one protocol here.
    dose_set : {"grid", "continuous"}
        The action set (module docstring).
    keep_chart : bool
        Keep each decision's charted features and ``info`` in :attr:`Trace.chart`.
    final_decision : bool
        Also ask the policy at the final observation (its dose is not given).
    on_step : callable, optional
        Called with ``P`` after each decision (progress).
    world : World, optional
        The world the patients live in (:class:`vanco_pk.world.World`; default ``World()``,
        the ``icu`` scenario).
    patients : Patients or Covariates, optional
        Fixed patients instead of drawn ones, one per patient (the env's ``patients``).

    Returns
    -------
    Trace
    """
    if dose_set not in DOSE_SETS:
        raise ValueError(f"dose_set = {dose_set!r}; choose one of {list(DOSE_SETS)}")
    if isinstance(seeds, int | np.integer):
        if n_patients is None or n_patients < 1:
            raise ValueError(
                f"n_patients = {n_patients!r}: give a positive number of patients with an int seed"
            )
        env_seeds, default_policy_seeds, _ = patient_seeds(int(seeds), int(n_patients))
    else:
        env_seeds = [int(s) for s in seeds]
        if n_patients is not None and n_patients != len(env_seeds):
            raise ValueError(f"n_patients = {n_patients} but {len(env_seeds)} seeds were given")
        default_policy_seeds = np.random.SeedSequence(env_seeds[:1]).spawn(len(env_seeds))
    n = len(env_seeds)
    if n < 1:
        raise ValueError("simulate needs at least one patient")
    env = VancoPKVectorEnv(num_envs=n, world=World() if world is None else world, patients=patients)
    obs, info = env.reset(seed=env_seeds)
    if protocol is None:
        protocol = protocol_for(env.world.scenario, getattr(policy, "sampling", None))
    protocols = np.broadcast_to(np.asarray(protocol, dtype=object), (n,))
    unknown = sorted({str(p) for p in protocols if p not in SAMPLING_PROTOCOLS})
    if unknown:
        raise ValueError(f"unknown sampling protocol(s) {unknown}; choose from {list(SAMPLING_PROTOCOLS)}")
    env.set_sampling(protocols)
    truth = bool(getattr(policy, "needs_truth", False))
    covariates = chart_covariates(info)
    policy.reset(
        covariates,
        seed=list(policy_seeds if policy_seeds is not None else default_policy_seeds),
    )
    steps = env.world.n_steps
    out = {key: np.zeros((steps, n)) for key in ("dose_mg", "auc24", "trough", "reward")}
    flags = {
        key: np.zeros((steps, n), dtype=bool) for key in ("level_measured", "peak_measured", "aki_so_far")
    }
    requested = np.zeros((steps, n), dtype=bool)
    drawer = getattr(policy, "draw", None)
    times = np.zeros(steps)
    chart: list[tuple[np.ndarray, dict[str, Any]]] = []
    final = None
    for t in range(steps + (1 if final_decision else 0)):
        features = chart_features(obs, info)
        if keep_chart:
            chart.append((features, {k: v for k, v in info.items() if not k.startswith("_")}))
        seen = _chart_info(info, covariates, truth)
        dose = np.asarray(policy.act(features, seen), dtype=np.float64).reshape(-1)
        if dose.shape != (n,) or not np.all(np.isfinite(dose)):
            raise ValueError(f"the policy gave doses of shape {dose.shape} (or non-finite) for {n} patients")
        dose = np.clip(dose, 0.0, DOSE_MAX_MG)
        if dose_set == "grid":
            dose = DOSE_GRID_MG[dose_to_grid_index(dose)]
        if on_step is not None:
            on_step(n)
        if t == steps:
            final = dose
            break
        if drawer is not None:
            request = np.asarray(drawer(features, seen))
            if request.shape != (n,) or request.dtype != bool:
                raise ValueError(
                    f"the policy's draw() gave {request.dtype} of shape {request.shape}; expected bool ({n},)"
                )
            requested[t] = request
            env.request_level(request)
        obs, reward, terminated, _, info = env.step(dose.reshape(n, 1))
        if np.any(terminated):
            raise RuntimeError("internal error: the simulator ended an episode early")
        out["dose_mg"][t] = dose
        out["reward"][t] = reward
        for key in ("auc24", "trough"):
            out[key][t] = info[key]
        for key in flags:
            flags[key][t] = np.asarray(info[key], dtype=bool)
        times[t] = float(info["time_h"][0])
    env.close()
    return Trace(
        time_h=times,
        interval_h=env.world.decision_interval_h,
        chart=tuple(chart) if keep_chart else None,
        final_dose_mg=final,
        level_requested=requested,
        **out,
        **flags,
    )
