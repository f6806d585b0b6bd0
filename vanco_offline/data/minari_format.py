"""Export to and import from the Minari offline-RL dataset format (optional ``minari`` extra).

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
from d3rlpy.dataset import Episode

from vanco_offline.data.episodes import ConversionResult, make_dataset
from vanco_offline.data.schema import ACTION_SIZE_DISCRETE, DOSE_MAX_MG

__all__ = ["export_minari", "import_minari"]

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


def import_minari(source: Any, *, root: str | Path | None = None) -> ConversionResult:
    """Read a Minari dataset written by :func:`export_minari` back into a ConversionResult.

    ``source`` is a ``MinariDataset``, a local dataset id (looked up under ``root``), or
    the path of a dataset directory. Datasets from elsewhere are read too when their spaces
    are a flat ``Box`` observation and a 1-D ``Box`` or ``Discrete(13)`` action.
    """
    minari = _minari()
    if isinstance(source, minari.MinariDataset):
        dataset = source
    elif isinstance(source, Path) or (isinstance(source, str) and os.path.isdir(source)):
        path = Path(source)
        dataset = minari.MinariDataset(path / "data" if (path / "data").is_dir() else path)
    else:
        with _datasets_root(root):
            dataset = minari.load_dataset(str(source), download=False)
    metadata = dataset.storage.metadata
    meta = json.loads(metadata[_META]) if _META in metadata else {}
    action = meta.get("action") or _action_kind(dataset.action_space)
    indices = dataset.episode_indices
    episode_meta = list(dataset.storage.get_episode_metadata(indices))
    episodes, stays, probs = [], [], []
    for data, info in zip(dataset.iterate_episodes(), episode_meta, strict=True):
        steps = len(data.rewards)
        if steps == 0:
            raise ValueError(f"Minari episode {data.id} has no step; d3rlpy cannot hold it")
        obs = np.asarray(data.observations, dtype=np.float32)
        actions = np.asarray(data.actions)
        actions = actions.reshape(steps, -1).astype(np.int64 if action == "discrete" else np.float32)
        rewards = np.asarray(data.rewards, dtype=np.float32).reshape(-1, 1)
        terminated = bool(data.terminations[-1])
        if terminated:
            obs = obs[:steps]
        else:
            logged = data.infos.get("logged_action") if data.infos else None
            final = np.asarray(logged[-1] if logged is not None else 0).reshape(1, -1).astype(actions.dtype)
            actions = np.concatenate([actions, final])
            rewards = np.concatenate([rewards, np.zeros((1, 1), np.float32)])
        episodes.append(Episode(observations=obs, actions=actions, rewards=rewards, terminated=terminated))
        stay = info.get("options", {}).get("stay_id", data.id)
        stays.append(stay.item() if isinstance(stay, np.generic) else stay)
        if data.infos and "behavior_prob" in data.infos:
            probs.append(np.asarray(data.infos["behavior_prob"], dtype=np.float64)[:steps])
    names = tuple(
        meta.get("observation_names") or (f"x{i}" for i in range(episodes[0].observations.shape[1]))
    )
    return ConversionResult(
        dataset=make_dataset(episodes, action),
        report=None,
        stay_ids=stays,
        behavior_probs=probs if len(probs) == len(episodes) else None,
        observation_names=names,
        action=action,
    )


def _action_kind(space: gymnasium.Space) -> str:
    if isinstance(space, gymnasium.spaces.Discrete) and space.n == ACTION_SIZE_DISCRETE:
        return "discrete"
    if isinstance(space, gymnasium.spaces.Box) and space.shape == (1,):
        return "continuous"
    raise ValueError(
        f"unsupported Minari action space {space}: expected a 1-D Box dose in mg "
        f"or Discrete({ACTION_SIZE_DISCRETE})"
    )
