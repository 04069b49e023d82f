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

from edgeclick.errors import describe, one_line
from edgeclick.log import setup_logging

EXIT_USAGE = 2  # bad arguments or input, a full disk, an unwritable folder: the line says what to fix
EXIT_BUG = 1  # anything else is edgeclick's fault: one line, the traceback with --verbose
# Exceptions whose message is written for the user (every module's own errors derive from these).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError)


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
    "edgeclick.runtimes.segment_cli",
    "edgeclick.runtimes.evaluate_cli",
    "edgeclick.train.cli",
    "edgeclick.export.cli",
    "edgeclick.export.phone_readiness",
    "edgeclick.runtimes.cli",
    "edgeclick.calibration.deploy",
    "edgeclick.runtimes.web_cli",
    "edgeclick.calibration.cli",
    "edgeclick.export.demo",
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
    setup_logging(verbose)
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
