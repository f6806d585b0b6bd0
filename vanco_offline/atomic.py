"""Write a file whole or not at all, without replacing anything by accident.

:func:`atomic_path` yields a fresh temporary file in the target's folder (created by
:func:`tempfile.mkstemp`, so its name is unique and no existing file, such as an earlier
``.partial-NAME``, is ever reused or clobbered) and renames it onto the target when the block
ends without error (:func:`os.replace`, atomic on one file system); otherwise it is removed.
A target that is a symbolic link is refused, never written through.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path (ending like ``path``, same folder) to write; renamed onto ``path``.

    ValueError when ``path`` is a symbolic link, or (without ``overwrite``) exists when the
    write completes. The temporary file exists (empty) when yielded; writers replace it.
    """
    path = Path(path)
    if path.is_symlink():
        raise ValueError(f"{path} is a symbolic link; it is not written through (give the real path)")
    handle, name = tempfile.mkstemp(prefix=".partial-", suffix=f"-{path.name}", dir=path.parent)
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        if path.is_symlink():
            raise ValueError(f"{path} became a symbolic link while it was written; nothing was written")
        if not overwrite and path.exists():
            raise ValueError(f"{path} appeared while it was written; nothing was replaced")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
