"""Run small numeric work on one thread.

FQE's networks and the behaviour model's trees are small: a second thread buys little and,
on a machine whose cores are busy, OpenMP and torch threads that spin-wait for each other
cost far more (a 60-iteration HistGradientBoosting cross-fit took 320 s with the default
threads on 2 busy cores, 3.6 s on one). The previous settings are restored on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from threadpoolctl import threadpool_limits

__all__ = ["single_thread"]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Inside the block torch and the OpenMP/BLAS pools (threadpoolctl) run on one thread.

    Used by FQE, the behaviour model and the benchmarks' small fits; torch's previous thread
    count and the pools' limits are restored on exit, also on an exception.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)
