"""Benchmarks run as ``vanco-offline bench NAME``; each prints a table of ratios measured in one run."""
