"""The benchmarks' tests: as the library's (tests/conftest.py), small networks on one torch thread."""

import torch

# The test networks are tiny: one thread is faster than two, and on a loaded 2-core machine
# two OpenMP threads contending for the cores stall (tests/conftest.py measured it).
torch.set_num_threads(1)
