"""Linear fitted Q evaluation by backward induction, refitted on every bootstrap resample.

The estimand has a finite horizon ``H`` (the stay as recorded), so the policy's Q-function
can be fitted exactly as dynamic programming does it: one Q per decision step, from the
last step back,

.. math::

    Q_t(x, a) = \\phi(x, a)^\\top w_t, \\qquad
    w_t = \\arg\\min_w \\sum_i c_i \\big(r_{it} + \\gamma\\, \\bar\\phi_{i,t+1}^\\top w_{t+1}
          - \\phi(x_{it}, a_{it})^\\top w\\big)^2 + \\lambda \\lVert w \\rVert^2,

with :math:`\\bar\\phi_{i,t+1} = \\sum_a \\pi(a \\mid h_{i,t+1}) \\phi(x_{i,t+1}, a)` (0 after
a stay's last transition) and features

.. math::

    \\phi(x, a) = [1,\\ x,\\ a,\\ a^2,\\ a\\,x]

of the standardised FQE input ``x`` (observation, previous dose and change since the
previous step: :class:`~vanco_offline.ope.feed.FQEInputs`) and the dose ``a`` scaled to
[0, 1]. The ``a x`` and ``a^2`` terms let the best dose move with the state: with the PK
exposure features in the observation, ``-k (a - a^*(x))^2`` is in the span.

Because each step is a weighted ridge regression, a bootstrap resample of stays (counts
``c``) is refitted exactly and cheaply: the ``B`` resamples are solved together as batched
linear systems. The interval of :attr:`LinearFittedQ.replicates` therefore includes the
model's fitting error, which the fixed-model bootstrap of the neural FQE omits.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vanco_offline.ope.feed import FQEInputs
from vanco_offline.ope.trajectories import Trajectories

__all__ = ["LinearFQESettings", "LinearFittedQ", "fit_linear_fqe"]


@dataclasses.dataclass(frozen=True)
class LinearFQESettings:
    """Settings of the linear backward-induction FQE.

    Attributes
    ----------
    ridge : float
        L2 penalty :math:`\\lambda` per stay (the penalty is ``ridge * n_stays``) on the
        standardised features; the intercept is not penalised.
    history : int
        Steps of history in the input (:class:`~vanco_offline.ope.feed.FQEInputs`).
    chunk : int
        Bootstrap resamples solved at once (memory: ``chunk * n * d`` floats).
    """

    ridge: float = 1e-3
    history: int = 1
    chunk: int = 100

    def __post_init__(self) -> None:
        if not self.ridge > 0:
            raise ValueError(f"LinearFQESettings.ridge must be positive, got {self.ridge!r}")
        if self.history < 0 or self.chunk < 1:
            raise ValueError(
                f"LinearFQESettings needs history >= 0 and chunk >= 1, got {self.history!r}, {self.chunk!r}"
            )


@dataclasses.dataclass(frozen=True)
class LinearFittedQ:
    """The fit on the data and on each bootstrap resample.

    Attributes
    ----------
    q_logged, v_states : ndarray (n, H)
        ``Q_t(x, a_logged)`` and ``V_t = sum_a pi Q_t`` of the fit on all stays (0 where padded).
    replicate_q_logged, replicate_v_states : ndarray (B, n, H) or None
        The same for the model refitted on each resample (evaluated on every stay).
    counts : ndarray (B, n) or None
        The resamples.
    """

    q_logged: np.ndarray
    v_states: np.ndarray
    replicate_q_logged: np.ndarray | None
    replicate_v_states: np.ndarray | None
    counts: np.ndarray | None

    @property
    def value(self) -> float:
        """Mean ``V_0`` over the logged first states."""
        return float(self.v_states[:, 0].mean())

    @property
    def replicates(self) -> np.ndarray:
        """Each resample's estimate: its own model's mean ``V_0`` over its own stays, shape (B,)."""
        if self.counts is None or self.replicate_v_states is None:
            raise ValueError("fit_linear_fqe was called without bootstrap counts")
        v0 = self.replicate_v_states[:, :, 0]
        return (self.counts * v0).sum(axis=1) / self.counts.sum(axis=1)


def _features(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``[1, x, a, a^2, a x]`` for inputs x (..., d) and scaled doses a (...)."""
    a = a[..., None]
    ones = np.ones_like(a)
    return np.concatenate([ones, x, a, a * a, a * x], axis=-1)


