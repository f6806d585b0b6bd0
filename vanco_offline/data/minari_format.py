"""Export to the Minari offline-RL dataset format (optional ``minari`` extra).

d3rlpy's ``datasets.get_minari`` is not used: it misaligns observations after the first
episode. The mapping here is explicit, episode by episode:

========================  ====================================  ==================================
d3rlpy episode            Minari episode (T steps)              back to d3rlpy
========================  ====================================  ==================================
timeout, n observations   T = n - 1; observations = all n;      n observations; the last action
                          last step ``truncated``               slot from ``infos["logged_action"]``
terminal, m observations  T = m; observations = m + a zero      m observations, ``terminated``
                          final observation (d3rlpy's absorbing
                          state); last step ``terminated``
========================  ====================================  ==================================

Each Minari episode keeps its stay id in its ``options`` and the behaviour probability of
each step in ``infos["behavior_prob"]`` (NaN on the final observation); the dataset
metadata keeps the action kind and the observation names under ``vanco_offline``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from vanco_offline.data.episodes import ConversionResult
from vanco_offline.data.schema import ACTION_SIZE_DISCRETE, DOSE_MAX_MG

__all__ = ["export_minari"]

_META = "vanco_offline"


def _minari() -> Any:
    try:
        import minari
    except ImportError:
        from vanco_offline.extras import missing_extra

        raise missing_extra("minari", "minari", "Minari export/import") from None
    return minari


@contextlib.contextmanager
def _datasets_root(root: str | Path | None) -> Iterator[None]:
    # Minari places datasets under $MINARI_DATASETS_PATH (read at call time) and has no
    # path argument in its public API; point it at `root` for the duration of the call.
    if root is None:
        yield
        return
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def export_minari(
    result: ConversionResult,
    dataset_id: str,
    *,
    root: str | Path | None = None,
    author: str | None = None,
    author_email: str | None = None,
    code_permalink: str | None = None,
    description: str | None = None,
    env: str | gymnasium.envs.registration.EnvSpec | None = None,
) -> Any:
    """Write a converted dataset as a Minari dataset and return the ``MinariDataset``.

    Parameters
    ----------
    result : ConversionResult
        From :func:`~vanco_offline.data.convert` (or a split of it).
    dataset_id : str
        Minari id, ``(namespace/)name-v(version)``, e.g. ``"vanco/icu-cohort-v0"``.
    root : path, optional
        Minari datasets directory; default Minari's own (``$MINARI_DATASETS_PATH`` or
        ``~/.minari/datasets``).
    author, author_email, code_permalink, description : str, optional
        Minari metadata (Minari warns when the first three are missing).
    env : str or EnvSpec, optional
        The environment the data came from, for a simulator cohort (e.g.
        ``"vanco_pk:VancoPK-v0"``, or an ``EnvSpec`` with the cohort's kwargs), so that
        ``dataset.recover_environment()`` rebuilds it. Its observation must have the
        dataset's features; logged hospital data has none.
    """
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    dims = len(result.observation_names)
    if env is not None:
        if isinstance(env, str):
            module, _, env_id = env.rpartition(":")
            if module:
                importlib.import_module(module)  # registers the id, as gymnasium.make("module:id") does
            env = gymnasium.spec(env_id)
        names = tuple(getattr(gymnasium.make(env).unwrapped, "observation_names", ()))
        if names != tuple(result.observation_names):
            raise ValueError(
                f"env {env.id!r} observes {list(names)}, the dataset {list(result.observation_names)}: "
                "give the env options that emit the dataset's features, or no env"
            )
    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, shape=(dims,), dtype=np.float32)
    if result.action == "discrete":
        action_space: gymnasium.Space = gymnasium.spaces.Discrete(ACTION_SIZE_DISCRETE)
    else:
        action_space = gymnasium.spaces.Box(0.0, DOSE_MAX_MG, shape=(1,), dtype=np.float32)
    probs = result.behavior_probs
    buffers = []
    for i, (episode, stay) in enumerate(zip(result.dataset.episodes, result.stay_ids, strict=True)):
        obs = np.asarray(episode.observations)
        actions = np.asarray(episode.actions)
        logged = actions
        if episode.terminated:
            steps = len(obs)
            obs = np.concatenate([obs, np.zeros_like(obs[:1])])
            logged = np.concatenate([actions, np.zeros_like(actions[:1])])
        else:
            steps = len(obs) - 1
        flags = np.zeros(steps, dtype=bool)
        terminations, truncations = flags.copy(), flags.copy()
        (terminations if episode.terminated else truncations)[-1] = True
        step_actions = actions[:steps]
        if result.action == "discrete":
            step_actions, logged = step_actions[:, 0], logged[:, 0]
        infos: dict[str, np.ndarray] = {"logged_action": logged}
        if probs is not None:
            infos["behavior_prob"] = np.concatenate([probs[i], np.full(len(obs) - steps, np.nan)])
        buffers.append(
            EpisodeBuffer(
                id=i,
                options={"stay_id": stay},
                observations=obs,
                actions=step_actions,
                rewards=np.asarray(episode.rewards[:steps, 0], dtype=np.float64),
                terminations=terminations,
                truncations=truncations,
                infos=infos,
            )
        )
    meta = {"action": result.action, "observation_names": list(result.observation_names)}
    with _datasets_root(root), warnings.catch_warnings():
        # Logged hospital data has no environment; Minari warns about that for every export.
        warnings.filterwarnings(
            "ignore", message=r".*(eval_env|env_spec)`? is (set to )?None", category=UserWarning
        )
        dataset = minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=env,
            observation_space=observation_space,
            action_space=action_space,
            algorithm_name="logged ICU dosing (behaviour policy)",
            author=author,
            author_email=author_email,
            code_permalink=code_permalink,
            description=description or "vancomycin dosing table converted by vanco-offline",
        )
    dataset.storage.update_metadata({_META: json.dumps(meta)})
    return dataset
