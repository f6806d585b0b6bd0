"""Shared checks of parameter dataclasses (one place for the finite-and-positive rule)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any

import numpy as np

__all__ = ["check_positive"]


def check_positive(
    obj: Any,
    names: Iterable[str] | None = None,
    allow_zero: bool | Iterable[str] = False,
    allow_none: bool = False,
) -> None:
    """Raise ``ValueError`` naming ``Class.field`` unless each field is a finite number > 0.

    ``names`` defaults to every field of the dataclass ``obj``; ``allow_zero`` (True, or the
    names that may be 0) accepts 0; ``allow_none`` accepts ``None`` (an option left off).
    """
    cls = type(obj).__name__
    names = [f.name for f in fields(obj)] if names is None else list(names)
    zero_ok = set(names) if allow_zero is True else set(allow_zero or ())
    for name in names:
        value = getattr(obj, name)
        if value is None and allow_none:
            continue
        low_ok = value >= 0 if name in zero_ok else value > 0
        if not (isinstance(value, int | float | np.integer | np.floating) and np.isfinite(value) and low_ok):
            bound = ">= 0" if name in zero_ok else "> 0"
            raise ValueError(f"{cls}.{name} = {value!r} must be a finite number {bound}")
