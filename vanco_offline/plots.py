"""Figures a pharmacist or an RL researcher looks at before trusting a dosing policy.

Each function writes one PNG and returns its path:

- :func:`plot_training_curves`: d3rlpy's logged losses and the training diagnostics per epoch;
- :func:`plot_dose_response`: the policy's dose as the trough level and the creatinine vary
  around a reference patient, before and after the clinical limits;
- :func:`plot_dose_histograms`: the policy's doses on the data's states beside the logged ones;
- :func:`plot_pk_profiles`: one simulated patient's concentration-time curve under each policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from vanco_pk import pk
from vanco_pk.targets import AUC24_TARGET, DOSE_GRID_MG, FEATURES, TROUGH_TARGET

from vanco_offline.algos.dosing import action_to_mg, predict_dose_mg
from vanco_offline.clinical import ClinicalLimits, apply_limits
from vanco_offline.trained import TrainedModel

__all__ = [
    "plot_dose_histograms",
    "plot_dose_response",
    "plot_pk_profiles",
    "plot_training_curves",
    "write_plots",
]

#: Metrics shown by plot_training_curves when logged, in this order.
CURVES = (
    "critic_loss",
    "actor_loss",
    "greedy_q",
    "mean_v",
    "mc_return",
    "relative_improvement",
    "action_saturation",
    "mean_reward",
)
_TROUGH_COLOUR = "#c8e6c9"


def plot_training_curves(log_dir: str | Path, out: str | Path) -> Path:
    """Per-epoch curves of every metric d3rlpy's FileAdapter logged in ``log_dir``."""
    log_dir = Path(log_dir)
    found = [name for name in CURVES if (log_dir / f"{name}.csv").is_file()]
    if not found:
        raise ValueError(f"{log_dir} holds no d3rlpy metric logs (expected files such as critic_loss.csv)")
    cols = min(4, len(found))
    rows = math.ceil(len(found) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, found, strict=False):
        log = pd.read_csv(log_dir / f"{name}.csv", header=None, names=["epoch", "step", "value"])
        ax.plot(log["step"], log["value"], marker="o", markersize=3)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("gradient step")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(found) :]:
        ax.axis("off")
    fig.suptitle(f"training curves: {log_dir.name}")
    return _save(fig, out)


def plot_dose_response(
    model: TrainedModel,
    out: str | Path,
    state: Mapping[str, float],
    covariates: Mapping[str, float],
    history: pd.DataFrame | None = None,
) -> Path:
    """The greedy dose (and after clinical limits) as the level and as the creatinine vary.

    ``history`` (the stay's rows ending with ``state``) is needed by a model whose observation
    holds the previous dose or the PK features: the swept value then replaces the last row's,
    as if that level or creatinine had been charted at this decision.
    """
    from vanco_offline.recommend import observation_from_state

    sweeps = {"vanco_level": np.linspace(0.0, 40.0, 41), "creatinine": np.linspace(0.5, 4.0, 36)}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (feature, values) in zip(axes, sweeps.items(), strict=True):
        raw, limited = [], []
        for value in values:
            point = {**covariates, **state, feature: float(value)}
            rows = None
            if history is not None:
                rows = history.copy()
                rows.loc[rows.index[-1], feature] = float(value)
            observation = observation_from_state(model, point, rows)
            dose = predict_dose_mg(model.algo, observation[None])[0]
            features = np.array([point[f] for f in FEATURES])
            raw.append(dose)
            limits = ClinicalLimits(interval_h=model.scope.interval_h)  # the model's own interval
            limited.append(
                apply_limits(dose, features, dict(covariates), first_dose=False, limits=limits).dose_mg
            )
        ax.plot(values, raw, label="policy's greedy dose", color="tab:blue")
        ax.plot(values, limited, label="after clinical limits", color="tab:red", linestyle="--")
        if feature == "vanco_level":
            ax.axvspan(*TROUGH_TARGET, color=_TROUGH_COLOUR, alpha=0.6, label="trough target")
        ax.set_xlabel(f"{feature.replace('_', ' ')} ({'mg/L' if feature == 'vanco_level' else 'mg/dL'})")
        ax.set_ylabel("dose per 12 h (mg)")
        ax.set_ylim(-50, 3100)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    described = ", ".join(
        f"{k} {v:g}" for k, v in covariates.items() if isinstance(v, int | float) and v == v
    )
    fig.suptitle(f"dose response around a reference patient ({described})", fontsize=10)
    return _save(fig, out)


def plot_dose_histograms(
    model: TrainedModel,
    observations: np.ndarray,
    logged_dose_mg: np.ndarray,
    out: str | Path,
    label: str = "logged (behaviour policy)",
) -> Path:
    """Distribution of the policy's greedy doses on the data's states beside the logged doses."""
    greedy = predict_dose_mg(model.algo, observations)
    bins = np.append(DOSE_GRID_MG - 125.0, DOSE_GRID_MG[-1] + 125.0)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.hist(np.asarray(logged_dose_mg), bins=bins, alpha=0.55, label=label, color="tab:gray")
    ax.hist(greedy, bins=bins, alpha=0.55, label="learned policy (greedy)", color="tab:blue")
    ax.set_xlabel("dose per 12 h (mg)")
    ax.set_ylabel("decisions")
    ax.set_title(f"doses on the same {len(greedy)} states")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, out)


