"""HTTP download into a `.part` file, resumed with a Range request after a cut connection (standard library only).

Two kinds of failure, because they leave different things behind:
- TransportError: the network failed (unreachable, HTTP error, connection cut). The `.part` is kept: it
  holds correct bytes so far, and the next attempt asks only for the rest.
- ContentError: the server offers the wrong thing (a size outside the published window). The caller
  deletes the `.part`: resuming it would only finish a wrong file.
"""
from __future__ import annotations

import http.client
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .registry import WeightsError

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0
USER_AGENT = "edgeclick-weights"


class TransportError(WeightsError):
    """The network failed; bytes already in the `.part` are good and are resumed next time."""


class ContentError(WeightsError):
    """The server's file is not the expected one; the `.part` must go."""


class _RangeRefused(Exception):
    """HTTP 416: the server cannot continue the `.part` (internal: the download starts over)."""


class _Cut(Exception):
    """The response ended before its announced length (internal: retried, then a TransportError)."""

    def __init__(self, have: int, total: int | None) -> None:
        super().__init__(f"connection cut at {have} of {total if total is not None else '?'} bytes")
        self.have, self.total = have, total


def fetch(url: str, part: Path, window: tuple[int, int], *, progress: bool = True, attempts: int = 3,
          retry_delay_s: float = 1.0) -> int:
    """Download `url` into `part`, continuing from the bytes `part` already holds; return the file's size.

    window: the (smallest, largest) size the file may have; a server that announces another size is
    refused before its body is read. A cut connection is retried `attempts` times in all (each retry asks
    only for the missing bytes), waiting `retry_delay_s` × the attempt number in between.
    """
    for attempt in range(1, attempts + 1):
        try:
            return _fetch_once(url, part, window, progress)
        except _Cut as cut:
            if attempt == attempts:
                raise TransportError(f"{url}: {cut} after {attempts} attempt(s); the {cut.have} bytes are kept in "
                                     f"{part}: run the same command again to resume") from None
            time.sleep(retry_delay_s * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    """GET `url` (from byte `offset` when > 0); network failures become TransportError."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        # add_header (not unredirected): urllib keeps it across GitHub's redirect to its file storage.
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            raise _RangeRefused() from None
        raise TransportError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransportError(f"cannot reach {url} ({reason})") from None


def _content_range(header: str | None) -> tuple[int, int | None]:
    """'bytes 100-199/200' → (100, 200); 'bytes 100-199/*' → (100, None)."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", header or "")
    if match is None:
        raise TransportError(f"unusable Content-Range {header!r} in a partial response")
    return int(match.group(1)), None if match.group(2) == "*" else int(match.group(2))


def _fetch_once(url: str, part: Path, window: tuple[int, int], progress: bool) -> int:
    """One request: resume or start `part`, stream the body into it; raise _Cut when it ends early."""
    offset = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, offset)
    except _RangeRefused:  # the part is as long as the file or longer: not a prefix to continue
        part.unlink()
        offset, response = 0, _open(url, 0)
    with response:
        total = _announced_total(response, url, offset)
        if response.status != 206:
            offset = 0  # the server ignored the Range header (or none was sent): the body is the whole file
        if total is not None and not window[0] <= total <= window[1]:
            raise ContentError(f"{url}: the server's file has {total} bytes, expected {_window_text(window)}")
        _stream(response, part, offset, total, progress)
    have = part.stat().st_size
    if total is not None and have != total:
        raise _Cut(have, total)
    return have


def _announced_total(response: http.client.HTTPResponse, url: str, offset: int) -> int | None:
    """The whole file's size as the response announces it (None when it does not)."""
    if response.status == 206:
        start, total = _content_range(response.headers.get("Content-Range"))
        if start != offset:
            raise TransportError(f"{url}: asked for bytes from {offset}, the server sent from {start}")
        return total
    length = response.headers.get("Content-Length")
    return int(length) if length is not None and length.isdigit() else None


def _window_text(window: tuple[int, int]) -> str:
    return f"{window[0]}" if window[0] == window[1] else f"{window[0]}–{window[1]} (the published, rounded size)"


def _stream(response: http.client.HTTPResponse, part: Path, offset: int, total: int | None, progress: bool) -> None:
    """Append (offset > 0) or write the body to `part`, flushing each chunk so a cut loses nothing written."""
    part.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
               desc=part.name.removesuffix(".part"), disable=not progress, dynamic_ncols=True)
    with bar, open(part, "ab" if offset else "wb") as out:
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
                if isinstance(exc, http.client.IncompleteRead) and exc.partial:
                    out.write(exc.partial)  # bytes that did arrive are good: keep them for the resume
                out.flush()
                raise _Cut(out.tell(), total) from None
            if not chunk:
                break
            out.write(chunk)
            bar.update(len(chunk))
