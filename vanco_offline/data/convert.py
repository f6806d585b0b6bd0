"""Dosing table -> d3rlpy ``MDPDataset``, with a report of everything that happened.

Row ``t`` of a stay holds the state ``s_t`` and the dose ``a_t`` decided for the following
interval; the next row holds ``s_{t+1}``. So a stay of ``n`` rows gives ``n - 1``
transitions, its last row being the final observation:

* timeout stay (no ``done``, or ``done`` False on the last row): a d3rlpy episode with all
  ``n`` observations and ``terminated=False``; d3rlpy counts ``n - 1`` transitions and the
  last action/reward slot is unused (it keeps the last row's logged dose; reward 0);
* terminal stay (``done`` True on the last row): a d3rlpy episode of the first ``n - 1``
  rows with ``terminated=True``; its last reward was computed with the last row's state;
* terminal stay whose last row has a ``reward``: that reward is a step into the absorbing
  state, so the episode keeps all ``n`` rows (``n`` transitions).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
from d3rlpy.dataset import Episode, MDPDataset
from vanco_pk.targets import AUC_REWARDS, DOSE_STEP_MG, dose_to_grid_index, get_reward_function

from vanco_offline.data.episodes import ConversionResult, make_dataset
from vanco_offline.data.observations import Observations, build_observations
from vanco_offline.data.options import ActionKind, CarryForward, ConversionSettings
from vanco_offline.data.report import ConversionReport, Exclusion
from vanco_offline.data.schema import BEHAVIOR_PROB, DONE, DOSE, DOSE_GRID_MG, REWARD
from vanco_offline.data.validation import CheckedTable, check_table
from vanco_offline.data.value_checks import offenders, raise_problems

__all__ = ["convert", "convert_with", "observation_table"]

# Doses within this distance of a grid level count as on the grid (float noise in CSVs).
_GRID_TOLERANCE_MG = 1e-6


def convert(
    table: pd.DataFrame,
    action: ActionKind = "continuous",
    *,
    reward: str | None = None,
    impute: CarryForward | None = None,
    fill_unmeasured_level: bool = False,
    level_indicator: bool = False,
    covariates: bool | tuple[str, ...] = False,
    clip_doses: bool = False,
    round_doses: bool = False,
    last_dose: bool = False,
    pk_features: bool = False,
    pk_model: Any = None,
) -> ConversionResult:
    """Validate a dosing table and convert it to a d3rlpy dataset with a conversion report.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per decision step; schema in ``data/README.md``.
    action : {"continuous", "discrete"}
        Dose in mg (float32, shape (N, 1)) or the index of the 250 mg dose-grid level
        (``action_size=13``).
    reward : {"default", "seed", "exposure"}, optional
        Compute this reward of ``vanco_pk.targets`` from consecutive rows, replacing the
        table's ``reward`` column if it has one (the report says so). When None, the table's
        ``reward`` column is used if present, else the ``"default"`` reward is computed. A
        computed reward uses the vancomycin level as measured (a never-measured level has
        no exposure term), never an imputed one. ``"exposure"`` scores the estimated AUC24
        of the next row (the ``pk_auc24`` of :mod:`vanco_pk.exposure`, replayed from the
        doses, levels and covariates as for ``pk_features``) instead of the trough.
    impute : CarryForward, optional
        Carry the last value forward within a stay, up to a maximum age. Without it, a NaN
        in an observation column is an error.
    fill_unmeasured_level : bool
        Fill a vancomycin level never measured in the stay with 0.0 mg/L (drug-naive; the
        simulator shows it the same way).
    level_indicator : bool
        Append a ``vanco_level_measured`` feature (0 where the level was filled).
    covariates : bool or tuple of str
        Append the covariate columns (all present ones for True) to the observation.
    clip_doses : bool
        Clip doses above 3000 mg to 3000 mg instead of raising (counted in the report).
    round_doses : bool
        For ``action="discrete"``, round doses off the 250 mg grid to the nearest level
        instead of raising (counted, with the largest rounding error, in the report).
    last_dose : bool
        Append ``last_dose_mg``, the dose given at the stay's previous decision (0 on its
        first row).
    pk_features : bool
        Append ``pk_cl_map`` (L/h), ``pk_auc24`` (mg*h/L) and ``pk_dose_auc500`` (mg): each
        stay replayed through :class:`vanco_pk.exposure.ExposureTracker` (Bayesian MAP PK
        from the covariates, doses and measured levels so far; row ``t`` uses rows ``<= t``
        only). Needs ``time_h`` and the covariates ``weight_kg``, ``age``, ``sex``,
        ``dialysis``; a new level is read from a ``level_measured`` column when present,
        else from a change of ``vanco_level``.
    pk_model : mapping of str to float, optional
        The exposure tracker's population prior, as fields of Goti 2018 to replace (e.g. a
        model refitted to local levels, :func:`vanco_offline.data.fit_local_model`); None:
        Goti 2018.

    Returns
    -------
    ConversionResult
        ``.dataset`` (an ``MDPDataset``), ``.report``, the stay id of each episode and the
        per-transition behaviour probabilities when the table has them.

    Raises
    ------
    ValueError
        For any schema problem, naming the column, stays and rows and how to fix it.
    """
    options = ConversionSettings(
        action=action,
        reward=reward,
        impute=impute,
        fill_unmeasured_level=fill_unmeasured_level,
        level_indicator=level_indicator,
        covariates=covariates,
        clip_doses=clip_doses,
        round_doses=round_doses,
        last_dose=last_dose,
        pk_features=pk_features,
        pk_model=pk_model,
    )
    return convert_with(table, options)


def convert_with(table: pd.DataFrame | CheckedTable, options: ConversionSettings) -> ConversionResult:
    """:func:`convert` with its choices given as one :class:`~vanco_offline.data.ConversionSettings`.

    The steps: check the table, build the observations, the actions and the rewards, cut
    the stays into episodes, then count what went in and came out. ``table`` may be the
    :class:`~vanco_offline.data.validation.CheckedTable` that ``check_table(table, options)``
    gave (with these ``options``): it is then not checked again.
    """
    checked = table if isinstance(table, CheckedTable) else check_table(table, options)
    obs = build_observations(checked, options)
    notes = list(checked.notes)
    if obs.pk is not None:
        notes.append(obs.pk.note())
    actions = _actions(checked, options, notes)
    rewards = _rewards(checked, obs, options, notes)
    cut = _Episodes.cut(checked, obs.values, actions, rewards)
    dataset = make_dataset(cut.episodes, options.action)
    transitions_in = int(checked.rows - len(checked.starts) + rewards.final.sum())
    in_transition = _check_counts(checked, cut, dataset, transitions_in)
    stay_ids = checked.stay_ids.tolist()
    report = ConversionReport(
        rows=checked.rows,
        stays=len(checked.starts),
        time_column=checked.time_column,
        transitions_in=transitions_in,
        transitions_out=dataset.transition_count,
        episodes=len(cut.episodes),
        terminal_stays=int(rewards.terminal.sum()),
        timeout_stays=int((~rewards.terminal).sum()),
        observation_names=obs.names,
        action=options.action,
        action_min=float(actions[in_transition].min()),
        action_max=float(actions[in_transition].max()),
        action_unit="mg" if options.action == "continuous" else "dose-grid index (x 250 mg)",
        reward_source=rewards.source,
        reward_summary=_summary(rewards.values[in_transition]),
        imputation=options.impute.describe() if options.impute is not None else "none",
        imputed=obs.imputed,
        level_filled=obs.level_filled,
        exclusions=_exclusions(checked, cut, rewards),
        notes=tuple(notes),
        ignored_columns=tuple(map(str, checked.ignored_columns)),
    )
    return ConversionResult(
        dataset=dataset,
        report=report,
        stay_ids=[stay_ids[k] for k in np.flatnonzero(cut.kept).tolist()],
        behavior_probs=_behavior_probs(checked, cut),
        observation_names=obs.names,
        action=options.action,
        options=options,
    )


@dataclasses.dataclass(frozen=True)
class _Rewards:
    """Each row's reward, and per stay whether it is terminal and whether its last row's reward counts."""

    values: np.ndarray  # (rows,)
    terminal: np.ndarray  # (stays,) bool: done on the last row
    final: np.ndarray  # (stays,) bool: a terminal stay whose last row's reward is a step to absorption
    source: str


def _rewards(
    checked: CheckedTable, obs: Observations, options: ConversionSettings, notes: list[str]
) -> _Rewards:
    """The table's ``reward`` column (``options.reward`` None), else a reward of ``vanco_pk.targets``."""
    starts, ends = checked.starts, checked.ends
    terminal = checked.columns[DONE][ends - 1] > 0 if DONE in checked.columns else np.zeros(len(starts), bool)
    if REWARD in checked.columns and options.reward is not None:
        notes.append(
            f"{REWARD}: the table's column is replaced by the computed {options.reward!r} reward, "
            "as asked (pass reward=None to use the column)"
        )
    if REWARD in checked.columns and options.reward is None:
        column = checked.columns[REWARD]
        unused = ~terminal & ~np.isnan(column[ends - 1])
        if unused.any():
            notes.append(
                f"{REWARD}: {int(unused.sum())} timeout stay(s) have a reward on their last row, which is "
                "the final observation with no next state, so it is not used (leave it empty, or set "
                "done=True if the stay ended in death or discharge)"
            )
        final = terminal & ~np.isnan(column[ends - 1])
        return _Rewards(np.nan_to_num(column, nan=0.0), terminal, final, "from the table's reward column")
    name = options.reward or "default"
    next_auc = obs.pk.auc24 if name in AUC_REWARDS and obs.pk is not None else None
    values = _computed_rewards(obs.features, checked.columns[DOSE], checked.last, name, next_auc)
    source = f"computed ({name!r} reward of vanco_pk.targets)"
    return _Rewards(values, terminal, np.zeros(len(starts), dtype=bool), source)


