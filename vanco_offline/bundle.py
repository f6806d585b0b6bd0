"""Run a vanco-offline policy bundle without torch, through the safety layer.

A bundle is one ``.safetensors`` file: every network's weights as plain tensors and, in the
file's metadata, a JSON description of the greedy policy's computation (observation scaling,
the layers, the output transform, dose scaling) plus the feature names, the dose grid, the
d3rlpy config, the training data's support, a description of the model and a checksum of it
all. Loading it parses JSON and raw tensors only, so a bundle shared between hospitals cannot
execute code when opened (d3rlpy's ``.d3`` files, by contrast, are Python pickles).

:func:`load_bundle` refuses a bundle that is not whole (a bundle without the model's dosing
scope, its interval and population, loads for :meth:`Bundle.predict` but :meth:`Bundle.recommend`
refuses to dose with it): a checksum that does not match,
non-finite weights, a malformed layer, scalers that are not positive and finite, an action
range outside 0-3000 mg, a support that does not fit the features, or a policy whose output on
the training mean is not a dose. :meth:`Bundle.recommend` doses one state through
:mod:`vanco_offline.safety` (strict parsing, range checks, clinical limits, renal and loading
caps, support check), exactly as ``vanco-offline recommend`` does.

This module needs numpy, safetensors, ``vanco_pk``, :mod:`vanco_offline.safety` and the value
checks it uses (:mod:`vanco_offline.data.value_checks`, loaded without the data package's
torch-importing ``__init__``); not torch, not d3rlpy. A bundle doses only with the model's
dosing scope (its interval and population, written by ``train`` and ``export``). On a machine
with those::

    python -m vanco_offline.bundle MODEL.safetensors STATE.json
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from vanco_pk.targets import DOSE_MAX_MG as _DOSE_MAX

from vanco_offline.clinical import StateSupport
from vanco_offline.safety import DosingScope, check_dose, load_json, parse_state

FORMAT = "vanco-offline-bundle"
VERSION = 2
METADATA_KEY = "vanco_offline"

_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0))),
}


def _erf(x: np.ndarray) -> np.ndarray:
    from math import erf

    return np.vectorize(erf, otypes=[np.float64])(x)


#: Decision rules of a discrete policy (DiscreteVancoIQLConfig.decision_rule); "argmax" is
#: the name bundles written before the rule existed use for "mode".
_DISCRETE_OUTPUTS = ("argmax", "mode", "mean", "median")


def _choose_level(logits: np.ndarray, rule: str) -> np.ndarray:
    """The dose-grid level each row's rule picks; numpy twin of ``choose_level`` in the algorithm."""
    if rule in ("argmax", "mode"):
        return np.argmax(logits, axis=1)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    if rule == "mean":
        # np.rint rounds halves to even, as torch.round does.
        return np.rint(probs @ np.arange(probs.shape[1])).astype(np.int64)
    below = (np.cumsum(probs, axis=1) < 0.5).sum(axis=1)
    return np.minimum(below, probs.shape[1] - 1)


