"""Train a dosing policy from a preset: table -> conversion -> split -> d3rlpy ``fit`` -> model.

The same function serves ``vanco-offline train``, ``vanco-offline demo`` and the examples.
Without a table it trains on the built-in synthetic cohort (clinician dosing in the
``vanco_pk`` simulator, half of the troughs missing), so nothing private is needed.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import d3rlpy
import numpy as np
import pandas as pd
from d3rlpy.logging import FileAdapterFactory, NoopAdapterFactory

from vanco_offline.algos.evaluators import standard_evaluators
from vanco_offline.algos.residual_iql import check_prior_column
from vanco_offline.clinical import StateSupport
from vanco_offline.configs import Preset, build_algo
from vanco_offline.data import (
    ConversionReport,
    ConversionResult,
    ConversionSettings,
    builtin_cohort,
    convert_with,
    split_dataset,
)
from vanco_offline.data.cohort import BUILTIN_POLICY, BUILTIN_WORLD
from vanco_offline.data.pk_replay import PK_REPLAY_COLUMNS
from vanco_offline.data.schema import LEVEL_DRAWN
from vanco_offline.data.validation import check_table, normalised_table
from vanco_offline.safety import DosingScope
from vanco_offline.trained import TrainedModel, save_model

__all__ = [
    "DEFAULT_LOG_ROOT",
    "dosing_scope",
    "train",
]

DEFAULT_LOG_ROOT = Path("d3rlpy_logs")
#: The largest minibatch ``train`` accepts: a larger one is a typo, and would exhaust memory.
MAX_BATCH_SIZE = 65536
@dataclasses.dataclass
class TrainingResult:
    """What :func:`train` produced."""

    model: TrainedModel
    report: ConversionReport
    train: ConversionResult
    valid: ConversionResult
    log_dir: Path | None
    model_path: Path | None
    history: list[tuple[int, dict[str, float]]]


def train(
    preset: Preset,
    table: pd.DataFrame | None = None,
    *,
    data_source: str | None = None,
    n_steps: int | None = None,
    valid_fraction: float = 0.2,
    impute_max_age_h: float | None = None,
    experiment: str | None = None,
    log_root: str | Path | None = DEFAULT_LOG_ROOT,
    show_progress: bool = True,
    device: str | bool = False,
    draw_cost: float | None = None,
) -> TrainingResult:
    """Train ``preset`` on ``table`` (default: the built-in synthetic cohort).

    Parameters
    ----------
    preset : Preset
        From :func:`vanco_offline.configs.load_preset`.
    table : DataFrame, optional
        A dosing table in the schema of ``data/README.md``.
    n_steps : int, optional
        Override the preset's number of gradient steps.
    valid_fraction : float
        Share of stays held out for the diagnostics logged each epoch.
    experiment : str, optional
        Name of the run's folder under ``log_root`` (a plain name: letters, digits, ``.``,
        ``_``, ``-``); default ``<preset>_<timestamp>``. The folder is created atomically before
        training: a second run with the same name fails at once instead of sharing it.
    log_root : path or None
        Where d3rlpy's FileAdapter writes the logs, checkpoints and the final model (all inside
        the run's folder); None keeps everything in memory.
    device : str or bool
        Torch device to train on (d3rlpy's ``DeviceArg``: ``False``/``"cpu:0"``, ``"cuda:0"``, ...).
    draw_cost : float, optional
        A preset with ``data.draw_head`` (e.g. ``residual_draw``) also fits the draw head
        (:func:`vanco_offline.algos.sampling_iql.fit_draw_head`, the preset's number of steps
        and seed) on the training stays' ``level_drawn`` decisions; its per-draw cost
        :math:`\\lambda` (log AUC per draw) is ``draw_cost`` when given, else chosen on the
        validation stays: the head then draws as often as the logs did there
        (:func:`~vanco_offline.algos.sampling_iql.choose_draw_cost`). A cost without a draw
        head is an error.

    Raises
    ------
    KeyboardInterrupt
        Re-raised after an interruption, once the run's folder is removed; its message is
        "nothing saved in <folder>".
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be between 0 and 1, got {valid_fraction}")
    seed = preset.training.seed
    if table is None:
        table = builtin_cohort(seed=seed)
        data_source = data_source or (
            f"built-in synthetic cohort (500 stays, seed {seed}, {BUILTIN_POLICY} dosing, "
            f"level_missing_prob {BUILTIN_WORLD.level_missing_prob:g})"
        )
    conversion = preset.data.conversion_settings(impute_max_age_h)
    _check_columns_for_preset(preset, table)
    _check_draw_options(preset, table, draw_cost)
    # The table is checked once: the local refit's chart, the conversion and the draw head read
    # this check (the refit reads level_measured, as the PK replay does: needs_pk options).
    checked = check_table(table, conversion)
    local = None
    if preset.data.pk_model == "local":
        from vanco_pk.population import model_values

        from vanco_offline.data.pk_replay import chart_of, fit_local_model

        chart = chart_of(checked, conversion.impute) if conversion.needs_pk else table
        local = fit_local_model(chart, impute=conversion.impute)
        conversion = dataclasses.replace(conversion, pk_model=model_values(local.model))
    converted = convert_with(checked, conversion)
    scope = dosing_scope(table, converted.observation_names)
    train_part, valid_part = split_dataset(converted, (1.0 - valid_fraction, valid_fraction), seed=seed)
    if not train_part.dataset.episodes or not valid_part.dataset.episodes:
        raise ValueError(
            f"{converted.report.stays} stays are too few to hold out {valid_fraction:.0%} for validation"
        )
    steps = n_steps if n_steps is not None else preset.training.n_steps
    per_epoch = min(preset.training.n_steps_per_epoch, steps)
    if steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {steps}")
    draw_head = None
    if preset.data.draw_head:
        prior = local.model if local is not None else conversion.population_model
        draw_head = fit_draw_advice(
            normalised_table(table, checked, conversion),
            prior,
            scope.interval_h,
            train_part.stay_ids,
            valid_part.stay_ids,
            steps,
            seed,
            draw_cost,
        )

    d3rlpy.seed(seed)
    algo = build_algo(preset, train_part.dataset, device=device)
    batch = int(algo.config.batch_size)
    if batch > MAX_BATCH_SIZE:
        raise ValueError(
            f"{preset.source}: config.batch_size {batch} is above {MAX_BATCH_SIZE} transitions per gradient "
            f"step (the training data has {train_part.dataset.transition_count}); give a minibatch size"
        )
    check_prior_column(algo.config, converted.observation_names)
    log_dir = None
    if log_root is None:
        logger: Any = NoopAdapterFactory()
    else:
        default = f"{preset.name}_{datetime.now().strftime('%Y%m%d%H%M%S')}"
        name = default if experiment is None else experiment
        log_dir = make_run_folder(log_root, name)
        logger = FileAdapterFactory(root_dir=str(log_root))
    try:
        return _fit_and_save(
            algo,
            preset,
            converted,
            train_part,
            valid_part,
            conversion,
            data_source,
            steps,
            per_epoch,
            log_dir,
            logger,
            show_progress,
            scope,
            local,
            draw_head,
        )
    except BaseException as exc:
        if log_dir is not None:
            shutil.rmtree(log_dir, ignore_errors=True)  # ours: created above, for this run alone
        if isinstance(exc, KeyboardInterrupt):
            where = f" in {log_dir}" if log_dir is not None else ""
            raise type(exc)(f"nothing saved{where}") from None  # Ctrl-C or SIGTERM, as it came
        raise


def dosing_scope(table: pd.DataFrame, observation_names: list[str]) -> DosingScope:
    """The dosing interval, input units and covariate ranges of a (validated) training table."""
    covariates = {c: table[c].to_numpy(np.float64) for c in ("weight_kg", "age", "height_cm") if c in table}
    time = table["time_h"].to_numpy(np.float64) if "time_h" in table else None
    names = [*observation_names, *(c for c in covariates if c not in observation_names)]
    return DosingScope.fit(table["stay_id"].to_numpy(), time, covariates, names)


#: An experiment name: a plain folder name, never a path.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def make_run_folder(log_root: str | Path, name: str) -> Path:
    """Create ``log_root/name`` atomically (ValueError if ``name`` is not plain or the folder exists)."""
    if not _PLAIN_NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            f"experiment name {name!r} must be a plain folder name (letters, digits, '.', '_', '-'; "
            "no '/', '..' or absolute path); choose where it goes with --log-dir"
        )
    root = Path(log_root)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / name
    try:
        folder.mkdir()
    except FileExistsError:
        raise ValueError(
            f"experiment folder {folder} already exists; choose another --experiment name"
        ) from None
    return folder


