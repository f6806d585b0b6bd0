"""A learned draw head: when a level is worth its cost, learned from logs whose draws vary.

The dose stays the Bayesian one (MIPD on the hospital's refitted prior); what is learned is
the binary decision "draw a trough at the end of this interval", with
:class:`~vanco_offline.algos.DiscreteVancoIQL` over two actions (0 = no draw, 1 = draw).

Data (:func:`draw_transitions`). Each stay of a dosing table with a ``level_drawn`` column is
replayed through the Bayesian tracker on the given prior (:class:`vanco_pk.exposure.
ExposureTracker`). The state of the draw decision at row ``k`` is
:func:`vanco_pk.policies.sampling.draw_features` (posterior SD of the next 24 h's log AUC,
time since the last level, creatinine change, dose change, ...), computed from rows up to
``k`` only. Where the level drawn at the end of row ``k``'s interval was measured, its value
is what it changed: with :math:`\\hat\\eta^-` the estimate before it and :math:`\\hat\\eta^+`
after, :math:`d^\\pm` the MIPD dose (AUC of the next 24 h nearest 500) under each, and
:math:`A^\\pm(d)` the next 24 h's AUC of dose :math:`d` under :math:`\\hat\\eta^\\pm`,
the label is (``label="correction"``, the default)

.. math::

    y_k = |\\log A^+(d^-) - \\log A^-(d^-)|,

how wrong the exposure of the dose that would have been given was, or (``"distance"``)
:math:`y_k = |\\log A^+(d^-)/500| - |\\log A^+(d^+)/500|`,
both by the best estimate the logs hold then. The reward of
the decision is :math:`r_k = a_k\\, y_k` (0 without a draw), with :math:`\\gamma = 0`, so the
twin Q learns :math:`Q(s, 1) = E[y \\mid s]` and :math:`Q(s, 0) = 0` in-sample. A per-draw
cost :math:`\\lambda` in the reward, :math:`r = a (y - \\lambda)`, shifts :math:`Q(s, 1)` by
:math:`-\\lambda` exactly (with :math:`\\gamma = 0`), so one fit serves every cost:
:class:`LearnedDraws` draws where :math:`Q(s, 1) - Q(s, 0) > \\lambda`, and varying
:math:`\\lambda` traces the frontier. The behaviour's draw probability must leave both
decisions possible in every state (``level_drawn_prob`` in (0, 1)); labels need no
importance weights because the draw depends on the state features and the unit's habit,
which is independent of the patient.

:func:`draw_dataset` is the d3rlpy dataset of the decisions (the draw as a discrete action;
the behaviour probabilities beside it, :attr:`DrawTransitions.behavior_prob`).
``vanco-offline train --config residual_draw`` fits the head beside the dose policy and
chooses :math:`\\lambda` with :func:`choose_draw_cost` on validation stays
(:func:`vanco_offline.training.fit_draw_advice`); :func:`draw_features_at` gives the state of
a recommendation's decision from the stay's rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from vanco_pk.estimation import forward_auc, predicted_state
from vanco_pk.exposure import ExposureTracker
from vanco_pk.pk import GOTI_2018, GotiModel
from vanco_pk.policies.sampling import (
    DRAW_FEATURES,
    DrawMemory,
    DrawRule,
    DrawState,
    auc_uncertainty,
    draw_features,
)
from vanco_pk.targets import AUC24_GOAL, COVARIATES, DOSE_GRID_MG

from vanco_offline.data.schema import LEVEL_DRAWN, LEVEL_DRAWN_PROB

__all__ = [
    "LABELS",
    "DrawTransitions",
    "LearnedDraws",
    "choose_draw_cost",
    "draw_advantage",
    "draw_dataset",
    "draw_features_at",
    "draw_transitions",
    "fit_draw_head",
]

#: What a measured level is worth (module docstring): ``correction``, how far it moved the
#: predicted log AUC of the next 24 h on the dose the previous estimate picks; ``distance``,
#: how much closer to 500 (in log AUC) the dose picked with it lands than that dose, both by
#: the estimate with the level.
LABELS: tuple[str, ...] = ("correction", "distance")


@dataclasses.dataclass(frozen=True)
class DrawTransitions:
    """Draw decisions replayed from a table: ``features`` (N, 9) (:data:`DRAW_FEATURES`),
    ``drawn`` (N,) bool, ``label`` (N,) the value of the level (0 where no level was
    measured), ``stay`` (N,) and ``last`` (N,) bool (the stay's last decision),
    ``behavior_prob`` (N,) the table's ``level_drawn_prob`` of each decision (NaN without that
    column): the behaviour probability of the logged draw, aligned with the transitions of
    :func:`draw_dataset`, for importance weighting."""

    features: np.ndarray
    drawn: np.ndarray
    label: np.ndarray
    stay: np.ndarray
    last: np.ndarray
    behavior_prob: np.ndarray

    @property
    def rewards(self) -> np.ndarray:
        return (self.drawn * self.label).astype(np.float32)


def draw_transitions(
    table: Any, model: GotiModel = GOTI_2018, interval_h: float = 12.0, label: str = "correction"
) -> DrawTransitions:
    """Replay a table's stays through the tracker on ``model``: states, draws and labels (module docstring).

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of the data schema with ``stay_id``, ``time_h``, ``vanco_level``, ``creatinine``,
        ``dose_mg``, ``level_measured``, ``level_drawn`` and the covariates, sorted by stay and
        time; the last row of a stay is its final observation (its dose and draw unused).
    model : the prior of the tracker (the refitted local model)
    interval_h : hours between decisions (the MIPD horizon repeats the dose at this interval)
    label : ``"correction"`` or ``"distance"`` (:data:`LABELS`)
    """
    if label not in LABELS:
        raise ValueError(f"draw_transitions: label = {label!r}; choose one of {list(LABELS)}")
    need = ["stay_id", "vanco_level", "creatinine", "dose_mg", LEVEL_DRAWN, *COVARIATES]
    missing = [c for c in need if c not in table.columns]
    if "time_h" not in table.columns and "step" not in table.columns:
        missing.append("time_h")
    if missing:
        raise ValueError(f"draw_transitions: the table lacks column(s) {missing}")
    table = _chart(table, interval_h)
    sizes = table.groupby("stay_id", sort=False).size()
    if sizes.min() < 2:
        raise ValueError(f"draw_transitions: stay {sizes.idxmin()!r} has one row; a draw needs a next row")
    parts = []
    for length in sorted(sizes.unique()):
        stays = sizes.index[sizes == length]
        sub = table[table["stay_id"].isin(stays)]
        parts.append(_replay_group(sub, int(length), model, interval_h, label))
    return DrawTransitions(
        *(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(DrawTransitions))
    )


def _chart(table: Any, interval_h: float) -> Any:
    """``table`` with ``time_h`` and ``level_measured`` (the project's new-level rule when absent)."""
    import pandas as pd

    from vanco_offline.data.pk_replay import level_changes

    out = table.reset_index(drop=True)
    if "time_h" not in out.columns:
        out = out.assign(time_h=pd.to_numeric(out["step"]).to_numpy(np.float64) * interval_h)
    if "level_measured" not in out.columns:
        codes = pd.factorize(out["stay_id"], sort=False)[0]
        first = np.r_[0, np.flatnonzero(codes[1:] != codes[:-1]) + 1]
        row_start = first[np.cumsum(np.r_[False, codes[1:] != codes[:-1]])]
        level = pd.to_numeric(out["vanco_level"], errors="coerce").to_numpy(np.float64)
        out = out.assign(level_measured=level_changes(level, row_start))
    return out


def _replay_group(
    sub: Any, length: int, model: GotiModel, interval_h: float, label_kind: str
) -> DrawTransitions:
    p = len(sub) // length

    def grid(name: str, dtype: Any = np.float64) -> np.ndarray:
        return sub[name].to_numpy(dtype).reshape(p, length)

    time, scr, level, dose = grid("time_h"), grid("creatinine"), grid("vanco_level"), grid("dose_mg")
    measured = grid("level_measured", bool) & np.isfinite(level)
    drawn = grid(LEVEL_DRAWN, bool)
    if LEVEL_DRAWN_PROB in sub.columns:
        drawn_prob = grid(LEVEL_DRAWN_PROB)
    else:
        drawn_prob = np.full((p, length), np.nan)
    if np.any(np.diff(time, axis=1) <= 0):
        raise ValueError(
            "draw_transitions: time_h must increase within each stay (sort the table by stay and time)"
        )
    covariates = {c: grid(c)[:, 0] for c in COVARIATES}
    tracker = ExposureTracker(interval_h, AUC24_GOAL, 24.0, model)
    tracker.reset(covariates)
    memory = DrawMemory(p, interval_h)
    features = np.zeros((p, length - 1, len(DRAW_FEATURES)), np.float32)
    label = np.zeros((p, length - 1))
    for k in range(length):
        eta_before = tracker.eta.copy()
        tracker.observe(time[:, k], scr[:, k], np.where(measured[:, k], level[:, k], np.nan))
        new = measured[:, k] & (k > 0)
        if np.any(new):
            history = tracker.history()
            aucs = []
            for eta in (eta_before, tracker.eta):
                params, central, peripheral = predicted_state(history, eta, model)
                aucs.append(forward_auc(params, central, peripheral, DOSE_GRID_MG, interval_h, 24.0))
            rows = np.arange(p)
            before = np.argmin(np.abs(aucs[0] - AUC24_GOAL), axis=1)
            after = np.argmin(np.abs(aucs[1] - AUC24_GOAL), axis=1)
            if label_kind == "distance":
                gain = np.abs(np.log(aucs[1][rows, before] / AUC24_GOAL)) - np.abs(
                    np.log(aucs[1][rows, after] / AUC24_GOAL)
                )
            else:
                gain = np.abs(np.log(aucs[1][rows, before] / aucs[0][rows, before]))
            label[:, k - 1] = np.where(new, gain, 0.0)
        if k == length - 1:
            break
        memory.observe(time[:, k], scr[:, k], measured[:, k], dose[:, k])
        tracker.record(dose[:, k])
        sd, _ = auc_uncertainty(tracker, dose[:, k])
        features[:, k] = draw_features(memory.state(), sd)
    last = np.zeros((p, length - 1), bool)
    last[:, -1] = True
    stay = np.repeat(sub["stay_id"].to_numpy()[::length], length - 1)
    return DrawTransitions(
        features.reshape(-1, len(DRAW_FEATURES)),
        drawn[:, :-1].reshape(-1),
        label.reshape(-1),
        stay,
        last.reshape(-1),
        drawn_prob[:, :-1].reshape(-1),
    )


def draw_dataset(data: DrawTransitions) -> Any:
    """The draw decisions as a d3rlpy ``MDPDataset``: discrete action 0/1 (no draw / draw).

    Observations :data:`DRAW_FEATURES`, reward :attr:`DrawTransitions.rewards`, one episode
    per stay (a timeout at its last decision; :math:`\\gamma = 0` makes episodes moot). Its
    transitions are in the order of ``data``, so ``data.behavior_prob`` is the behaviour
    probability of each logged action (the side array d3rlpy's dataset has no slot for).
    """
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset

    return MDPDataset(
        observations=data.features,
        actions=data.drawn.astype(np.int64).reshape(-1, 1),
        rewards=data.rewards.reshape(-1, 1),
        terminals=np.zeros(len(data.drawn), np.float32),
        timeouts=data.last.astype(np.float32),
        action_space=ActionSpace.DISCRETE,
        action_size=2,
    )


def fit_draw_head(data: DrawTransitions, n_steps: int = 3000, seed: int = 0, **config: Any):
    """Fit :class:`~vanco_offline.algos.DiscreteVancoIQL` (two actions, :math:`\\gamma = 0`) to draws.

    ``config`` overrides :class:`~vanco_offline.algos.DiscreteVancoIQLConfig` options (a
    standardising observation scaler and ``gamma=0`` by default). Returns the fitted algorithm.
    """
    import d3rlpy

    from vanco_offline.algos.discrete_vanco_iql import DiscreteVancoIQLConfig

    if not (0 < data.drawn.mean() < 1):
        raise ValueError("fit_draw_head: the logs must hold both decisions (some draws, some not)")
    dataset = draw_dataset(data)
    d3rlpy.seed(seed)
    options = {
        "gamma": 0.0,
        "batch_size": 256,
        "observation_scaler": d3rlpy.preprocessing.StandardObservationScaler(),
        # Small networks train on one torch thread (seven features, two actions).
        **{
            f"{part}_encoder_factory": d3rlpy.models.VectorEncoderFactory(hidden_units=[64, 64])
            for part in ("actor", "critic", "value")
        },
        **config,
    }
    algo = DiscreteVancoIQLConfig(**options).create()
    algo.fit(
        dataset,
        n_steps=n_steps,
        n_steps_per_epoch=n_steps,
        show_progress=False,
        save_interval=10**9,
        experiment_name=None,
        with_timestamp=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
    )
    return algo


def draw_advantage(algo: Any, features: np.ndarray) -> np.ndarray:
    """:math:`Q(s, 1) - Q(s, 0)` of a fitted draw head for draw states ``features`` (N, 9)."""
    x = np.asarray(features, np.float32)
    n = len(x)
    q1 = algo.predict_value(x, np.ones(n, np.int64))
    q0 = algo.predict_value(x, np.zeros(n, np.int64))
    return np.asarray(q1 - q0, np.float64)


def choose_draw_cost(advantage: np.ndarray, drawn: np.ndarray) -> float:
    """The cost :math:`\\lambda` at which the head draws as often as the logs did.

    On validation decisions with advantages ``advantage`` (:func:`draw_advantage`) and logged
    draws ``drawn``, :math:`\\lambda` is the :math:`(1 - \\bar a)` quantile of the advantage,
    :math:`\\bar a` the logged draw rate: the head then draws at the logs' rate (levels per
    week) on those decisions, at the states where it learned a level is worth most.
    """
    advantage = np.asarray(advantage, np.float64)
    rate = float(np.mean(np.asarray(drawn, bool)))
    if advantage.size == 0 or not 0.0 < rate < 1.0:
        raise ValueError(
            f"choose_draw_cost: the validation decisions must hold both draws and no draws (rate {rate:.3f})"
        )
    return float(np.quantile(advantage, 1.0 - rate))


def draw_features_at(
    history: Any, dose_mg: float, model: GotiModel = GOTI_2018, interval_h: float = 12.0
) -> np.ndarray:
    """The draw state (:data:`DRAW_FEATURES`, shape (9,)) of the last row of one stay's ``history``.

    ``history`` holds the stay's rows in the data schema up to the current decision (its last
    row) and ``dose_mg`` is the dose given there; the features are those
    :func:`draw_transitions` computes for a logged decision (the same replay, the dose of the
    last row replaced by ``dose_mg``). Without ``time_h`` the rows are ``interval_h`` apart;
    without ``level_measured`` a new level is a measured value that differs from the previous.
    """
    import pandas as pd

    rows = _chart(history.assign(stay_id=0), interval_h).copy()
    rows["dose_mg"] = pd.to_numeric(rows["dose_mg"], errors="coerce").astype(np.float64)
    rows.loc[rows.index[-1], "dose_mg"] = float(dose_mg)
    rows[LEVEL_DRAWN] = False
    # A next row (nothing measured) closes the decision, as a logged stay's next row does.
    after = rows.iloc[[-1]].copy()
    after["time_h"] = float(rows["time_h"].iloc[-1]) + interval_h
    after["vanco_level"] = np.nan
    after["level_measured"] = False
    rows = pd.concat([rows, after], ignore_index=True)
    rows["level_measured"] = rows["level_measured"].astype(bool)
    out = _replay_group(rows, len(rows), model, interval_h, "correction")
    return out.features[-1]


class LearnedDraws(DrawRule):
    """Draw where the learned value of a level exceeds its cost: :math:`Q(s, 1) - Q(s, 0) > \\lambda`.

    Parameters
    ----------
    algo : a :func:`fit_draw_head` result (anything with d3rlpy's ``predict_value``)
    cost : :math:`\\lambda`, in the label's units (log AUC) per draw
    """

    needs_tracker = True

    def __init__(self, algo: Any, cost: float):
        if not (np.isfinite(cost)):
            raise ValueError(f"LearnedDraws: cost = {cost!r} must be a finite number")
        self.algo = algo
        self.cost = float(cost)
        self.name = f"learned (cost {cost:g})"

    def advantage(self, state: DrawState, tracker: ExposureTracker) -> np.ndarray:
        """:math:`Q(s, 1) - Q(s, 0)` of each patient's draw decision."""
        sd, _ = auc_uncertainty(tracker, state.dose_mg)
        return draw_advantage(self.algo, draw_features(state, sd))

    def probability(self, state: DrawState, tracker: ExposureTracker | None) -> np.ndarray:
        if tracker is None:
            raise ValueError("LearnedDraws needs a dosing policy with a Bayesian tracker (MIPD)")
        return (self.advantage(state, tracker) > self.cost).astype(np.float64)
