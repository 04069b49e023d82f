"""What edgeclick prints while it works: its own log lines, and third-party noise only with --verbose.

`setup_logging(verbose)` (called once by `edgeclick` before a command runs) sends log records to stderr as
bare messages: edgeclick's own (`edgeclick.*` loggers) at INFO, a third party's only when they are errors.
With --verbose everything is shown down to DEBUG — coremltools' "Failed to load _MLModelProxy" and
"Saving value type of int64…", its per-op lines and progress bars included. `quiet_bars` turns off the
progress bars a third-party tool draws during a block of ours (each long stage of ours keeps one line or
bar of its own).
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import sys
from typing import Any, Iterator

OURS = "edgeclick"
_HANDLER = "edgeclick-stderr"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler on whatever sys.stderr is at emit time (pytest and callers swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it; the property decides
        pass


def _ours_or_error(record: logging.LogRecord) -> bool:
    return record.name == OURS or record.name.startswith(OURS + ".") or record.levelno >= logging.ERROR


def setup_logging(verbose: bool = False) -> None:
    """Configure the root logger for a command line run (idempotent: a second call replaces the first)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER]:
        root.removeHandler(handler)
    handler = _Stderr()
    handler.set_name(_HANDLER)
    handler.setFormatter(logging.Formatter("%(message)s"))
    if not verbose:
        handler.addFilter(_ours_or_error)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def verbose() -> bool:
    """Whether third-party detail is wanted (`setup_logging(verbose=True)`, or a caller's DEBUG root logger)."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def quiet_bars(*targets: str) -> Iterator[None]:
    """Turn off the tqdm progress bars that third-party modules draw during the block, unless verbose.

    targets: "module:attribute" names of the tqdm callables those modules use (e.g.
    "coremltools.converters.mil.frontend.torch.ops:_tqdm"); a module or attribute that is not there (another
    version of the tool) is skipped, so the worst case is a bar, never an error.
    """
    if verbose():
        yield
        return
    saved: list[tuple[Any, str, Any]] = []
    for target in targets:
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        original = getattr(module, attr, None)
        if callable(original):
            saved.append((module, attr, original))
            setattr(module, attr, functools.partial(original, disable=True))
    try:
        yield
    finally:
        for module, attr, original in saved:
            setattr(module, attr, original)