def _fit_and_save(
    algo: Any,
    preset: Preset,
    converted: ConversionResult,
    train_part: ConversionResult,
    valid_part: ConversionResult,
    conversion: ConversionSettings,
    data_source: str | None,
    steps: int,
    per_epoch: int,
    log_dir: Path | None,
    logger: Any,
    show_progress: bool,
    scope: DosingScope,
    local: Any = None,
    draw_head: tuple[Any, dict[str, Any]] | None = None,
) -> TrainingResult:
    seed = preset.training.seed
    history = algo.fit(
        train_part.dataset,
        n_steps=steps,
        n_steps_per_epoch=per_epoch,
        experiment_name=log_dir.name if log_dir else "in-memory",
        with_timestamp=False,
        logger_adapter=logger,
        show_progress=show_progress,
        save_interval=max(1, steps // per_epoch),
        evaluators=standard_evaluators(valid_part.dataset.episodes),
    )
    observations = np.concatenate([ep.observations for ep in train_part.dataset.episodes])
    model = TrainedModel(
        algo=algo,
        observation_names=list(converted.observation_names),
        action=preset.data.action,
        conversion=conversion,
        support=StateSupport.fit(observations, list(converted.observation_names)),
        preset={"name": preset.name, "source": preset.source, **dataclasses.asdict(preset)},
        data={
            "source": data_source or "a table given in memory",
            "rows": converted.report.rows,
            "stays": converted.report.stays,
            "transitions": converted.report.transitions_out,
            "train_stays": len(train_part.stay_ids),
            "valid_stays": len(valid_part.stay_ids),
            **(
                {}
                if local is None
                else {
                    "pk_model_fit": {"patients": local.patients, "levels": local.levels, "start": "Goti 2018"}
                }
            ),
        },
        training={
            "n_steps": steps,
            "seed": seed,
            "final_metrics": history[-1][1] if history else {},
            **({} if draw_head is None else {"draw_head": draw_head[1]}),
        },
        scope=scope,
        draw_head=None if draw_head is None else draw_head[0],
    )
    from vanco_offline.export import module_tensors

    if not all(np.isfinite(t).all() for t in module_tensors(algo).values()):
        raise ValueError(
            "training diverged: the networks' weights are NaN or infinite (check the learning rates and "
            "the reward scale); nothing was saved"
        )
    model_path = save_model(model, log_dir) if log_dir is not None else None
    return TrainingResult(model, converted.report, train_part, valid_part, log_dir, model_path, history)


def _check_draw_options(preset: Preset, table: pd.DataFrame, draw_cost: float | None) -> None:
    """A draw head needs the ``level_drawn`` column; a draw cost needs a draw head."""
    if draw_cost is not None:
        if not preset.data.draw_head:
            raise ValueError(
                f"--draw-cost is the cost of a level for the draw head, which preset {preset.name!r} does "
                "not train; use --config residual_draw (or a preset with data.draw_head: true)"
            )
        if isinstance(draw_cost, bool) or not np.isfinite(draw_cost):
            raise ValueError(f"--draw-cost must be a finite number (log AUC per draw), got {draw_cost!r}")
    if preset.data.draw_head and LEVEL_DRAWN not in table.columns:
        raise ValueError(
            f"preset {preset.name!r} learns when to draw a level from the table's '{LEVEL_DRAWN}' column "
            "(1 where a level was ordered at the end of the row's interval; data/README.md), which this "
            "table lacks; train --config residual for the dose alone"
        )


def fit_draw_advice(
    table: pd.DataFrame,
    prior: Any,
    interval_h: float,
    train_stays: Any,
    valid_stays: Any,
    steps: int,
    seed: int,
    draw_cost: float | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The draw head of a ``data.draw_head`` preset (:func:`train`'s ``draw_cost``) and its record.

    ``table`` is the training table as :func:`train` checked it
    (:func:`~vanco_offline.data.validation.normalised_table`: sex as 0/1, doses as converted).

    Fits :func:`~vanco_offline.algos.sampling_iql.fit_draw_head` on the training stays'
    decisions (replayed on ``prior``), chooses the cost on the validation stays (or takes
    ``draw_cost``) and returns the code-free head (:class:`vanco_offline.bundle.DrawHead`) with
    what ``model.json`` records of it.
    """
    from vanco_offline.algos.sampling_iql import (
        choose_draw_cost,
        draw_advantage,
        draw_transitions,
        fit_draw_head,
    )
    from vanco_offline.export import draw_head_bundle

    data = draw_transitions(table, prior, interval_h=interval_h)
    in_train = np.isin(data.stay, np.asarray(train_stays, dtype=object).astype(data.stay.dtype))
    in_valid = np.isin(data.stay, np.asarray(valid_stays, dtype=object).astype(data.stay.dtype))
    train_data = type(data)(*(getattr(data, f.name)[in_train] for f in dataclasses.fields(data)))
    if not 0 < train_data.drawn.mean() < 1:
        raise ValueError(
            f"'{LEVEL_DRAWN}' must hold both decisions in the training stays (levels ordered and not) "
            "for the draw head to learn what a level is worth"
        )
    algo = fit_draw_head(train_data, n_steps=steps, seed=seed)
    advantage = draw_advantage(algo, data.features[in_valid])
    logged = data.drawn[in_valid]
    if draw_cost is None:
        cost = choose_draw_cost(advantage, logged)
        rule = "chosen so that it draws as often as the logs on the validation stays"
    else:
        cost = float(draw_cost)
        rule = "given with --draw-cost"
    per_week = 168.0 / interval_h
    record = {
        "cost": cost,
        "cost_rule": rule,
        "label": "correction",
        "n_steps": steps,
        "train_decisions": int(in_train.sum()),
        "train_draws": int(train_data.drawn.sum()),
        "valid_logged_per_week": float(logged.mean() * per_week),
        "valid_head_per_week": float((advantage > cost).mean() * per_week),
    }
    head = draw_head_bundle(algo, cost, cost_rule=rule, probe=data.features[in_valid][:256], info=record)
    return head, record


def _check_columns_for_preset(preset: Preset, table: pd.DataFrame) -> None:
    """Name the columns a preset's PK replay needs that the table lacks, and the preset that needs none."""
    if not (preset.data.pk_features or preset.data.reward == "exposure"):
        return
    missing = [c for c in PK_REPLAY_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"preset {preset.name!r} replays each stay through the population PK model (its PK features "
            f"and exposure reward), which needs the column(s) {missing} (data/README.md, Observation "
            "options); add them, or train on the seven features alone with --config seven_features"
        )
