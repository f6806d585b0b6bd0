"""Act on a module's import, whenever that happens.

``when_imported("d3rlpy", fn)`` calls ``fn(module)`` at once when ``d3rlpy`` is already in
``sys.modules``; otherwise it installs a one-shot finder at the front of ``sys.meta_path``
that wraps the module's loader, so that ``fn`` runs just after the module's own code
(``quiet=True`` also silences what that code prints on stderr); the finder leaves
``sys.meta_path`` once the module has run, not when it is merely found. Used to register the
algorithms with d3rlpy, to silence the unmaintained ``gym`` that d3rlpy imports, and to set
d3rlpy's log colours -- without importing torch and d3rlpy where they are not needed
(``vanco-offline --help``, the numpy bundle runtime).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import io
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["when_imported"]

Callback = Callable[[ModuleType], None]


class _OnImport(importlib.abc.MetaPathFinder):
    def __init__(self, name: str, callback: Callback | None, quiet: bool):
        self.name, self.callback, self.quiet = name, callback, quiet

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self.name:
            return None
        spec = self._next_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            with contextlib.redirect_stderr(io.StringIO()) if self.quiet else contextlib.nullcontext():
                original(module)
            # one-shot, but only once the module has really run: a mere
            # ``importlib.util.find_spec(name)`` (an availability check) leaves the hook in place
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self)
            if self.callback is not None:
                self.callback(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec

    def _next_spec(self, name: str, path: Any, target: Any) -> Any:
        """The spec the finders after this one give (so hooks for one module chain, not recurse)."""
        finders = sys.meta_path
        start = next((i + 1 for i, finder in enumerate(finders) if finder is self), 0)
        for finder in list(finders[start:]):
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                return spec
        return None


def when_imported(name: str, callback: Callback | None = None, *, quiet: bool = False) -> None:
    """Call ``callback(module)`` once module ``name`` is imported (now, if it already is).

    Parameters
    ----------
    name : str
        Full module name, e.g. ``"d3rlpy"`` or ``"d3rlpy.logging.logger"``.
    callback : callable, optional
        Called with the module right after its code has run.
    quiet : bool
        Discard what the module's own code writes to stderr while it is imported (no effect
        when it is already imported).

    A hook already waiting for the same module and callback is not installed twice.
    """
    if name in sys.modules:
        # ``sys.modules[name] = None`` is Python's way to block an import: nothing to act on.
        if callback is not None and sys.modules[name] is not None:
            callback(sys.modules[name])
        return
    for finder in sys.meta_path:
        if isinstance(finder, _OnImport) and finder.name == name and finder.callback is callback:
            return
    sys.meta_path.insert(0, _OnImport(name, callback, quiet))
