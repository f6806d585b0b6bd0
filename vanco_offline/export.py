"""Export a trained policy: TorchScript and ONNX through d3rlpy, or a code-free bundle.

The bundle (see :mod:`vanco_offline.bundle`) is the format to share and the model folder's
primary file: every network's weights as plain tensors and a JSON description (d3rlpy config
with the fitted scalers, the policy's layers, the features, the training data's support, a
checksum), readable with numpy and safetensors alone, that cannot execute code when loaded.
With torch, :func:`vanco_offline.trained.load_model` rebuilds the full d3rlpy algorithm from
it. The exporter checks its own output: the bundle must reproduce the algorithm's greedy
doses on probe states (NaN counts as a difference), or nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from d3rlpy.base import LearnableConfigWithShape
from d3rlpy.preprocessing import MinMaxActionScaler, StandardObservationScaler
from torch import nn
from vanco_pk.targets import DOSE_GRID_MG

from vanco_offline import bundle as runtime
from vanco_offline.algos import DiscreteVancoIQL, VancoIQL, save_policy_onnx
from vanco_offline.algos.dosing import predict_dose_mg

__all__ = ["FORMATS", "draw_head_bundle", "export_bundle", "export_policy", "module_tensors"]

FORMATS = {"torchscript": ".pt", "onnx": ".onnx", "bundle": ".safetensors"}

_ACTIVATION_NAMES = {
    nn.ReLU: "relu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.ELU: "elu",
    nn.SiLU: "silu",
    nn.GELU: "gelu",
}
# float32 networks evaluated in float64 by the runtime: doses agree to well under 0.01 mg.
_TOLERANCE_MG = 0.05


def export_policy(algo: Any, path: str | Path, fmt: str, **bundle_options: Any) -> Path:
    """Write ``algo``'s greedy policy to ``path`` in format ``fmt`` (torchscript, onnx or bundle)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {sorted(FORMATS)}")
    path = Path(path)
    if path.suffix != FORMATS[fmt]:
        raise ValueError(f"a {fmt} export must be written to a {FORMATS[fmt]} file, not {path.name}")
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: the folder {path.parent} does not exist")
    probe = path.with_name(f".write-check-{path.name}")
    try:  # torch and d3rlpy report an unwritable folder as a RuntimeError deep in their writers
        probe.open("wb").close()
        probe.unlink()
    except OSError as exc:
        raise OSError(f"cannot write {path}: {exc.strerror}") from None
    if fmt == "bundle":
        return export_bundle(algo, path, **bundle_options)
    if fmt == "onnx":
        # d3rlpy's own ONNX export needs onnxscript with torch >= 2.9 and fixes the batch size
        # to 1; this one works for any d3rlpy algorithm and any batch size.
        save_policy_onnx(algo, path)
    else:
        algo.save_policy(str(path))  # d3rlpy folds the scalers into the traced graph
    return path


