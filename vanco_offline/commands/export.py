"""``vanco-offline export``: a trained model as TorchScript, ONNX or a code-free bundle."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="model.d3 (or its folder) written by `vanco-offline train`"
    )
    parser.add_argument(
        "--format",
        choices=("torchscript", "onnx", "bundle"),
        default="bundle",
        help="bundle: weights + JSON in one .safetensors file, loadable with numpy alone and unable to run "
        "code when opened (share this one); torchscript (.pt) and onnx (.onnx) through d3rlpy",
    )
    parser.add_argument("--out", default=None, help="output file (default: beside the model)")


def run(args: argparse.Namespace) -> int:
    from vanco_offline.export import FORMATS, export_policy
    from vanco_offline.trained import load_model

    if args.format == "onnx":
        try:  # torch's exporter needs it and fails late with its own error type otherwise
            import onnx  # noqa: F401
        except ImportError:
            from vanco_offline.extras import missing_extra

            raise missing_extra("onnx", "onnx", "export --format onnx") from None
    model = load_model(args.model)
    folder = Path(args.model) if Path(args.model).is_dir() else Path(args.model).parent
    out = Path(args.out) if args.out else folder / f"policy{FORMATS[args.format]}"
    options = {}
    if args.format == "bundle":
        options = {
            "observation_names": model.observation_names,
            "support": dataclasses.asdict(model.support),
            "extra": {"preset": model.preset.get("name"), "data": model.data, "training": model.training},
        }
    path = export_policy(model.algo, out, args.format, **options)
    print(f"wrote {path} ({args.format})")
    return 0
