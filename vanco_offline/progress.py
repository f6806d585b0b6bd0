"""Terminal output: progress bars, colour, and d3rlpy's log lines.

* A progress bar is drawn only when stderr is a terminal (a log file or a pipe gets none).
* Colour follows https://no-color.org: none when ``NO_COLOR`` is set (non-empty) or when the
  stream is not a terminal. d3rlpy configures structlog's coloured ``ConsoleRenderer`` when
  it is imported; :func:`configure_output` makes that renderer follow the same rule, whether
  d3rlpy is imported before or after.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

from vanco_offline._hooks import when_imported

__all__ = ["configure_output", "progress_bar", "show_progress", "stages", "use_color"]


def use_color(stream: TextIO | None = None) -> bool:
    """Whether to colour ``stream`` (default stdout): a terminal, and ``NO_COLOR`` unset or empty."""
    stream = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def show_progress() -> bool:
    """Whether progress bars are drawn: stderr is a terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """``tqdm`` on stderr, disabled when stderr is not a terminal; keyword arguments as tqdm's."""
    from tqdm import tqdm

    kwargs.setdefault("disable", not show_progress())
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


@contextlib.contextmanager
def stages(names: Sequence[str], desc: str = "") -> Iterator[Any]:
    """A bar over the stages of a long command, its elapsed time ticking while a stage runs.

    ``with stages(["diagnostics", "OPE"]) as bar: ...; bar.next(); ...`` -- for steps
    whose own loops report nothing (a library call of tens of seconds).
    """
    layout = "{desc}{n_fmt}/{total_fmt} [{elapsed}]{postfix}"
    bar = progress_bar(total=len(names), desc=desc, bar_format=layout)
    stop = threading.Event()

    class _Stages:
        index = 0

        def next(self) -> None:
            bar.update(1)
            self.index += 1
            if self.index < len(names):
                bar.set_postfix_str(names[self.index])

    handle = _Stages()
    if names:
        bar.set_postfix_str(names[0])

    def tick() -> None:
        while not stop.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    if not bar.disable:
        ticker.start()
    try:
        yield handle
    finally:
        stop.set()
        bar.close()


def _structlog_colors(colors: bool) -> None:
    import structlog

    processors = list(structlog.get_config().get("processors", []))
    for i, processor in enumerate(processors):
        if isinstance(processor, structlog.dev.ConsoleRenderer):
            processors[i] = structlog.dev.ConsoleRenderer(colors=colors)
    structlog.configure(processors=processors)


def configure_output() -> None:
    """Make d3rlpy's structlog lines follow :func:`use_color` (now, or when d3rlpy is imported)."""
    when_imported("d3rlpy.logging.logger", _color_d3rlpy_logs)


def _color_d3rlpy_logs(module: Any) -> None:
    _structlog_colors(use_color())


def quiet_d3rlpy() -> None:
    """Show only d3rlpy's warnings: its per-epoch info logs would bury a command's own output."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