@dataclasses.dataclass(frozen=True)
class _Episodes:
    """The d3rlpy episodes of the stays that have a transition (``kept``)."""

    episodes: list[Episode]
    kept: np.ndarray  # (stays,) bool
    transitions: np.ndarray  # (stays,) transitions of each stay

    @classmethod
    def cut(
        cls, checked: CheckedTable, observations: np.ndarray, actions: np.ndarray, rewards: _Rewards
    ) -> _Episodes:
        """One episode per stay (module docstring): a terminal stay ends before its last row
        unless that row's reward counts."""
        starts, ends = checked.starts, checked.ends
        end = ends - (rewards.terminal & ~rewards.final)
        transitions = np.where(rewards.terminal, end - starts, ends - starts - 1)
        kept = transitions > 0
        reward_column = rewards.values.astype(np.float32).reshape(-1, 1)
        episodes = [
            Episode(
                observations=observations[s:e], actions=actions[s:e], rewards=reward_column[s:e], terminated=t
            )
            for s, e, t in zip(
                starts[kept].tolist(), end[kept].tolist(), rewards.terminal[kept].tolist(), strict=True
            )
        ]
        if not episodes:
            raise ValueError(
                f"no transitions: all {len(starts)} stays have a single row; a stay needs at least two "
                "decision steps (state, dose, next state)"
            )
        return cls(episodes, kept, transitions)


