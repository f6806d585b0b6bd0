"""Training presets: packaged or user YAML files, validated into a typed :class:`Preset`.

A preset file has up to six top-level keys::

    extends: base              # optional: a packaged preset name or a path (relative to this file)
    description: ...           # optional free text
    algo: vanco_iql            # or residual_vanco_iql, discrete_vanco_iql
    config: {...}              # fields of VancoIQLConfig / ResidualVancoIQLConfig / DiscreteVancoIQLConfig
    network: {hidden_units: [32, 32], activation: relu}
    training: {n_steps: 5000, n_steps_per_epoch: 1000, seed: 0}
    data: {reward: default, action: continuous, observation_scaler: standard,
           action_scaler: clinical, reward_scaler: none,
           covariates: false, last_dose: false, pk_features: false}

``extends`` merges section by section: the extending file overrides single keys of its
parent's sections. Scalers and networks are set in ``data`` and ``network``, not in
``config``. :func:`build_algo` turns a preset into a ready-to-fit d3rlpy algorithm with its
scalers (d3rlpy is imported there, not when a preset is read).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from vanco_pk.targets import REWARDS

if TYPE_CHECKING:
    from d3rlpy.base import DeviceArg
    from d3rlpy.dataset import ReplayBufferBase

    from vanco_offline.data.options import ConversionSettings

__all__ = [
    "DataSettings",
    "NetworkSettings",
    "Preset",
    "TrainingSettings",
    "available_presets",
    "build_algo",
    "load_preset",
    "make_config",
]

ALGOS = ("vanco_iql", "residual_vanco_iql", "discrete_vanco_iql")
TOP_LEVEL_KEYS = ("extends", "description", "algo", "config", "network", "training", "data")
# Config fields that presets set elsewhere (or not at all), with where they belong.
_CONFIG_ELSEWHERE = {
    "observation_scaler": "data.observation_scaler",
    "action_scaler": "data.action_scaler",
    "reward_scaler": "data.reward_scaler",
    "actor_encoder_factory": "network",
    "critic_encoder_factory": "network",
    "value_encoder_factory": "network",
    "actor_optim_factory": "Python (build the config yourself)",
    "critic_optim_factory": "Python (build the config yourself)",
}
_CHOICES = {
    "reward": tuple(REWARDS),
    "action": ("continuous", "discrete"),
    "observation_scaler": ("standard", "none"),
    "action_scaler": ("clinical", "none"),
    "reward_scaler": ("none", "standard"),
    # d3rlpy's "geglu" halves each layer's width, which the networks' hidden_units do not allow.
    "activation": ("relu", "tanh", "swish", "gelu"),
    "pk_model": ("published", "local"),
}


@dataclasses.dataclass(frozen=True)
class NetworkSettings:
    """Hidden layers of all three networks (policy, Q, V); d3rlpy's ``VectorEncoderFactory``."""

    hidden_units: tuple[int, ...] = (256, 256)
    activation: str = "relu"


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """How long to train and with which seed (``d3rlpy.seed``)."""

    n_steps: int = 5000
    n_steps_per_epoch: int = 1000
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """Data-conversion choices that change what the algorithm learns.

    ``reward``: a name in :data:`vanco_pk.targets.REWARDS`: ``default`` (the trough reward),
    ``seed`` (the negative error reward, ``vanco_pk.targets.seed_reward``) or ``exposure``
    (the estimated AUC24, ``vanco_pk.targets.exposure_auc_reward``).
    ``action``: ``continuous`` (dose in mg) or ``discrete`` (dose-grid index).
    ``observation_scaler``: ``standard`` (fitted mean/std) or ``none``.
    ``action_scaler``: ``clinical`` (MinMax over the fixed 0-3000 mg bounds, not fitted)
    or ``none``. ``reward_scaler``: ``none`` or ``standard``. ``covariates``,
    ``last_dose``, ``pk_features``: the observation options of
    :func:`vanco_offline.data.convert` (covariate columns, the previous dose, the exposure
    tracker's features). ``pk_model``: the tracker's population prior, ``published`` (Goti
    2018) or ``local`` (refitted to the training table's levels before the conversion,
    :func:`vanco_offline.data.fit_local_model`; the fitted values are saved with the model).
    ``draw_head``: also learn when to draw a level from the table's ``level_drawn`` column
    (:mod:`vanco_offline.algos.sampling_iql`; a table without it is refused), the head saved
    with the model and its advice given beside each dose.
    """

    reward: str = "default"
    action: str = "continuous"
    observation_scaler: str = "standard"
    action_scaler: str = "clinical"
    reward_scaler: str = "none"
    covariates: bool = False
    last_dose: bool = False
    pk_features: bool = False
    pk_model: str = "published"
    draw_head: bool = False

    def conversion_settings(self, impute_max_age_h: float | None = None) -> ConversionSettings:
        """How :func:`vanco_offline.data.convert` builds this preset's observation and reward.

        A never-measured level is filled with 0 mg/L (the patient is drug-naive, as the
        simulator shows it); any other missing value is an error unless ``impute_max_age_h``
        allows carrying the last value forward that long within a stay.
        """
        from vanco_offline.data.options import CarryForward, ConversionSettings

        return ConversionSettings(
            action=self.action,  # type: ignore[arg-type]
            reward=self.reward,
            fill_unmeasured_level=True,
            covariates=self.covariates,
            last_dose=self.last_dose,
            pk_features=self.pk_features,
            impute=None if impute_max_age_h is None else CarryForward(max_age_h=impute_max_age_h),
        )


