"""Floors: uniformly random doses, and a fixed dose at every decision (1 g q12h by default)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vanco_pk.policies.base import N_DOSES, DosingPolicy, grid_index

__all__ = ["FixedPolicy", "RandomPolicy"]


class RandomPolicy(DosingPolicy):
    """Each grid dose (0-3000 mg) with probability 1/13 at every decision."""

    name = "random"

    def _pmf(self, info: Mapping[str, Any]) -> np.ndarray:
        return np.full((self.n_patients, N_DOSES), 1.0 / N_DOSES)


class FixedPolicy(DosingPolicy):
    """The same grid dose at every decision (``dose_mg``, default 1000 mg: 1 g q12h)."""

    name = "fixed"
    deterministic = True

    def __init__(self, dose_mg: float = 1000.0, interval_h: float = 12.0):
        super().__init__(interval_h)
        self.dose_mg = float(dose_mg)
        self._index = int(grid_index(self.dose_mg, where="fixed: dose_mg"))

    def _pmf(self, info: Mapping[str, Any]) -> np.ndarray:
        out = np.zeros((self.n_patients, N_DOSES))
        out[:, self._index] = 1.0
        return out
