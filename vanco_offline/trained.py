"""A trained model on disk, safe to open by default.

A model folder written by :func:`save_model` holds

- ``model.safetensors``: the primary file, a code-free bundle (:mod:`vanco_offline.bundle`)
  with every network's weights, the d3rlpy config with its fitted scalers, the features, the
  training data's support, the model's description and a checksum. :func:`load_model` rebuilds
  the d3rlpy algorithm from it without unpickling anything;
- ``model.json``: the same description for people, with the SHA-256 of both model files;
- ``model.d3``: d3rlpy's own file, for ``d3rlpy.load_learnable`` (to resume training). It is a
  Python pickle, which can run any code when opened: :func:`load_model` opens it only when
  the caller gives its SHA-256 (``trust_pickle="<hex>"``, ``--trust-pickle SHA256``), obtained
  from the model's author through another channel, and the file's hash equals it. The hash
  ``model.json`` records is never trusted for this: whoever wrote the folder wrote it too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vanco_offline.bundle import DRAW_HEAD_KEY
from vanco_offline.clinical import StateSupport
from vanco_offline.safety import DosingScope, load_json

if TYPE_CHECKING:
    from vanco_offline.data.options import ConversionSettings

__all__ = [
    "METADATA_FILE",
    "MODEL_FILE",
    "PICKLE_FILE",
    "TrainedModel",
    "check_sha256",
    "load_model",
    "save_model",
    "sha256",
]

MODEL_FILE = "model.safetensors"
PICKLE_FILE = "model.d3"
METADATA_FILE = "model.json"
_FORMAT = "vanco-offline-model"
_VERSION = 2


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
    conversion : ConversionSettings
        How the training table was converted (reward, imputation, covariates, PK features and
        their population prior, ...): :meth:`convert`, :meth:`validate` and :meth:`observation`
        treat new data the same way. Serialised (``to_dict``) only in ``model.json`` and the bundle.
    support : StateSupport
        Where the training observations lie.
    preset : dict
        The preset the model was trained with (name, source and all its fields).
    data : dict
        Provenance of the training data (source, rows, stays, transitions).
    training : dict
        Steps, seed, and the final diagnostics.
    scope : DosingScope
        The dosing interval, the inputs' units and the population of the training data: every
        dose the model gives is capped and labelled for them.
    draw_head : DrawHead or None
        When to draw a level (:class:`vanco_offline.bundle.DrawHead`), for a model trained with
        the draw action (``data.draw_head`` of its preset); saved in ``model.safetensors``.
    """

    algo: Any
    observation_names: list[str]
    action: str
    conversion: ConversionSettings
    support: StateSupport
    preset: dict[str, Any]
    data: dict[str, Any]
    training: dict[str, Any]
    scope: DosingScope
    draw_head: Any = None

    @property
    def population_model(self) -> Any:
        """The population prior of the model's PK features (:class:`vanco_pk.pk.GotiModel`; the
        conversion's ``pk_model``, Goti 2018 when it has none)."""
        return self.conversion.population_model

    def convert(self, table: Any) -> Any:
        """``table`` converted exactly as the training data was (a
        :class:`~vanco_offline.data.ConversionResult`); ValueError listing every problem."""
        from vanco_offline.data import convert_with

        return convert_with(table, self.conversion)

    def validate(self, table: Any) -> Any:
        """``table`` checked as the training data was, normalised (ValueError listing every problem)."""
        from vanco_offline.data import validate

        return validate(table, action=self.action, **self.conversion.keywords())

    def observation(self, history: Any) -> np.ndarray:
        """The model's observation at the last row of ``history`` (one stay's rows up to now, in
        the data schema), built as the converter builds it: the previous dose and the PK
        features are replayed from the earlier rows. ValueError when the rows cannot give it."""
        from vanco_offline.data import observation_table

        table = observation_table(history, **self.conversion.keywords())
        if list(table.columns) != list(self.observation_names):
            raise ValueError(
                f"the history converts to the columns {list(table.columns)} but the model needs "
                f"{self.observation_names}; give the covariate columns the model was trained with"
            )
        return table.iloc[-1].to_numpy(np.float32)

    def metadata(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "algorithm": self.algo.config.get_type(),
            "observation_names": list(self.observation_names),
            "action": self.action,
            "conversion": self.conversion.to_dict(),
            "support": dataclasses.asdict(self.support),
            "preset": self.preset,
            "data": self.data,
            "training": self.training,
            "scope": self.scope.to_dict(),
        }


