"""What commands read and write: a model given safely, outputs that never destroy a file.

- ``--model`` takes a model folder, its ``model.safetensors`` or an exported bundle; a ``.d3``
  pickle only with ``--trust-pickle SHA256``, its hash given from outside the folder (see
  :func:`vanco_offline.trained.load_model`).
- An output never replaces an existing file or folder unless ``--overwrite`` is given, and
  never one of the command's own inputs, even with ``--overwrite``.
- An output is written under a unique temporary name beside its target (never an existing
  file) and renamed when complete, so an error or Ctrl-C leaves nothing half-written; a
  target that is a symbolic link is refused. No output replaces a file of the model being
  read (:func:`model_files`), even with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

MODEL_HELP = (
    "the model: its folder (written by `vanco-offline train`), its model.safetensors or an exported "
    "bundle; a .d3 file is a Python pickle and loads only with --trust-pickle"
)


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="MODEL", help=MODEL_HELP)
    parser.add_argument(
        "--trust-pickle",
        metavar="SHA256",
        default=None,
        help="allow loading a .d3 pickle (it can run code when opened) whose SHA-256 is this hash, which you "
        "got from the model's author, not from the folder (the folder's model.json is never trusted for it)",
    )


def load_model_argument(args: argparse.Namespace) -> Any:
    from vanco_offline.trained import load_model

    return load_model(args.model, trust_pickle=args.trust_pickle)


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output (never one of the inputs)"
    )


def model_files(model: str | Path | None) -> list[Path]:
    """The files of the model given as ``--model``: the path itself and, in its folder, the model
    files and d3rlpy's checkpoints and parameters, which no output may replace."""
    from vanco_offline.trained import METADATA_FILE, MODEL_FILE, PICKLE_FILE

    if model is None:
        return []
    path = Path(model)
    folder = path if path.is_dir() else path.parent
    names = [folder / name for name in (MODEL_FILE, PICKLE_FILE, METADATA_FILE, "params.json")]
    return [path, *names, *folder.glob("*.d3")]


def check_output(path: str | Path, overwrite: bool, inputs: list[str | Path | None], option: str) -> Path:
    """``path`` as a Path, or ValueError when writing it would replace an input (a file, or any file
    inside an input folder) or a symbolic link, or, without ``overwrite``, an existing file."""
    path = Path(path)
    if path.is_symlink():
        raise ValueError(
            f"{option} {path} is a symbolic link; it is not written through (give the real path)"
        )
    target = path.resolve()
    for source in filter(None, inputs):
        source = Path(source).resolve()
        if target == source or target in source.parents:
            raise ValueError(f"{option} {path} would overwrite the input {source}; write somewhere else")
    if path.exists() and not overwrite:
        raise ValueError(f"{option} {path} already exists; pass --overwrite to replace it")
    if path.is_dir() and overwrite:
        raise ValueError(f"{option} {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise ValueError(f"{option} {path}: the folder {path.parent} does not exist")
    return path


def atomic_output(path: Path, overwrite: bool = False) -> contextlib.AbstractContextManager[Path]:
    """A unique temporary file beside ``path`` to write, renamed onto it when complete
    (:func:`vanco_offline.atomic.atomic_path`); never through a symbolic link."""
    from vanco_offline.atomic import atomic_path

    return atomic_path(path, overwrite=overwrite)
