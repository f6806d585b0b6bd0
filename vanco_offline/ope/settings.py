"""Settings of :func:`vanco_offline.ope.evaluate`, grouped by the step that reads them."""

from __future__ import annotations

import dataclasses
from typing import Literal

from vanco_offline.ope.behavior import BehaviorModel

__all__ = ["BehaviorSettings", "IntervalSettings", "SupportSettings"]


@dataclasses.dataclass(frozen=True)
class BehaviorSettings:
    """Where the behaviour probabilities of importance sampling come from.

    Attributes
    ----------
    source : {"auto", "logged", "model"}
        The logged ``behavior_prob`` ("auto" when present) or the fitted behaviour model.
    model : BehaviorModel, optional
        A model already fitted on the same data (reused across policies); else one is fitted
        (it also serves the support check).
    clip : float or "sqrt_n", optional
        Upper bound on cumulative importance weights; "sqrt_n" truncates each step's weights
        at sqrt(n) times their mean (:func:`~vanco_offline.ope.estimators.importance_weights`).
    soften : float
        The importance-weighted estimators evaluate a deterministic policy softened to
        ``(1 - soften) x policy + soften x uniform dose`` (the report labels those rows).
    """

    source: Literal["auto", "logged", "model"] = "auto"
    model: BehaviorModel | None = None
    clip: float | str | None = None
    soften: float = 0.1

    def __post_init__(self) -> None:
        if self.source not in ("auto", "logged", "model"):
            raise ValueError(f"behavior source must be 'auto', 'logged' or 'model', got {self.source!r}")
        if not 0.0 < self.soften < 1.0:
            raise ValueError(f"BehaviorSettings.soften must be in (0, 1), got {self.soften!r}")


@dataclasses.dataclass(frozen=True)
class IntervalSettings:
    """Percentile bootstrap over stays: ``n_bootstrap`` resamples, ``confidence`` level."""

    n_bootstrap: int = 1000
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.n_bootstrap < 1 or not 0.0 < self.confidence < 1.0:
            raise ValueError(
                f"IntervalSettings needs n_bootstrap >= 1 and 0 < confidence < 1, got "
                f"{self.n_bootstrap!r}, {self.confidence!r}"
            )


@dataclasses.dataclass(frozen=True)
class SupportSettings:
    """See :class:`~vanco_offline.ope.report.ActionSupport`."""

    threshold: float = 0.01
    warn_above: float = 0.1
