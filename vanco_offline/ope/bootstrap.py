"""Bootstrap over stays: resampling counts and percentile intervals.

Stays are the independent units (patients), so the bootstrap resamples whole stays, never
single transitions: transitions of a stay are correlated through the patient.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Interval", "bootstrap_counts", "percentile_interval"]


@dataclasses.dataclass(frozen=True)
class Interval:
    """A bootstrap percentile confidence interval."""

    low: float
    high: float
    confidence: float
    std_error: float
    n_bootstrap: int
    n_failed: int = 0  # replicates where the estimate was undefined (e.g. WIS with all weights 0)

    def covers(self, value: float) -> bool:
        return bool(self.low <= value <= self.high)


def bootstrap_counts(n_stays: int, n_bootstrap: int, seed: int | np.random.Generator) -> np.ndarray:
    """Multinomial resampling counts of shape (n_bootstrap, n_stays), each row summing to n_stays."""
    if n_stays < 1:
        raise ValueError("the bootstrap needs at least one stay")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng.multinomial(n_stays, np.full(n_stays, 1.0 / n_stays), size=n_bootstrap).astype(np.float64)


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> Interval:
    """Percentile interval of bootstrap replicates; NaN replicates are counted, not used."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    replicates = np.asarray(replicates, dtype=np.float64).reshape(-1)
    finite = replicates[np.isfinite(replicates)]
    failed = len(replicates) - len(finite)
    if len(finite) == 0:
        nan = float("nan")
        return Interval(nan, nan, confidence, nan, len(replicates), failed)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    std = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
    return Interval(float(low), float(high), confidence, std, len(replicates), failed)
