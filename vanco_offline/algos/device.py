"""Which torch device an algorithm trains on: a user's string checked against this machine."""

from __future__ import annotations

import torch

__all__ = ["check_device"]


def check_device(device: str) -> str:
    """The d3rlpy device string (``"cpu:0"``, ``"cuda:1"``) for ``device``, or a one-line ValueError.

    Accepts ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` as torch spells them, and refuses a
    device this machine does not have (no CUDA build or driver, an index past the last GPU).
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device {device!r}: not a torch device; use cpu, cuda, cuda:N or mps") from None
    index = 0 if parsed.index is None else parsed.index
    if parsed.type == "cpu":
        return "cpu:0"
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r}: no CUDA device on this machine (torch {torch.__version__}, "
                "torch.cuda.is_available() is False); use cpu"
            )
        count = torch.cuda.device_count()
        if index >= count:
            raise ValueError(
                f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
        return f"cuda:{index}"
    if parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r}: MPS is not available on this machine; use cpu")
        return "mps"
    raise ValueError(f"device {device!r}: d3rlpy trains on cpu, cuda or mps, not {parsed.type}")
