"""`edgeclick weights`: download (against a server on 127.0.0.1 only), resume, checks, cache, name resolution.

The served files are RITM-format checkpoints made here from the tiny config; the registry gets a test
entry whose exact size is the file's. Every failure must end in one clear message and leave nothing in the
cache that looks finished (only a `.part` after a cut connection, which the next `get` resumes).
"""
from __future__ import annotations

import io
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeclick.cli import main as cli_main
from edgeclick.model import create_model
from edgeclick.model.checkpoint import load_checkpoint
from edgeclick.weights import REGISTRY, CachePaths, Record, WeightsEntry, WeightsError, resolve_checkpoint
from edgeclick.weights.install import add, get

from .helpers import randomize_
from .test_ritm_import import ritm_config

NAME = "ritm-test"
FILE = "tiny_itermask.pth"


def ritm_bytes(seed: int = 3, config: object = None) -> bytes:
    """A RITM-format checkpoint ({'state_dict', 'config'}) of the tiny model, as bytes."""
    buffer = io.BytesIO()
    state = randomize_(create_model("tiny"), seed=seed).state_dict()
    torch.save({"state_dict": state, "config": config if config is not None else ritm_config(4, 8, True)}, buffer)
    return buffer.getvalue()


@dataclass
class Served:
    """What the loopback server serves and what it saw."""

    base: str
    files: dict[str, bytes] = field(default_factory=dict)
    cut_once: set[str] = field(default_factory=set)  # paths whose next response stops halfway
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            served.requests.append((self.path, self.headers.get("Range")))
            data = served.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            if self.headers.get("Range"):
                start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"]).group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path in served.cut_once:  # announce the whole body, send half, close the connection
                served.cut_once.discard(self.path)
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """A threaded HTTP server on 127.0.0.1 (port 0), the URL base and the cache pointed at it / tmp_path,
    and a registry entry NAME for the tiny file it serves."""
    state = Served(base="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}/v1.0"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("EDGECLICK_WEIGHTS_URL_BASE", state.base)
    monkeypatch.setenv("EDGECLICK_CACHE", str(tmp_path / "cache"))
    for var in ("no_proxy", "NO_PROXY"):  # urllib honours proxy variables: keep loopback off any proxy
        monkeypatch.setenv(var, "127.0.0.1")
    serve(state, monkeypatch, ritm_bytes())
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def serve(state: Served, monkeypatch: pytest.MonkeyPatch, data: bytes, size: int | None = None) -> None:
    """Serve `data` as NAME's file; the registry expects `size` bytes (default: exactly len(data))."""
    state.files[f"/v1.0/{FILE}"] = data
    monkeypatch.setitem(REGISTRY, NAME, WeightsEntry(NAME, FILE, "tiny", "none", "test file",
                                                     size_bytes=len(data) if size is None else size))


def paths() -> CachePaths:
    return CachePaths.of(REGISTRY[NAME])


def finished_files() -> list[str]:
    """Files in NAME's cache folder that look finished: anything but the lock and a `.part`."""
    folder = paths().folder
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock" and not p.name.endswith(".part"))


def fetch(**kwargs: object):
    return get(NAME, progress=False, retry_delay_s=0.0, **kwargs)


def test_get_downloads_checks_records_and_imports(served: Served) -> None:
    outcome = fetch()
    p = paths()
    assert outcome.action == "downloaded"
    assert p.original.read_bytes() == served.files[f"/v1.0/{FILE}"]
    assert not p.part.exists()
    record = Record.read(p.record)
    assert record is not None and record.size == p.original.stat().st_size and record.url.startswith("http://127.0.0.1:")
    model = load_checkpoint(p.imported)
    assert model.config.arch == "tiny" and model.config.fusion == "early"
    reference = randomize_(create_model("tiny"), seed=3)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    meta = torch.load(p.imported, weights_only=True)["meta"]
    assert meta["weights_name"] == NAME and meta["source_sha256"] == record.sha256
    assert resolve_checkpoint(NAME) == p.imported
    # A second get uses the cache: no request, same record.
    n = len(served.requests)
    assert fetch().action == "already cached" and len(served.requests) == n


def test_resume_after_cut_connection_uses_range(served: Served) -> None:
    served.cut_once.add(f"/v1.0/{FILE}")
    fetch(attempts=2)
    size = len(served.files[f"/v1.0/{FILE}"])
    assert served.requests == [(f"/v1.0/{FILE}", None), (f"/v1.0/{FILE}", f"bytes={size // 2}-")]
    assert paths().original.read_bytes() == served.files[f"/v1.0/{FILE}"]


def test_cut_connection_keeps_only_a_part_and_the_next_get_resumes(served: Served) -> None:
    served.cut_once.add(f"/v1.0/{FILE}")
    with pytest.raises(WeightsError, match=r"connection cut at \d+ of \d+ bytes .*run the same command again to resume"):
        fetch(attempts=1)
    size = len(served.files[f"/v1.0/{FILE}"])
    assert paths().part.stat().st_size == size // 2 and finished_files() == []
    with pytest.raises(WeightsError, match="run: edgeclick weights get ritm-test"):
        resolve_checkpoint(NAME)
    fetch()
    assert served.requests[-1] == (f"/v1.0/{FILE}", f"bytes={size // 2}-")
    assert resolve_checkpoint(NAME) == paths().imported


def test_404_names_the_url_and_the_manual_route(served: Served) -> None:
    served.files.clear()
    with pytest.raises(WeightsError) as err:
        fetch()
    message = str(err.value)
    assert "HTTP 404" in message and f"{served.base}/{FILE}" in message
    assert "edgeclick weights add ritm-test FILE" in message and "\n" not in message
    assert finished_files() == [] and not paths().part.exists()


def test_unreachable_server_is_one_line_with_the_manual_route(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("EDGECLICK_WEIGHTS_URL_BASE", f"http://127.0.0.1:{port}")
    with pytest.raises(WeightsError, match=rf"cannot reach http://127\.0\.0\.1:{port}/{FILE} .*Offline\? .*weights add"):
        fetch()
    assert finished_files() == []


def test_wrong_size_is_refused_before_the_body(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    data = ritm_bytes()
    serve(served, monkeypatch, data, size=len(data) + 1)
    with pytest.raises(WeightsError, match=rf"has {len(data)} bytes, expected {len(data) + 1}.*nothing was kept"):
        fetch()
    assert finished_files() == [] and not paths().part.exists()


def test_content_that_is_not_a_checkpoint(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    serve(served, monkeypatch, b"<html><body>rate limited</body></html>" * 20)
    with pytest.raises(WeightsError, match=r"not a torch checkpoint \(it starts with b'<html>.*nothing was kept"):
        fetch()
    assert finished_files() == [] and not paths().part.exists()


def test_a_torch_file_that_is_not_ritm(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, buffer)
    serve(served, monkeypatch, buffer.getvalue())
    with pytest.raises(WeightsError, match="not a RITM checkpoint"):
        fetch()
    assert finished_files() == []


class _Payload:
    """Pickles as a call to open(marker, 'w'): loading the file with pickle would create the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def test_pickled_code_is_refused_without_running(served: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    buffer = io.BytesIO()
    torch.save({"state_dict": {}, "config": _Payload(marker)}, buffer)
    serve(served, monkeypatch, buffer.getvalue())
    with pytest.raises(WeightsError, match=r"refused: it holds pickled Python code \(.*open\).*nothing in it was run"):
        fetch()
    assert not marker.exists()
    assert finished_files() == [] and not paths().part.exists()


def test_sha256_recorded_first_then_checked(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    fetch()
    first = paths().original.read_bytes()
    changed = ritm_bytes(seed=4)  # same size (same shapes), other bytes
    assert len(changed) == len(first) and changed != first
    serve(served, monkeypatch, changed)
    with pytest.raises(WeightsError, match=r"has sha256 .* but the first download .* recorded .*nothing was kept"):
        fetch(force=True)
    assert paths().original.read_bytes() == first  # the checked file stays; the new one is gone
    assert not paths().part.exists()


def test_changed_cached_file_is_noticed(served: Served) -> None:
    fetch()
    original = paths().original
    data = bytearray(original.read_bytes())
    data[-1] ^= 0xFF
    original.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="changed since it was recorded"):
        fetch()


def test_add_is_the_offline_route(served: Served, tmp_path: Path) -> None:
    file = tmp_path / "elsewhere.pth"
    file.write_bytes(served.files[f"/v1.0/{FILE}"])
    outcome = add(NAME, file)
    assert outcome.action == "added" and served.requests == []
    assert resolve_checkpoint(NAME) == paths().imported
    assert Record.read(paths().record).url == file.resolve().as_uri()


def test_add_refuses_a_wrong_file(served: Served, tmp_path: Path) -> None:
    file = tmp_path / "elsewhere.pth"
    file.write_bytes(b"x" * len(served.files[f"/v1.0/{FILE}"]))
    with pytest.raises(WeightsError, match="not a torch checkpoint"):
        add(NAME, file)
    assert finished_files() == [] and list(paths().folder.glob("*.part")) == []


def test_reimport_when_the_import_is_missing(served: Served) -> None:
    fetch()
    paths().imported.unlink()
    n = len(served.requests)
    assert fetch().action == "re-imported" and len(served.requests) == n
    assert load_checkpoint(paths().imported).config.arch == "tiny"


# --- name resolution -------------------------------------------------------------------------------------

def test_resolve_existing_path_is_itself(tmp_path: Path) -> None:
    file = tmp_path / "model.pt"
    file.write_bytes(b"")
    assert resolve_checkpoint(file) == file and resolve_checkpoint(str(file)) == file


def test_resolve_uncached_name_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECLICK_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="ritm-hrnet18s: registered RITM weights, not in the cache .*; "
                                           "run: edgeclick weights get ritm-hrnet18s"):
        resolve_checkpoint("ritm-hrnet18s")
    assert list(tmp_path.iterdir()) == []  # resolving never downloads nor creates anything


def test_resolve_unknown_name_lists_the_known_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECLICK_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="hrnet99: no such checkpoint file, and not a registered weights name "
                                           r"\(known: ritm-hrnet18s, ritm-hrnet18, ritm-hrnet32, ritm-hrnet18-sbd"):
        resolve_checkpoint("hrnet99")


def test_cache_root_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgeclick.weights import cache_root

    monkeypatch.delenv("EDGECLICK_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "edgeclick"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "edgeclick"
    monkeypatch.setenv("EDGECLICK_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"


def test_registry_holds_ritms_published_facts() -> None:
    entry = REGISTRY["ritm-hrnet18s"]
    assert entry.url().endswith("/releases/download/v1.0/coco_lvis_h18s_itermask.pth")
    assert entry.noc["GrabCut@90"] == 1.68 and entry.noc["COCO_MVal@90"] == 3.33
    # "16.5 MB" as printed: 16.45e6 bytes up to 16.55 MiB, 2% slack either side.
    assert entry.size_window() == (16_121_000, 17_701_012)
    assert REGISTRY["ritm-hrnet32"].size_window() == (116_130_000, 127_810_929)
    assert {"ritm-hrnet18s", "ritm-hrnet18", "ritm-hrnet32", "ritm-hrnet18-sbd"} <= set(REGISTRY)


def test_a_hrnet18s_ritm_file_fits_the_published_size() -> None:
    """Sanity of the window: RITM's hrnet18s state dict, saved by today's torch, fits "16.5 MB"."""
    from edgeclick.model import ARCHS

    buffer = io.BytesIO()
    torch.save({"state_dict": create_model("hrnet18s").state_dict(), "config": ritm_config(*ARCHS["hrnet18s"])}, buffer)
    low, high = REGISTRY["ritm-hrnet18s"].size_window()
    assert low <= len(buffer.getvalue()) <= high


# --- the command line ------------------------------------------------------------------------------------

def test_cli_get_list_and_segment_by_name(served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["weights", "get", NAME, "--no-progress"]) == 0
    assert "downloaded tiny_itermask.pth" in capsys.readouterr().out
    assert cli_main(["weights", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"cached: {paths().imported}" in listing and "ritm-hrnet18s" in listing and "not cached" in listing
    image = tmp_path / "image.png"
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(image)
    out = tmp_path / "mask.png"
    assert cli_main(["segment", NAME, str(image), "--click", "30,20,+", "--out", str(out)]) == 0
    assert Image.open(out).size == (64, 48)


def test_cli_uncached_name_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EDGECLICK_CACHE", str(tmp_path))
    assert cli_main(["export", "--target", "onnx", "--checkpoint", "ritm-hrnet32", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"edgeclick export: error: ritm-hrnet32: registered RITM weights, not in the cache {tmp_path}; "
                   "run: edgeclick weights get ritm-hrnet32")
