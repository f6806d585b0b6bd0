"""Thin command-line glue for ``vanco-offline``; the logic lives in the library modules."""