def save_model(model: TrainedModel, directory: str | Path) -> Path:
    """Write ``model.safetensors``, ``model.d3`` and ``model.json`` into an existing ``directory``.

    Returns the ``.safetensors`` path. A model whose weights are not finite is refused
    (ValueError) and nothing is written.
    """
    from vanco_offline.export import export_bundle

    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"cannot save the model: the folder {directory} does not exist")
    metadata = json.loads(json.dumps(model.metadata(), default=_json_default))
    bundle = export_bundle(
        model.algo,
        directory / MODEL_FILE,
        observation_names=list(model.observation_names),
        support=metadata["support"],
        model={k: metadata[k] for k in _DESCRIPTION},
        draw_head=model.draw_head,
    )
    model.algo.save(str(directory / PICKLE_FILE))
    metadata["files"] = {MODEL_FILE: sha256(bundle), PICKLE_FILE: sha256(directory / PICKLE_FILE)}
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return bundle


#: The parts of ``TrainedModel.metadata()`` a bundle carries under ``"model"``.
_DESCRIPTION = (
    "format",
    "version",
    "created",
    "algorithm",
    "action",
    "conversion",
    "preset",
    "data",
    "training",
    "scope",
)


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(path: str | Path, *, trust_pickle: str | None = None) -> TrainedModel:
    """Load a model: its folder, its ``model.safetensors`` (or an exported bundle), or a ``.d3``.

    A folder loads its ``model.safetensors``. A ``.d3`` file (or a folder that has only one)
    is a pickle: it loads only when ``trust_pickle`` is the file's SHA-256 (64 hex digits),
    given by the caller from outside the folder, and a ``model.json`` beside it describes it.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    ValueError
        Not a vanco-offline model, a pickle without ``trust_pickle``, a hash that does not
        match, a tampered or malformed description, non-finite weights; the message says which.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist")
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            path = path / MODEL_FILE
        elif (path / PICKLE_FILE).is_file():
            path = path / PICKLE_FILE
        else:
            raise ValueError(f"{path} is a folder without {MODEL_FILE}: not a vanco-offline model")
    if path.suffix == ".d3":
        return _load_pickle(path, trust_pickle)
    if path.suffix != ".safetensors":
        raise ValueError(
            f"{path} is not a vanco-offline model: give its folder, a .safetensors bundle or a .d3 file"
        )
    return _load_bundle(path)


def _recorded_hash(model_file: Path) -> str | None:
    """The SHA-256 that ``model.json`` beside ``model_file`` records for it (None: no record)."""
    metadata_file = model_file.parent / METADATA_FILE
    if not metadata_file.is_file():
        return None
    try:
        recorded = (
            load_json(metadata_file.read_text(), str(metadata_file)).get("files", {}).get(model_file.name)
        )
    except AttributeError:
        raise ValueError(f"{metadata_file} is not a valid model description (not a JSON object)") from None
    return recorded if isinstance(recorded, str) else None


def _load_bundle(path: Path) -> TrainedModel:
    from vanco_offline.bundle import load_bundle

    recorded = _recorded_hash(path)
    if recorded is not None and recorded != sha256(path):
        raise ValueError(
            f"{path} does not match the SHA-256 recorded in {path.parent / METADATA_FILE}: "
            "the file was replaced or edited after training"
        )
    bundle = load_bundle(path)
    meta = bundle.metadata
    # The draw head's tensors are read by its numpy description (bundle.draw_head), not by d3rlpy.
    prefix = f"{DRAW_HEAD_KEY}."
    algo = _rebuild(meta, {k: v for k, v in bundle.tensors.items() if not k.startswith(prefix)}, path)
    description = meta.get("model") or {}
    if not isinstance(description, dict):
        raise ValueError(f"{path}: the model's description must be an object, got {description!r}")
    model = _trained_model(
        algo,
        {**description, "observation_names": meta.get("observation_names"), "support": meta.get("support")},
        path,
    )
    # The d3rlpy config (scalers included) and the runtime's description must give one policy:
    # a bundle whose two halves disagree was edited, and which half is right cannot be known.
    probe = np.asarray([model.support.mean, model.support.low, model.support.high], dtype=np.float32)
    expected = bundle.predict(probe)
    action = np.asarray(algo.predict(probe))
    got = np.asarray(meta["dose_grid_mg"])[action.astype(int)] if model.action == "discrete" else action[:, 0]
    if not np.all(np.abs(got - expected) <= 0.05):
        raise ValueError(
            f"{path}: the model's config and its policy description give different doses (edited)"
        )
    model.draw_head = bundle.draw_head
    _check_draw_head_recorded(model, path)
    return model


def _check_draw_head_recorded(model: TrainedModel, source: Path) -> None:
    """A model whose description records a draw head has one, and one without has none."""
    recorded = "draw_head" in model.training
    if recorded != (model.draw_head is not None):
        raise ValueError(
            f"{source}: the model's description {'records' if recorded else 'does not record'} a draw head "
            f"but its file {'lacks one' if recorded else 'holds one'} (edited)"
        )


def _rebuild(meta: dict[str, Any], tensors: dict[str, np.ndarray], path: Path) -> Any:
    """The d3rlpy algorithm described by a bundle's config, with the bundle's weights loaded."""
    import torch
    from d3rlpy.base import LearnableConfigWithShape
    from torch import nn

    import vanco_offline.algos  # noqa: F401  (registers VancoIQL with d3rlpy)

    try:
        config = LearnableConfigWithShape.deserialize(json.dumps(meta["config"]))
        algo = config.create(device=False)
    except Exception as exc:  # d3rlpy raises many types for an unknown or malformed config
        raise ValueError(
            f"{path}: d3rlpy cannot build the model from its config ({type(exc).__name__}: {exc})"
        ) from None
    modules = {
        name: module
        for name, module in algo.impl.modules.create_checkpointer("cpu:0").modules.items()
        if isinstance(module, nn.Module)
    }
    for name, module in modules.items():
        state = {
            k[len(name) + 1 :]: torch.from_numpy(v.astype(np.float32))
            for k, v in tensors.items()
            if k.startswith(f"{name}.")
        }
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise ValueError(
                f"{path}: the weights of {name} do not fit the model's config ({first})"
            ) from None
    unknown = sorted(k for k in tensors if k.split(".")[0] not in modules)
    if unknown:
        raise ValueError(f"{path}: tensors {unknown[:3]} belong to no network of the model")
    return algo


#: A SHA-256 in hex, as ``--trust-pickle`` takes it.
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def check_sha256(value: Any, where: str = "--trust-pickle") -> str:
    """``value`` as a lower-case SHA-256 hex digest; ValueError naming ``where`` otherwise."""
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value.strip().lower()):
        raise ValueError(
            f"{where} takes the pickle's SHA-256 (64 hex digits, from the model's author through another "
            f"channel than the folder, or `sha256sum model.d3`), got {value!r}"
        )
    return value.strip().lower()


def _load_pickle(path: Path, trust_pickle: str | None) -> TrainedModel:
    if trust_pickle is None:
        raise ValueError(
            f"{path} is a Python pickle, which can run any code when opened: load the model folder's "
            f"{MODEL_FILE} instead, or pass --trust-pickle SHA256 with the hash you trust for this file"
        )
    expected = check_sha256(trust_pickle)
    actual = sha256(path)
    if actual != expected:
        raise ValueError(
            f"{path} has SHA-256 {actual}, not the {expected} given with --trust-pickle: "
            "it is not the file you trust, and it is not opened"
        )
    metadata_file = path.parent / METADATA_FILE
    if not metadata_file.is_file():
        raise ValueError(f"{path}: no {METADATA_FILE} beside it describes the model; it is not opened")
    import d3rlpy

    import vanco_offline.algos  # noqa: F401  (registers VancoIQL with d3rlpy before loading)

    try:
        algo = d3rlpy.load_learnable(str(path))
    except Exception as exc:  # d3rlpy raises many types for a broken archive
        raise ValueError(f"d3rlpy cannot load {path}: {type(exc).__name__}: {exc}") from None
    metadata = load_json(metadata_file.read_text(), str(metadata_file))
    model = _trained_model(algo, metadata, metadata_file)
    if "draw_head" in model.training:
        # The draw head lives in the code-free model file beside the pickle (checked as always).
        beside = path.parent / MODEL_FILE
        if not beside.is_file():
            raise ValueError(
                f"{path}: the model has a draw head, saved in {MODEL_FILE}, which is not beside it"
            )
        model.draw_head = _load_bundle(beside).draw_head
    return model


def _trained_model(algo: Any, metadata: Any, source: Path) -> TrainedModel:
    """A TrainedModel from an algorithm and its description, every field checked (one-line errors)."""
    if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT:
        raise ValueError(f"{source} does not describe a vanco-offline model")
    if metadata.get("version") != _VERSION:
        raise ValueError(f"{source}: model format version {metadata.get('version')}, expected {_VERSION}")
    names = metadata.get("observation_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(
            f"{source}: observation_names must be a non-empty list of feature names, got {names!r}"
        )
    n_inputs = algo.impl.observation_shape[0]
    if len(names) != n_inputs:
        raise ValueError(f"{source}: {len(names)} observation names for a model with {n_inputs} inputs")
    discrete = algo.get_action_type().name == "DISCRETE"
    action = metadata.get("action")
    if action not in ("continuous", "discrete") or (action == "discrete") != discrete:
        expected = "discrete" if discrete else "continuous"
        raise ValueError(f"{source}: action is {action!r} but the model's actions are {expected}")
    if not isinstance(metadata.get("support"), dict):
        raise ValueError(f"{source}: the training data's support is missing; the model is not used")
    try:
        support = StateSupport(**metadata["support"])
    except TypeError as exc:
        raise ValueError(f"{source}: the support is malformed ({exc})") from None
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    if support.names != names:
        raise ValueError(f"{source}: the support is over {support.names}, the model over {names}")
    for key in ("conversion", "preset", "data", "training"):
        if not isinstance(metadata.get(key), dict):
            raise ValueError(f"{source}: {key!r} must be an object, got {metadata.get(key)!r}")
    from vanco_offline.data.options import ConversionSettings

    try:
        conversion = ConversionSettings.from_dict(metadata["conversion"], action=action)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: the conversion is malformed ({exc})") from None
    scope = DosingScope.from_dict(metadata.get("scope"), str(source))
    _check_finite(algo, source)
    return TrainedModel(
        algo=algo,
        observation_names=list(names),
        action=action,
        conversion=conversion,
        support=support,
        preset=dict(metadata["preset"]),
        data=dict(metadata["data"]),
        training=dict(metadata["training"]),
        scope=scope,
    )


def _check_finite(algo: Any, source: Path) -> None:
    """ValueError when any network weight is NaN or infinite (a diverged or edited model)."""
    from vanco_offline.export import module_tensors

    bad = [name for name, value in module_tensors(algo).items() if not np.isfinite(value).all()]
    if bad:
        raise ValueError(f"{source}: the weights {bad[:3]} hold NaN or infinity; the model is not used")


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
