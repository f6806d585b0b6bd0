"""Run an exported vanco-offline policy bundle with numpy alone.

A bundle is one ``.safetensors`` file: the policy network's weights as plain tensors and,
in the file's metadata, a JSON description of the computation (observation scaling, the
layers, the output transform, dose scaling) plus the feature names, the dose grid, the
training config and the training data's support. Loading it parses JSON and raw tensors
only, so a bundle shared between hospitals cannot execute code when opened (d3rlpy's
``.d3`` files, by contrast, are Python pickles: open only those you trust).

This module imports nothing from vanco_offline, d3rlpy or torch: copy it next to a bundle
and run ``python bundle.py MODEL.safetensors STATE.json`` on a machine that has only
numpy and safetensors.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "vanco-offline-bundle"
VERSION = 1
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
    """A loaded policy bundle: ``predict`` maps observations to doses in mg."""

    metadata: dict[str, Any]
    tensors: dict[str, np.ndarray]

    @property
    def observation_names(self) -> list[str]:
        return list(self.metadata["observation_names"])

    def predict(self, observations: np.ndarray) -> np.ndarray:
        """Greedy dose in mg for each row of ``observations`` (shape (n, n_features))."""
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
        scaler = self.metadata.get("observation_scaler")
        if scaler is not None:
            x = (x - np.asarray(scaler["mean"])) / (np.asarray(scaler["std"]) + scaler["eps"])
        for layer in self.metadata["layers"]:
            x = self._apply(layer, x)
        output = self.metadata["output"]
        if output in _DISCRETE_OUTPUTS:
            return np.asarray(self.metadata["dose_grid_mg"], dtype=np.float64)[_choose_level(x, output)]
        if output == "tanh":
            x = np.tanh(x)
        elif output == "clip":
            x = np.clip(x, -1.0, 1.0)
        elif output != "identity":
            raise ValueError(
                f"bundle output {output!r} is not one of {sorted(_DISCRETE_OUTPUTS)} or tanh, clip, identity"
            )
        action_scaler = self.metadata.get("action_scaler")
        if action_scaler is not None:
            low, high = np.asarray(action_scaler["minimum"]), np.asarray(action_scaler["maximum"])
            x = (high - low) * (x + 1.0) / 2.0 + low
        return x[:, 0]

    def _apply(self, layer: dict[str, Any], x: np.ndarray) -> np.ndarray:
        op = layer["op"]
        if op == "linear":
            return x @ self.tensors[layer["weight"]].T + self.tensors[layer["bias"]]
        if op == "layer_norm":
            mean = x.mean(axis=1, keepdims=True)
            var = x.var(axis=1, keepdims=True)
            y = (x - mean) / np.sqrt(var + layer["eps"])
            return y * self.tensors[layer["weight"]] + self.tensors[layer["bias"]]
        if op in _ACTIVATIONS:
            return _ACTIVATIONS[op](x)
        raise ValueError(f"bundle layer op {op!r} is not supported by this runtime")


def load_bundle(path: str | Path) -> Bundle:
    """Load a bundle written by ``vanco_offline.export.export_bundle`` (no code is executed)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bundle {path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
        tensors = {k: v.astype(np.float64) for k, v in load_file(str(path)).items()}
    except Exception as exc:  # safetensors raises its own error types for foreign files
        raise ValueError(f"{path} is not a vanco-offline bundle (not a safetensors file: {exc})") from None
    if raw is None:
        raise ValueError(
            f"{path} is a safetensors file but not a vanco-offline bundle (no '{METADATA_KEY}' metadata)"
        )
    metadata = json.loads(raw)
    if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
        raise ValueError(
            f"{path}: bundle format {metadata.get('format')!r} version {metadata.get('version')!r}; "
            f"this runtime reads {FORMAT!r} version {VERSION}"
        )
    return Bundle(metadata=metadata, tensors=tensors)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python bundle.py MODEL.safetensors STATE.json", file=sys.stderr)
        return 2
    bundle = load_bundle(argv[0])
    state = json.loads(Path(argv[1]).read_text())
    rows = state if isinstance(state, list) else [state]
    missing = sorted({name for row in rows for name in bundle.observation_names if name not in row})
    if missing:
        print(f"the state is missing features {missing}", file=sys.stderr)
        return 2
    x = np.array([[row[name] for name in bundle.observation_names] for row in rows], dtype=np.float64)
    print(json.dumps([float(dose) for dose in bundle.predict(x)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
