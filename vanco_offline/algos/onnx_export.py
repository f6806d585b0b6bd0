"""Export a greedy policy to ONNX with torch's TorchScript-based exporter.

d3rlpy 2.8.1's ``save_policy("policy.onnx")`` calls ``torch.onnx.export`` with torch's
defaults; since torch 2.9 that is the dynamo exporter, which needs the ``onnxscript``
package and does not take d3rlpy's traced function. This module exports the same
function (observation scaler -> greedy action -> inverse action scaler) with
``dynamo=False`` and a dynamic batch axis, so the model accepts any number of patients
at once (d3rlpy's export is fixed to a batch of one). It works for any d3rlpy
Q-learning algorithm, not only VancoIQL.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from d3rlpy.algos.qlearning.base import QLearningAlgoBase

__all__ = ["PolicyExportMixin", "save_policy_onnx"]


def save_policy_onnx(algo: QLearningAlgoBase[Any, Any], path: str | Path) -> None:
    """Write ``algo``'s greedy policy to ``path`` as ONNX (input ``input_0``, output ``output_0``).

    Raises
    ------
    ValueError
        If the algorithm has no networks yet or has tuple observations.
    """
    impl = algo.impl
    if impl is None:
        raise ValueError(f"{type(algo).__name__} has no networks yet: call build_with_dataset or fit first")
    shape = impl.observation_shape
    if not isinstance(shape[0], int):
        raise ValueError("ONNX export supports a single observation array, not tuple observations")
    config = algo.config
    dummy = torch.rand(1, *shape, device=algo._device)  # type: ignore[misc]

    def greedy(x: torch.Tensor) -> torch.Tensor:
        if config.observation_scaler:
            x = config.observation_scaler.transform(x)
        action = impl.predict_best_action(x)
        if config.action_scaler:
            action = config.action_scaler.reverse_transform(action)
        return action

    # Same freeze/trace/unfreeze dance as d3rlpy's save_policy: the traced graph must
    # hold the weights as constants, which requires them not to require grad.
    impl.modules.freeze()
    try:
        with warnings.catch_warnings():
            # d3rlpy's scalers assert on shapes while tracing (batch-independent trailing
            # dims) and a traced function has no signature to inspect: both are expected.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="no signature found", category=UserWarning)
            traced = torch.jit.trace(greedy, dummy, check_trace=False)
            torch.onnx.export(
                traced,
                (dummy,),
                str(path),
                export_params=True,
                opset_version=17,
                input_names=["input_0"],
                output_names=["output_0"],
                dynamic_axes={"input_0": {0: "batch"}, "output_0": {0: "batch"}},
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