def export_bundle(
    algo: Any,
    path: str | Path,
    *,
    observation_names: list[str],
    support: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    probe: np.ndarray | None = None,
    draw_head: runtime.DrawHead | None = None,
) -> Path:
    """Write a code-free bundle of a VancoIQL or DiscreteVancoIQL greedy policy.

    Parameters
    ----------
    algo : VancoIQL or DiscreteVancoIQL
        A built (trained) algorithm.
    observation_names : list of str
        The features of the observation, in order; a bundle user must know them.
    support : dict, optional
        ``StateSupport`` fields of the training data, for out-of-support warnings.
    model : dict, optional
        JSON-serialisable description of the model (``TrainedModel.metadata()``: conversion,
        preset, data provenance, training), so the bundle alone is a complete model.
    probe : array, optional
        States on which the bundle must reproduce ``algo.predict``; random standard-normal
        states in the scaled space when omitted.
    draw_head : DrawHead, optional
        The model's draw head (:func:`draw_head_bundle`), carried under ``"draw_head"`` with
        its tensors prefixed ``draw_head.``.
    """
    from safetensors.numpy import save_file

    if not isinstance(algo, VancoIQL | DiscreteVancoIQL):
        raise ValueError(
            f"bundle export supports VancoIQL and DiscreteVancoIQL, not {type(algo).__name__}; "
            "use --format onnx or torchscript for other d3rlpy algorithms"
        )
    if algo.impl is None:
        raise ValueError(
            "the algorithm has no networks yet: train it (or build_with_dataset) before exporting"
        )
    n_inputs = algo.impl.observation_shape[0]
    if len(observation_names) != n_inputs:
        raise ValueError(f"{len(observation_names)} observation names for a policy with {n_inputs} inputs")
    tensors = module_tensors(algo)
    if not all(np.isfinite(t).all() for t in tensors.values()):
        raise ValueError("the model's weights hold NaN or infinity (training diverged): nothing was written")
    policy = algo.impl.policy
    layers = _encoder_layers(policy._encoder, "policy._encoder._layers")
    discrete = isinstance(algo, DiscreteVancoIQL)
    head = "_fc" if (discrete or not hasattr(policy, "_mu")) else "_mu"
    layers.append(_linear(f"policy.{head}"))
    with_shape = LearnableConfigWithShape(
        observation_shape=algo.impl.observation_shape, action_size=algo.impl.action_size, config=algo.config
    )
    metadata = {
        "format": runtime.FORMAT,
        "version": runtime.VERSION,
        "algorithm": algo.config.get_type(),
        "config": json.loads(with_shape.serialize()),
        "observation_names": list(observation_names),
        "action": "discrete" if discrete else "continuous",
        "dose_grid_mg": DOSE_GRID_MG.tolist(),
        "observation_scaler": _observation_scaler(algo.observation_scaler),
        "layers": layers,
        # DiscreteVancoIQL's greedy level is the one nearest its mean; VancoIQL's mean is tanh(mu).
        "output": "mean" if discrete else "tanh",
        "action_scaler": None if discrete else _action_scaler(algo.action_scaler),
        "residual": _residual(algo),
        "support": support,
        "model": model or {},
    }
    if draw_head is not None:
        metadata[runtime.DRAW_HEAD_KEY] = draw_head.metadata
        tensors.update({f"{runtime.DRAW_HEAD_KEY}.{k}": v for k, v in draw_head.tensors.items()})
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    metadata["checksum"] = runtime.checksum(metadata, tensors)
    path = Path(path)
    # Written beside the target and renamed once checked: an interrupted or failed export
    # leaves no half-written bundle (and never replaces a good one with a bad one).
    from vanco_offline.atomic import atomic_path

    try:
        with atomic_path(path, overwrite=True) as partial:  # the caller decided whether to replace
            save_file(tensors, str(partial), metadata={runtime.METADATA_KEY: json.dumps(metadata)})
            _check_reproduces(algo, partial, probe, discrete)
    except ValueError:
        raise
    except Exception as exc:  # safetensors reports I/O failures as its own error type
        raise OSError(f"cannot write {path}: {exc}") from None
    return path


def draw_head_bundle(
    algo: Any, cost: float, *, cost_rule: str, probe: np.ndarray, info: dict[str, Any] | None = None
) -> runtime.DrawHead:
    """The code-free description of a draw head (:func:`~vanco_offline.algos.sampling_iql.fit_draw_head`).

    Its twin Q networks' layers and weights, the observation scaler, the features
    (:data:`vanco_pk.policies.sampling.DRAW_FEATURES`), ``cost`` (:math:`\\lambda`, log AUC per
    draw), ``cost_rule`` (how it was chosen) and ``info`` (provenance). The description must
    reproduce the algorithm's :math:`Q(s, 1) - Q(s, 0)` on ``probe`` draw states, or a
    RuntimeError says so.
    """
    from vanco_pk.policies.sampling import DRAW_FEATURES

    from vanco_offline.algos.sampling_iql import draw_advantage

    if not isinstance(algo, DiscreteVancoIQL) or algo.impl is None or algo.impl.action_size != 2:
        raise ValueError("draw_head_bundle: give a fitted two-action DiscreteVancoIQL (fit_draw_head)")
    if not np.isfinite(cost):
        raise ValueError(f"draw_head_bundle: cost = {cost!r} must be a finite number")
    q_funcs = []
    for index, q_func in enumerate(algo.impl.modules.q_funcs):
        prefix = f"q_funcs.{index}"
        q_funcs.append(
            [*_encoder_layers(q_func._encoder, f"{prefix}._encoder._layers"), _linear(f"{prefix}._fc")]
        )
    names = {layer[k] for layers in q_funcs for layer in layers for k in ("weight", "bias") if k in layer}
    tensors = {k: v.astype(np.float64) for k, v in module_tensors(algo).items() if k in names}
    metadata = {
        "features": list(DRAW_FEATURES),
        "observation_scaler": _observation_scaler(algo.observation_scaler),
        "q_funcs": q_funcs,
        "cost": float(cost),
        "cost_rule": cost_rule,
        "info": info or {},
    }
    head = runtime.DrawHead(json.loads(json.dumps(metadata)), tensors)
    probe = np.asarray(probe, np.float32)
    worst = float(np.max(np.abs(head.advantage(probe) - draw_advantage(algo, probe))))
    if not worst <= 1e-4:  # NaN fails too
        raise RuntimeError(
            f"internal error: the draw head's description differs from its network by {worst:.2g}; report it"
        )
    return head


