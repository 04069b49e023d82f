"""`edgeclick web`: the browser runtime's server — the static page, one artifact, the pinned onnxruntime-web.

    server = make_server(WebSite.for_artifact("artifacts/w18s-late-640x960-fp32-onnx"), "127.0.0.1", 8000)
    server.serve_forever()

The page (web/) runs the artifact's encoder and decoder with onnxruntime-web. The server answers only a
fixed table of URLs built at start-up (the page's files, the artifact's manifest and two graphs, the
onnxruntime-web dist files, an optional parity bundle's listed files and a `contract.json` generated from
edgeclick/contract.py): a request path is looked up in that table and never joined onto a directory, so
`..`, encoded slashes and symlinks cannot reach anything else. Every answer carries the cross-origin
isolation headers (COOP/COEP) that give the page SharedArrayBuffer, which multi-threaded WASM needs.
"""
from __future__ import annotations

import errno
import json
import math
import mimetypes
import sys
import threading
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edgeclick import contract

from .power import get_profile, web_profiles

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE_DIR = REPO_ROOT / "web"
ORT_DIST = PAGE_DIR / "node_modules" / "onnxruntime-web" / "dist"
PAGE_SUFFIXES = (".html", ".js", ".css", ".svg", ".ico")
ORT_SUFFIXES = (".mjs", ".wasm")  # the ES-module bundles and the WASM binaries they load (no source maps)

# URL prefixes of the routes (the page reads them from contract.json's "page" section).
ARTIFACT_URL = "/artifact/"
ORT_URL = "/ort/"
REFERENCE_URL = "/reference/"
CONTRACT_URL = "/contract.json"

# Page policy (not the I/O contract): images above MAX_SOURCE_PIXELS are downscaled in the page, with a
# note, before the letterbox, so a 50-megapixel photo does not freeze the tab (the per-click unmap to the
# image's size is O(pixels)); LONG_PRESS_MS on touch = a negative click.
PAGE_POLICY: dict[str, Any] = {"max_source_pixels": 16_000_000, "long_press_ms": 500, "max_bench_clicks": contract.NUM_CLICKS}

# Cross-origin isolation: SharedArrayBuffer (WASM threads) needs both. CORP lets the isolated page load
# our own subresources; no-store keeps a re-exported artifact from being served stale.
ISOLATION_HEADERS: dict[str, str] = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm", ".onnx": "application/octet-stream",
          ".json": "application/json", ".html": "text/html; charset=utf-8", ".css": "text/css", ".png": "image/png",
          ".bin": "application/octet-stream", ".svg": "image/svg+xml"}


class WebSetupError(RuntimeError):
    """Something the server needs is missing; the message says what to run."""


def web_contract(power: str | None = None) -> dict[str, Any]:
    """contract.json: what the page needs from edgeclick/contract.py, so no contract number is typed in JS.

    page.power holds the power profiles (runtimes/power.py: each one's WASM thread rule and onnxruntime
    config entries) and the server's default (`power`, None: power.DEFAULT_PROFILE); `?power=NAME` picks
    another in the page, `?threads=N` overrides its thread count.

    Holds the contract (hash included, as `edgeclick contract` prints it), the graph/tensor names, the
    click encoding, preprocessing and threshold, the encoder-output specs for every model layout, and
    the page's own policy and URL prefixes.
    """
    layouts = {}
    for fusion in ("early", "late"):
        for adapter in (False, True):
            specs = contract.graph_specs(fusion, adapter)
            layouts[f"{fusion}/{'adapter' if adapter else 'base'}"] = {
                graph: {"inputs": spec.input_names(), "outputs": spec.output_names()} for graph, spec in specs.items()
            }
    return _json_safe({
        "contract": contract.describe(),
        "hash": contract.contract_hash(),
        "version": contract.CONTRACT_VERSION,
        # Keyed by the Python constant's identifier, so the page never spells a tensor name itself.
        "names": {key: getattr(contract, key) for key in ("ENCODER", "DECODER", "IMAGE", "CLICKS", "PREV_MASK", "LOGITS")},
        "num_clicks": contract.NUM_CLICKS,
        "labels": {"positive": contract.LABEL_POSITIVE, "negative": contract.LABEL_NEGATIVE, "padding": contract.LABEL_PADDING},
        "pad_multiple": contract.PAD_MULTIPLE,
        "pad_value": contract.PAD_VALUE,
        "threshold": contract.PROB_THRESHOLD,
        "logit_clip": 80.0,  # runtimes.session.sigmoid clips logits to ±80 before exp
        "tolerances": {k: asdict(v) for k, v in contract.TOLERANCES.items()},  # null = not a gate
        "gated": _gated(),
        "layouts": layouts,
        "page": {**PAGE_POLICY, "artifact_url": ARTIFACT_URL, "ort_url": ORT_URL, "reference_url": REFERENCE_URL,
                 "power": {"default": get_profile(power).name, "profiles": web_profiles()}},
    })