def fit_linear_fqe(
    trajectories: Trajectories,
    target_pmf: np.ndarray,
    gamma: float,
    settings: LinearFQESettings = LinearFQESettings(),
    counts: np.ndarray | None = None,
) -> LinearFittedQ:
    """Fit the linear FQE on all stays and, with ``counts`` (B, n), on every resample.

    Parameters
    ----------
    trajectories : Trajectories
    target_pmf : ndarray (n, H, K)
        The evaluated policy's probability of each grid action at each logged step.
    gamma : float
    settings : LinearFQESettings
    counts : ndarray (B, n), optional
        Bootstrap resamples of stays (:func:`~vanco_offline.ope.bootstrap.bootstrap_counts`).
    """
    traj = trajectories
    n, horizon, k = target_pmf.shape
    if (n, horizon) != traj.mask.shape or k != traj.n_actions:
        raise ValueError(
            f"target_pmf has shape {target_pmf.shape}; expected "
            f"({traj.n_stays}, {traj.horizon}, {traj.n_actions})"
        )
    inputs = FQEInputs(history=settings.history)
    stay, step = np.indices((n, horizon))
    x = inputs.build(traj, stay.ravel(), step.ravel()).astype(np.float64)
    logged = traj.mask.ravel()
    mean, std = x[logged].mean(axis=0), x[logged].std(axis=0)
    x = ((x - mean) / np.where(std > 0, std, 1.0)).reshape(n, horizon, -1)
    grid = traj.action_values.astype(np.float64)
    scaled = (grid - grid[0]) / max(grid[-1] - grid[0], 1e-12)
    phi_logged = _features(x, scaled[traj.actions])  # (n, H, d)
    # E_pi phi(x, a) is linear in the policy's first two moments of a.
    m1 = target_pmf @ scaled
    m2 = target_pmf @ (scaled * scaled)
    ones = np.ones((n, horizon, 1))
    phi_policy = np.concatenate([ones, x, m1[..., None], m2[..., None], m1[..., None] * x], axis=-1)
    mask = traj.mask.astype(np.float64)
    d = phi_logged.shape[-1]
    penalty = np.full(d, settings.ridge * n)
    penalty[0] = 1e-8 * n

    def solve(c: np.ndarray) -> np.ndarray:
        """Weights (m, H, d) for count vectors c (m, n)."""
        m = c.shape[0]
        w = np.zeros((m, horizon, d))
        v_next = np.zeros((m, n))
        for t in range(horizon - 1, -1, -1):
            has_next = (traj.mask[:, t + 1] if t + 1 < horizon else np.zeros(n, bool)).astype(np.float64)
            y = traj.rewards[None, :, t] + gamma * has_next[None] * v_next  # (m, n)
            weight = c * mask[None, :, t]
            phi = phi_logged[:, t]  # (n, d)
            gram = np.matmul((weight[..., None] * phi[None]).transpose(0, 2, 1), phi) + np.diag(penalty)[None]
            rhs = (weight * y) @ phi
            w[:, t] = np.linalg.solve(gram, rhs[..., None])[..., 0]
            v_next = w[:, t] @ phi_policy[:, t].T
        return w

    def values(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.einsum("nhd,mhd->mnh", phi_logged, w) * mask[None]
        v = np.einsum("nhd,mhd->mnh", phi_policy, w) * mask[None]
        return q, v

    q, v = values(solve(np.ones((1, n))))
    rep_q = rep_v = None
    if counts is not None:
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 2 or counts.shape[1] != n:
            raise ValueError(f"counts must have shape (B, {n}), got {counts.shape}")
        parts = [values(solve(counts[i : i + settings.chunk])) for i in range(0, len(counts), settings.chunk)]
        rep_q = np.concatenate([p[0] for p in parts])
        rep_v = np.concatenate([p[1] for p in parts])
    return LinearFittedQ(
        q_logged=q[0], v_states=v[0], replicate_q_logged=rep_q, replicate_v_states=rep_v, counts=counts
    )
