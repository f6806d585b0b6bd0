"""Export a greedy policy to ONNX with torch's TorchScript-based exporter.

d3rlpy 2.8.1's ``save_policy("policy.onnx")`` calls ``torch.onnx.export`` with torch's
defaults; since torch 2.9 that is the dynamo exporter, which needs the ``onnxscript``
package and does not take d3rlpy's traced function. This module exports the same
function (observation scaler -> greedy action -> inverse action scaler) with
``dynamo=False`` and a dynamic batch axis, so the model accepts any number of patients
at once (d3rlpy's export is fixed to a batch of one). Tuple observations export as one
input per array, as in d3rlpy. It works for any d3rlpy Q-learning algorithm, not only
VancoIQL.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from d3rlpy.algos.qlearning.base import QLearningAlgoBase
from d3rlpy.dataset import is_tuple_shape

__all__ = ["PolicyExportMixin", "save_policy_onnx"]


def save_policy_onnx(algo: QLearningAlgoBase[Any, Any], path: str | Path) -> None:
    """Write ``algo``'s greedy policy to ``path`` as ONNX with a dynamic batch axis.

    One input per observation array, named as d3rlpy names them: ``input_0`` for an
    array observation, ``input_0``, ``input_1``, ... for a tuple observation (in the
    tuple's order); one output, ``output_0``.

    Raises
    ------
    ValueError
        If the algorithm has no networks yet.
    """
    impl = algo.impl
    if impl is None:
        raise ValueError(f"{type(algo).__name__} has no networks yet: call build_with_dataset or fit first")
    shape = impl.observation_shape
    shapes = list(shape) if is_tuple_shape(shape) else [shape]
    dummies = tuple(torch.rand(1, *s, device=algo._device) for s in shapes)  # type: ignore[misc]
    config = algo.config

    def greedy(*x: torch.Tensor) -> torch.Tensor:
        # As d3rlpy's save_policy: one tensor, or the tuple of them for tuple observations.
        observation: Any = x[0] if len(x) == 1 else list(x)
        if config.observation_scaler:
            observation = config.observation_scaler.transform(observation)
        action = impl.predict_best_action(observation)
        if config.action_scaler:
            action = config.action_scaler.reverse_transform(action)
        return action

    input_names = [f"input_{i}" for i in range(len(dummies))]
    dynamic_axes = {name: {0: "batch"} for name in [*input_names, "output_0"]}
    # Same freeze/trace/unfreeze dance as d3rlpy's save_policy: the traced graph must
    # hold the weights as constants, which requires them not to require grad.
    impl.modules.freeze()
    try:
        with warnings.catch_warnings():
            # d3rlpy's scalers assert on shapes while tracing (batch-independent trailing
            # dims) and a traced function has no signature to inspect: both are expected.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="no signature found", category=UserWarning)
            traced = torch.jit.trace(greedy, dummies, check_trace=False)
            torch.onnx.export(
                traced,
                dummies,
                str(path),
                export_params=True,
                opset_version=17,
                input_names=input_names,
                output_names=["output_0"],
                dynamic_axes=dynamic_axes,
                dynamo=False,
            )
    finally:
        impl.modules.unfreeze()


class PolicyExportMixin:
    """``save_policy`` that writes ``.onnx`` with :func:`save_policy_onnx` and ``.pt`` as d3rlpy does."""

    def save_policy(self, fname: str) -> None:
        """Save the greedy policy as TorchScript (``.pt``) or ONNX (``.onnx``, any batch size)."""
        if str(fname).endswith(".onnx"):
            save_policy_onnx(self, fname)  # type: ignore[arg-type]
            return
        super().save_policy(fname)  # type: ignore[misc]
