"""Thin command-line glue for ``vanco-offline``; the logic lives in the library modules."""


class CommandError(Exception):
    """Raised by a command for a user error that deserves one line and exit code 2."""
