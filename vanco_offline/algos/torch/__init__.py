"""Torch implementations of VancoIQL and DiscreteVancoIQL (the update math), d3rlpy-style."""
