"""How the command line turns an exception into one line a user can act on.

`edgeclick.cli.main` is the only place that catches: errors the user can fix (bad arguments, files that are
not what they claim, a full disk, an unwritable folder) become `edgeclick CMD: error: <problem>; <fix>` and
exit status 2; anything else is a bug and exits 1 with a pointer to `--verbose`. Modules raise ordinary
exceptions with a message naming the file, the problem and the fix; this module only adds the fix for
operating-system errors, whose messages name neither.
"""
from __future__ import annotations

import errno
from pathlib import Path

MAX_MESSAGE_CHARS = 600  # a torch or onnx message can be pages long; the head says what went wrong

# errno → what the user can do about it (the OS message already says what happened).
_OS_FIXES: dict[int, str] = {
    errno.ENOSPC: "the disk is full: free space or write elsewhere (--out)",
    errno.EFBIG: "the file size limit was reached (ulimit -f, or the filesystem's): raise it or write elsewhere (--out)",
    errno.EDQUOT: "the disk quota is used up: free space or write elsewhere (--out)",
    errno.EACCES: "no permission: choose a folder you can write to (--out) or fix its permissions",
    errno.EPERM: "not permitted: choose a folder you can write to (--out) or fix its permissions",
    errno.EROFS: "the filesystem is read-only: write elsewhere (--out)",
    errno.ENOTDIR: "a part of this path is a file, not a folder: choose another path",
    errno.EEXIST: "that path is a file, not a folder: choose another path",
    errno.EISDIR: "this is a folder, not a file: pass a file",
    errno.ENOENT: "no such file or folder: check the path",
}


class UsageError(ValueError):
    """A bad argument or input file; the message names the problem and the fix (CLI exit status 2)."""


def one_line(text: str) -> str:
    """`text` on one line (newlines and runs of spaces collapsed), cut at MAX_MESSAGE_CHARS."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_MESSAGE_CHARS else flat[: MAX_MESSAGE_CHARS - 1] + "…"


def describe_os_error(exc: OSError) -> str:
    """'PATH: <what the OS said>; <what to do>' for an OSError carrying an errno, else its own text."""
    fix = _OS_FIXES.get(exc.errno or -1)
    if fix is None or not exc.strerror:
        return str(exc)
    where = f"{Path(exc.filename)}: " if exc.filename is not None else ""
    return f"{where}{exc.strerror.lower()}; {fix}"


def describe(exc: BaseException) -> str:
    """One line for `exc`: its own message (modules write them for users), OS errors with their fix."""
    if isinstance(exc, OSError) and type(exc).__module__ == "builtins" and exc.errno is not None:
        text = describe_os_error(exc)
    else:
        text = str(exc) or type(exc).__name__
    return one_line(text)