@dataclass
class Bundle:
    """A loaded, checked policy bundle.

    ``predict`` is the policy's raw greedy dose (what the exporter compares with the model);
    ``recommend`` is the dose for a patient, through the safety layer.
    """

    metadata: dict[str, Any]
    tensors: dict[str, np.ndarray]

    @property
    def observation_names(self) -> list[str]:
        return list(self.metadata["observation_names"])

    @property
    def scope(self) -> DosingScope:
        """The model's dosing interval, units and population (checked at load)."""
        return DosingScope.from_dict((self.metadata.get("model") or {}).get("scope"), "the bundle")

    @property
    def support(self) -> StateSupport | None:
        support = self.metadata.get("support")
        return None if support is None else StateSupport(**support)

    def predict(self, observations: np.ndarray) -> np.ndarray:
        """The policy's raw greedy dose in mg for each row of ``observations`` (n, n_features).

        No clinical limit is applied: give a patient :meth:`recommend`'s dose instead.
        """
        x = np.asarray(observations, dtype=np.float64)
        if x.ndim == 1:
            x = x[None]
        names = self.observation_names
        if x.ndim != 2 or x.shape[1] != len(names):
            raise ValueError(
                f"observations must have shape (n, {len(names)}) for features {names}; got {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError("observations contain NaN or infinity; impute them as in training first")
        raw = x
        scaler = self.metadata.get("observation_scaler")
        if scaler is not None:
            x = (x - np.asarray(scaler["mean"])) / (np.asarray(scaler["std"]) + scaler["eps"])
        with np.errstate(over="ignore", invalid="ignore"):
            for layer in self.metadata["layers"]:
                x = self._apply(layer, x)
        output = self.metadata["output"]
        if output in _DISCRETE_OUTPUTS:
            if not np.isfinite(x).all():
                return np.full(len(x), np.nan)
            return np.asarray(self.metadata["dose_grid_mg"], dtype=np.float64)[_choose_level(x, output)]
        if output == "tanh":
            x = np.tanh(x)
        elif output == "clip":
            x = np.clip(x, -1.0, 1.0)
        action_scaler = self.metadata.get("action_scaler")
        residual = self.metadata.get("residual")
        if residual is not None:
            # ResidualVancoIQL: the prior dose (an observation column, mg) plus the scaled output.
            low, high = float(action_scaler["minimum"][0]), float(action_scaler["maximum"][0])
            prior = np.clip(raw[:, int(residual["prior_index"])], low, high)
            prior = 2.0 * (prior - low) / (high - low) - 1.0
            x = np.clip(prior[:, None] + float(residual["scale"]) * x, -1.0, 1.0)
        if action_scaler is not None:
            low, high = np.asarray(action_scaler["minimum"]), np.asarray(action_scaler["maximum"])
            x = (high - low) * (x + 1.0) / 2.0 + low
        return x[:, 0]

    def recommend(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The dose for one patient state (feature names to values, covariates, ``first_dose``).

        Parsed and checked by :mod:`vanco_offline.safety`: a bad field is a ValueError naming
        it, a non-finite or impossible model output an ``UnsafeDose``, every limit that acts and
        every out-of-support feature is listed in the result.

        A model with a draw head (:attr:`draw_head`) also says whether to draw a level at the
        end of this interval (``"draw"`` in the result, :meth:`DrawHead.advise`) when the state
        holds ``"draw_state"``: the head's features by name
        (:func:`vanco_offline.algos.sampling_iql.draw_features_at` computes them from the
        stay's rows and the dose given). Without it the result says why no advice was given.
        The advice never changes the dose, its limits or its warnings.
        """
        draw_state = state.get("draw_state") if isinstance(state, Mapping) else None
        if isinstance(state, Mapping):  # anything else is refused by parse_state, as always
            state = {k: v for k, v in state.items() if k != "draw_state"}
        head = self.draw_head
        if draw_state is not None and head is None:
            raise ValueError(
                "the state has 'draw_state' but this model has no draw head (trained without draws)"
            )
        fill = bool(self.metadata.get("model", {}).get("conversion", {}).get("fill_unmeasured_level"))
        observation, covariates, first_dose = parse_state(
            state, self.observation_names, fill_unmeasured_level=fill
        )
        raw = float(self.predict(observation[None])[0])
        checked = check_dose(
            raw,
            observation,
            self.observation_names,
            covariates,
            support=self.support,
            scope=self.scope,
            first_dose=first_dose,
        )
        result = checked.to_dict()
        if head is not None:
            if draw_state is None:
                result["draw"] = {"why": f"not computed: give 'draw_state' with {head.features}"}
            elif not isinstance(draw_state, Mapping):
                raise ValueError("'draw_state' must be an object of the draw head's features")
            else:
                parsed = {k: _draw_number(k, v) for k, v in draw_state.items()}
                result["draw"] = head.advise(parsed, held=checked.held)
        return result

    def _apply(self, layer: dict[str, Any], x: np.ndarray) -> np.ndarray:
        return _apply_layer(layer, x, self.tensors)

    @property
    def draw_head(self) -> DrawHead | None:
        """The model's draw head (when to draw a level), or None for a model trained without one."""
        head = self.metadata.get(DRAW_HEAD_KEY)
        if head is None:
            return None
        prefix = f"{DRAW_HEAD_KEY}."
        tensors = {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}
        return DrawHead(head, tensors)


def _apply_layer(layer: dict[str, Any], x: np.ndarray, tensors: Mapping[str, np.ndarray]) -> np.ndarray:
    op = layer["op"]
    if op == "linear":
        return x @ tensors[layer["weight"]].T + tensors[layer["bias"]]
    if op == "layer_norm":
        mean = x.mean(axis=1, keepdims=True)
        var = x.var(axis=1, keepdims=True)
        y = (x - mean) / np.sqrt(var + layer["eps"])
        return y * tensors[layer["weight"]] + tensors[layer["bias"]]
    return _ACTIVATIONS[op](x)


#: The bundle metadata key (and tensor-name prefix) of a draw head.
DRAW_HEAD_KEY = "draw_head"


@dataclass
class DrawHead:
    """When to draw a level, as the model learned it from the logs' draws (a code-free description).

    The head is a twin Q over two actions (0 = no draw, 1 = draw a trough at the end of this
    interval) fitted with :math:`\\gamma = 0` to what each logged level changed
    (:mod:`vanco_offline.algos.sampling_iql`); it advises a draw where
    :math:`Q(s, 1) - Q(s, 0)`, the mean over the twins, exceeds ``cost``, the per-draw cost
    :math:`\\lambda` chosen at training (``cost_rule`` says how). ``metadata`` holds the
    features (:data:`vanco_pk.policies.sampling.DRAW_FEATURES`), the observation scaler, each
    Q network's layers and the cost; ``tensors`` their weights.
    """

    metadata: dict[str, Any]
    tensors: dict[str, np.ndarray]

    @property
    def features(self) -> list[str]:
        return list(self.metadata["features"])

    @property
    def cost(self) -> float:
        return float(self.metadata["cost"])

    def advantage(self, features: np.ndarray) -> np.ndarray:
        """:math:`Q(s, 1) - Q(s, 0)` for draw states ``features`` (n, len(features))."""
        x = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if x.shape[1] != len(self.features) or not np.isfinite(x).all():
            raise ValueError(
                f"the draw state must be {len(self.features)} finite numbers ({', '.join(self.features)})"
            )
        scaler = self.metadata.get("observation_scaler")
        if scaler is not None:
            x = (x - np.asarray(scaler["mean"])) / (np.asarray(scaler["std"]) + scaler["eps"])
        q = []
        with np.errstate(over="ignore", invalid="ignore"):
            for layers in self.metadata["q_funcs"]:
                y = x
                for layer in layers:
                    y = _apply_layer(layer, y, self.tensors)
                q.append(y)
        mean = np.mean(q, axis=0)
        return mean[:, 1] - mean[:, 0]

    def advise(self, state: Mapping[str, Any], held: bool = False) -> dict[str, Any]:
        """The draw advice for one draw state (feature name to value): ``draw``, ``why`` and the numbers.

        ``held``: the safety layer holds the dose (a trough above its threshold) and asks for a
        level before the next dose; the advice is then yes whatever the head says.
        """
        missing = [f for f in self.features if f not in state]
        unknown = sorted(set(state) - set(self.features))
        if missing or unknown:
            raise ValueError(
                f"the draw state needs exactly {self.features}; missing {missing}, unknown {unknown}"
            )
        values = [float(state[f]) for f in self.features]
        value = float(self.advantage(np.asarray(values)[None])[0])
        if not math.isfinite(value):
            raise ValueError("the draw head's value of a level is not finite: the model is broken")
        learned = value > self.cost
        named = dict(zip(self.features, values, strict=True))
        drivers = (
            f"posterior SD of the next 24 h's log AUC {named['sd_log_auc']:.2f}, "
            f"{named['days_since_level'] * 24.0:.0f} h since the last level"
            if "sd_log_auc" in named and "days_since_level" in named
            else ""
        )
        compare = ">" if learned else "<="
        rule = self.metadata.get("cost_rule", "chosen at training")
        why = (
            f"value of a level learned from the logs' draws, Q(draw) - Q(no draw) = {value:+.3f} "
            f"{compare} its cost {self.cost:.3f} (log AUC; {rule})"
        )
        if drivers:
            why += f"; {drivers}"
        if held:
            alone = "yes" if learned else "no"
            why = (
                f"the dose is held: re-check the level before the next dose (the head alone: {alone}, {why})"
            )
        return {
            "draw": bool(learned or held),
            "learned_draw": bool(learned),
            "value": value,
            "cost": self.cost,
            "why": why,
            "state": named,
        }


def draw_line(advice: Mapping[str, Any] | None) -> str | None:
    """The text line of a draw advice (:meth:`DrawHead.advise`), or of why none was computed."""
    if advice is None:
        return None
    if "draw" not in advice:
        return f"draw a level          {advice.get('why', 'not computed')}"
    return f"draw a level          {'yes' if advice['draw'] else 'no'}: {advice['why']}"


def _draw_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise ValueError(f"draw_state.{name} must be a finite number, got {value!r}")
    return float(value)


def checksum(metadata: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the metadata (less its ``checksum``) and every tensor's name, shape and bytes."""
    digest = hashlib.sha256()
    body = {k: v for k, v in metadata.items() if k != "checksum"}
    digest.update(json.dumps(body, sort_keys=True).encode())
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name], dtype=np.float32)
        digest.update(f"{name}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def load_bundle(path: str | Path) -> Bundle:
    """Load and check a bundle written by ``vanco_offline.export.export_bundle`` (no code runs).

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    ValueError
        Not a bundle, a bundle of another version, or one that fails a check (see the module
        docstring); the message names what is wrong.
    """
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bundle {path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for foreign files
        raise ValueError(f"{path} is not a vanco-offline bundle (not a safetensors file: {exc})") from None
    if raw is None:
        raise ValueError(
            f"{path} is a safetensors file but not a vanco-offline bundle (no '{METADATA_KEY}' metadata)"
        )
    metadata = load_json(raw, f"{path}: the bundle's description")
    if (
        not isinstance(metadata, dict)
        or metadata.get("format") != FORMAT
        or metadata.get("version") != VERSION
    ):
        found = (metadata.get("format"), metadata.get("version")) if isinstance(metadata, dict) else metadata
        raise ValueError(
            f"{path}: bundle format/version {found!r}; this runtime reads {FORMAT!r} version {VERSION} "
            "(export the model again with this version)"
        )
    if metadata.get("checksum") != checksum(metadata, tensors):
        raise ValueError(
            f"{path}: the checksum does not match the contents: the bundle is corrupted or was edited"
        )
    bundle = Bundle(metadata=metadata, tensors={k: v.astype(np.float64) for k, v in tensors.items()})
    try:
        _check(bundle)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(
            f"{path}: the bundle's description is malformed ({exc!r})"  # repr: one line, whatever the keys
        ) from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return bundle


def _finite_list(value: Any, n: int, what: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (n,) or not np.isfinite(array).all():
        raise ValueError(f"the {what} must be {n} finite numbers, got {value!r}")
    return array


def _check_layers(layers: Any, tensors: Mapping[str, np.ndarray]) -> None:
    for layer in layers:
        op = layer["op"]
        if op in ("linear", "layer_norm"):
            missing = [layer[k] for k in ("weight", "bias") if layer[k] not in tensors]
            if missing:
                raise ValueError(f"layer {op} refers to tensors {missing} that are not in the file")
            if op == "layer_norm" and not float(layer["eps"]) > 0:
                raise ValueError("a layer_norm's eps must be > 0")
        elif op not in _ACTIVATIONS:
            raise ValueError(f"layer op {op!r} is not supported by this runtime")


def _check_draw_head(head: DrawHead | None) -> None:
    """A draw head's features, cost, scaler and networks (KeyError/TypeError: malformed)."""
    from vanco_pk.policies.sampling import DRAW_FEATURES

    assert head is not None
    if head.features != list(DRAW_FEATURES):
        raise ValueError(f"the draw head's features {head.features} are not {list(DRAW_FEATURES)}")
    if not math.isfinite(head.cost):
        raise ValueError(f"the draw head's cost {head.metadata['cost']!r} must be a finite number")
    scaler = head.metadata.get("observation_scaler")
    if scaler is not None:
        std = _finite_list(scaler["std"], len(head.features), "draw head scaler's std")
        _finite_list(scaler["mean"], len(head.features), "draw head scaler's mean")
        if (std < 0).any() or not float(scaler["eps"]) > 0:
            raise ValueError("the draw head scaler's std must be >= 0 and its eps > 0")
    if not head.metadata["q_funcs"]:
        raise ValueError("the draw head has no Q network")
    for layers in head.metadata["q_funcs"]:
        _check_layers(layers, head.tensors)
    try:
        value = head.advantage(np.zeros((1, len(head.features))))
    except ValueError as exc:
        raise ValueError(f"the draw head's layers do not compose ({exc})") from None
    if value.shape != (1,) or not np.isfinite(value).all():
        raise ValueError("the draw head's value of a level is not a finite number: the model is broken")


def _check(bundle: Bundle) -> None:
    """Every check of :func:`load_bundle` past the checksum (KeyError/TypeError: malformed)."""
    meta, tensors = bundle.metadata, bundle.tensors
    names = meta["observation_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"observation_names must be a non-empty list of feature names, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"observation_names has duplicates: {names}")
    bad = [k for k, v in tensors.items() if not np.isfinite(v).all()]
    if bad:
        raise ValueError(f"the weights {bad[:3]} hold NaN or infinity: the model is broken")
    if meta["action"] not in ("continuous", "discrete"):
        raise ValueError(f"action must be 'continuous' or 'discrete', got {meta['action']!r}")
    output = meta["output"]
    discrete = meta["action"] == "discrete"
    if (output in _DISCRETE_OUTPUTS) != discrete or output not in (
        *_DISCRETE_OUTPUTS,
        "tanh",
        "clip",
        "identity",
    ):
        raise ValueError(f"output {output!r} does not fit a {meta['action']} policy")
    grid = np.asarray(meta["dose_grid_mg"], dtype=np.float64)
    if (
        grid.ndim != 1
        or not len(grid)
        or not np.isfinite(grid).all()
        or grid.min() < 0
        or grid.max() > _DOSE_MAX
    ):
        raise ValueError(f"dose_grid_mg must be doses within 0-{_DOSE_MAX:g} mg")
    scaler = meta.get("observation_scaler")
    if scaler is not None:
        _finite_list(scaler["mean"], len(names), "observation scaler's mean")
        std = _finite_list(scaler["std"], len(names), "observation scaler's std")
        eps = float(scaler["eps"])
        if (std < 0).any() or not (math.isfinite(eps) and eps > 0):
            raise ValueError("the observation scaler's std must be >= 0 and its eps > 0")
    action_scaler = meta.get("action_scaler")
    if not discrete:
        if action_scaler is None:
            raise ValueError("a continuous policy needs its action scaler (the dose range in mg)")
        low = _finite_list(action_scaler["minimum"], 1, "action scaler's minimum")[0]
        high = _finite_list(action_scaler["maximum"], 1, "action scaler's maximum")[0]
        if not 0.0 <= low < high <= _DOSE_MAX:
            raise ValueError(
                f"the action scaler maps the policy to {low:g}-{high:g} mg, "
                f"outside the clinical 0-{_DOSE_MAX:g} mg"
            )
    residual = meta.get("residual")
    if residual is not None:
        index, scale = residual["prior_index"], float(residual["scale"])
        if discrete or not isinstance(index, int) or not 0 <= index < len(names):
            raise ValueError(f"residual prior_index {index!r} is not a column of {names} (continuous only)")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"residual scale {scale!r} must be a positive number")
    _check_layers(meta["layers"], tensors)
    if meta.get(DRAW_HEAD_KEY) is not None:
        _check_draw_head(bundle.draw_head)
    if not isinstance(meta.get("model", {}), dict):
        raise ValueError(f"the model description must be an object, got {meta['model']!r}")
    if meta.get("model", {}).get("scope") is not None:
        bundle.scope  # noqa: B018  (a malformed dosing scope is refused at load; a missing one when dosing)
    support = bundle.support
    if support is not None and support.names != names:
        raise ValueError(f"the support is over {support.names}, the policy over {names}")
    probe = np.asarray(support.mean)[None] if support is not None else np.zeros((1, len(names)))
    try:
        dose = float(bundle.predict(probe)[0])
    except ValueError as exc:  # numpy shape mismatch between layers
        raise ValueError(f"the layers do not compose ({exc})") from None
    if not (math.isfinite(dose) and -1.0 <= dose <= _DOSE_MAX + 1.0):
        raise ValueError(
            f"the policy's dose for the training mean is {dose!r} mg: the model is broken or edited"
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m vanco_offline.bundle MODEL.safetensors STATE.json``: one JSON line per run.

    STATE.json holds one state object or a list of them; the output is a JSON list of
    :meth:`Bundle.recommend` results. Any bad input is one line on stderr and exit code 2.
    """
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m vanco_offline.bundle MODEL.safetensors STATE.json", file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(argv[0])
        state = load_json(Path(argv[1]).read_bytes(), argv[1])
        rows = state if isinstance(state, list) else [state]
        if not rows:
            raise ValueError(f"{argv[1]} holds an empty list; give one state or a list of states")
        results = []
        for index, row in enumerate(rows):
            try:
                results.append(bundle.recommend(row))
            except ValueError as exc:
                raise ValueError(f"state {index}: {exc}" if len(rows) > 1 else str(exc)) from None
    except (ValueError, OSError) as exc:
        print(f"bundle: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