@dataclasses.dataclass(frozen=True)
class Preset:
    """A validated training preset; build the algorithm with :func:`vanco_offline.configs.build_algo`."""

    name: str
    source: str
    algo: str
    config: Mapping[str, Any]
    network: NetworkSettings
    training: TrainingSettings
    data: DataSettings
    description: str = ""


def available_presets() -> list[str]:
    """Names of the packaged presets."""
    files = importlib.resources.files("vanco_offline.configs").iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a packaged preset by name (``"default"``) or a YAML file by path.

    Raises
    ------
    ValueError
        Unknown preset name (lists the available ones), malformed YAML (file and line),
        an unknown key anywhere (names the key, the file and the valid keys), a value of
        the wrong type or out of range, or an ``extends`` cycle.
    OSError
        A path that cannot be read.
    """
    raw, source = _resolve(str(name_or_path), base_dir=None, chain=())
    name = Path(source).stem if not source.startswith("package:") else source.split(":", 1)[1][:-5]
    return _build(raw, name, source)


def _is_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml")) or "/" in ref or "\\" in ref


def _read_packaged(name: str) -> tuple[str, str]:
    resource = importlib.resources.files("vanco_offline.configs") / f"{name}.yaml"
    if not resource.is_file():
        raise ValueError(
            f"unknown preset {name!r}; available presets: {available_presets()} (or a path to a YAML file)"
        )
    return resource.read_text(encoding="utf-8"), f"package:{name}.yaml"


def _resolve(ref: str, base_dir: Path | None, chain: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """The merged mapping of ``ref`` and its ``extends`` ancestors, and ``ref``'s source label."""
    if _is_path(ref):
        path = Path(ref) if base_dir is None or Path(ref).is_absolute() else base_dir / ref
        # The cycle check compares resolved paths: "a.yaml" extending "../dir/a.yaml" is itself.
        identity = str(path.resolve())
        if identity in chain:
            raise ValueError(f"{path}: 'extends' forms a cycle: it extends itself through {ref!r}")
        text, source = path.read_text(encoding="utf-8"), str(path)
        here: Path | None = path.parent
    else:
        text, source = _read_packaged(ref)
        identity = source
        here = None
    if identity in chain:
        raise ValueError(f"{source}: 'extends' forms a cycle: {' -> '.join((*chain, source))}")
    data = _parse(text, source)
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data, source
    if not isinstance(parent_ref, str):
        raise ValueError(f"{source}: extends must be a preset name or a path, got {parent_ref!r}")
    parent, _ = _resolve(parent_ref, here, (*chain, identity))
    return _merge(parent, data), source


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except RecursionError:
        raise ValueError(f"{source}: the YAML is nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValueError(f"{where}: malformed YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{source}: a preset must be a mapping with keys {list(TOP_LEVEL_KEYS)}, "
            f"got {type(data).__name__}"
        )
    _check_keys(data, TOP_LEVEL_KEYS, source, "top level")
    for section in ("config", "network", "training", "data"):
        if section in data and not isinstance(data[section], dict):
            raise ValueError(f"{source}: {section} must be a mapping, got {data[section]!r}")
    return data


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = dict(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _check_keys(mapping: Mapping[str, Any], valid: tuple[str, ...], source: str, where: str) -> None:
    for key in mapping:
        if key not in valid:
            raise ValueError(f"{source}: unknown key {key!r} in {where}; valid keys: {list(valid)}")


def _build(raw: dict[str, Any], name: str, source: str) -> Preset:
    algo = raw.get("algo")
    if algo not in ALGOS:
        raise ValueError(f"{source}: algo={algo!r}; choose one of {list(ALGOS)}")
    network = _section(raw, "network", NetworkSettings, source)
    training = _section(raw, "training", TrainingSettings, source)
    data = _section(raw, "data", DataSettings, source)
    config = _check_config(raw.get("config", {}), algo, source)
    if any(h < 1 for h in network.hidden_units) or not network.hidden_units:
        raise ValueError(
            f"{source}: network.hidden_units={list(network.hidden_units)} must be a non-empty list of "
            "positive integers"
        )
    if isinstance(training.seed, bool) or not isinstance(training.seed, int) or training.seed < 0:
        raise ValueError(f"{source}: training.seed={training.seed!r} must be a non-negative integer")
    if training.n_steps_per_epoch < 1 or training.n_steps < training.n_steps_per_epoch:
        raise ValueError(
            f"{source}: training.n_steps={training.n_steps} must be >= training.n_steps_per_epoch="
            f"{training.n_steps_per_epoch} >= 1 (d3rlpy trains n_steps // n_steps_per_epoch epochs)"
        )
    expected_action = "discrete" if algo == "discrete_vanco_iql" else "continuous"
    if data.action != expected_action:
        raise ValueError(f"{source}: algo {algo} needs data.action: {expected_action}, got {data.action}")
    if algo == "discrete_vanco_iql" and data.action_scaler != "none":
        raise ValueError(
            f"{source}: discrete_vanco_iql needs data.action_scaler: none (its actions are dose-grid indices)"
        )
    if algo == "residual_vanco_iql" and not (data.pk_features and data.action_scaler == "clinical"):
        raise ValueError(
            f"{source}: residual_vanco_iql centres its policy on the PK feature pk_dose_auc500: it needs "
            "data.pk_features: true and data.action_scaler: clinical"
        )
    if data.draw_head and not data.pk_features:
        raise ValueError(
            f"{source}: data.draw_head replays each stay through the Bayesian tracker of the PK features: "
            "it needs data.pk_features: true"
        )
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{source}: description must be text, got {description!r}")
    return Preset(
        name=name,
        source=source,
        algo=algo,
        config=config,
        network=network,
        training=training,
        data=data,
        description=description.strip(),
    )


def _section(raw: dict[str, Any], section: str, cls: type, source: str) -> Any:
    values = raw.get(section, {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(values, tuple(fields), source, section)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{source}: {section}.{key}"
        kind = fields[key].type
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{where}={value!r} must be an integer")
        elif kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{where}={value!r} must be true or false")
        elif kind == "str":
            if not isinstance(value, str) or value not in _CHOICES[key]:
                raise ValueError(f"{where}={value!r}; choose one of {list(_CHOICES[key])}")
        else:  # hidden_units
            integers = isinstance(value, list) and all(type(v) is int for v in value)
            if not integers:
                raise ValueError(f"{where}={value!r} must be a list of integers, e.g. [32, 32]")
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def _config_class(algo: str) -> type:
    from vanco_offline.algos import DiscreteVancoIQLConfig, ResidualVancoIQLConfig, VancoIQLConfig

    classes = {"vanco_iql": VancoIQLConfig, "residual_vanco_iql": ResidualVancoIQLConfig}
    return classes.get(algo, DiscreteVancoIQLConfig)


def _check_config(values: dict[str, Any], algo: str, source: str) -> dict[str, Any]:
    cls = _config_class(algo)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    settable = tuple(k for k in fields if k not in _CONFIG_ELSEWHERE)
    for key, value in values.items():
        if key in _CONFIG_ELSEWHERE and key in fields:
            raise ValueError(
                f"{source}: config.{key} cannot be set in config; set it in {_CONFIG_ELSEWHERE[key]}"
            )
        if key not in fields:
            raise ValueError(
                f"{source}: unknown key {key!r} in config for {algo}; valid keys: {list(settable)}"
            )
        annotation = fields[key].type
        kind = annotation.__name__ if isinstance(annotation, type) else str(annotation)
        ok = {
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
        }.get(kind, True)
        if not ok:
            hint = ""
            if kind == "float" and isinstance(value, str) and _looks_like_float(value):
                hint = f" (YAML reads {value} as text: write it with a decimal point, e.g. 3.0e-4)"
            raise ValueError(f"{source}: config.{key}={value!r} must be of type {kind}{hint}")
    try:
        cls(**values)  # the config's own range checks
    except ValueError as exc:
        raise ValueError(f"{source}: config: {exc}") from None
    return dict(values)


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def make_config(preset: Preset) -> Any:
    """The algorithm config of ``preset``, with unfitted scalers (d3rlpy's ``fit`` fits them)."""
    import numpy as np
    from d3rlpy.models.encoders import VectorEncoderFactory
    from d3rlpy.preprocessing import MinMaxActionScaler, StandardObservationScaler, StandardRewardScaler
    from vanco_pk.targets import DOSE_MAX_MG

    from vanco_offline.algos import DiscreteVancoIQLConfig, ResidualVancoIQLConfig, VancoIQLConfig

    encoder = VectorEncoderFactory(
        hidden_units=list(preset.network.hidden_units), activation=preset.network.activation
    )
    data = preset.data
    kwargs: dict[str, Any] = dict(preset.config)
    kwargs.update(
        actor_encoder_factory=encoder,
        critic_encoder_factory=encoder,
        value_encoder_factory=encoder,
        observation_scaler=StandardObservationScaler() if data.observation_scaler == "standard" else None,
        reward_scaler=StandardRewardScaler() if data.reward_scaler == "standard" else None,
    )
    if preset.algo == "discrete_vanco_iql":
        return DiscreteVancoIQLConfig(**kwargs)
    if data.action_scaler == "clinical":
        # The clinical dose bounds, not the data's min and max: a cohort that never saw
        # 3000 mg must still map 3000 mg to +1.
        kwargs["action_scaler"] = MinMaxActionScaler(minimum=np.array([0.0]), maximum=np.array([DOSE_MAX_MG]))
    if preset.algo == "residual_vanco_iql":
        return ResidualVancoIQLConfig(**kwargs)
    return VancoIQLConfig(**kwargs)


def build_algo(preset: Preset, dataset: ReplayBufferBase | None = None, device: DeviceArg = False) -> Any:
    """A ready-to-fit VancoIQL or DiscreteVancoIQL for ``preset``.

    With ``dataset``, checks that its action space matches the preset and fits the
    observation and reward scalers on it, so that ``build_with_dataset`` followed by
    ``predict`` sees the same scaling as ``fit`` (d3rlpy's ``build_with_dataset`` does not
    fit scalers). Call ``d3rlpy.seed(preset.training.seed)`` before building the networks.
    """
    from d3rlpy.constants import ActionSpace

    config = make_config(preset)
    if dataset is not None:
        space = dataset.dataset_info.action_space
        expected = ActionSpace.DISCRETE if preset.data.action == "discrete" else ActionSpace.CONTINUOUS
        if space != expected:
            raise ValueError(
                f"preset {preset.name!r} expects {preset.data.action} actions but the dataset's action space "
                f"is {space.name.lower()}; convert the data with action={preset.data.action!r}"
            )
        for scaler in (config.observation_scaler, config.reward_scaler):
            if scaler is not None and not scaler.built:
                scaler.fit_with_transition_picker(dataset.episodes, dataset.transition_picker)
    return config.create(device=device)