def _residual(algo: Any) -> dict[str, Any] | None:
    """A residual policy's prior column and scale (the bundle adds the prior dose), else None."""
    from vanco_offline.algos import ResidualVancoIQL

    if not isinstance(algo, ResidualVancoIQL):
        return None
    cfg = algo.config
    if cfg.q_candidates:
        raise ValueError(
            f"bundle export: ResidualVancoIQL with q_candidates={cfg.q_candidates} picks its dose with the "
            "critics, which a bundle does not hold; use --format onnx or torchscript"
        )
    index = int(cfg.prior_index) % int(algo.impl.observation_shape[0])
    return {"prior_index": index, "scale": float(cfg.residual_scale)}


def module_tensors(algo: Any) -> dict[str, np.ndarray]:
    """Every network's parameters and buffers as ``{"<module>.<state_dict key>": array}``.

    The names are those of d3rlpy's checkpointer (``policy``, ``q_funcs``, ``value_func``,
    ...), so :func:`vanco_offline.trained.load_model` loads them back with ``load_state_dict``;
    optimizer states are left out (a bundle is for inference).
    """
    tensors: dict[str, np.ndarray] = {}
    for name, module in algo.impl.modules.create_checkpointer("cpu:0").modules.items():
        if isinstance(module, nn.Module):
            for key, value in module.state_dict().items():
                tensors[f"{name}.{key}"] = value.detach().cpu().numpy()
    return tensors


def _encoder_layers(encoder: nn.Module, prefix: str) -> list[dict[str, Any]]:
    sequential = getattr(encoder, "_layers", None)
    if not isinstance(sequential, nn.Sequential):
        raise ValueError(
            f"bundle export needs a vector encoder (d3rlpy VectorEncoder), not {type(encoder).__name__}"
        )
    layers: list[dict[str, Any]] = []
    for index, module in enumerate(sequential):
        if isinstance(module, nn.Linear):
            layers.append(_linear(f"{prefix}.{index}"))
        elif isinstance(module, nn.LayerNorm):
            layers.append({**_linear(f"{prefix}.{index}"), "op": "layer_norm", "eps": module.eps})
        elif isinstance(module, nn.Dropout):
            continue  # identity at inference
        elif type(module) in _ACTIVATION_NAMES:
            layers.append({"op": _ACTIVATION_NAMES[type(module)]})
        else:
            raise ValueError(f"bundle export does not support the layer {type(module).__name__}")
    return layers


def _linear(name: str) -> dict[str, Any]:
    return {"op": "linear", "weight": f"{name}.weight", "bias": f"{name}.bias"}


def _observation_scaler(scaler: Any) -> dict[str, Any] | None:
    if scaler is None:
        return None
    if not isinstance(scaler, StandardObservationScaler):
        raise ValueError(f"bundle export supports StandardObservationScaler, not {type(scaler).__name__}")
    return {
        "type": "standard",
        "mean": np.asarray(scaler.mean).tolist(),
        "std": np.asarray(scaler.std).tolist(),
        "eps": float(scaler.eps),
    }


def _action_scaler(scaler: Any) -> dict[str, Any] | None:
    if scaler is None:
        return None
    if not isinstance(scaler, MinMaxActionScaler):
        raise ValueError(f"bundle export supports MinMaxActionScaler, not {type(scaler).__name__}")
    return {
        "type": "min_max",
        "minimum": np.asarray(scaler.minimum).tolist(),
        "maximum": np.asarray(scaler.maximum).tolist(),
    }


def _check_reproduces(algo: Any, path: Path, probe: np.ndarray | None, discrete: bool) -> None:
    loaded = runtime.load_bundle(path)
    if probe is None:
        generator = np.random.default_rng(0)
        scaled = generator.standard_normal((256, algo.impl.observation_shape[0]))
        scaler = algo.observation_scaler
        probe = scaler.reverse_transform_numpy(scaled) if scaler is not None else scaled
    probe = np.asarray(probe, dtype=np.float32)
    with torch.no_grad():
        expected = predict_dose_mg(algo, probe)
    got = loaded.predict(probe)
    worst = float(np.max(np.abs(got - expected)))
    if not np.isfinite(expected).all():
        raise ValueError(
            "the model's doses are NaN or infinite on probe states: the model is broken; nothing written"
        )
    if not worst <= _TOLERANCE_MG:  # NaN fails too
        raise RuntimeError(
            f"internal error: the bundle's doses differ from the model's by up to {worst:.3f} mg; "
            "nothing was written, please report this"
        )