def _json_safe(value: Any) -> Any:
    """Non-finite floats (an ungated tolerance is inf) become null: JSON has no Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _gated() -> dict[str, list[str]]:
    return {k: list(v) for k, v in contract.GATED.items()}


@dataclass
class WebSite:
    """The URL table: path → (file on disk or generated bytes, content type).

    Attributes:
        artifact: the artifact folder served under /artifact/.
        routes: exact URL path → file; built once, the only files the server ever opens.
        generated: exact URL path → bytes made at start-up (contract.json).
        warnings: problems the page will show too (e.g. another contract's artifact), printed by the CLI.
    """

    artifact: Path
    routes: dict[str, Path] = field(default_factory=dict)
    generated: dict[str, bytes] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def for_artifact(cls, artifact_dir: str | Path, reference_dir: str | Path | None = None,
                     page_dir: Path = PAGE_DIR, ort_dist: Path = ORT_DIST, power: str | None = None) -> "WebSite":
        """Build the URL table for one artifact (and optionally a parity bundle from `edgeclick parity
        --web-reference`).

        Raises:
            WebSetupError: no manifest, a listed graph missing, a non-ONNX artifact, or onnxruntime-web
                not installed — each message says how to fix it.
        """
        artifact = Path(artifact_dir)
        site = cls(artifact)
        site._add_page(page_dir)
        site._add_ort(ort_dist)
        site._add_artifact(artifact)
        if reference_dir is not None:
            site._add_reference(Path(reference_dir))
        site.generated[CONTRACT_URL] = json.dumps(web_contract(power), indent=1, allow_nan=False).encode()
        return site

    def _add_page(self, page_dir: Path) -> None:
        if not (page_dir / "index.html").is_file():
            raise WebSetupError(f"{page_dir}/index.html missing: the page ships in the repository's web/ folder")
        for path in sorted(page_dir.rglob("*")):
            rel = path.relative_to(page_dir)
            if path.is_file() and path.suffix in PAGE_SUFFIXES and "node_modules" not in rel.parts:
                self.routes["/" + rel.as_posix()] = path
        self.routes["/"] = page_dir / "index.html"

    def _add_ort(self, ort_dist: Path) -> None:
        if not ort_dist.is_dir():
            raise WebSetupError(f"onnxruntime-web is not installed ({ort_dist} missing); run `make web-deps` "
                                "(npm ci in web/, the version pinned in web/package-lock.json)")
        for path in sorted(ort_dist.iterdir()):
            if path.is_file() and path.suffix in ORT_SUFFIXES:
                self.routes[ORT_URL + path.name] = path

    def _add_artifact(self, artifact: Path) -> None:
        manifest_path = artifact / "manifest.json"
        if not manifest_path.is_file():
            raise WebSetupError(f"{artifact}: no manifest.json; not an edgeclick artifact (export one with "
                                "`edgeclick export --target onnx --checkpoint CKPT`)")
        try:
            manifest = json.loads(manifest_path.read_text())
            files = {role: entry["path"] for role, entry in manifest["files"].items()}
            fmt, artifact_hash = manifest["format"], manifest["contract"]["hash"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise WebSetupError(f"{manifest_path}: corrupt manifest ({type(exc).__name__}: {exc}); re-export the artifact") from exc
        if fmt != "onnx":
            raise WebSetupError(f"{artifact}: a {fmt!r} artifact; the browser runs ONNX artifacts (`edgeclick export --target onnx`)")
        self.routes[ARTIFACT_URL + "manifest.json"] = manifest_path
        for role in (contract.ENCODER, contract.DECODER):
            if role not in files:
                raise WebSetupError(f"{artifact}: the manifest lists no {role} graph; re-export the artifact")
            path = artifact / files[role]
            if not path.resolve().is_relative_to(artifact.resolve()):
                raise WebSetupError(f"{artifact}: {role} file {files[role]} lies outside the artifact folder")
            if not path.is_file():
                raise WebSetupError(f"{artifact}: {role} graph {files[role]} is missing; re-export the artifact")
            self.routes[f"{ARTIFACT_URL}{role}.onnx"] = path
        if artifact_hash != contract.contract_hash():
            # Served anyway: the page shows the refusal where the user is looking.
            self.warnings.append(f"{artifact} was built for I/O contract {str(artifact_hash)[:12]}…, this edgeclick speaks "
                                 f"{contract.contract_hash()[:12]}…; the page will refuse it (re-export with this version)")

    def _add_reference(self, bundle: Path) -> None:
        from .web_reference import BUNDLE_NAME, bundle_files

        if not (bundle / BUNDLE_NAME).is_file():
            raise WebSetupError(f"{bundle}: no {BUNDLE_NAME}; write one with `edgeclick parity ARTIFACT --data DIR --web-reference {bundle}`")
        for rel in bundle_files(bundle):
            self.routes[REFERENCE_URL + rel] = bundle / rel

    def lookup(self, raw_path: str) -> tuple[bytes | Path, str] | None:
        """(content, content type) for a request path, or None (404). Exact table lookup, nothing else."""
        path = unquote(urlsplit(raw_path).path)
        if path in self.generated:
            return self.generated[path], _TYPES[".json"]
        file = self.routes.get(path)
        if file is None:
            return None
        return file, _TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"


class _Handler(BaseHTTPRequestHandler):
    """GET/HEAD from the site's table; every other method is refused."""

    site: WebSite
    quiet: bool = True
    server_version = "edgeclick-web"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        found = self.site.lookup(self.path)
        if found is None:
            self._error(HTTPStatus.NOT_FOUND, "not found: this server serves only the page, the artifact and onnxruntime-web")
            return
        content, ctype = found
        try:
            body = content if isinstance(content, bytes) else content.read_bytes()
        except OSError as exc:
            self._error(HTTPStatus.NOT_FOUND, f"{exc.strerror}: {Path(str(exc.filename)).name}")
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in ISOLATION_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str) -> None:
        body = message.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in ISOLATION_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        if not self.quiet:
            super().log_message(format, *args)


