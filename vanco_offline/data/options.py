"""Conversion options: how to build observations and actions, and which repairs are allowed.

Every repair (carrying values forward, filling a never-measured level, clipping or rounding
doses) is off by default; turning it on is explicit and its effect is counted in the
:class:`~vanco_offline.data.report.ConversionReport`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from vanco_pk.pk import GotiModel
from vanco_pk.population import model_with
from vanco_pk.targets import AUC_REWARDS, REWARDS

from vanco_offline.data.schema import COVARIATES, FEATURES

__all__ = ["ActionKind", "CarryForward", "ConversionSettings"]

ActionKind = Literal["continuous", "discrete"]


@dataclasses.dataclass(frozen=True)
class CarryForward:
    """Impute a missing value with the last observed value of the same stay.

    Values are carried forward only within a stay, never across stays and never backward
    from the future, and only while the last observation is at most ``max_age`` old. Give
    exactly one of ``max_age_h`` and ``max_age_steps`` (``math.inf`` for no limit).

    Parameters
    ----------
    max_age_h : float, optional
        Maximum age in hours of the carried value; needs a ``time_h`` column.
    max_age_steps : int, optional
        Maximum age in decision steps: differences of the ``step`` column when the table
        has one, else of the row position within the stay.
    columns : sequence of str, optional
        Columns that may be carried forward; default every observation column.
    """

    max_age_h: float | None = None
    max_age_steps: float | None = None
    columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("max_age_h", "max_age_steps") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "CarryForward needs exactly one of max_age_h and max_age_steps "
                f"(got {given or 'neither'}); use math.inf for no age limit"
            )
        age = getattr(self, given[0])
        if not (isinstance(age, int | float) and age > 0 and not math.isnan(age)):
            raise ValueError(f"CarryForward {given[0]} must be a positive number of hours/steps, got {age!r}")
        if self.columns is not None:
            columns = (self.columns,) if isinstance(self.columns, str) else tuple(self.columns)
            unknown = [c for c in columns if c not in FEATURES + COVARIATES]
            if unknown:
                raise ValueError(
                    f"CarryForward columns {unknown} are not observation columns; "
                    f"choose from {FEATURES + COVARIATES}"
                )
            object.__setattr__(self, "columns", columns)

    @property
    def max_age(self) -> float:
        return float(self.max_age_h if self.max_age_h is not None else self.max_age_steps)  # type: ignore[arg-type]

    @property
    def unit(self) -> str:
        return "h" if self.max_age_h is not None else "steps"

    def describe(self) -> str:
        return f"carried forward within the stay, max age {self.max_age:g} {self.unit}"

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON values (``columns`` as a list); :meth:`from_dict` reads it back."""
        ages = ("max_age_h", "max_age_steps")
        out: dict[str, Any] = {name: getattr(self, name) for name in ages if getattr(self, name) is not None}
        if self.columns is not None:
            out["columns"] = list(self.columns)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CarryForward:
        """The rule written by :meth:`to_dict` (or any mapping of its fields)."""
        _check_keys(cls, data)
        columns = data.get("columns")
        return cls(**{**data, "columns": tuple(columns) if columns else None})


