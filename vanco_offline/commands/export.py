"""``vanco-offline export``: a trained model as TorchScript, ONNX or a code-free bundle."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from vanco_offline.commands.files import (
    add_model_argument,
    add_overwrite_argument,
    atomic_output,
    check_output,
    load_model_argument,
    model_files,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument(
        "--format",
        choices=("torchscript", "onnx", "bundle"),
        default="bundle",
        help="bundle: weights + JSON in one .safetensors file, loadable with numpy alone and unable to run "
        "code when opened (share this one); torchscript (.pt) and onnx (.onnx) through d3rlpy",
    )
    parser.add_argument("--out", default=None, help="output file (default: beside the model)")
    add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    from vanco_offline.export import FORMATS, export_policy

    if args.format == "onnx":
        try:  # torch's exporter needs it and fails late with its own error type otherwise
            import onnx  # noqa: F401
        except ImportError:
            from vanco_offline.extras import missing_extra

            raise missing_extra("onnx", "onnx", "export --format onnx") from None
    folder = Path(args.model) if Path(args.model).is_dir() else Path(args.model).parent
    out = Path(args.out) if args.out else folder / f"policy{FORMATS[args.format]}"
    out = check_output(out, args.overwrite, model_files(args.model), "--out")
    if out.suffix != FORMATS[args.format]:
        raise ValueError(f"a {args.format} export is written to a {FORMATS[args.format]} file, not {out}")
    model = load_model_argument(args)
    options = {}
    if args.format == "bundle":
        metadata = json.loads(json.dumps(model.metadata(), default=str))
        options = {
            "observation_names": model.observation_names,
            "support": dataclasses.asdict(model.support),
            "model": {k: v for k, v in metadata.items() if k not in ("observation_names", "support")},
            "draw_head": model.draw_head,  # when to draw a level, for a model trained with it
        }
    with atomic_output(out, args.overwrite) as partial:
        export_policy(model.algo, partial, args.format, **options)
    print(f"wrote {out} ({args.format})")
    return 0
