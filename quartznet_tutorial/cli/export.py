"""``quartznet export``: a checkpoint as an ONNX model, float32 or static int8."""

from __future__ import annotations

import argparse
from pathlib import Path

from quartznet_tutorial.cli.options import checkpoint_option, opset_type, positive_int

HELP = "export a checkpoint as ONNX (audio in, logits out)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser
    checkpoint_option(p)
    p.add_argument("--onnx", required=True, type=Path, help="the .onnx file to write")
    p.add_argument(
        "--opset", type=opset_type, default=18, help="ONNX opset, 17 to 20 (default: 18)"
    )
    p.add_argument("--int8", action="store_true", help="static int8 model (needs calibration)")
    p.add_argument(
        "--calibration-data",
        type=Path,
        metavar="DIR",
        help="Speech Commands folder: its training split calibrates --int8, its validation "
        "split checks it against float32",
    )
    p.add_argument("--calibration-clips", type=positive_int, default=256, help="(default: 256)")


def run(args: argparse.Namespace) -> int:
    from quartznet_tutorial.checkpoints.loading import load_classifier
    from quartznet_tutorial.export.onnx_export import export_onnx

    if args.int8 != (args.calibration_data is not None):
        raise ValueError(
            "--int8 needs --calibration-data DIR, a Speech Commands folder (`quartznet "
            "make-synthetic` writes one)"
            if args.int8
            else "--calibration-data is for --int8 only; add --int8"
        )
    try:
        path = export_onnx(
            load_classifier(args.checkpoint),
            args.onnx,
            opset=args.opset,
            int8=args.int8,
            calibration=args.calibration_data,
            calibration_clips=args.calibration_clips,
        )
    except ImportError as e:  # onnx or onnxruntime missing: the message says what to install
        raise ValueError(str(e)) from None
    print(path)
    return 0
