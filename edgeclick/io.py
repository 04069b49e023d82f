"""Atomic file writes, atomic directory publishing and hashing: an interrupted run never leaves a
half-written file or artifact directory behind."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


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


# -- directories -------------------------------------------------------------------------------------------
# A directory (an artifact, a set of calibrated variants) is built in a hidden staging folder next to its
# destination, `.NAME.staging-PID-XXXX`, and swapped in by `publish_dir` only when complete. The PID in the
# name lets a later publish of the same NAME remove the staging folders of runs that died (kill -9).
_STAGING = ".staging-"
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def staging_dir(dest: str | Path) -> Path:
    """A new, empty staging folder for `dest` (created next to it, mode 0o755); stale ones are removed first.

    A staging folder is stale when the process named in it no longer runs: a killed export or calibration
    left it, and nothing will ever read it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(dest)
    path = Path(tempfile.mkdtemp(prefix=f".{dest.name}{_STAGING}{os.getpid()}-", dir=dest.parent))
    path.chmod(0o755)  # mkdtemp makes it private; the published directory is an ordinary one
    return path


def remove_stale_staging(dest: str | Path) -> list[Path]:
    """Remove `dest`'s staging folders whose process is gone; return what was removed."""
    dest = Path(dest)
    removed = []
    for path in dest.parent.glob(f".{dest.name}{_STAGING}*"):
        pid = path.name[len(dest.name) + len(_STAGING) + 1:].split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the OS or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not glibc / not Linux
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def publish_dir(staging: str | Path, dest: str | Path) -> Path:
    """Put the finished `staging` folder at `dest`, replacing an existing `dest` only now; return `dest`.

    Readers see the old directory or the new one, never a part of either: a new `dest` is one rename, an
    existing one is swapped with the staging folder in one step (RENAME_EXCHANGE) and then deleted. Where the
    filesystem cannot swap, the old directory is moved aside and the new one renamed in; a kill between the
    two renames leaves the old one under `.NAME.old-*`, never a partial one.
    """
    staging, dest = Path(staging), Path(dest)
    if not dest.exists():
        os.replace(staging, dest)
        return dest
    if _exchange(staging, dest):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous directory
        return dest
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    os.replace(dest, old / dest.name)
    try:
        os.replace(staging, dest)
    except BaseException:
        os.replace(old / dest.name, dest)  # put the previous directory back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return dest


@contextlib.contextmanager
def publishing(dest: str | Path) -> Iterator[Path]:
    """`with publishing(dest) as staging:` write into `staging`; on success it is published at `dest`.

    On any exception (or a kill) `dest` is left as it was and the staging folder is removed (a kill leaves it,
    and the next publish of `dest` removes it).
    """
    staging = staging_dir(dest)
    try:
        yield staging
        publish_dir(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
