"""SAM-family peers in the bench harness: the "not installed" line, click-row conversion, and a tiny SAM built
from segment-anything's own classes, exported the package's way and timed by a bench worker (skipped with
the reason when segment-anything is not installed: it is the optional `peers` extra, not in CI's install).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edgeclick import contract
from edgeclick.cli import main
from edgeclick.runtimes import peers
from edgeclick.runtimes.bench import FACTORY, BenchConfig, BenchTarget, run_bench
from edgeclick.runtimes.side_by_side import side_by_side_rows

SIZE = (64, 96)
NO_SAM = importlib.util.find_spec("segment_anything") is None
needs_sam = pytest.mark.skipif(NO_SAM, reason="segment-anything not installed (optional: pip install -e .[peers])")


def test_missing_peer_package_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "segment_anything" else real(name, *a))
    rc = main(["bench", "--peer", "sam-vit-b", "--peer-dir", str(tmp_path / "peers"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "pip install -e .[peers]" in err[0] and "segment_anything" in err[0]
    assert not (tmp_path / "peers").exists() and not (tmp_path / "out").exists()


def test_unknown_peer_and_empty_bench(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--peer", "sam-vit-z"]) == 2
    err = capsys.readouterr().err
    assert "unknown peer" in err and "sam-vit-b" in err
    assert main(["bench"]) == 2
    assert "nothing to bench" in capsys.readouterr().err


def test_click_rows_become_sam_points() -> None:
    rows = np.full((1, contract.NUM_CLICKS, 3), contract.LABEL_PADDING, dtype=np.float32)
    rows[0, :2] = [[100.0, 50.0, contract.LABEL_POSITIVE], [959.0, 639.0, contract.LABEL_NEGATIVE]]
    coords, labels = peers.sam_points(rows, (640, 960), 1024)
    assert coords.shape == (1, 3, 2) and labels.shape == (1, 3)
    np.testing.assert_allclose(coords[0], [[100 * 1024 / 960, 50 * 1024 / 960], [1024 * 959 / 960, 1024 * 639 / 960], [0, 0]],
                               rtol=1e-6)
    assert labels[0].tolist() == [1.0, 0.0, -1.0]


def test_preprocess_resizes_longest_side_and_pads() -> None:
    image = np.full((1, 64, 96, 3), 255, dtype=np.uint8)
    out = peers.preprocess(image, 48)
    assert out.shape == (1, 3, 48, 48) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, :32, :], ((255 - peers.SAM_MEAN) / peers.SAM_STD)[:, None, None] * np.ones((1, 32, 48)),
                               rtol=1e-6)
    assert not out[0, :, 32:, :].any()


def tiny_sam(encoder_size: int = 64):
    """A SAM from segment-anything's own modules, a few thousand parameters (same graph structure as ViT-B)."""
    from functools import partial

    import torch

    from edgeclick.runtimes.peers_export import peer_imports

    with peer_imports(peers.PEERS["sam-vit-b"]):  # segment_anything imports torchvision at package import
        from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    dim, patch = 32, 16
    grid = encoder_size // patch
    encoder = ImageEncoderViT(img_size=encoder_size, patch_size=patch, embed_dim=16, depth=1, num_heads=2,
                              norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                              global_attn_indexes=(0,), window_size=2, out_chans=dim)
    prompt = PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(encoder_size, encoder_size),
                           mask_in_chans=4)
    decoder = MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=32, num_heads=2),
                          transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=16)
    return Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder).eval()


@pytest.fixture(scope="module")
def tiny_peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeclick.runtimes.peers_export import export_model

    root = tmp_path_factory.mktemp("peers")
    return export_model(tiny_sam(), peers.PEERS["sam-vit-b"], root / "tiny-sam", encoder_size=64)


