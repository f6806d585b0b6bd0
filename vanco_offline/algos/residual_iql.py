"""ResidualVancoIQL: VancoIQL whose policy learns a correction to a pharmacological dose.

The observation already holds a dose that a pharmacokinetic model proposes (the
``default`` preset's ``pk_dose_auc500``: the dose that puts the Bayesian tracker's
predicted AUC24 at 500, :mod:`vanco_pk.exposure`). This algorithm centres the policy on
that dose and learns only what the model gets wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from d3rlpy.base import DeviceArg
from d3rlpy.dataset import is_tuple_shape
from d3rlpy.types import Shape

from vanco_offline.algos.torch.vanco_iql_impl import ResidualVancoIQLImpl
from vanco_offline.algos.vanco_iql import VancoIQL, VancoIQLConfig

__all__ = [
    "PRIOR_DOSE_FEATURE",
    "ResidualVancoIQL",
    "ResidualVancoIQLConfig",
    "check_prior_column",
    "prior_dose_affine",
]

#: The observation column a residual policy is centred on (``vanco_pk.exposure.PK_FEATURES``).
PRIOR_DOSE_FEATURE = "pk_dose_auc500"


@dataclasses.dataclass()
class ResidualVancoIQLConfig(VancoIQLConfig):
    r"""Implicit Q-learning with the policy centred on a prior dose read from the observation.

    Critics, value and advantage weights are VancoIQL's (Q and V are functions of the
    logged dose, so their meaning does not change). Only the policy's location does:

    .. math::

        \mu(s) = \text{clip}_{[-1,1]}\big(d(s) + \rho \tanh f_\theta(s)\big),

    where :math:`d(s)` is the prior dose (observation column ``prior_index``, in mg, taken
    back through the observation scaler and sent through the action scaler, clipped to
    the dose range) and :math:`\rho` the ``residual_scale``. The policy is fitted, as in
    IQL, by the advantage-weighted log-likelihood of the logged dose under
    :math:`\mathcal{N}(d(s) + \rho\tanh f_\theta(s), \sigma^2)`. At initialisation
    :math:`f_\theta \approx 0`, so an untrained policy doses the prior; the residual moves
    only as far as the advantage-weighted data pull it, and at most :math:`\rho` (in
    scaled units: 1 = half the dose range, 1,500 mg with the clinical scaler).

    Parameters
    ----------
    prior_index : int
        Element of the (unscaled) observation holding the prior dose in mg; negative counts
        from the end (``-1``: the last column, where the data layer puts
        ``pk_dose_auc500``); :func:`check_prior_column` checks it against the data's
        column names. An image or tuple observation is indexed as one flat vector per
        sample (a tuple's arrays flattened and joined in order).
    residual_scale : float
        The largest correction, in action-scaler units (> 0).
    q_candidates : int
        0 (default): the greedy dose is the policy's location. ``K >= 2``: the greedy dose
        is the one of ``K`` evenly spaced doses in :math:`d(s) \pm \rho` (clipped to the
        range) with the highest minimum-over-critics :math:`Q(s, a)` -- the critic decides
        within the band the prior allows, as BCQ decides among its candidates. Training
        is the same either way.

    Notes
    -----
    The other parameters are :class:`~vanco_offline.algos.VancoIQLConfig`'s.
    """

    prior_index: int = -1
    residual_scale: float = 1.0
    q_candidates: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.prior_index, int | np.integer)):
            raise ValueError(f"ResidualVancoIQLConfig: prior_index={self.prior_index!r} must be an integer")
        if not (
            isinstance(self.q_candidates, int | np.integer)
            and (self.q_candidates == 0 or self.q_candidates >= 2)
        ):
            raise ValueError(
                f"ResidualVancoIQLConfig: q_candidates={self.q_candidates!r} must be 0 (policy mean) or an "
                "integer >= 2"
            )
        if not self.residual_scale > 0:
            raise ValueError(f"ResidualVancoIQLConfig: residual_scale={self.residual_scale!r} must be > 0")

    def create(self, device: DeviceArg = False, enable_ddp: bool = False) -> ResidualVancoIQL:
        return ResidualVancoIQL(self, device, enable_ddp)

    @staticmethod
    def get_type() -> str:
        return "residual_vanco_iql"


def check_prior_column(config: object, observation_names: Sequence[str]) -> None:
    """ValueError unless a residual ``config``'s ``prior_index`` names :data:`PRIOR_DOSE_FEATURE`.

    Any other config passes: only a residual policy reads a column as a dose.
    """
    if not isinstance(config, ResidualVancoIQLConfig):
        return
    names = list(observation_names)
    index = config.prior_index
    found = names[index] if -len(names) <= index < len(names) else None
    if found != PRIOR_DOSE_FEATURE:
        raise ValueError(
            f"ResidualVancoIQL: prior_index={index} names {found!r}, not {PRIOR_DOSE_FEATURE!r}; convert the "
            f"data with pk_features=True (observation columns: {names})"
        )


def prior_dose_affine(config: VancoIQLConfig, observation_shape: Shape, index: int) -> tuple[float, float]:
    """``(slope, intercept)`` mapping the scaled observation element ``index`` to the scaled prior dose.

    ``index`` counts in the observation flattened per sample (a tuple's arrays joined in order).
    Both d3rlpy scalers the project uses (standard / min-max observations, min-max
    actions) are affine and element-wise, so the map is read off two points of each.
    """
    shapes = list(observation_shape) if is_tuple_shape(observation_shape) else [observation_shape]
    sizes = [int(np.prod(shape)) for shape in shapes]
    n_features = sum(sizes)
    if not -n_features <= index < n_features:
        raise ValueError(
            f"ResidualVancoIQLConfig: prior_index={index} is outside an observation of {n_features} elements"
        )
    index %= n_features
    obs_scaler, act_scaler = config.observation_scaler, config.action_scaler
    if obs_scaler is not None and not obs_scaler.built:
        raise ValueError("ResidualVancoIQL: the observation scaler is not fitted; fit it (fit_scalers) first")
    if act_scaler is not None and not act_scaler.built:
        raise ValueError("ResidualVancoIQL: the action scaler is not fitted; fit it (fit_scalers) first")
    # Two observations, all zeros and the unit vector at ``index``, in the observation's own shape.
    flat = np.zeros((2, n_features), dtype=np.float32)
    flat[1, index] = 1.0
    parts = np.split(flat, np.cumsum(sizes)[:-1], axis=1)
    points: Any = [part.reshape(2, *shape) for part, shape in zip(parts, shapes, strict=True)]
    if not is_tuple_shape(observation_shape):
        points = points[0]
    raw_points = obs_scaler.reverse_transform_numpy(points) if obs_scaler else points
    raw = _flat_numpy(raw_points)[:, index].astype(np.float64)
    mg_per_unit, mg_at_zero = raw[1] - raw[0], raw[0]
    doses = np.array([[0.0], [1.0]])
    scaled = act_scaler.transform_numpy(doses)[:, 0] if act_scaler else doses[:, 0]
    per_mg, at_zero_mg = scaled[1] - scaled[0], scaled[0]
    return float(per_mg * mg_per_unit), float(per_mg * mg_at_zero + at_zero_mg)


def _flat_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x.reshape(x.shape[0], -1)
    return np.concatenate([np.asarray(part).reshape(len(part), -1) for part in x], axis=1)


class ResidualVancoIQL(VancoIQL):
    _impl_class = ResidualVancoIQLImpl

    def inner_create_impl(self, observation_shape: Shape, action_size: int) -> None:
        super().inner_create_impl(observation_shape, action_size)
        if action_size != 1:
            raise ValueError(
                f"ResidualVancoIQL: one dose per decision expected, got action_size={action_size}"
            )
        cfg = self._config
        slope, intercept = prior_dose_affine(cfg, observation_shape, int(cfg.prior_index))
        # Clip the prior to the dose range before adding the residual (an AUC-500 dose may
        # exceed the maximum dose).
        bound = 1.0 if cfg.action_scaler is not None else np.inf
        impl = self._impl
        assert isinstance(impl, ResidualVancoIQLImpl)
        shapes = list(observation_shape) if is_tuple_shape(observation_shape) else [observation_shape]
        index = int(cfg.prior_index) % sum(int(np.prod(shape)) for shape in shapes)
        impl.set_prior(
            index, slope, intercept, -bound, bound, float(cfg.residual_scale), int(cfg.q_candidates)
        )
