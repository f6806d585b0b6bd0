"""Algorithms: VancoIQL (continuous dose) and DiscreteVancoIQL (dose grid)."""
