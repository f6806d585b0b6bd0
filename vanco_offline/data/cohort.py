"""Synthetic ICU cohorts: reference dosing policies run in the ``vanco_pk`` simulator, as a dosing table.

One row per decision step, in the schema of ``data/README.md``: the seven features as a
clinician sees them (rounded to the resolution labs and monitors report), ``dose_mg`` (the
dose given; on the last row of a stay, the final observation, the dose the policy would give
there), ``reward`` (computed by the environment on the unrounded observations, to 4 decimals; NaN
on the last row), ``done`` (False: stays are truncated at ``episode_days``, not terminal),
``behavior_prob`` (probability of the logged dose under the policy that generated the stay,
given the stay's history), the covariates. Extra columns, which the dose dataset does not
use (the converter reports the ignored ones; it checks the draw columns): ``time_h`` next to
``step``, ``behavior_policy`` (name of the generating policy),
``level_measured`` (a level was drawn at this step; the scorer uses it to tell a new level
from a carried-forward one), with ``draws`` (a rule deciding when levels are ordered)
``level_drawn`` and ``level_drawn_prob`` (this row's draw decision and its behaviour
probability; the final row decides nothing: False and NaN) and, with
``true_columns=True``, the simulator's ground truth at the decision time (``true_auc24``,
``true_trough``, ``true_cl``, ..., ``true_aki``).

The policies act on exactly the rounded values written to the table, so replaying a stay
with :func:`score_table` reproduces ``behavior_prob``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from vanco_pk.policies import POLICIES, TRUTH_KEYS, DosingPolicy, grid_index, make_policy, replay
from vanco_pk.policies.sampling import DrawRule, WithDraws
from vanco_pk.scenario import protocol_for
from vanco_pk.simulate import patient_seeds, simulate
from vanco_pk.targets import (
    CHART_DECIMALS,
    COVARIATES,
    DOSE_GRID_MG,
    FEATURES,
    chart_round,
    dose_to_grid_index,
)
from vanco_pk.world import World, world_of

from vanco_offline.data.schema import LEVEL_DRAWN, LEVEL_DRAWN_PROB

__all__ = [
    "BUILTIN_POLICY",
    "BUILTIN_WORLD",
    "DECIMALS",
    "TRUE_COLUMNS",
    "PolicyScores",
    "builtin_cohort",
    "cohort_seeds",
    "generate_cohort",
    "parse_mixture",
    "score_table",
]

#: Decimals kept for each written value (what labs, monitors and charts report).
DECIMALS = CHART_DECIMALS
#: Ground-truth columns (``true_`` + the simulator's ``info`` key) and their decimals.
TRUE_COLUMNS: dict[str, int] = {
    "auc24": 1,
    "trough": 2,
    "cl": 4,
    "v1": 3,
    "v2": 3,
    "q": 3,
    "central_mg": 2,
    "peripheral_mg": 2,
    "kidney_injury": 4,
    "burden": 4,
    "aki": -1,  # bool
}
_BATCH = 2000


def parse_mixture(policy: str | Mapping[str, float]) -> dict[str, float]:
    """Mixture weights summing to 1 from ``"clinician"`` or ``{"clinician": 0.7, "random": 0.3}``."""
    weights = {policy: 1.0} if isinstance(policy, str) else dict(policy)
    if not weights:
        raise ValueError("policy mixture is empty; give a policy name or {name: weight}")
    unknown = sorted(set(weights) - set(POLICIES))
    if unknown:
        raise ValueError(f"unknown policy {unknown} in the mixture; choose from {sorted(POLICIES)}")
    bad = {k: w for k, w in weights.items() if not (np.isfinite(w) and w > 0)}
    if bad:
        raise ValueError(f"policy mixture weights must be > 0; got {bad}")
    total = float(sum(weights.values()))
    return {k: float(w) / total for k, w in weights.items()}


def cohort_seeds(seed: int, n: int) -> tuple[list[int], list[np.random.SeedSequence], np.random.SeedSequence]:
    """Per-patient environment seeds, policy seed sequences and the mixture's seed
    (:func:`vanco_pk.simulate.patient_seeds`): the patients of every scorer given ``seed``."""
    return patient_seeds(seed, n)


def _assign(weights: dict[str, float], n: int, rng: np.random.Generator) -> np.ndarray:
    """Exact shares (largest remainder), shuffled: stay ``i`` gets policy ``out[i]``."""
    names = list(weights)
    raw = np.array([weights[k] for k in names]) * n
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]] += 1
    labels = np.repeat(np.array(names, dtype=object), counts)
    return labels[rng.permutation(n)]


def generate_cohort(
    n_patients: int,
    policy: str | Mapping[str, float] = "clinician",
    seed: int = 0,
    *,
    policy_options: Mapping[str, Mapping[str, Any]] | None = None,
    true_columns: bool = True,
    progress: Callable[[int], None] | None = None,
    world: World | None = None,
    draws: Any = None,
    patients: Any = None,
    **world_options: Any,
) -> pd.DataFrame:
    """Simulate ``n_patients`` ICU stays dosed by a reference policy (or a mixture, by stay).

    Parameters
    ----------
    n_patients : int
        Number of stays.
    policy : str or mapping
        A :data:`vanco_pk.policies.POLICIES` name, or ``{name: weight}``: each stay is
        dosed by one policy, in exact shares shuffled by ``seed`` (D4RL-style mixtures).
        ``behavior_prob`` is then the probability under the stay's own policy (named in
        ``behavior_policy``), not under the mixture.
    seed : int
        Seeds the patients, their measurement noise, the mixture assignment and every
        policy's stream: the same seed gives the same table.
    policy_options : mapping, optional
        Options per policy name, e.g. ``{"clinician": {"miss_prob": 0.5}}``.
    true_columns : bool
        Add the simulator's ground truth (``true_*`` columns).
    progress : callable, optional
        Called after every decision step with the number of stay-decisions just simulated
        (they total ``n_patients * (steps + 1)``), e.g. ``tqdm.update``.
    world : vanco_pk.World, optional
        The simulated world (default ``World()``: the ``icu`` scenario). Each stay's levels
        follow the protocol of the team that doses it (:func:`vanco_pk.scenario.protocol_for`);
        ``level_measured`` says where one was drawn.
    draws : DrawRule, optional
        Who orders levels (:mod:`vanco_pk.policies.sampling`, e.g. ``HabitDraws()``, the
        clinician habits whose orders vary by unit and state): every stay's levels are then
        drawn on request only (protocol ``on_request``), and the table records each decision
        in ``level_drawn`` with its behaviour probability ``level_drawn_prob`` (what a draw
        head learns from). None (default): the protocol of the team that doses.
    patients : Patients or Covariates, optional
        Fixed patients (the env's ``patients``; at most 1000 stays).
    **world_options
        Instead of ``world``, its options as :meth:`vanco_pk.World.make` takes them:
        ``scenario`` (``"icu"``, ``"ideal"``, ...), ``decision_interval_h``, ``episode_days``,
        ``measurement_noise``, ``level_missing_prob``, ``misspecification``, ``reward``, ...

    Returns
    -------
    pandas.DataFrame
        ``n_patients * (steps + 1)`` rows, ``steps = episode_days * 24 / decision_interval_h``.
    """
    if not isinstance(n_patients, int | np.integer) or isinstance(n_patients, bool) or n_patients < 1:
        raise ValueError(f"n_patients = {n_patients!r} must be a positive integer")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed = {seed!r} must be a non-negative integer")
    weights = parse_mixture(policy)
    options = dict(policy_options or {})
    unknown = sorted(set(options) - set(weights))
    if unknown:
        raise ValueError(f"policy_options for {unknown}, which the mixture {sorted(weights)} does not use")
    for name in weights:  # fail on a bad option before simulating anything
        make_policy(name, **options.get(name, {}))
    if "extended_obs" in world_options:
        raise ValueError("extended_obs: the cohort writes the covariates as columns; leave extended_obs off")
    world = world_of(world, world_options)
    if patients is not None and n_patients > _BATCH:
        raise ValueError(f"fixed patients are supported for cohorts of at most {_BATCH} stays")
    if draws is not None and not isinstance(draws, DrawRule):
        raise ValueError(
            f"draws = {draws!r} must be a vanco_pk.policies.sampling.DrawRule (e.g. HabitDraws())"
        )
    n = int(n_patients)
    env_seeds, policy_seeds, mix_seq = cohort_seeds(int(seed), n)
    labels = _assign(weights, n, np.random.default_rng(mix_seq))
    frames = []
    for start in range(0, n, _BATCH):
        idx = np.arange(start, min(start + _BATCH, n))
        frames.append(
            _simulate_batch(
                idx,
                labels[idx],
                env_seeds,
                policy_seeds,
                options,
                true_columns,
                world,
                patients,
                progress,
                draws,
            )
        )
    return pd.concat(frames, ignore_index=True)


#: The built-in cohort's world: the ``icu`` scenario with half of the ordered troughs missing
#: (as in data/sample_cohort.csv); its stays are dosed by :data:`BUILTIN_POLICY`.
BUILTIN_WORLD = World(level_missing_prob=0.5)
BUILTIN_POLICY = "clinician"


def builtin_cohort(n_patients: int = 500, seed: int = 0) -> pd.DataFrame:
    """The synthetic cohort used when no data file is given: ``n_patients`` stays of
    :data:`BUILTIN_WORLD` dosed by :data:`BUILTIN_POLICY`."""
    return generate_cohort(n_patients, BUILTIN_POLICY, seed=seed, world=BUILTIN_WORLD)


class _Mixture:
    """Each stay dosed by its own reference policy, behind the one policy protocol of
    :func:`vanco_pk.simulate.simulate`; keeps the probability of each dose given."""

    def __init__(self, labels: np.ndarray, options: Mapping[str, Mapping[str, Any]], interval_h: float):
        self.groups = {
            name: (
                np.flatnonzero(labels == name),
                make_policy(name, interval_h=interval_h, **options.get(name, {})),
            )
            for name in dict.fromkeys(labels)
        }
        self.needs_truth = any(policy.needs_truth for _, policy in self.groups.values())
        self.interval_h = interval_h
        self.n = len(labels)
        self.probs: list[np.ndarray] = []

    def protocols(self, scenario: Any) -> np.ndarray:
        """The level protocol of each stay: that of the team that doses it."""
        out = np.empty(self.n, dtype=object)
        for members, policy in self.groups.values():
            out[members] = protocol_for(scenario, policy.sampling)
        return out

    def reset(self, covariates: Mapping[str, np.ndarray], seed: list) -> None:
        for members, policy in self.groups.values():
            policy.reset({c: v[members] for c, v in covariates.items()}, seed=[seed[m] for m in members])

    def act(self, features: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        # What the table holds, so that score_table replays the stay to the same probabilities.
        seen = {
            "time_h": np.asarray(info["time_h"], np.float64),
            "level_measured": np.asarray(info["level_measured"], bool),
        }
        if self.needs_truth:
            # The oracle sees the truth as written to the true_* columns, so it can be replayed.
            seen.update({key: _round_truth(info[key], TRUE_COLUMNS[key]) for key in TRUTH_KEYS})
        dose = np.zeros(self.n)
        prob = np.zeros(self.n)
        for members, policy in self.groups.values():
            sub = {key: value[members] for key, value in seen.items()}
            pmf = np.atleast_2d(policy.action_probs(features[members], sub))
            given = np.atleast_1d(policy.act(features[members], sub))
            dose[members] = given
            prob[members] = pmf[np.arange(len(members)), grid_index(given)]
        self.probs.append(prob)
        return dose


def _simulate_batch(
    idx, labels, env_seeds, policy_seeds, options, true_columns, world, patients, progress, draws=None
) -> pd.DataFrame:
    mixture = _Mixture(labels, options, world.decision_interval_h)
    # With a draw rule, it alone orders levels (WithDraws keeps each decision and its probability).
    policy = mixture if draws is None else WithDraws(mixture, copy.deepcopy(draws))
    trace = simulate(
        policy,
        [env_seeds[i] for i in idx],
        policy_seeds=[policy_seeds[i] for i in idx],
        protocol=mixture.protocols(world.scenario) if draws is None else policy.sampling,
        keep_chart=True,
        final_decision=True,
        on_step=progress,
        world=world,
        patients=patients,
    )
    p = len(idx)
    rows = len(trace.chart)
    features = np.stack([f for f, _ in trace.chart], axis=1)  # (P, rows, 7)
    infos = [i for _, i in trace.chart]
    reward = np.full((p, rows), np.nan)
    reward[:, :-1] = np.round(trace.reward.T, 4)
    dose = np.column_stack([trace.dose_mg.T, trace.final_dose_mg])
    measured = np.stack([np.asarray(i["level_measured"], bool) for i in infos], axis=1) & np.isfinite(
        features[:, :, 0]
    )
    covariates = {c: chart_round(c, infos[0]["covariates"][c]) for c in COVARIATES}
    out = {
        "stay_id": np.repeat(idx, rows),
        "step": np.tile(np.arange(rows), p),
        "time_h": np.stack([np.asarray(i["time_h"], np.float64) for i in infos], axis=1).ravel(),
        **{name: features[:, :, j].ravel() for j, name in enumerate(FEATURES)},
        "dose_mg": dose.ravel(),
        "reward": reward.ravel(),
        "done": np.zeros(p * rows, dtype=bool),
        "behavior_prob": np.stack(mixture.probs, axis=1).ravel(),
        "behavior_policy": np.repeat(labels, rows),
        "level_measured": measured.ravel(),
        **{c: np.repeat(covariates[c], rows) for c in COVARIATES},
    }
    if draws is not None:
        drawn = np.zeros((p, rows), bool)
        drawn[:, :-1] = np.stack(policy.draws, axis=1)
        drawn_prob = np.full((p, rows), np.nan)
        drawn_prob[:, :-1] = np.stack(policy.draw_probs, axis=1)
        out[LEVEL_DRAWN] = drawn.ravel()
        out[LEVEL_DRAWN_PROB] = drawn_prob.ravel()
    if true_columns:
        for key, decimals in TRUE_COLUMNS.items():
            values = np.stack([_round_truth(i[key], decimals) for i in infos], axis=1).ravel()
            out[f"true_{key}"] = values.astype(bool) if decimals < 0 else values
    frame = pd.DataFrame(out)
    frame["behavior_policy"] = frame["behavior_policy"].astype(str)
    for c in ("sex", "dialysis"):
        frame[c] = frame[c].astype(np.int64)
    return frame


def _round_truth(values: Any, decimals: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr if decimals < 0 else np.round(arr, decimals)


@dataclass(frozen=True)
class PolicyScores:
    """A policy's view of a dosing table, aligned with its rows.

    Attributes
    ----------
    pmf : (rows, 13) probability of each grid dose at each row, given the stay's history
    prob : (rows,) probability of the logged dose (NaN where the dose is NaN)
    """

    pmf: np.ndarray
    prob: np.ndarray


def score_table(
    table: pd.DataFrame, policy: str | DosingPolicy, interval_h: float | None = None, **policy_options: Any
) -> PolicyScores:
    """Replay every stay of a dosing table through a policy: its pmf and the probability of each logged dose.

    The policy's memory is fed the logged doses, so this is the probability of each logged
    dose given the stay's history under ``policy`` (the evaluation or behaviour policy of
    importance sampling). For a stay the policy generated itself it reproduces
    ``behavior_prob``.

    Parameters
    ----------
    table : pandas.DataFrame
        Dosing table in the schema of ``data/README.md``; needs the
        covariate columns; ``time_h`` (else ``step`` times ``interval_h``);
        ``level_measured`` is used when present; the oracle needs ``true_cl``, ``true_v1``,
        ``true_v2``, ``true_q``, ``true_central_mg``, ``true_peripheral_mg``.
    policy : str or DosingPolicy
        A policy name (built with ``policy_options``) or an instance (reset here).
    interval_h : float, optional
        Hours per ``step`` when the table has no ``time_h`` (default: the policy's).

    Notes
    -----
    Only the structure is checked here (columns, contiguous stays, increasing times, grid
    doses), not the plausibility ranges of :func:`vanco_offline.data.validate`, so that
    stays of the random floor, whose levels can exceed the validator's bounds, can be scored.

    Raises
    ------
    ValueError
        Structural problems, a missing covariate, covariates that change within a stay, or a
        logged dose off the 250 mg grid (probability 0 under every reference policy).
    """
    checked = _check_structure(table)
    if isinstance(policy, str):
        policy = make_policy(policy, **policy_options)
    elif policy_options:
        raise ValueError("policy_options are only used with a policy name, not an instance")
    missing = [c for c in COVARIATES if c not in checked.columns]
    if missing:
        raise ValueError(
            f"score_table: the table lacks covariate column(s) {missing}; the policies need them"
        )
    if policy.needs_truth:
        absent = [f"true_{k}" for k in TRUTH_KEYS if f"true_{k}" not in checked.columns]
        if absent:
            raise ValueError(
                f"score_table: the {policy.name} policy needs the ground-truth column(s) {absent}"
            )
    stay = checked["stay_id"].to_numpy()
    codes, _ = pd.factorize(checked["stay_id"], sort=False)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    lengths = np.diff(np.r_[starts, len(codes)])
    for c in COVARIATES:
        values = checked[c].to_numpy(np.float64)
        changed = np.flatnonzero(values != values[np.repeat(starts, lengths)])
        if changed.size:
            r = int(changed[0])
            raise ValueError(
                f"score_table: covariate '{c}' changes within stay {stay[r]!r} (row {r}); the policies take "
                "covariates fixed per stay: split the stay or fix the column"
            )
    if "time_h" in checked.columns:
        time = checked["time_h"].to_numpy(np.float64)
    else:
        time = checked["step"].to_numpy(np.float64) * float(interval_h or policy.interval_h)
    features = checked[list(FEATURES)].to_numpy(np.float64)
    dose = checked["dose_mg"].to_numpy(np.float64)
    level_measured = checked["level_measured"].to_numpy(bool) if "level_measured" in checked.columns else None
    truth = {k: checked[f"true_{k}"].to_numpy(np.float64) for k in TRUTH_KEYS} if policy.needs_truth else None
    pmf = np.zeros((len(checked), len(DOSE_GRID_MG)))
    for length in np.unique(lengths):
        first = starts[lengths == length]
        rows = first[:, None] + np.arange(length)[None, :]
        pmf[rows] = replay(
            policy,
            {c: checked[c].to_numpy(np.float64)[first] for c in COVARIATES},
            features[rows],
            dose[rows],
            time_h=time[rows],
            level_measured=None if level_measured is None else level_measured[rows],
            truth=None if truth is None else {k: v[rows] for k, v in truth.items()},
        )
    prob = np.full(len(checked), np.nan)
    given = np.isfinite(dose)
    off = given & ~(np.abs(DOSE_GRID_MG[dose_to_grid_index(np.nan_to_num(dose))] - dose) <= 1e-6)
    if off.any():
        r = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"score_table: dose_mg = {dose[r]:g} mg in stay {stay[r]!r} (row {r}) is off the 250 mg grid; "
            "the reference policies give grid doses only (probability 0): round the doses to the grid first"
        )
    index = grid_index(dose[given], where="dose_mg")
    prob[given] = pmf[np.flatnonzero(given), index]
    return PolicyScores(pmf=pmf, prob=prob)


def _check_structure(table: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame) or len(table) == 0:
        raise ValueError("score_table: expected a non-empty pandas DataFrame (one row per decision step)")
    time_column = "time_h" if "time_h" in table.columns else "step"
    required = ["stay_id", time_column, *FEATURES, "dose_mg"]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"score_table: the table lacks column(s) {missing} (schema in data/README.md)")
    table = table.reset_index(drop=True)
    if "sex" in table.columns and not pd.api.types.is_numeric_dtype(table["sex"]):
        table = table.assign(
            sex=table["sex"]
            .astype("string")
            .str.strip()
            .str.lower()
            .map({"m": 0, "male": 0, "f": 1, "female": 1, "0": 0, "1": 1})
        )
    codes, _ = pd.factorize(table["stay_id"], sort=False)
    new_block = np.r_[True, codes[1:] != codes[:-1]]
    if len(np.unique(codes[new_block])) != new_block.sum():
        raise ValueError("score_table: stays appear in non-contiguous blocks; sort by stay_id then time")
    time = pd.to_numeric(table[time_column], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(time) | np.r_[False, (np.diff(time) <= 0) & ~new_block[1:]]
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"score_table: column '{time_column}' must increase within each stay; stay "
            f"{table['stay_id'].iloc[r]!r} row {r} has {table[time_column].iloc[r]!r}"
        )
    dose = pd.to_numeric(table["dose_mg"], errors="coerce").to_numpy(np.float64)
    last = np.r_[new_block[1:], True]
    bad = (np.isnan(dose) & ~last) | (dose < 0)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"score_table: dose_mg is missing or negative in stay {table['stay_id'].iloc[r]!r} row {r}; "
            "every decision but the final observation needs the dose given (0 = held)"
        )
    return table
