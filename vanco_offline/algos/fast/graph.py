"""The whole IQL update recorded once as a CUDA graph and replayed every step (``compile_graph=True``)."""

from __future__ import annotations

from typing import Any

import torch

from vanco_offline.algos.torch.vanco_iql_impl import LOSS_NAMES, DeviceLosses

__all__ = ["GraphedUpdate", "make_capturable"]

#: Eager updates on a side stream before capture (torch's recipe: lets autograd and the
#: optimizers allocate their state outside the graph).
WARMUP_STEPS = 3


def make_capturable(*optimizers: torch.optim.Optimizer) -> None:
    """Let torch's Adam run inside a CUDA graph (its step counter stays on the device)."""
    for optim in optimizers:
        for group in optim.param_groups:
            if "capturable" in group:
                group["capturable"] = True


class GraphedUpdate:
    """``impl.inner_update`` on the rows ``sampler.gather(indices)``, as one replayed CUDA graph.

    Every step copies the mini-batch's indices (already on the device) into a static
    buffer and replays the graph: gather, both losses, both backward passes, both Adam
    steps and the target update run as recorded, with one launch instead of ~150. The
    first :data:`WARMUP_STEPS` steps run eagerly on a side stream, the next one records
    the graph and replays it. On a device without CUDA graphs (the CPU) the same body runs
    eagerly every step, so the numbers are those of the captured path.

    Parameters
    ----------
    impl : IQLImplBase
        The algorithm's impl; its optimizers must be capturable (:func:`make_capturable`).
    sampler : TorchTransitionSampler
        The source of the rows, on the impl's device.
    batch_size : int
        Rows per update (the graph's static shape).
    """

    def __init__(self, impl: Any, sampler: Any, batch_size: int):
        self._impl = impl
        self._sampler = sampler
        device = sampler.observations.device
        self._indices = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.capture = device.type == "cuda"
        self._graph: torch.cuda.CUDAGraph | None = None
        self._out: torch.Tensor | None = None
        self._eager_steps = 0

    @property
    def captured(self) -> bool:
        """True once the update has been recorded as a graph."""
        return self._graph is not None

    def _body(self) -> torch.Tensor:
        return self._impl.inner_update(self._sampler.gather(self._indices), 0).stacked

    def __call__(self, indices: torch.Tensor) -> DeviceLosses:
        self._indices.copy_(indices)
        self._impl.modules.set_train()
        if not self.capture:
            return DeviceLosses(LOSS_NAMES, self._body())
        if self._graph is None and self._eager_steps < WARMUP_STEPS:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self._body()
            torch.cuda.current_stream().wait_stream(side)
            self._eager_steps += 1
            return DeviceLosses(LOSS_NAMES, out)
        if self._graph is None:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._out = self._body()
            self._graph = graph
        assert self._graph is not None and self._out is not None
        self._graph.replay()
        # The graph writes its outputs into the same memory every replay.
        return DeviceLosses(LOSS_NAMES, self._out.clone())
