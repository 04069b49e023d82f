"""`weights get` / `weights add`: bring a registered RITM checkpoint into the cache, checked, and import it.

The order makes the cache trustworthy: bytes land in a `.part`; its size must fit the published size; its
sha256 must equal the pinned one (if any) and the one recorded at the first download (if any); it must load
with `torch.load(weights_only=True)` (tensors and plain data only, so pickled code is refused without
running) and import as RITM's HRNetModel key by key. Only then is it renamed to its final name, the record
written (first time) and the edgeclick checkpoint saved beside it. A failed check deletes the `.part`.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from edgeclick.io import sha256_file

from .cache import PART_SUFFIX, CachePaths, Record, locked
from .download import ContentError, TransportError, fetch
from .registry import WeightsEntry, WeightsError, lookup

if TYPE_CHECKING:  # torch loads only when a file is checked: `weights list` and `--help` stay fast
    from edgeclick.model.ritm import EarlyFusionModel

# What a refused torch file starts with, shown so an HTML error page or a text file is recognisable.
HEAD_BYTES = 24


@dataclass(frozen=True)
class Outcome:
    """What `get` / `add` did, for the command's one-line report."""

    entry: WeightsEntry
    paths: CachePaths
    record: Record
    action: str  # "downloaded", "added", "already cached", "re-imported"


def manual_route(entry: WeightsEntry, url: str) -> str:
    """The offline way in, appended to every transport failure."""
    return (f"Offline? Download {url} elsewhere, then: edgeclick weights add {entry.name} FILE "
            f"(or edgeclick import-ritm FILE OUT.pt)")


def get(name: str, *, force: bool = False, progress: bool = True, attempts: int = 3, retry_delay_s: float = 1.0) -> Outcome:
    """`edgeclick weights get NAME`: download (resuming a `.part`), check, keep, record and import.

    A cached original is not downloaded again unless `force`; it is re-checked against its record and
    re-imported when its edgeclick checkpoint is missing.
    """
    entry = lookup(name)
    paths, url = CachePaths.of(entry), entry.url()
    with locked(paths):
        if paths.original.is_file() and not force:
            return _reuse(entry, paths)
        try:
            fetch(url, paths.part, entry.size_window(), progress=progress, attempts=attempts, retry_delay_s=retry_delay_s)
        except ContentError as exc:
            paths.part.unlink(missing_ok=True)
            raise WeightsError(f"{entry.name}: {exc}; nothing was kept in the cache. {manual_route(entry, url)}") from None
        except TransportError as exc:
            raise WeightsError(f"{entry.name}: {exc}. {manual_route(entry, url)}") from None
        record = _accept(entry, paths, paths.part, url)
    return Outcome(entry, paths, record, "downloaded")


def add(name: str, file: str | os.PathLike[str]) -> Outcome:
    """`edgeclick weights add NAME FILE`: the offline route; the same checks as a download."""
    entry = lookup(name)
    source = Path(file)
    if not source.is_file():
        raise WeightsError(f"{source}: no such file")
    paths = CachePaths.of(entry)
    # Not the download's `.part`: an interrupted `get` keeps its bytes for resuming.
    staging = paths.original.with_name(f"{paths.original.name}.add{PART_SUFFIX}")
    with locked(paths):
        shutil.copyfile(source, staging)  # checks run on the bytes that will stay, not on the source
        record = _accept(entry, paths, staging, source.resolve().as_uri())
    return Outcome(entry, paths, record, "added")


def _reuse(entry: WeightsEntry, paths: CachePaths) -> Outcome:
    """The original is cached: check it against its record; import it again if the import is missing."""
    record = Record.read(paths.record)
    if record is not None and paths.imported.is_file():
        size, sha = paths.original.stat().st_size, sha256_file(paths.original)
        if (size, sha) != (record.size, record.sha256):
            raise WeightsError(f"{entry.name}: the cached {paths.original} changed since it was recorded (size {size} vs "
                               f"{record.size}, sha256 {sha[:16]}… vs {record.sha256[:16]}…); delete {paths.folder} "
                               f"and run: edgeclick weights get {entry.name}")
        return Outcome(entry, paths, record, "already cached")
    # No record (put there by hand) or no import: every check again, then record and import.
    checked, model = _check(entry, paths, paths.original, record.url if record else paths.original.as_uri())
    if record is None:
        checked.write(paths.record)
    _import(entry, paths, checked, model)
    return Outcome(entry, paths, checked, "re-imported" if record else "recorded")


