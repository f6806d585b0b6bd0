"""Reading and writing dosing tables (CSV, Parquet) and converted datasets (d3rlpy HDF5)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from d3rlpy.dataset import Episode
from d3rlpy.dataset.io import dump as d3rlpy_dump
from d3rlpy.dataset.io import load as d3rlpy_load

from vanco_offline.data.episodes import ConversionResult, make_dataset
from vanco_offline.data.report import ConversionReport

__all__ = ["load_dataset", "load_table", "save_dataset", "save_table"]

_CSV = (".csv", ".csv.gz")
_PARQUET = (".parquet", ".pq")
_GROUP = "vanco_offline"


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (*_CSV, *_PARQUET):
        if name.endswith(suffix):
            return suffix
    raise ValueError(
        f"{path}: unsupported file type {path.suffix or '(none)'!r}; dosing tables are read from CSV "
        f"({', '.join(_CSV)}) or Parquet ({', '.join(_PARQUET)})"
    )


def load_table(path: str | Path) -> pd.DataFrame:
    """Read a dosing table from CSV or Parquet, chosen by the file suffix.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For any other suffix, or a file that cannot be parsed as that format.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such dosing table file")
    try:
        if suffix in _CSV:
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as {suffix[1:]}: {exc}") from None
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        if type(exc).__module__.startswith("pyarrow"):
            raise ValueError(f"{path}: cannot be read as Parquet: {exc}") from None
        raise


def save_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a dosing table as CSV or Parquet (chosen by the suffix); return the path."""
    path = Path(path)
    suffix = _suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in _CSV:
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return path


def save_dataset(result: ConversionResult, path: str | Path) -> Path:
    """Write a converted dataset to a d3rlpy HDF5 file, with our per-episode data alongside.

    The file is d3rlpy's own format (``ReplayBuffer.load`` reads it); a ``vanco_offline``
    group adds the action kind, observation names, stay ids, behaviour probabilities and
    the conversion report so that :func:`load_dataset` restores the whole result.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w+b") as f:
        d3rlpy_dump(result.dataset.episodes, f)
    stays = np.asarray(result.stay_ids)
    with h5py.File(path, "a") as h5:
        group = h5.create_group(_GROUP)
        group.attrs["action"] = result.action
        group.attrs["observation_names"] = json.dumps(list(result.observation_names))
        if stays.dtype.kind in "iu":
            group.create_dataset("stay_ids", data=stays.astype(np.int64))
        else:
            group.create_dataset(
                "stay_ids", data=[str(s) for s in result.stay_ids], dtype=h5py.string_dtype()
            )
        if result.behavior_probs is not None:
            group.create_dataset("behavior_prob", data=result.flat_behavior_prob())
        if result.report is not None:
            group.attrs["report"] = json.dumps(result.report.to_dict())
    return path


def load_dataset(path: str | Path) -> ConversionResult:
    """Read a dataset written by :func:`save_dataset`, with its explicit action space."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such dataset file")
    try:
        with h5py.File(path, "r") as h5:
            if _GROUP not in h5:
                raise ValueError(
                    f"{path}: not written by vanco-offline (no '{_GROUP}' group), so its action space is "
                    "unknown; load it with d3rlpy and pass action_space explicitly"
                )
            group = h5[_GROUP]
            action = str(group.attrs["action"])
            names = tuple(json.loads(group.attrs["observation_names"]))
            raw_ids = group["stay_ids"][()]
            stay_ids = [s.decode() if isinstance(s, bytes) else s for s in raw_ids.tolist()]
            flat = group["behavior_prob"][()] if "behavior_prob" in group else None
            report = (
                ConversionReport.from_dict(json.loads(group.attrs["report"]))
                if "report" in group.attrs
                else None
            )
    except OSError as exc:
        raise ValueError(f"{path}: not an HDF5 dataset file ({exc})") from None
    with path.open("rb") as f:
        episodes = d3rlpy_load(Episode, f)
    behavior_probs = None
    if flat is not None:
        counts = np.cumsum([e.transition_count for e in episodes])[:-1]
        behavior_probs = np.split(flat, counts)
    return ConversionResult(
        dataset=make_dataset(episodes, action),  # type: ignore[arg-type]
        report=report,
        stay_ids=stay_ids,
        behavior_probs=behavior_probs,
        observation_names=names,
        action=action,  # type: ignore[arg-type]
    )
