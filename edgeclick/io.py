"""Atomic file writes and hashing: an interrupted run never leaves a half-written file behind."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file next to `path`, then rename it over `path`.

    The rename is atomic on POSIX filesystems, so readers see the old file or the new one, never a part.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:  # data on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        named = write_error(path, exc)
        if named is not None:
            raise named from exc
        raise
    return path


def _fsize_limited() -> bool:
    """Whether this process runs under a file-size limit (ulimit -f)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return False
    return resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY


def write_error(path: Path, exc: BaseException) -> OSError | None:
    """An OSError naming `path` for a failed write whose own error does not name it, else None.

    Python's write() raises OSError(EFBIG / ENOSPC) without a file name; torch's C++ writer reports the same
    short write as RuntimeError('... unexpected pos ...'), naming neither the file nor the cause.
    """
    if isinstance(exc, OSError) and type(exc).__module__ == "builtins" and exc.errno is not None and exc.filename is None:
        return OSError(exc.errno, exc.strerror, str(path))
    if isinstance(exc, RuntimeError) and ("unexpected pos" in str(exc) or "file write failed" in str(exc)):
        code = errno.EFBIG if _fsize_limited() else errno.ENOSPC
        return OSError(code, os.strerror(code), str(path))
    return None


def write_bytes_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write bytes (or UTF-8 text) to `path` atomically."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return atomic_write(path, lambda p: p.write_bytes(payload))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