def plot_pk_profiles(actors: Mapping[str, Any], out: str | Path, seed: int = 7, world: Any = None) -> Path:
    """Concentration-time curves of one simulated patient under each policy (same patient),
    in ``world`` (a :class:`vanco_pk.World`; default ``World()``).

    ``actors`` maps a label to ``(act, reset)`` as built by
    :func:`vanco_offline.rollout.algo_actor` / ``reference_actor``.
    """
    from vanco_pk.vector import VancoPKVectorEnv

    from vanco_offline.rollout import plain_info

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, height_ratios=(3, 1))
    for label, (act, reset) in actors.items():
        env = VancoPKVectorEnv(num_envs=1, world=world)
        obs, info = env.reset(seed=seed)
        reset(plain_info(info)["covariates"])
        times, conc, auc_t, auc = [], [], [], []
        for _ in range(env.world.n_steps):
            start = plain_info(info)
            dose = np.asarray(act(obs, start), dtype=np.float64).reshape(1)
            obs, _, _, _, info = env.step(dose.reshape(1, 1))
            after = plain_info(info)
            t, c = _interval_profile(
                start,
                float(after["dose_mg"][0]),
                float(after["infusion_h"][0]),
                env.world.decision_interval_h,
            )
            times.append(start["time_h"][0] + t)
            conc.append(c)
            auc_t.append(after["time_h"][0])
            auc.append(after["auc24"][0])
        env.close()
        line = top.plot(np.concatenate(times), np.concatenate(conc), label=label, linewidth=1.2)[0]
        bottom.plot(auc_t, auc, marker="o", markersize=3, color=line.get_color())
    top.axhspan(*TROUGH_TARGET, color=_TROUGH_COLOUR, alpha=0.6, label="trough target 10-20 mg/L")
    top.set_ylabel("serum vancomycin (mg/L)")
    top.legend(fontsize=8, loc="upper right")
    top.grid(alpha=0.3)
    bottom.axhspan(*AUC24_TARGET, color=_TROUGH_COLOUR, alpha=0.6)
    bottom.set_ylabel("true AUC24")
    bottom.set_xlabel("hours since admission")
    bottom.grid(alpha=0.3)
    top.set_title(f"one simulated patient (seed {seed}) under each policy")
    return _save(fig, out)


def _interval_profile(
    start: Mapping[str, Any], dose: float, infusion_h: float, interval_h: float, resolution_h: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Concentrations over one interval from the true state at its start, in small exact steps."""
    params = pk.PKParams(*(np.asarray(start[k], dtype=np.float64) for k in ("cl", "v1", "v2", "q")))
    central = np.asarray(start["central_mg"], dtype=np.float64)
    peripheral = np.asarray(start["peripheral_mg"], dtype=np.float64)
    rate = dose / infusion_h if dose > 0 else 0.0
    times, values = [0.0], [float(central[0] / params.v1[0])]
    t = 0.0
    while t < interval_h - 1e-9:
        h = min(resolution_h, interval_h - t)
        infusing = min(max(infusion_h - t, 0.0), h)
        state = pk.propagate(params, central, peripheral, rate * infusing, infusing if infusing > 0 else h, h)
        central, peripheral = state.central_mg, state.peripheral_mg
        t += h
        times.append(t)
        values.append(float(central[0] / params.v1[0]))
    return np.asarray(times), np.asarray(values)


def _save(fig: Any, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def dose_response_reference() -> tuple[dict[str, float], dict[str, float], pd.DataFrame]:
    """The reference patient of the dose-response plot: the 'normal kidney, in range' case,
    with its short chart (a loading and a maintenance dose before the level)."""
    from vanco_offline.recommend import CLINICAL_CASES

    case = CLINICAL_CASES["normal kidney, in range"]
    return dict(case["state"]), dict(case["covariates"]), case["history"].copy()


def write_plots(
    model: TrainedModel,
    out: str | Path,
    kinds: tuple[str, ...] | list[str] = ("curves", "dose-response", "histogram", "pk"),
    *,
    log_dir: str | Path | None = None,
    table: pd.DataFrame | None = None,
    patient_seed: int = 7,
) -> list[Path]:
    """Write the chosen figures for ``model`` into ``out``; ``table`` feeds the dose histogram.

    Without a table the histogram uses a small built-in synthetic cohort; the PK profiles
    compare the model with the clinician and MIPD policies on one simulated patient.
    """
    from vanco_offline.rollout import algo_actor, reference_actor

    out = Path(out)
    written = []
    if "curves" in kinds:
        if log_dir is None:
            raise ValueError("training curves need the model's log folder")
        written.append(plot_training_curves(log_dir, out / "training_curves.png"))
    if "dose-response" in kinds:
        state, covariates, history = dose_response_reference()
        written.append(plot_dose_response(model, out / "dose_response.png", state, covariates, history))
    if "histogram" in kinds:
        from vanco_offline.data import builtin_cohort

        label = "logged (behaviour policy)"
        if table is None:
            table, label = builtin_cohort(n_patients=100, seed=1), "logged (built-in clinician cohort)"
        episodes = model.convert(table).dataset.episodes
        observations = np.concatenate([ep.observations[: ep.transition_count] for ep in episodes])
        actions = np.concatenate([ep.actions[: ep.transition_count] for ep in episodes]).reshape(-1)
        logged = action_to_mg(actions, model.action == "discrete")
        written.append(plot_dose_histograms(model, observations, logged, out / "dose_histogram.png", label))
    if "pk" in kinds:
        actors = {
            "learned policy": algo_actor(
                model.algo, model.observation_names, pk_model=model.population_model
            ),
            "clinician": reference_actor("clinician", seed=patient_seed),
            "MIPD": reference_actor("mipd", seed=patient_seed),
        }
        written.append(plot_pk_profiles(actors, out / "pk_profiles.png", seed=patient_seed))
    return written
