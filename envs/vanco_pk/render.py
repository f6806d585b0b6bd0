"""Rendering of one patient's episode: a text chart (``"ansi"``), the concentration curve (``"rgb_array"``).

:class:`EpisodeTrace` records, at each decision, what the simulator holds then (time, true
drug amounts and PK parameters, the chart's level, creatinine, true trough and AUC24) and
the dose given. The curve is rebuilt at render time from those records with the same
closed-form two-compartment solution the simulator steps with, so recording costs a few
floats per step and nothing is drawn unless ``render()`` is called.

``"rgb_array"`` needs matplotlib (``pip install 'vanco-pk[render]'``); it draws on an Agg
canvas of its own (pyplot's backend is left alone) and never opens a window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vanco_pk.pk import _free_decay, _infusing
from vanco_pk.pk_model import PKParams, infusion_duration_h
from vanco_pk.targets import TROUGH_TARGET

__all__ = ["RENDER_MODES", "EpisodeTrace"]

RENDER_MODES = ("ansi", "rgb_array")


@dataclass(frozen=True)
class _Decision:
    time_h: float
    central_mg: float
    peripheral_mg: float
    cl: float
    v1: float
    v2: float
    q: float
    dose_mg: float
    level: float  # the chart's level at this decision (mg/L; NaN while never measured)
    level_measured: bool  # a level was drawn just before this decision
    creatinine: float
    trough: float  # true concentration now (the end of the previous interval), mg/L
    auc24: float  # true AUC over the last 24 h, mg*h/L


def _snapshot(sim, dose_mg: float) -> _Decision:
    params = sim.pk_params()
    measured = bool(sim.level_measured[0])
    level = float(sim.obs[0, 0]) if (measured or bool(sim.ever_dosed[0])) else float("nan")
    return _Decision(
        time_h=float(sim.time_h[0]),
        central_mg=float(sim.a1[0]),
        peripheral_mg=float(sim.a2[0]),
        cl=float(np.ravel(params.cl)[0]),
        v1=float(np.ravel(params.v1)[0]),
        v2=float(np.ravel(params.v2)[0]),
        q=float(np.ravel(params.q)[0]),
        dose_mg=float(dose_mg),
        level=level,
        level_measured=measured,
        creatinine=float(sim.obs[0, 1]),
        trough=float(sim.a1[0] / sim.v1[0]),
        auc24=float(sim.auc24[0]),
    )


class EpisodeTrace:
    """What a one-patient environment renders: the decisions of the episode so far.

    Parameters
    ----------
    interval_h : hours between decisions.
    points_per_interval : samples of the concentration curve per interval.
    """

    def __init__(self, interval_h: float, points_per_interval: int = 48):
        self.interval_h = float(interval_h)
        self.points_per_interval = int(points_per_interval)
        self.decisions: list[_Decision] = []
        self._now: _Decision | None = None

    def reset(self, sim) -> None:
        """Start a new episode at the simulator's current (drug-naive) state."""
        self.decisions = []
        self._now = _snapshot(sim, 0.0)

    def record(self, sim, dose_mg: float) -> None:
        """Record the decision about to be simulated: ``dose_mg`` given at the simulator's current state."""
        self.decisions.append(_snapshot(sim, dose_mg))

    def observe(self, sim) -> None:
        """Record the state after a step (the next decision's chart)."""
        self._now = _snapshot(sim, 0.0)

    # --- the curve ---------------------------------------------------------------------------

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Times (h) and true central concentrations (mg/L) over the episode so far."""
        times, conc = [np.zeros(1)], [np.zeros(1)]
        for d in self.decisions:
            params = PKParams(np.float64(d.cl), np.float64(d.v1), np.float64(d.v2), np.float64(d.q))
            k12, k21, alpha, beta = params.modes()
            t_inf = float(infusion_duration_h(d.dose_mg))
            s = np.linspace(0.0, self.interval_h, self.points_per_interval + 1)[1:]
            rate = d.dose_mg / t_inf
            start = (k12, k21, alpha, beta, d.central_mg, d.peripheral_mg, rate)
            a1_inf, _, _ = _infusing(*start, np.minimum(s, t_inf))
            e1, e2, _ = _infusing(*start, t_inf)
            a1_free, _, _ = _free_decay(k12, k21, alpha, beta, e1, e2, np.maximum(s - t_inf, 0.0))
            times.append(d.time_h + s)
            conc.append(np.where(s <= t_inf, a1_inf, a1_free) / d.v1)
        return np.concatenate(times), np.concatenate(conc)

    # --- outputs -----------------------------------------------------------------------------

    def ansi(self) -> str:
        """One line per decision so far, then the current state."""
        header = (
            f"{'time_h':>7} {'level':>7} {'creat':>6} {'trough*':>8} {'AUC24*':>7} {'dose_mg':>8}\n"
            f"{'(h)':>7} {'(mg/L)':>7} {'(mg/dL)':>6} {'(mg/L)':>8} {'(mg*h/L)':>7} {'(mg)':>8}"
        )
        rows = [header]
        states = [*self.decisions, *([self._now] if self._now is not None else [])]
        for i, d in enumerate(states):
            level = "-" if np.isnan(d.level) else f"{d.level:.1f}{'m' if d.level_measured else ' '}"
            dose = f"{d.dose_mg:.0f}" if i < len(self.decisions) else "?"
            rows.append(
                f"{d.time_h:7.0f} {level:>7} {d.creatinine:6.2f} {d.trough:8.1f} {d.auc24:7.0f} {dose:>8}"
            )
        rows.append("m: level drawn at this decision; *: the simulator's truth, not on the chart")
        return "\n".join(rows) + "\n"

    def rgb_array(self, width_px: int = 640, height_px: int = 360) -> np.ndarray:
        """The concentration-time curve so far as an (H, W, 3) uint8 image."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as exc:
            from gymnasium.error import DependencyNotInstalled

            raise DependencyNotInstalled(
                'render_mode="rgb_array" needs matplotlib: pip install "vanco-pk[render]"'
            ) from exc
        dpi = 100
        fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        t, c = self.curve()
        ax.axhspan(*TROUGH_TARGET, color="tab:green", alpha=0.12, label="trough target")
        ax.plot(t, c, color="tab:blue", lw=1.5, label="true concentration")
        drawn = [d for d in [*self.decisions, self._now] if d is not None and d.level_measured]
        if drawn:
            ax.plot([d.time_h for d in drawn], [d.level for d in drawn], "o", color="tab:red", ms=4,
                    label="measured level")
        ax.set_xlim(0.0, max(24.0, float(t[-1])))
        ax.set_ylim(bottom=0.0)
        ax.set_xlabel("time since start (h)")
        ax.set_ylabel("vancomycin (mg/L)")
        ax.legend(loc="upper left", fontsize=7)
        fig.tight_layout()
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