@needs_sam
def test_tiny_sam_exports_like_its_script_and_runs_behind_the_backend(tiny_peer: Path) -> None:
    import onnx

    meta = json.loads((tiny_peer / peers.PEER_META).read_text())
    assert meta["encoder_size"] == 64 and meta["mask_input_size"] == [16, 16] and meta["package"] == "segment-anything"
    decoder = onnx.load(str(tiny_peer / peers.DECODER_FILE))
    assert [i.name for i in decoder.graph.input] == [peers.PEER_EMBEDDINGS, "point_coords", "point_labels", "mask_input",
                                                      "has_mask_input", "orig_im_size"]
    assert [o.name for o in decoder.graph.output] == ["masks", "iou_predictions", "low_res_masks"]
    backend = peers.open_peer_backend(SIZE, 1, str(tiny_peer))
    image = np.random.default_rng(0).integers(0, 255, (1, *SIZE, 3), dtype=np.uint8)
    feats = backend.run(contract.ENCODER, {contract.IMAGE: image})
    assert feats[peers.PEER_EMBEDDINGS].shape == (1, 32, 4, 4)
    rows = np.full((1, contract.NUM_CLICKS, 3), contract.LABEL_PADDING, dtype=np.float32)
    rows[0, 0] = [10, 20, contract.LABEL_POSITIVE]
    logits = backend.run(contract.DECODER, {**feats, contract.CLICKS: rows,
                                            contract.PREV_MASK: np.zeros((1, 1, *SIZE), np.float32)})[contract.LOGITS]
    assert logits.shape == (1, 1, *SIZE) and np.isfinite(logits).all()


@needs_sam
def test_peer_is_timed_by_a_bench_worker_next_to_the_side_by_side_table(tiny_peer: Path) -> None:
    target = BenchTarget("peer tiny-sam", FACTORY, peers.PEER_FACTORY, SIZE, files=peers.peer_file_sizes(tiny_peer),
                         kwargs={"artifact": str(tiny_peer)})
    report = run_bench([target], BenchConfig(warmup=0, runs=2, sustain_seconds=0.0, threads=(1,)))
    (result,) = report.results
    assert result.decoder.runs == 2 and result.encoder.p50_ms > 0
    assert not result.torch_in_process  # the worker's RSS is onnxruntime's and the peer's, not torch's
    (row,) = side_by_side_rows(report)
    assert row["kind"] == "peer" and row["session_ms"] == pytest.approx(result.encoder.p50_ms + 5 * result.decoder.p50_ms)
    assert row["size_mb"] == pytest.approx(sum(target.files.values()) / 1e6)


@needs_sam
def test_export_peer_reuses_a_matching_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeclick.runtimes import peers_export

    calls: list[str] = []

    def fake_build(spec: peers.PeerSpec, seed: int = 0):
        calls.append(spec.name)
        return tiny_sam()

    monkeypatch.setattr(peers_export, "build_peer", fake_build)
    monkeypatch.setitem(peers.PEERS, "sam-vit-b", dataclasses.replace(peers.PEERS["sam-vit-b"], encoder_size=64))
    first = peers_export.export_peer("sam-vit-b", tmp_path)
    second = peers_export.export_peer("sam-vit-b", tmp_path)
    assert first == second == tmp_path / "sam-vit-b" and calls == ["sam-vit-b"]
    assert not list(tmp_path.glob(".*staging*"))


@needs_sam
def test_peer_imports_stand_in_only_while_building() -> None:
    import sys

    from edgeclick.runtimes.peers_export import peer_imports

    before = {n for n in sys.modules if n.split(".")[0] in ("torchvision", "timm")}
    with peer_imports(peers.PEERS["mobilesam"]) as stood_in:
        import segment_anything  # noqa: F401  (imports torchvision.transforms.functional at package import)
    after = {n for n in sys.modules if n.split(".")[0] in ("torchvision", "timm")}
    assert after == before  # nothing stood in outlives the build: lightning and others see the real state
    if stood_in:
        assert "torchvision.transforms.functional" in stood_in or "timm.models.layers" in stood_in
