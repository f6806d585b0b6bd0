"""The conversion report: what went in, what came out, and why anything was left out."""

from __future__ import annotations

import dataclasses
from typing import Any

from vanco_offline.data.value_checks import fmt_stay

__all__ = ["ConversionReport", "Exclusion"]


@dataclasses.dataclass(frozen=True)
class Exclusion:
    """Data of one stay that did not become a d3rlpy transition, and why."""

    stay_id: Any
    rows: int
    transitions: int  # transitions the table implied for these rows (0 for a one-row stay)
    reason: str

    def to_dict(self) -> dict[str, Any]:
        stay = self.stay_id.item() if hasattr(self.stay_id, "item") else self.stay_id
        return {"stay_id": stay, "rows": self.rows, "transitions": self.transitions, "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """Counts and choices of one table -> MDPDataset conversion.

    ``transitions_in`` is what the table implies (rows - stays, plus one for every terminal
    stay whose last row carries a reward); ``transitions_out`` is d3rlpy's own
    ``transition_count`` of the result. They differ only by the exclusions listed.
    """

    rows: int
    stays: int
    time_column: str
    transitions_in: int
    transitions_out: int
    episodes: int
    terminal_stays: int
    timeout_stays: int
    observation_names: tuple[str, ...]
    action: str
    action_min: float
    action_max: float
    action_unit: str
    reward_source: str
    reward_summary: dict[str, float]
    imputation: str
    imputed: dict[str, int]
    level_filled: int
    exclusions: tuple[Exclusion, ...] = ()
    notes: tuple[str, ...] = ()
    ignored_columns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        out = dataclasses.asdict(self)
        out["exclusions"] = [e.to_dict() for e in self.exclusions]
        for key in ("observation_names", "notes", "ignored_columns"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversionReport:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["exclusions"] = tuple(Exclusion(**e) for e in data.get("exclusions", ()))
        for key in ("observation_names", "notes", "ignored_columns"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)

    def __str__(self) -> str:
        s = self.reward_summary
        reward = f"{self.reward_source}"
        if s.get("count"):
            reward += (
                f": n={s['count']:,.0f} mean {s['mean']:.3g} sd {s['std']:.3g} "
                f"min {s['min']:.3g} max {s['max']:.3g}, {100 * s['positive']:.0f}% > 0"
            )
        imputed = ", ".join(f"{k} {v:,}" for k, v in self.imputed.items()) or "none"
        if self.imputed:
            imputed += f" ({self.imputation})"
        if self.level_filled:
            imputed += f"; vanco_level never measured -> 0.0 mg/L: {self.level_filled:,}"
        lines = [
            ("rows in", f"{self.rows:,} in {self.stays:,} stays (time column '{self.time_column}')"),
            (
                "transitions",
                f"{self.transitions_in:,} in, {self.transitions_out:,} out in {self.episodes:,} episodes "
                f"({self.terminal_stays:,} terminal, {self.timeout_stays:,} timeout stays)",
            ),
            ("observation", f"{len(self.observation_names)}: {', '.join(self.observation_names)}"),
            (
                "action",
                f"{self.action}, {self.action_min:g}..{self.action_max:g} {self.action_unit}",
            ),
            ("reward", reward),
            ("imputed", imputed),
            ("exclusions", "none" if not self.exclusions else f"{len(self.exclusions):,} (listed below)"),
        ]
        if self.ignored_columns:
            lines.append(("ignored columns", ", ".join(map(str, self.ignored_columns))))
        width = max(len(k) for k, _ in lines)
        text = ["Conversion report"] + [f"  {k:<{width}}  {v}" for k, v in lines]
        text += [f"  note: {n}" for n in self.notes]
        shown = 20
        for e in self.exclusions[:shown]:
            counts = f"{e.rows} row(s), {e.transitions} transition(s)"
            text.append(f"  excluded stay {fmt_stay(e.stay_id)}: {counts}: {e.reason}")
        if len(self.exclusions) > shown:
            text.append(f"  ... and {len(self.exclusions) - shown} more exclusions (see to_dict())")
        return "\n".join(text)
