"""`edgeclick export`: the command line over export.run.export (the Makefile's `make export` calls it).

    edgeclick export --target onnx|trt|coreml|all --checkpoint CKPT [--size 640x960] [--fusion late|early]
                     [--precision fp32|fp16] [--dynamic] [--option KEY=VALUE ...] [--out artifacts] [--name NAME]

Exit status: 0 all written; 2 bad arguments or a failed export (validation, tool error); 3 a requirement
is missing (TensorRT, a GPU, macOS) — whatever could be written is kept, its manifest marked incomplete.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgeclick import contract

from . import formats
from .formats import ALL, PRECISIONS, MissingRequirement

EXIT_MISSING_REQUIREMENT = 3


def parse_option(text: str) -> tuple[str, str]:
    """'opset=18' → ('opset', '18'); the format table converts the value to the option's type."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"option {text!r} must look like KEY=VALUE, e.g. opset=18")
    return key.strip(), value.strip()


def _format_help() -> str:
    lines = []
    for fmt in formats.FORMATS.values():
        opts = ", ".join(f"{k}={v}" for k, v in fmt.options.items()) or "none"
        lines.append(f"{fmt.name} ({fmt.suffix}): needs {', '.join(fmt.needs)}; dynamic H/W {'yes' if fmt.dynamic else 'no'}; "
                     f"options: {opts}")
    return "formats:\n  " + "\n  ".join(lines)


def register_cli(subparsers: Any) -> None:
    """Add the `export` subcommand to an argparse subparsers object (handler in `func`)."""
    from edgeclick.args import parse_size

    p = subparsers.add_parser(
        "export", help="export a checkpoint to ONNX / TensorRT / CoreML artifacts (encoder + decoder + manifest)",
        description="Write artifacts/<name>/ with the encoder and decoder graphs and a manifest.json, validated "
        "against PyTorch.", epilog=_format_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--target", required=True, choices=(*formats.FORMATS, ALL), help="format to export, or all of them")
    p.add_argument("--checkpoint", required=True, type=Path, help="edgeclick checkpoint (LoRA merged), or a registered weights name (edgeclick weights list)")
    p.add_argument("--size", type=parse_size, default=contract.DEFAULT_SIZE, metavar="HxW",
                   help=f"model input size, multiples of {contract.PAD_MULTIPLE} (default {contract.DEFAULT_SIZE[0]}x{contract.DEFAULT_SIZE[1]})")
    p.add_argument("--fusion", choices=("early", "late"), default=None, help="must match the checkpoint (default: the checkpoint's)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--dynamic", action="store_true", help="dynamic H/W axes (formats that support them)")
    p.add_argument("--option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                   help="format option; repeat. Unknown options are errors (see formats below)")
    p.add_argument("--out", type=Path, default=Path("artifacts"), help="folder that receives artifact directories")
    p.add_argument("--name", default=None, help="artifact directory name (default <ckpt>-<fusion>-<HxW>[-dynamic]-<precision>-<format>; "
                   "with --target all, NAME-<format>)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Handler of `edgeclick export`; returns the exit status."""
    from .run import ExportIncomplete, export

    options = dict(args.option)
    try:
        paths = export(args.checkpoint, args.target, size=args.size, fusion=args.fusion, precision=args.precision,
                       dynamic=args.dynamic, options=options, out_root=args.out, name=args.name)
    except MissingRequirement as exc:
        print(f"edgeclick export: missing requirement: {exc}", file=sys.stderr)
        if exc.artifact is not None:
            print(f"kept incomplete artifact {exc.artifact} (manifest says complete: false)", file=sys.stderr)
        return EXIT_MISSING_REQUIREMENT
    except ExportIncomplete as exc:
        for path in exc.artifacts:
            print(f"wrote {path}")
        print(f"edgeclick export: {exc}", file=sys.stderr)
        for failure in exc.failures:
            kept = getattr(failure.error, "artifact", None)
            if kept is not None:
                print(f"kept incomplete artifact {kept} (manifest says complete: false)", file=sys.stderr)
        return EXIT_MISSING_REQUIREMENT if exc.only_missing_requirements else 2
    for path in paths:
        print(f"wrote {path}")
    return 0
