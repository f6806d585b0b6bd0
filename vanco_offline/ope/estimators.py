"""Importance sampling and doubly robust estimators on padded stays.

Every estimator is written as a function of per-stay *counts* ``c`` (shape (n,) or (B, n)):
``c = 1`` is the estimate itself and a multinomial draw of ``c`` is one bootstrap replicate
over stays, so the bootstrap is a few matrix products instead of B re-runs.

Notation (Precup et al. 2000; Jiang & Li 2016; Thomas & Brunskill 2016): per-decision ratio
``rho_t = pi(a_t | h_t) / mu(a_t | h_t)``, cumulative weight ``w_t = prod_{k<=t} rho_k``
(``w_{-1} = 1``), model ``q_t = Q(s_t, a_t)`` and ``v_t = sum_a pi(a | h_t) Q(s_t, a)``.
After a stay's last transition the state is absorbing: reward, ``q`` and ``v`` are 0 and
the weight is carried unchanged.

* ``pdis``  per-decision IS: ``mean_i sum_t gamma^t w_t r_t`` (unbiased, high variance).
* ``wis``   weighted (trajectory) IS: ``sum_i w_T G_i / sum_i w_T``.
* ``wpdis`` weighted per-decision IS: each step's weights normalised across stays.
* ``dr``    per-decision doubly robust with the model (unbiased if ``mu`` is right).
* ``wdr``   weighted doubly robust (Thomas & Brunskill 2016): ``dr`` with each step's
  weights normalised across stays; biased but consistent, and far lower variance.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "IS_ESTIMATORS",
    "MODEL_ESTIMATORS",
    "ImportanceWeights",
    "WeightDiagnostics",
    "estimate",
    "importance_weights",
]

IS_ESTIMATORS: tuple[str, ...] = ("pdis", "wis", "wpdis")
MODEL_ESTIMATORS: tuple[str, ...] = ("dr", "wdr")


@dataclasses.dataclass(frozen=True)
class WeightDiagnostics:
    """How much the importance weights can be trusted.

    Attributes
    ----------
    ess : float
        Kish effective sample size of the stay weights, ``(sum w)^2 / sum w^2``.
    ess_fraction : float
        ``ess / n``: near 1 when the evaluated policy is close to the behaviour policy.
    min_step_ess : float
        Smallest effective sample size over decision steps (the last steps usually).
    max_weight_share : float
        Largest single stay's share of the total weight (1 means one stay decides all).
    mean_weight : float
        Mean stay weight; its expectation is exactly 1 when ``mu`` is right, so a value far
        from 1 flags a wrong behaviour model or too little data.
    zero_weight_fraction : float
        Stays with weight 0 (the evaluated policy never takes one of their logged actions).
    fraction_clipped : float
        Share of logged (stay, step) weights that were clipped (0 without clipping).
    """

    ess: float
    ess_fraction: float
    min_step_ess: float
    max_weight_share: float
    mean_weight: float
    zero_weight_fraction: float
    fraction_clipped: float


@dataclasses.dataclass(frozen=True)
class ImportanceWeights:
    """Per-decision ratios and cumulative weights of ``n`` stays, shape (n, H)."""

    ratios: np.ndarray
    cumulative: np.ndarray
    clipped: np.ndarray
    mask: np.ndarray

    def diagnostics(self) -> WeightDiagnostics:
        final = self.cumulative[:, -1]
        total = float(final.sum())
        n = len(final)
        step_total = self.cumulative.sum(axis=0)
        step_square = np.square(self.cumulative).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            step_ess = np.where(step_square > 0, step_total**2 / step_square, 0.0)
            ess = total**2 / float(np.square(final).sum()) if total > 0 else 0.0
        return WeightDiagnostics(
            ess=float(ess),
            ess_fraction=float(ess / n),
            min_step_ess=float(step_ess.min()),
            max_weight_share=float(final.max() / total) if total > 0 else float("nan"),
            mean_weight=float(final.mean()),
            zero_weight_fraction=float(np.mean(final == 0.0)),
            fraction_clipped=float(self.clipped[self.mask].mean()),
        )


def importance_weights(
    target_prob: np.ndarray, behavior_prob: np.ndarray, mask: np.ndarray, clip: float | str | None = None
) -> ImportanceWeights:
    """Per-decision ratios ``pi/mu`` and their running products, optionally clipped.

    Parameters
    ----------
    target_prob, behavior_prob : ndarray of shape (n, H)
        Probability of each logged action under the evaluated and the behaviour policy.
        ``behavior_prob`` must be in (0, 1] on logged steps; ``target_prob`` in [0, 1].
    mask : ndarray of shape (n, H), bool
        Logged steps; elsewhere the ratio is 1.
    clip : float or "sqrt_n", optional
        Upper bound on the cumulative weight (bias for variance); the share clipped is
        reported in :class:`WeightDiagnostics`. ``"sqrt_n"`` is truncated importance
        sampling (Ionides 2008): at each step, weights above ``sqrt(n)`` times that step's
        mean weight are cut to it, a bound that needs no tuning and vanishes relative to
        the sum as ``n`` grows. The bound is computed once on the given stays (bootstrap
        resamples reuse it).
    """
    target_prob = np.asarray(target_prob, dtype=np.float64)
    behavior_prob = np.asarray(behavior_prob, dtype=np.float64)
    if target_prob.shape != mask.shape or behavior_prob.shape != mask.shape:
        raise ValueError(
            f"target_prob {target_prob.shape}, behavior_prob {behavior_prob.shape} and mask {mask.shape} "
            "must have the same shape (stays, steps)"
        )
    if isinstance(clip, str):
        if clip != "sqrt_n":
            raise ValueError(f"clip must be a positive weight bound, 'sqrt_n' or None, got {clip!r}")
    elif clip is not None and not clip > 0:
        raise ValueError(f"clip must be a positive weight bound, 'sqrt_n' or None, got {clip!r}")
    bad_mu = mask & ~((behavior_prob > 0) & (behavior_prob <= 1))
    if bad_mu.any():
        stay, step = np.argwhere(bad_mu)[0]
        raise ValueError(
            f"behavior_prob must be in (0, 1] on every logged step; stay {stay}, step {step} has "
            f"{behavior_prob[stay, step]!r}"
        )
    bad_pi = mask & ~((target_prob >= 0) & (target_prob <= 1 + 1e-9))
    if bad_pi.any():
        stay, step = np.argwhere(bad_pi)[0]
        raise ValueError(
            f"the evaluated policy's probability must be in [0, 1]; stay {stay}, step {step} has "
            f"{target_prob[stay, step]!r}"
        )
    ratios = np.where(mask, target_prob / np.where(mask, behavior_prob, 1.0), 1.0)
    cumulative = np.cumprod(ratios, axis=1)
    clipped = np.zeros_like(mask)
    if clip is not None:
        bound = np.sqrt(len(cumulative)) * cumulative.mean(axis=0) if clip == "sqrt_n" else clip
        clipped = mask & (cumulative > bound)
        cumulative = np.minimum(cumulative, bound)
    return ImportanceWeights(ratios=ratios, cumulative=cumulative, clipped=clipped, mask=mask)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # A step where every weight vanished carries no information: it contributes 0 and the
    # model term (for WDR) or nothing (for WPDIS) stands in; the diagnostics report it.
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def estimate(
    name: str,
    weights: ImportanceWeights,
    rewards: np.ndarray,
    gamma: float,
    counts: np.ndarray | None = None,
    q_logged: np.ndarray | None = None,
    v_states: np.ndarray | None = None,
) -> np.ndarray:
    """Value estimate of estimator ``name`` for one (``counts`` (n,)) or many ((B, n)) resamples.

    Parameters
    ----------
    name : {"pdis", "wis", "wpdis", "dr", "wdr"}
    weights : ImportanceWeights
    rewards : ndarray of shape (n, H)
        0 where padded.
    gamma : float
    counts : ndarray of shape (n,) or (B, n), optional
        How often each stay is counted (default once each).
    q_logged, v_states : ndarray of shape (n, H), optional
        The model's ``Q(s_t, a_t)`` and ``V(s_t)`` (0 where padded); needed by dr and wdr.

    Returns
    -------
    ndarray of shape () or (B,)
    """
    w = weights.cumulative
    n, horizon = w.shape
    c = np.ones(n) if counts is None else np.asarray(counts, dtype=np.float64)
    if c.shape[-1] != n:
        raise ValueError(f"counts has {c.shape[-1]} stays, the weights {n}")
    discount = gamma ** np.arange(horizon)
    total = c.sum(axis=-1)
    if name == "pdis":
        return c @ ((w * rewards) @ discount) / total
    if name == "wis":
        final = w[:, -1]
        num, den = c @ (final * (rewards @ discount)), c @ final
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    if name == "wpdis":
        return _ratio(c @ (w * rewards), c @ w) @ discount
    if name not in MODEL_ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose from {IS_ESTIMATORS + MODEL_ESTIMATORS}")
    if q_logged is None or v_states is None:
        raise ValueError(f"estimator {name!r} needs the model's q_logged and v_states (fit FQE first)")
    mask = weights.mask
    q = np.where(mask, q_logged, 0.0)
    v = np.where(mask, v_states, 0.0)
    previous = np.ones_like(w)
    previous[:, 1:] = w[:, :-1]
    if name == "dr":
        per_stay = (w * (rewards - q) + previous * v) @ discount
        return c @ per_stay / total
    # wdr: every term normalised by its own step's weights.
    current = _ratio(c @ (w * (rewards - q)), c @ w)
    carried = _ratio(c @ (previous * v), c @ previous)
    return (current + carried) @ discount
