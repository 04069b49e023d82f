"""The weights cache: where downloaded RITM files and their edgeclick imports live, and name → checkpoint.

    $EDGECLICK_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/edgeclick)/weights/<name>/
        <RITM file name>.pth        the original, byte for byte as downloaded (or added)
        <RITM file name>.pth.part   an unfinished download (resumed by the next `get`; never used)
        <name>.pt                   the edgeclick checkpoint `import-ritm` made from it
        record.json                 exact size and sha256 recorded at the first download; checked after

A file only gets its final name after every check passed, so anything without `.part` is complete.
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from edgeclick.io import write_json_atomic

from .registry import REGISTRY, WeightsEntry, WeightsError, known_names

CACHE_ENV = "EDGECLICK_CACHE"
RECORD_NAME = "record.json"
PART_SUFFIX = ".part"


def cache_root() -> Path:
    """$EDGECLICK_CACHE, else $XDG_CACHE_HOME/edgeclick, else ~/.cache/edgeclick (not created here)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "edgeclick"


@dataclass(frozen=True)
class CachePaths:
    """The files of one registered name in the cache."""

    folder: Path
    original: Path
    part: Path
    imported: Path
    record: Path

    @classmethod
    def of(cls, entry: WeightsEntry) -> CachePaths:
        folder = cache_root() / "weights" / entry.name
        original = folder / entry.file_name
        return cls(folder=folder, original=original, part=original.with_name(original.name + PART_SUFFIX),
                   imported=folder / f"{entry.name}.pt", record=folder / RECORD_NAME)


@dataclass(frozen=True)
class Record:
    """What the first successful download (or `add`) of a name measured; later copies must match it."""

    name: str
    file_name: str
    size: int
    sha256: str
    url: str  # where it came from ("file://..." for `add`)
    recorded_at: str  # ISO 8601, UTC

    @classmethod
    def read(cls, path: Path) -> Record | None:
        """The record at `path`, None when there is none; a broken record is an error (never ignored)."""
        if not path.is_file():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise WeightsError(f"{path}: unreadable weights record ({exc}); delete it to record the file anew") from exc

    def write(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))


@contextmanager
def locked(paths: CachePaths) -> Iterator[None]:
    """Hold an exclusive lock on a name's cache folder, so two `get`s never write one `.part` together."""
    paths.folder.mkdir(parents=True, exist_ok=True)
    with open(paths.folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_cached(entry: WeightsEntry) -> bool:
    """True when the imported edgeclick checkpoint of `entry` is in the cache."""
    return CachePaths.of(entry).imported.is_file()


def resolve_checkpoint(name_or_path: str | os.PathLike[str]) -> Path:
    """A checkpoint argument → the file to load. Never downloads.

    - an existing path → itself (a file named like a registered name wins over the name);
    - a registered name whose import is cached → the edgeclick checkpoint in the cache;
    - a registered name not in the cache → WeightsError saying `run: edgeclick weights get NAME`;
    - anything else → WeightsError: no such file, and the registered names.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    name = str(name_or_path)
    entry = REGISTRY.get(name)
    if entry is None:
        raise WeightsError(f"{name}: no such checkpoint file, and not a registered weights name "
                           f"(known: {known_names()}; `edgeclick weights list`)")
    imported = CachePaths.of(entry).imported
    if not imported.is_file():
        raise WeightsError(f"{name}: registered RITM weights, not in the cache {cache_root()}; "
                           f"run: edgeclick weights get {name}")
    return imported