def make_server(site: WebSite, host: str = "127.0.0.1", port: int = 8000, quiet: bool = True) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server for `site`; port 0 picks a free port.

    Raises:
        WebSetupError: the port is taken or the address cannot be bound (the message names the fix).
    """
    handler = type("EdgeclickWebHandler", (_Handler,), {"site": site, "quiet": quiet})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise WebSetupError(f"port {port} on {host} is already in use; pass another with --port (or --port 0 for any free port)") from exc
        raise WebSetupError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    server.daemon_threads = True
    return server


class BackgroundServer:
    """A server on a daemon thread (tests, `edgeclick web --bench/--parity`); a context manager.

    Attributes:
        url: base URL, e.g. http://127.0.0.1:41234
    """

    def __init__(self, site: WebSite, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = make_server(site, host, port)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="edgeclick-web", daemon=True)

    def __enter__(self) -> "BackgroundServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def serve(site: WebSite, host: str, port: int) -> int:
    """Serve until Ctrl-C; prints the URL(s) to open."""
    server = make_server(site, host, port, quiet=False)
    bound = server.server_address[1]
    for warning in site.warnings:
        print(f"edgeclick web: warning: {warning}", file=sys.stderr)
    print(f"edgeclick web: serving {site.artifact} on http://{host}:{bound}/  (Ctrl-C stops)", flush=True)
    if host in ("0.0.0.0", "::"):
        print("  reachable from this network: open http://<this machine's LAN address>:"
              f"{bound}/ on the phone (see docs/browser.md)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
