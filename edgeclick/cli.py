"""`edgeclick` command line: one subcommand per job; Makefile targets are thin wrappers over these."""
from __future__ import annotations

import argparse
import difflib
import importlib
import json
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, NoReturn

from edgeclick.errors import UsageError, describe, one_line

EXIT_USAGE = 2  # bad arguments or input, a full disk, an unwritable folder: the line says what to fix
EXIT_BUG = 1  # anything else is edgeclick's fault: one line, the traceback with --verbose
# Exceptions whose message is written for the user (every module's own errors derive from these).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError)
POSITIVE = ("+", "1", "pos", "positive")
NEGATIVE = ("-", "0", "neg", "negative")
# `segment` without --size runs the model at the image's own size; above this a phone photo would take
# gigabytes of activations, so the user is asked for --size instead.
MAX_NATIVE_PIXELS = 8_000_000


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors that suggest the closest option for a typo (`--sizee` → `--size`).

    Subparsers inherit the class (argparse builds them with `type(parent)`), so every subcommand gets it.
    """

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """Like argparse's, but an unknown option is reported by the subcommand it was given to, so the
        message says `edgeclick segment` and the suggestion comes from that subcommand's options."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._command_parser(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _command_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The subcommand's parser (nested ones too, e.g. `weights get`), or this one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                child = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(child, ArgumentParser):
                    return child._command_parser(parsed)
        return self

    def error(self, message: str) -> NoReturn:
        hint = self._suggestion(message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)}{hint}; see {self.prog} --help\n")

    def _suggestion(self, message: str) -> str:
        """' (did you mean --size?)' when the message names an unknown option close to a known one."""
        if message.endswith("expected one argument"):  # argparse reads a value like -3,5,+ as an option
            option = message.split()[1].rstrip(":")
            return f" (a value that starts with '-' needs the {option}=VALUE form, e.g. {option}=-3,5,+)"
        if not message.startswith("unrecognized arguments:"):
            return ""
        known = [opt for action in self._actions for opt in action.option_strings]
        for word in message.split(":", 1)[1].split():
            close = difflib.get_close_matches(word.split("=")[0], known, n=1)
            if word.startswith("-") and close:
                return f" (did you mean {close[0]}?)"
        return ""


