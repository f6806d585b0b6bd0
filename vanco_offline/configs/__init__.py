"""Packaged YAML presets (read with importlib.resources)."""