def _check_counts(
    checked: CheckedTable, cut: _Episodes, dataset: MDPDataset, transitions_in: int
) -> np.ndarray:
    """Rows that start a transition; RuntimeError unless d3rlpy counts the transitions the table implies."""
    step = np.arange(checked.rows) - checked.starts[checked.codes]
    in_transition = step < cut.transitions[checked.codes]
    if dataset.transition_count != int(in_transition.sum()) or transitions_in != dataset.transition_count:
        raise RuntimeError(
            f"internal error: d3rlpy counts {dataset.transition_count} transitions, the table implies "
            f"{transitions_in}; please report this with the table"
        )
    return in_transition


def _exclusions(checked: CheckedTable, cut: _Episodes, rewards: _Rewards) -> tuple[Exclusion, ...]:
    """The stays left out (no transition), each with the reason."""
    stay_ids = checked.stay_ids.tolist()
    n_rows = checked.ends - checked.starts
    return tuple(
        Exclusion(
            stay_id=stay_ids[k],
            rows=int(n_rows[k]),
            transitions=int(n_rows[k] - 1 + rewards.final[k]),
            reason=(
                "a single terminal row without a reward: no transition (a terminal stay needs a "
                "state before the terminal one, or a reward on its row)"
                if rewards.terminal[k]
                else "a single row: no transition (a stay needs at least two decision steps)"
            ),
        )
        for k in np.flatnonzero(~cut.kept).tolist()
    )


