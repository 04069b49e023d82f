"""Per-graph thread counts: a deployment may give the encoder and the per-click decoder different counts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeclick import contract
from edgeclick.runtimes.ort import OrtBackend, graph_threads
from edgeclick.runtimes.session import open_artifact_session


def test_graph_threads_forms() -> None:
    assert graph_threads(None, contract.ENCODER) is None
    assert graph_threads(3, contract.DECODER) == 3
    assert graph_threads({contract.ENCODER: 2}, contract.DECODER) is None
    with pytest.raises(ValueError, match="unknown graph"):
        graph_threads({"encodr": 2}, contract.ENCODER)


def test_ort_backend_takes_per_graph_threads(tiny_onnx: tuple[Path, Path]) -> None:
    artifact, _ = tiny_onnx
    backend = OrtBackend(artifact, threads={contract.ENCODER: 2, contract.DECODER: 1})
    got = {g: s.get_session_options().intra_op_num_threads for g, s in backend.sessions.items()}
    assert got == {contract.ENCODER: 2, contract.DECODER: 1}
    session = open_artifact_session(artifact, threads={contract.DECODER: 1})
    session.set_image(np.zeros((40, 50, 3), dtype=np.uint8))
    assert session.click(10, 10, True).shape == (40, 50)
    assert session.backend.sessions[contract.DECODER].get_session_options().intra_op_num_threads == 1


def test_op_profile_sums_kernel_time_by_operator(tiny_onnx: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    from edgeclick.runtimes import op_profile

    artifact, _ = tiny_onnx
    assert op_profile.main([str(artifact), str(artifact), "--runs", "3", "--json", str(tmp_path / "p.json")]) == 0
    import json

    first, second = json.loads((tmp_path / "p.json").read_text())
    assert first["graph"] == contract.DECODER and first["runs"] == 3 and first["p50_ms"] > 0
    assert first["kernel_ms"] == pytest.approx(sum(first["by_op_ms"].values())) and "Conv" in first["by_op_ms"]
    assert "1.00x the first" in capsys.readouterr().out


def test_interleaved_sessions_give_a_ratio_to_the_first_artifact(tiny_onnx: tuple[Path, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from edgeclick.runtimes import interleaved

    artifact, _ = tiny_onnx
    out = tmp_path / "report"
    assert interleaved.main([str(artifact), str(artifact), "--rounds", "3", "--clicks", "2", "--out", str(out)]) == 0
    import json

    result = json.loads((out / "interleaved.json").read_text())
    first, second = result["artifacts"]
    assert result["settings"]["clicks_per_session"] == 2 and result["settings"]["rounds"] == 3
    assert first["ratio_to_first"] == 1.0 and second["ratio_to_first"] > 0
    # A session is the encoder plus every click's decoder: its p50 cannot be below the encoder's p50 alone.
    assert first["session_ms"] >= first["encoder_ms"] > 0 and first["decoder_ms_per_click"] > 0
    assert (out / "interleaved.md").read_text() in capsys.readouterr().out


def test_interleaved_refuses_artifacts_of_different_sizes(tiny_onnx: tuple[Path, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from edgeclick.export.run import export
    from edgeclick.runtimes import interleaved

    artifact, checkpoint = tiny_onnx
    other, = export(checkpoint, "onnx", size=(32, 64), out_root=tmp_path, name="tiny-32x64")
    capsys.readouterr()  # the export's own progress lines
    assert interleaved.main([str(artifact), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: interleave artifacts of one fixed input size") and "\n" not in err