@dataclasses.dataclass(frozen=True)
class ConversionSettings:
    """How a dosing table becomes observations, actions and rewards: the one specification.

    The converter (:func:`~vanco_offline.data.convert_with`), a preset
    (``DataSettings.conversion_settings``) and a saved model (``model.json``'s ``conversion``, the
    :meth:`to_dict` form) all describe a conversion with this object. The observation is
    the seven schema features, then the level indicator, the covariates, the previous dose
    and the exposure features, each when asked (:func:`~vanco_offline.data.convert` documents
    every field).

    Attributes
    ----------
    action : {"continuous", "discrete"}
        Dose in mg, or the index of the 250 mg dose-grid level.
    reward : str, optional
        A name of :data:`vanco_pk.targets.REWARDS`; None uses the table's ``reward`` column.
    impute : CarryForward, optional
        The rule for missing observation values (none: a NaN is an error).
    fill_unmeasured_level, level_indicator, covariates, last_dose, pk_features : bool
        Observation options; ``covariates`` may also name a subset of the covariates.
    clip_doses, round_doses : bool
        Repairs of the doses, counted in the report.
    pk_model : mapping of str to float, optional
        The population PK model of the exposure tracker (the PK features and the ``exposure``
        reward): fields of :class:`vanco_pk.pk.GotiModel` that replace Goti 2018's
        (:func:`vanco_pk.population.model_with`), e.g. a model refitted to the hospital's own
        levels (:func:`vanco_offline.data.fit_local_model`). None: Goti 2018, the published
        prior of dosing software. Kept as sorted ``(field, value)`` pairs.
    """

    action: ActionKind = "continuous"
    reward: str | None = None
    impute: CarryForward | None = None
    fill_unmeasured_level: bool = False
    level_indicator: bool = False
    covariates: bool | tuple[str, ...] = False
    clip_doses: bool = False
    round_doses: bool = False
    last_dose: bool = False
    pk_features: bool = False
    pk_model: tuple[tuple[str, float], ...] | None = None

    def __post_init__(self) -> None:
        if self.action not in ("continuous", "discrete"):
            raise ValueError(f"action must be 'continuous' or 'discrete', got {self.action!r}")
        if self.reward is not None and self.reward not in REWARDS:
            raise ValueError(f"unknown reward {self.reward!r}; choose one of {sorted(REWARDS)}")
        if self.impute is not None and not isinstance(self.impute, CarryForward):
            raise ValueError(
                f"impute must be None or a CarryForward rule, got {type(self.impute).__name__}; "
                "e.g. impute=CarryForward(max_age_h=24)"
            )
        if self.level_indicator and not self.fill_unmeasured_level:
            raise ValueError(
                "level_indicator=True marks levels filled because they were never measured; "
                "it needs fill_unmeasured_level=True"
            )
        for name in ("last_dose", "pk_features"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.round_doses and self.action != "discrete":
            raise ValueError("round_doses=True rounds doses to the 250 mg grid; it needs action='discrete'")
        if not isinstance(self.covariates, bool):
            names = (self.covariates,) if isinstance(self.covariates, str) else tuple(self.covariates)
            unknown = [c for c in names if c not in COVARIATES]
            if unknown or not names:
                raise ValueError(
                    f"covariates must be True, False or a subset of {COVARIATES}; got {list(names)}"
                )
            object.__setattr__(self, "covariates", tuple(c for c in COVARIATES if c in names))
        if self.pk_model is not None:
            model = model_with(self.pk_model)  # ValueError naming an unknown field or a bad value
            pairs = tuple(sorted((k, float(getattr(model, k))) for k in dict(self.pk_model)))
            object.__setattr__(self, "pk_model", pairs or None)

    @property
    def population_model(self) -> GotiModel:
        """The exposure tracker's population model: Goti 2018 with ``pk_model``'s fields."""
        return model_with(self.pk_model)

    def keywords(self) -> dict[str, Any]:
        """The options that differ from the defaults, as keyword arguments of
        :func:`~vanco_offline.data.convert` (``action`` left out: it is positional there)."""
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name != "action" and getattr(self, field.name) != field.default
        }

    def to_dict(self) -> dict[str, Any]:
        """:meth:`keywords` as JSON values (``impute`` as a dict, ``covariates`` as a list), the
        form a saved model keeps; :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {}
        for name, value in self.keywords().items():
            if isinstance(value, CarryForward):
                value = value.to_dict()
            elif name == "pk_model":
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], action: ActionKind | None = None) -> ConversionSettings:
        """Options from :meth:`to_dict`'s form (or :meth:`keywords`'); ``action`` when it is not in ``data``.

        Raises
        ------
        ValueError
            An unknown key (naming it and the valid ones), or an invalid value.
        """
        _check_keys(cls, data)
        values = dict(data)
        if action is not None:
            values.setdefault("action", action)
        if isinstance(values.get("impute"), Mapping):
            values["impute"] = CarryForward.from_dict(values["impute"])
        if isinstance(values.get("covariates"), list):
            values["covariates"] = tuple(values["covariates"])
        return cls(**values)

    @property
    def needs_pk(self) -> bool:
        """Whether the conversion replays each stay through :class:`vanco_pk.exposure.ExposureTracker`
        (for the ``pk_features`` observation or the ``"exposure"`` reward)."""
        return self.pk_features or self.reward in AUC_REWARDS

    def covariate_columns(self, present: Sequence[str]) -> tuple[str, ...]:
        """The covariates to append to the observation, given the table's columns."""
        if self.covariates is False:
            return ()
        if self.covariates is True:
            chosen = tuple(c for c in COVARIATES if c in present)
            if not chosen:
                raise ValueError(
                    f"covariates=True but the table has none of the covariate columns {COVARIATES}"
                )
            return chosen
        missing = [c for c in self.covariates if c not in present]
        if missing:
            raise ValueError(f"covariates {missing} were requested but the table has no such columns")
        return tuple(self.covariates)


def _check_keys(cls: type, data: Mapping[str, Any]) -> None:
    names = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid fields: {names}")