def _behavior_probs(checked: CheckedTable, cut: _Episodes) -> list[np.ndarray] | None:
    """The logged action's probability per transition of each kept stay, when the table has them."""
    if BEHAVIOR_PROB not in checked.columns:
        return None
    prob = checked.columns[BEHAVIOR_PROB]
    starts = checked.starts[cut.kept].tolist()
    return [prob[s : s + n] for s, n in zip(starts, cut.transitions[cut.kept].tolist(), strict=True)]


def observation_table(table: pd.DataFrame, **options: object) -> pd.DataFrame:
    """The observation of every row of ``table``, exactly as :func:`convert` builds it.

    For one patient's rows up to now (a stay in progress, a single row included) this is
    the observation a trained model needs at its last row, with the history-dependent
    columns (``last_dose_mg``, the PK features) replayed from the earlier rows. ``options``
    are :func:`convert`'s keyword options (``action`` and ``reward`` are accepted and do not
    change the observation).

    Returns
    -------
    pandas.DataFrame
        Named observation columns (float32 values), with the table's index.
    """
    options = {k: v for k, v in options.items() if k not in ("action", "reward")}
    conversion = ConversionSettings.from_dict(options)  # an unknown option is named
    obs = build_observations(check_table(table, conversion), conversion)
    return pd.DataFrame(obs.values, columns=list(obs.names), index=table.index)


def _actions(checked: CheckedTable, options: ConversionSettings, notes: list[str]) -> np.ndarray:
    # The last row's dose may be empty (final observation); its slot is never a transition.
    dose = np.nan_to_num(checked.columns[DOSE], nan=0.0)
    if options.action == "continuous":
        return dose.astype(np.float32).reshape(-1, 1)
    index = dose_to_grid_index(dose)
    error = np.abs(dose - DOSE_GRID_MG[index])
    off = error > _GRID_TOLERANCE_MG
    if off.any():
        if not options.round_doses:
            raise_problems(
                [
                    f"column '{DOSE}' has doses off the {DOSE_STEP_MG:g} mg grid in "
                    f"{offenders(off, checked.stay, dose)}: discrete actions are grid levels "
                    f"0, 250, ..., 3000 mg; use action='continuous', or pass round_doses=True "
                    "(--round-doses) to round to the nearest level (reported)"
                ]
            )
        notes.append(
            f"{DOSE}: rounded {int(off.sum())} dose(s) to the {DOSE_STEP_MG:g} mg grid "
            f"(largest rounding error {float(error.max()):g} mg)"
        )
    return index.astype(np.int64).reshape(-1, 1)


def _computed_rewards(
    features: np.ndarray, dose: np.ndarray, last: np.ndarray, name: str, auc24: np.ndarray | None = None
) -> np.ndarray:
    """``r_t = f(s_t, a_t, s_{t+1})`` from consecutive rows; 0 on each stay's last row (unused).

    ``auc24`` is each row's estimated AUC24, passed to the rewards that score it
    (``vanco_pk.targets.AUC_REWARDS``) as the next row's.
    """
    function = get_reward_function(name)
    rewards = np.zeros(len(features))
    if len(features) > 1:
        extra = {} if auc24 is None else {"next_auc24": auc24[1:]}
        rewards[:-1] = function(features[:-1], dose[:-1], features[1:], **extra)
    rewards[last] = 0.0  # a stay's last row has no next row of the same stay
    return rewards


def _summary(rewards: np.ndarray) -> dict[str, float]:
    if len(rewards) == 0:
        return {"count": 0.0}
    return {
        "count": float(len(rewards)),
        "mean": float(np.mean(rewards)),
        "std": float(np.std(rewards)),
        "min": float(np.min(rewards)),
        "max": float(np.max(rewards)),
        "positive": float(np.mean(rewards > 0)),
    }
