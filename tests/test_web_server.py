"""`edgeclick web`'s server without a browser: the URL table, isolation headers, traversal, CLI errors."""
from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
from pathlib import Path

import pytest

from edgeclick import contract
from edgeclick.cli import main
from edgeclick.runtimes.web import ORT_DIST, BackgroundServer, WebSetupError, WebSite, web_contract

ROOT = Path(__file__).resolve().parents[1]
needs_ort = pytest.mark.skipif(not ORT_DIST.is_dir(), reason="onnxruntime-web not installed (make web-deps)")


def get(url: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """A raw request: `path` goes on the wire as written (no client-side normalisation of `..`)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path)
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, dict(res.getheaders()), body


def test_contract_json_comes_from_contract_py() -> None:
    data = web_contract()
    assert data["hash"] == contract.contract_hash() == data["contract"]["hash"]
    assert data["names"]["PREV_MASK"] == contract.PREV_MASK and data["num_clicks"] == contract.NUM_CLICKS
    assert data["threshold"] == contract.PROB_THRESHOLD and data["pad_multiple"] == contract.PAD_MULTIPLE
    assert data["tolerances"]["fp16"]["max_abs_logit"] is None  # inf → null: JSON has no Infinity
    json.dumps(data, allow_nan=False)
    late = data["layouts"]["late/base"]
    assert late[contract.DECODER]["inputs"] == contract.graph_specs("late", False)[contract.DECODER].input_names()


def test_page_never_spells_a_tensor_name() -> None:
    """The JS reads names from contract.json: no quoted tensor or graph name in web/js."""
    names = {contract.IMAGE, contract.CLICKS, contract.PREV_MASK, contract.LOGITS, contract.STEM, contract.FEATURES,
             contract.DOWN_IMAGE, contract.SKIP_IMAGE, contract.ENCODER, contract.DECODER}
    offenders = []
    for path in (ROOT / "web" / "js").glob("*.js"):
        for literal in re.findall(r"""['"`]([A-Za-z_]+)['"`]""", path.read_text()):
            if literal in names:
                offenders.append(f"{path.name}: {literal!r}")
    assert not offenders, offenders


@needs_ort
def test_serves_only_the_table_with_isolation_headers(tiny_onnx: tuple[Path, Path]) -> None:
    artifact, _ = tiny_onnx
    with BackgroundServer(WebSite.for_artifact(artifact)) as server:
        status, headers, body = get(server.url, "/")
        assert status == 200 and b"<script type=\"module\"" in body
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        for path in ("/contract.json", "/artifact/manifest.json", f"/artifact/{contract.ENCODER}.onnx",
                     f"/artifact/{contract.DECODER}.onnx", "/ort/ort.wasm.min.mjs", "/js/app.js"):
            status, headers, _ = get(server.url, path)
            assert status == 200, path
        assert get(server.url, "/ort/ort-wasm-simd-threaded.wasm")[1]["Content-Type"] == "application/wasm"
        # Nothing outside the table: traversal in every spelling, other files of the artifact and repo.
        (artifact / "secret.txt").write_text("no")
        for path in ("/../pyproject.toml", "/%2e%2e/pyproject.toml", "/artifact/../../tiny_late.pt",
                     "/artifact/%2e%2e%2ftiny_late.pt", "/artifact/secret.txt", "/ort/../package.json",
                     "/ort/..%2f..%2fpackage.json", "/js/../../pyproject.toml", "//etc/passwd", "/web/index.html",
                     "/node_modules/onnxruntime-web/package.json", "/ort/ort.wasm.min.mjs.map", "/.git/config"):
            status, _, body = get(server.url, path)
            assert status == 404, (path, status)
            assert b"no" != body
        assert get(server.url, "/", method="POST")[0] == 501
        assert get(server.url, "/", method="DELETE")[0] == 501


@needs_ort
def test_cli_errors_are_clear(tiny_onnx: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifact, _ = tiny_onnx
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["web", str(artifact), "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err

    broken = tmp_path / "broken"
    shutil.copytree(artifact, broken)
    (broken / f"{contract.DECODER}.onnx").unlink()
    assert main(["web", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "decoder graph" in err and "missing" in err and "re-export" in err

    assert main(["web", str(tmp_path / "nothing")]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_missing_onnxruntime_web_names_the_make_target(tiny_onnx: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(WebSetupError, match="make web-deps"):
        WebSite.for_artifact(tiny_onnx[0], ort_dist=tmp_path / "none")
