"""A trained model on disk: d3rlpy's ``model.d3`` plus ``model.json`` describing its inputs.

d3rlpy's ``.d3`` file holds the networks, optimizers and scalers; what it cannot hold is
what a clinician needs to use the model: the names and order of the observation features,
how the table was converted (imputation, unmeasured levels), the preset it was trained
with and where the training data lay (for out-of-support warnings). ``model.json`` beside
it holds that. A ``.d3`` file is a Python pickle: load only models you trust; share the
code-free bundle of :mod:`vanco_offline.export` instead.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import d3rlpy

from vanco_offline.clinical import SupportCheck

__all__ = ["METADATA_FILE", "MODEL_FILE", "TrainedModel", "load_model", "save_model"]

MODEL_FILE = "model.d3"
METADATA_FILE = "model.json"
_FORMAT = "vanco-offline-model"
_VERSION = 1


@dataclasses.dataclass
class TrainedModel:
    """A trained d3rlpy algorithm with what is needed to feed it a patient state.

    Attributes
    ----------
    algo : d3rlpy algorithm
        Usually VancoIQL or DiscreteVancoIQL.
    observation_names : list of str
        Features of the observation, in order.
    action : {"continuous", "discrete"}
        Dose in mg, or index into the 250 mg dose grid.
    conversion : dict
        Keyword arguments given to :func:`vanco_offline.data.convert` (``reward``,
        ``fill_unmeasured_level``, ``covariates``, ...), so new data is converted the same way.
    support : SupportCheck
        Where the training observations lie.
    preset : dict
        The preset the model was trained with (name, source and all its fields).
    data : dict
        Provenance of the training data (source, rows, stays, transitions).
    training : dict
        Steps, seed, and the final diagnostics.
    """

    algo: Any
    observation_names: list[str]
    action: str
    conversion: dict[str, Any]
    support: SupportCheck
    preset: dict[str, Any]
    data: dict[str, Any]
    training: dict[str, Any]

    def metadata(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "algorithm": self.algo.config.get_type(),
            "observation_names": list(self.observation_names),
            "action": self.action,
            "conversion": self.conversion,
            "support": dataclasses.asdict(self.support),
            "preset": self.preset,
            "data": self.data,
            "training": self.training,
        }


def save_model(model: TrainedModel, directory: str | Path) -> Path:
    """Write ``model.d3`` and ``model.json`` into ``directory``; returns the ``.d3`` path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.algo.save(str(directory / MODEL_FILE))
    (directory / METADATA_FILE).write_text(json.dumps(model.metadata(), indent=2, default=_json_default))
    return directory / MODEL_FILE


def load_model(path: str | Path) -> TrainedModel:
    """Load a model saved by :func:`save_model` (``path`` is the ``.d3`` file or its folder).

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    ValueError
        ``path`` is not a vanco-offline model (no ``model.json`` beside it, a foreign
        ``model.json``, or a file d3rlpy cannot read).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist")
    model_file = path / MODEL_FILE if path.is_dir() else path
    metadata_file = model_file.parent / METADATA_FILE
    if not model_file.is_file():
        raise ValueError(f"{path} is a folder without {MODEL_FILE}: not a vanco-offline model")
    if not metadata_file.is_file():
        raise ValueError(
            f"{model_file} is not a vanco-offline model: no {METADATA_FILE} beside it "
            "(train one with `vanco-offline train`)"
        )
    try:
        metadata = json.loads(metadata_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{metadata_file} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT:
        raise ValueError(f"{metadata_file} does not describe a vanco-offline model")
    if metadata.get("version") != _VERSION:
        raise ValueError(
            f"{metadata_file}: model format version {metadata.get('version')}, expected {_VERSION}"
        )
    if not zipfile.is_zipfile(model_file):
        raise ValueError(f"{model_file} is not a d3rlpy model file (d3rlpy writes zip archives)")
    import vanco_offline.algos  # noqa: F401  (registers VancoIQL with d3rlpy before loading)

    try:
        algo = d3rlpy.load_learnable(str(model_file))
    except Exception as exc:  # d3rlpy raises many types for a broken archive
        raise ValueError(f"d3rlpy cannot load {model_file}: {type(exc).__name__}: {exc}") from None
    return TrainedModel(
        algo=algo,
        observation_names=list(metadata["observation_names"]),
        action=metadata["action"],
        conversion=dict(metadata["conversion"]),
        support=SupportCheck(**metadata["support"]),
        preset=dict(metadata["preset"]),
        data=dict(metadata["data"]),
        training=dict(metadata["training"]),
    )


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)
