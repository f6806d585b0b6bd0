"""Fitted Q Evaluation with d3rlpy's own ``FQE`` / ``DiscreteFQE``, for any dosing policy.

d3rlpy's FQE update asks the evaluated algorithm for the next action *inside* the update:
``next_actions = algo.impl.predict_best_action(batch.next_observations)`` on tensors that
FQE's own observation scaler has already transformed (``d3rlpy/ope/torch/fqe_impl.py``).
That cannot serve a history-dependent reference policy (the clinician adjusts its last
dose; MIPD fits every level so far): its action at a logged state depends on the stay's
history, which a state tensor does not carry.

The feed used here keeps d3rlpy's ``FQE`` and its update untouched and replaces only the
object it asks. Before each ``fqe.update(batch)`` this module draws the mini-batch itself,
looks up the evaluated policy's action distribution at each transition's next step
(precomputed by replaying the logged stay: :mod:`vanco_offline.ope.policy`), samples one
action per transition, and hands the batch's actions to a :class:`TargetActionFeed`, the
``algo`` that FQE was built with. The feed answers the single ``predict_best_action`` call
of that update with exactly those actions, after checking that the tensor it was given is
the batch's next observations; a call it does not expect is an error, never a silent
wrong answer. Sampling the next action from the policy's distribution gives an unbiased
regression target for the expected next value, so stochastic policies are evaluated as
they are, not by their most likely dose.

This also removes the scaler pitfall of DESIGN.md by construction: a d3rlpy algorithm's
actions are computed once by ``algo.predict`` on raw observations (which applies the
algorithm's own scalers), never on FQE-scaled tensors. FQE's action scaler is the
algorithm's (so Q sees doses as the algorithm did) and its observation scaler is the
algorithm's, extended by the extra inputs below (:func:`fqe_config`).

The estimand is the discounted return over the stay as recorded (see
:mod:`vanco_offline.ope.trajectories`), so FQE does not bootstrap past a stay's last
transition, and the observation is extended by the decision step (``time_feature``): the
same patient state is worth less with fewer steps left, which a time-free Q cannot say.
It is also extended by the previous dose and the change of the observation since the
previous step (``history``): the patient's clearance is hidden, and MIPD and the oracle
choose doses that depend on it, so a Q of the current observation alone credits their dose
with the outcome of an average patient (measured: MIPD 2.9 and the oracle 0.9 against
true values 4.9 and 6.0; with the history 4.5-5.1 and 3.1-3.6).

Three choices depart from d3rlpy's FQE defaults, each measured on the simulator's clinician
data (see ``docs/ope.md``): rewards scaled into the Huber loss's quadratic zone
(``reward_scale``), the dose as an ordinal input (``action_input``) and a lower learning
rate with a longer target period (3e-4, 300 steps): with d3rlpy's one-output-per-dose Q at
1e-3 the values of policies that leave the data's support diverged (-141 and -1553 for a
fixed 1 g regimen whose true value is -7.6).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from d3rlpy.models.encoders import VectorEncoderFactory
from d3rlpy.ope import FQE, DiscreteFQE, FQEConfig
from d3rlpy.optimizers import AdamFactory
from d3rlpy.preprocessing import (
    MinMaxActionScaler,
    MinMaxObservationScaler,
    MultiplyRewardScaler,
    ObservationScaler,
    StandardObservationScaler,
)
from vanco_pk.targets import DOSE_GRID_MG

from vanco_offline.ope.feed import FQEInputs, TargetActionFeed, TransitionTable, scaled_next
from vanco_offline.ope.threads import single_thread
from vanco_offline.ope.trajectories import Trajectories

__all__ = [
    "FQESettings",
    "FittedQ",
    "ModelValues",
    "TargetActionFeed",
    "fit_fqe",
    "fqe_config",
    "model_values",
]


@dataclasses.dataclass(frozen=True)
class FQESettings:
    """Hyperparameters of FQE training.

    Attributes
    ----------
    n_steps : int
        Gradient steps. The Q-function must propagate rewards over the whole horizon, one
        target-network period per step back, so ``n_steps`` should exceed
        ``horizon * target_update_interval`` several times.
    batch_size, learning_rate : int, float
        As in d3rlpy's ``FQEConfig``.
    target_update_interval : int, optional
        Updates between target-network copies; default ``n_steps // 20`` (at least 1), so
        that any ``n_steps`` gives the ~20 copies a 14-decision horizon needs (each copy
        propagates value one decision back).
    hidden_units : tuple of int
        Sizes of the Q-network's hidden layers.
    layer_norm : bool
        Layer normalisation in the Q-network (d3rlpy's ``use_layer_norm``).
    weight_decay : float
        Adam's L2 weight decay (d3rlpy's ``AdamFactory(weight_decay=...)``).
    time_feature : bool
        Append the decision step to the observation (recommended; see module docstring).
    action_input : {"auto", "ordinal", "categorical"}
        How Q takes the action. "categorical": d3rlpy's ``DiscreteFQE``, one output per
        action. "ordinal": d3rlpy's (continuous) ``FQE`` with the action as an input, so a
        dose rarely seen in the data borrows from its neighbours instead of keeping its
        initial output; on the simulator's clinician data it tracked the truth of policies
        that leave the data's support far better (fixed 1 g: -9.6 against a true -7.6, where
        the categorical Q gave -47 and diverged to -1553 with history features). "auto":
        ordinal for doses (a continuous dataset, or the 13-level dose grid), else categorical.
    history : int
        Append, for each of the last ``history`` steps, the logged dose and the change of
        each observation column since then (:class:`~vanco_offline.ope.feed.FQEInputs`).
    reward_scale : float, optional
        Rewards are multiplied by this inside FQE (d3rlpy's ``MultiplyRewardScaler``) and
        the Q-values divided by it again. d3rlpy's Q-function loss is a Huber loss with
        threshold 1: on TD errors larger than 1 it fits something between the mean and the
        median, and our rewards have rare large penalties (-5 for a creatinine jump), so
        unscaled FQE overestimates. Default: ``0.5 / max |reward|``, which keeps TD errors
        in the loss's quadratic (mean-fitting) zone.
    seed : int
        Seeds the network initialisation, the mini-batches and the sampled next actions.
    """

    n_steps: int = 6000
    batch_size: int = 256
    learning_rate: float = 3e-4
    target_update_interval: int | None = None
    hidden_units: tuple[int, ...] = (128, 128)
    layer_norm: bool = False
    weight_decay: float = 0.0
    time_feature: bool = True
    action_input: str = "auto"
    history: int = 1
    reward_scale: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target_update_interval is None:
            object.__setattr__(self, "target_update_interval", max(1, int(self.n_steps) // 20))
        for name in ("n_steps", "batch_size", "target_update_interval"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"FQESettings.{name} must be a positive integer, got {getattr(self, name)!r}"
                )
        if not self.learning_rate > 0:
            raise ValueError(f"FQESettings.learning_rate must be positive, got {self.learning_rate!r}")
        if self.action_input not in ("auto", "ordinal", "categorical"):
            raise ValueError(
                "FQESettings.action_input must be 'auto', 'ordinal' or 'categorical', "
                f"got {self.action_input!r}"
            )
        if self.reward_scale is not None and not self.reward_scale > 0:
            raise ValueError(f"FQESettings.reward_scale must be positive or None, got {self.reward_scale!r}")
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(f"FQESettings.hidden_units must be positive sizes, got {self.hidden_units!r}")


def fqe_config(
    algo: Any = None,
    *,
    continuous: bool,
    gamma: float,
    settings: FQESettings = FQESettings(),
    observation_scaler: ObservationScaler | None = None,
    action_grid: np.ndarray | None = None,
    reward_scale: float = 1.0,
) -> FQEConfig:
    """d3rlpy ``FQEConfig`` that carries the evaluated algorithm's scalers.

    Parameters
    ----------
    algo : d3rlpy algorithm, optional
        Its ``observation_scaler`` and ``action_scaler`` are used unless overridden.
    continuous : bool
        Whether actions are continuous doses (then an action scaler is always set: the
        algorithm's, else min-max over ``action_grid``).
    observation_scaler : ObservationScaler, optional
        Overrides the algorithm's (fit_fqe passes the one extended by FQE's extra inputs).
    reward_scale : float
        Multiplier of the rewards (see :class:`FQESettings`); 1 sets no reward scaler.
    """
    config = getattr(algo, "config", None)
    if observation_scaler is None and config is not None:
        observation_scaler = config.observation_scaler
    action_scaler = config.action_scaler if config is not None and continuous else None
    if continuous and action_scaler is None:
        grid = np.asarray(action_grid, dtype=np.float64)
        action_scaler = MinMaxActionScaler(minimum=grid[:1], maximum=grid[-1:])
    return FQEConfig(
        learning_rate=settings.learning_rate,
        optim_factory=AdamFactory(weight_decay=settings.weight_decay),
        encoder_factory=VectorEncoderFactory(
            hidden_units=list(settings.hidden_units), use_layer_norm=settings.layer_norm
        ),
        batch_size=settings.batch_size,
        gamma=gamma,
        n_critics=1,
        target_update_interval=settings.target_update_interval,
        observation_scaler=observation_scaler,
        action_scaler=action_scaler,
        reward_scaler=None if reward_scale == 1.0 else MultiplyRewardScaler(multiplier=reward_scale),
    )


@dataclasses.dataclass
class FittedQ:
    """A trained FQE model of ``Q^pi(s, t, a)`` for one evaluated policy.

    Attributes
    ----------
    fqe : d3rlpy.ope.FQE or d3rlpy.ope.DiscreteFQE
    action_values : ndarray of shape (K,)
        The action (dose in mg, or index) of each grid level, as FQE's Q takes it.
    inputs : FQEInputs
        How the Q-function's input is built from a logged step.
    reward_scale : float
        FQE learned ``reward_scale * Q``; :meth:`q_values` undoes it.
    losses : ndarray
        Mean TD loss over each window of 200 updates (a convergence trace).
    """

    fqe: FQE | DiscreteFQE
    action_values: np.ndarray
    inputs: FQEInputs
    reward_scale: float
    losses: np.ndarray

    def q_values(
        self, trajectories: Trajectories, stay: np.ndarray, step: np.ndarray, chunk: int = 65536
    ) -> np.ndarray:
        """``Q`` of every grid action at the logged (stay, step) cells, shape (m, K)."""
        x = self.inputs.build(trajectories, np.asarray(stay), np.asarray(step))
        m, k = len(x), len(self.action_values)
        continuous = isinstance(self.fqe, FQE)
        out = np.empty(m * k)
        xs = np.repeat(x, k, axis=0)
        actions = np.tile(self.action_values, m)
        with single_thread():
            for start in range(0, m * k, chunk):
                part = slice(start, start + chunk)
                action = actions[part].astype(np.float32).reshape(-1, 1) if continuous else actions[part]
                out[part] = self.fqe.predict_value(
                    xs[part], action.astype(np.float32) if continuous else action
                )
        return out.reshape(m, k) / self.reward_scale


def _extended_scaler(base: ObservationScaler | None, inputs: np.ndarray) -> ObservationScaler:
    """The algorithm's scaler extended by FQE's extra input columns, or a standard one fitted here."""
    if isinstance(base, StandardObservationScaler) and base.mean is not None and base.std is not None:
        extra = inputs[:, len(base.mean) :]
        return StandardObservationScaler(
            mean=np.append(base.mean, extra.mean(axis=0)),
            std=np.append(base.std, extra.std(axis=0)),
            eps=base.eps,
        )
    if isinstance(base, MinMaxObservationScaler) and base.minimum is not None and base.maximum is not None:
        extra = inputs[:, len(base.minimum) :]
        return MinMaxObservationScaler(
            minimum=np.append(base.minimum, extra.min(axis=0)),
            maximum=np.append(base.maximum, extra.max(axis=0)),
        )
    # No (or an unknown) scaler: standardise on the logged states, which is what the data
    # layer's fit_scalers gives the algorithms.
    return StandardObservationScaler(mean=inputs.mean(axis=0), std=inputs.std(axis=0))


def fit_fqe(
    trajectories: Trajectories,
    target_pmf: np.ndarray,
    gamma: float,
    settings: FQESettings = FQESettings(),
    *,
    algo: Any = None,
) -> FittedQ:
    """Train d3rlpy's FQE for the policy whose action distribution at each logged step is given.

    Parameters
    ----------
    trajectories : Trajectories
    target_pmf : ndarray of shape (n, H, K)
        The evaluated policy's probability of each grid action at each logged step (rows
        of padded steps are ignored).
    gamma : float
    settings : FQESettings
    algo : d3rlpy algorithm, optional
        The evaluated algorithm, for its scalers (:func:`fqe_config`).

    Returns
    -------
    FittedQ
    """
    traj = trajectories
    n, horizon, k = target_pmf.shape
    if (n, horizon) != traj.mask.shape or k != traj.n_actions:
        raise ValueError(
            f"target_pmf has shape {target_pmf.shape}; expected "
            f"({traj.n_stays}, {traj.horizon}, {traj.n_actions}) (stays, steps, actions)"
        )
    ordinal = settings.action_input == "ordinal" or (
        settings.action_input == "auto" and (traj.continuous or k == len(DOSE_GRID_MG))
    )
    if ordinal and not traj.continuous:
        # The grid index is proportional to the dose: the same ordinal input, in its own units.
        traj = dataclasses.replace(traj, raw_actions=traj.actions.astype(np.float64), continuous=True)
    inputs = FQEInputs(
        step_scale=float(max(horizon - 1, 1)) if settings.time_feature else None, history=settings.history
    )
    table = TransitionTable(traj, target_pmf, inputs)
    largest = float(np.abs(table.rewards).max())
    scale = settings.reward_scale or (0.5 / largest if largest > 0 else 1.0)
    base = getattr(getattr(algo, "config", None), "observation_scaler", None)
    scaler = _extended_scaler(base, table.observations)
    config = fqe_config(
        algo,
        continuous=traj.continuous,
        gamma=gamma,
        settings=settings,
        observation_scaler=scaler,
        action_grid=traj.action_values,
        reward_scale=scale,
    )
    feed = TargetActionFeed()
    torch.manual_seed(settings.seed)
    fqe: FQE | DiscreteFQE = (FQE if traj.continuous else DiscreteFQE)(algo=feed, config=config)  # type: ignore[arg-type]
    fqe.create_impl((table.observations.shape[1],), 1 if traj.continuous else k)
    rng = np.random.default_rng(settings.seed)
    losses: list[float] = []
    window: list[float] = []
    with single_thread():
        for _ in range(settings.n_steps):
            batch = table.sample(rng, settings.batch_size)
            feed.expect(*scaled_next(batch, config))
            window.append(fqe.update(batch)["loss"])
            if len(window) == 200:
                losses.append(float(np.mean(window)))
                window = []
    if window:
        losses.append(float(np.mean(window)))
    return FittedQ(
        fqe=fqe,
        action_values=traj.action_values.copy(),
        inputs=inputs,
        reward_scale=scale,
        losses=np.array(losses),
    )


class ModelValues:
    """FQE's ``Q(s_t, a)`` at every logged step, and what the estimators take from it."""

    def __init__(self, fitted: FittedQ, trajectories: Trajectories, pmf: np.ndarray):
        traj = trajectories
        stay, step = np.nonzero(traj.mask)
        q = np.zeros_like(pmf)
        q[stay, step] = fitted.q_values(traj, stay, step)
        self.fitted = fitted
        self.q_all = q
        self.q_logged = np.take_along_axis(q, traj.actions[..., None], axis=2)[..., 0]
        self.v_states = (q * pmf).sum(axis=2)

    @property
    def initial_values(self) -> np.ndarray:
        return self.v_states[:, 0]


def model_values(
    trajectories: Trajectories, pmf: np.ndarray, gamma: float, settings: FQESettings, algo: Any = None
) -> ModelValues:
    """Fit FQE for the policy ``pmf`` and evaluate its Q at every logged step."""
    return ModelValues(fit_fqe(trajectories, pmf, gamma, settings, algo=algo), trajectories, pmf)