def parse_size(text: str) -> tuple[int, int]:
    """'640x960' → (640, 960): height × width in pixels."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like HEIGHTxWIDTH, e.g. 640x960") from exc
    from edgeclick import contract

    try:
        contract.check_size(h, w)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return h, w


def parse_click(text: str) -> tuple[float, float, bool]:
    """'120,80,+' → (120.0, 80.0, True): x (column) and y (row) in image pixels, + positive / - negative."""
    parts = [p.strip() for p in text.split(",")]
    example = "e.g. --click 120,80,+ (positive) or --click 300,40,- (negative)"
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"click {text!r} must be X,Y,+ or X,Y,- ({example})")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"click {text!r}: X and Y must be numbers ({example})") from None
    sign = parts[2].lower()
    if sign not in POSITIVE + NEGATIVE:
        raise argparse.ArgumentTypeError(f"click {text!r}: the label must be + or - ({example})")
    return x, y, sign in POSITIVE


def read_image_arg(path: Path, what: str = "input image") -> Any:
    """H×W×3 uint8 RGB from an image file, or a UsageError naming the file, the problem and the fix."""
    from PIL import Image

    from edgeclick.data.imread import read_rgb

    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder; pass an image file (PNG, JPEG, ...)")
    if not path.is_file():
        raise UsageError(f"{what} {path}: no such file")
    if path.stat().st_size == 0:
        raise UsageError(f"{what} {path} is empty (0 bytes); pass an image file (PNG, JPEG, ...)")
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning becomes the error below, not a second line
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return read_rgb(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UsageError(f"{what} {path} is too large for Pillow's safety limit ({exc}); downscale it first") from None
    except Image.UnidentifiedImageError:
        raise UsageError(f"{what} {path} is not an image Pillow can read; pass a PNG, JPEG, BMP, TIFF or WebP file") from None
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow: truncated data, broken headers
        raise UsageError(f"{what} {path} is damaged or truncated ({one_line(str(exc))}); re-save or re-download it") from None


def _import_ritm(args: argparse.Namespace) -> int:
    from edgeclick.model.ritm_compat import import_ritm

    out = import_ritm(args.src, args.dst, trust_pickle=args.trust_pickle)
    print(f"wrote {out}")
    return 0


def _init(args: argparse.Namespace) -> int:
    import torch

    from edgeclick.model import create_model
    from edgeclick.model.checkpoint import save_checkpoint

    torch.manual_seed(args.seed)
    model = create_model(args.model, fusion=args.fusion, adapter="conv" if args.adapter else None)
    out = save_checkpoint(model, args.out, meta={"source": "init", "seed": args.seed, "trained": False})
    print(f"wrote untrained {args.model}/{args.fusion}{' +conv adapter' if args.adapter else ''} to {out}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from edgeclick.model import ARCHS

    for name, (width, ocr, small) in ARCHS.items():
        print(f"{name:10s} width={width:<3d} ocr_width={ocr:<4d} small={small}")
    return 0


def _contract(args: argparse.Namespace) -> int:
    from edgeclick import contract

    print(json.dumps(contract.describe(), indent=2, default=str))
    return 0


def _segment(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from edgeclick import contract
    from edgeclick.io import atomic_write
    from edgeclick.runtimes.session import open_session

    if not args.click:
        raise UsageError("no --click given; add at least one, e.g. --click 120,80,+")
    rgb = read_image_arg(args.image_file)
    if args.size is None and rgb.shape[0] * rgb.shape[1] > MAX_NATIVE_PIXELS:
        raise UsageError(f"image {args.image_file} is {rgb.shape[1]}x{rgb.shape[0]} ({rgb.shape[0] * rgb.shape[1] / 1e6:.0f} MP), "
                         f"too large to run at its own size; pass --size, e.g. --size 640x960")
    session = open_session(args.checkpoint, input_size=args.size)
    session.set_image(rgb)
    for x, y, positive in args.click:
        prob = session.click(x, y, positive)
    mask = Image.fromarray(((prob > contract.PROB_THRESHOLD) * 255).astype(np.uint8))
    atomic_write(args.out, lambda p: mask.save(p, format="PNG"))
    print(f"wrote {args.out} ({int((prob > contract.PROB_THRESHOLD).sum())} object pixels)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="edgeclick", description="High-resolution interactive segmentation, from training to edge devices.")
    parser.add_argument("--verbose", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("import-ritm", help="convert a RITM checkpoint ({'state_dict','config'}) to edgeclick's format")
    p.add_argument("src", type=Path, help="RITM .pth file")
    p.add_argument("dst", type=Path, help="edgeclick checkpoint to write")
    p.add_argument("--trust-pickle", action="store_true", help="allow arbitrary pickled objects (only for files you trust)")
    p.set_defaults(func=_import_ritm)

    p = sub.add_parser("init", help="write an untrained checkpoint of a registered model (for plumbing and tests)")
    p.add_argument("out", type=Path)
    p.add_argument("--model", default="hrnet18s")
    p.add_argument("--fusion", choices=("early", "late"), default="early")
    p.add_argument("--adapter", action="store_true", help="wrap in the conv adapter (input at 2x base resolution)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_init)

    p = sub.add_parser("models", help="list registered model configs")
    p.set_defaults(func=_models)

    p = sub.add_parser("contract", help="print the I/O contract (names, shapes, version, hash) as JSON")
    p.set_defaults(func=_contract)

    p = sub.add_parser("segment", help="segment one image from clicks and write the mask PNG")
    p.add_argument("checkpoint", type=Path, help="edgeclick checkpoint, or a registered weights name (edgeclick weights list)")
    p.add_argument("image_file", type=Path, help="RGB image (any format Pillow reads)")
    p.add_argument("--click", action="append", default=[], type=parse_click, metavar="X,Y,+|-",
                   help="click in image pixels (x = column, y = row), + positive or - negative; repeat")
    p.add_argument("--size", type=parse_size, default=None, help="model input HxW (default: the image's own size)")
    p.add_argument("--out", type=Path, default=Path("mask.png"))
    p.set_defaults(func=_segment)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register_cli(sub)
    for command in sub.choices.values():  # `edgeclick segment ... --verbose` works as well as before the command
        if "--verbose" not in command._option_string_actions:
            # SUPPRESS: a subcommand must not reset a --verbose given before it
            command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                                 help="show the full traceback of an error")
    return parser


# Subcommands that live next to the code they drive; each module has `register_cli(subparsers)` and keeps
# its heavy imports (torch, onnxruntime, coremltools) inside the handlers so `--help` stays fast.
COMMAND_MODULES: tuple[str, ...] = (
    "edgeclick.evaluate",
    "edgeclick.train.cli",
    "edgeclick.export.cli",
    "edgeclick.runtimes.cli",
    "edgeclick.runtimes.deploy",
    "edgeclick.runtimes.web_cli",
    "edgeclick.calibration.cli",
    "edgeclick.demo",
    "edgeclick.weights.cli",
)


def resolve_checkpoint_arg(args: argparse.Namespace) -> None:
    """Every subcommand's `checkpoint` argument (segment, evaluate, export, demo, calibrate, parity, bench)
    takes a path or a registered weights name (`edgeclick weights list`); resolved here, once, to a file.
    A name not in the cache is an error naming `edgeclick weights get NAME`: nothing downloads implicitly."""
    if getattr(args, "checkpoint", None) is not None:
        from edgeclick.weights import resolve_checkpoint

        args.checkpoint = resolve_checkpoint(args.checkpoint)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
    """warnings.showwarning that prints 'warning: <message>' on one line, without the source line."""
    print(f"warning: {one_line(str(message))}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Exit status: its own, 2 for an error the user can fix (one line), 1 for a bug."""
    args = build_parser().parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    saved = warnings.showwarning
    if not verbose:
        warnings.showwarning = _one_line_warning
    try:
        resolve_checkpoint_arg(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"edgeclick {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if verbose:
            traceback.print_exc()
        print(f"edgeclick {args.command}: error: {describe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        print(f"edgeclick {args.command}: internal error: {type(exc).__name__}: {describe(exc)} "
              "(rerun with --verbose for the traceback, and please report it)", file=sys.stderr)
        return EXIT_BUG
    finally:
        warnings.showwarning = saved


if __name__ == "__main__":
    sys.exit(main())