def _accept(entry: WeightsEntry, paths: CachePaths, staging: Path, source: str) -> Record:
    """Check `staging`; on success give it the original's name, record it, import it. On failure delete it."""
    try:
        record, model = _check(entry, paths, staging, source)
        with open(staging, "rb") as handle:  # the bytes are on disk before the final name makes them visible
            os.fsync(handle.fileno())
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, paths.original)
    if Record.read(paths.record) is None:
        record.write(paths.record)
    _import(entry, paths, record, model)
    return record


def _check(entry: WeightsEntry, paths: CachePaths, file: Path, source: str) -> tuple[Record, EarlyFusionModel]:
    """Every check on `file` (size, pinned and recorded sha256, safe load, RITM keys); its Record and model.

    The Record is the earlier one when there is one (it matched), else a new one for `file`.
    """
    size, sha = file.stat().st_size, sha256_file(file)
    low, high = entry.size_window()
    if not low <= size <= high:
        raise WeightsError(f"{entry.name}: {source} has {size} bytes, expected "
                           f"{low if low == high else f'{low}–{high}'} (published: {entry.published_size}); "
                           "nothing was kept in the cache")
    if entry.sha256 is not None and sha != entry.sha256:
        raise WeightsError(f"{entry.name}: {source} has sha256 {sha}, the registry pins {entry.sha256}; nothing was kept")
    earlier = Record.read(paths.record)
    if earlier is not None and (size, sha) != (earlier.size, earlier.sha256):
        raise WeightsError(f"{entry.name}: {source} has sha256 {sha[:16]}… ({size} bytes), but the first download "
                           f"({earlier.recorded_at}) recorded {earlier.sha256[:16]}… ({earlier.size} bytes) in "
                           f"{paths.record}; nothing was kept. If the file changed upstream on purpose, delete that "
                           "record and run again")
    model = _load_model(entry, file, source)
    record = earlier or Record(name=entry.name, file_name=entry.file_name, size=size, sha256=sha, url=source,
                               recorded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return record, model


def _load_model(entry: WeightsEntry, file: Path, source: str) -> EarlyFusionModel:
    """`file` as RITM's model via import-ritm's code, loading tensors and plain data only."""
    import torch

    from edgeclick.model.ritm_compat import RITMImportError, model_from_ritm_payload

    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # never retried without weights_only: that would run whatever the file holds
        raise WeightsError(f"{entry.name}: {source}: {_refusal(file, exc)}; nothing was kept in the cache") from None
    try:
        return model_from_ritm_payload(payload, source)
    except RITMImportError as exc:
        raise WeightsError(f"{entry.name}: {exc}; nothing was kept in the cache") from None


def _refusal(file: Path, exc: Exception) -> str:
    """Why torch.load(weights_only=True) refused `file`, in one phrase."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return (f"refused: it holds pickled Python code ({found.group(1)}), not only tensors and plain data; "
                "nothing in it was run")
    with open(file, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    return f"not a torch checkpoint (it starts with {head!r})"


def _import(entry: WeightsEntry, paths: CachePaths, record: Record, model: EarlyFusionModel) -> Path:
    """Save import-ritm's model of the cached original as `<name>.pt` beside it (atomic), with its origin."""
    from edgeclick.model.checkpoint import save_checkpoint

    meta = {"source": "ritm", "source_file": entry.file_name, "source_sha256": record.sha256,
            "weights_name": entry.name, "url": record.url, "published_noc": entry.noc}
    return save_checkpoint(model, paths.imported, meta=meta)
