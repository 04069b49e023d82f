"""RITM checkpoints → edgeclick: config read from the file, key-by-key checks, same logits."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeclick import contract
from edgeclick.cli import main as cli_main
from edgeclick.model import create_model
from edgeclick.model.base import AUX_LOGITS
from edgeclick.model.checkpoint import CheckpointError, load_checkpoint
from edgeclick.model.ritm_compat import RITMImportError, import_ritm, load_ritm_checkpoint, ritm_points_to_clicks

from .helpers import click_rows, randomize_

FIXTURE = Path(__file__).parent / "golden" / "ritm_tiny_reference.pt"


def ritm_config(width: int, ocr_width: int, small: bool, **extra: object) -> dict:
    """A config dict shaped as RITM's `serialize` writes it (every param with type/value/specified)."""
    params = {
        "width": width, "ocr_width": ocr_width, "small": small, "backbone_lr_mult": 0.1,
        "norm_layer": "torch.nn.modules.batchnorm.BatchNorm2d", "use_rgb_conv": False, "with_aux_output": True,
        "norm_radius": 5, "use_disks": True, "cpu_dist_maps": False, "clicks_groups": None, "with_prev_mask": True,
        "use_leaky_relu": True, "binary_prev_mask": False, "conv_extend": False,
        "norm_mean_std": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    }
    params.update(extra)
    return {
        "class": "isegm.model.is_hrnet_model.HRNetModel",
        "params": {k: {"type": "class" if k == "norm_layer" else "builtin", "value": v, "specified": k in ("width", "ocr_width", "small")}
                   for k, v in params.items()},
    }


def save_ritm(tmp_path: Path, name: str, state: dict, config: dict) -> Path:
    path = tmp_path / name
    torch.save({"state_dict": state, "config": config}, path)
    return path


@pytest.fixture
def tiny_ritm(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    model = randomize_(create_model("tiny"), seed=3)
    # The file name lies on purpose: the variant must come from the config inside.
    return save_ritm(tmp_path, "hrnet32_cocolvis_itermask_3p.pth", model.state_dict(), ritm_config(4, 8, True)), model


def test_round_trip_same_logits(tmp_path: Path, tiny_ritm: tuple[Path, torch.nn.Module]) -> None:
    src, reference = tiny_ritm
    out = import_ritm(src, tmp_path / "imported.pt")
    model = load_checkpoint(out)
    assert model.config.arch == "tiny" and model.config.width == 4 and model.config.small
    image, prev = torch.rand(1, 3, 64, 96), torch.rand(1, 1, 64, 96)
    clicks = click_rows([(5, 7, 1), (80, 50, 0)])
    with torch.no_grad():
        expected = reference(image, clicks, prev)
        got = model(image, clicks, prev)
    assert torch.equal(got[contract.LOGITS], expected[contract.LOGITS])
    assert torch.equal(got[AUX_LOGITS], expected[AUX_LOGITS])
    meta = torch.load(out, weights_only=True)["meta"]
    assert meta["source"] == "ritm" and len(meta["source_sha256"]) == 64


def test_config_comes_from_the_file_not_the_name(tiny_ritm: tuple[Path, torch.nn.Module]) -> None:
    model = load_ritm_checkpoint(tiny_ritm[0])
    assert (model.config.width, model.config.ocr_width, model.config.small) == (4, 8, True)


def test_missing_num_batches_tracked_is_tolerated(tmp_path: Path) -> None:
    model = randomize_(create_model("tiny"), seed=4)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    loaded = load_ritm_checkpoint(save_ritm(tmp_path, "a.pth", state, ritm_config(4, 8, True)))
    x = torch.rand(1, 3, 32, 32)
    clicks = click_rows([(5, 5, 1)])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, clicks, torch.zeros(1, 1, 32, 32))[contract.LOGITS], model(x, clicks, torch.zeros(1, 1, 32, 32))[contract.LOGITS])


def test_unknown_key_is_named(tmp_path: Path) -> None:
    state = dict(create_model("tiny").state_dict())
    state["feature_extractor.bogus_head.weight"] = torch.zeros(1)
    with pytest.raises(RITMImportError, match=r"unknown key\(s\) \['feature_extractor.bogus_head.weight'\]"):
        load_ritm_checkpoint(save_ritm(tmp_path, "a.pth", state, ritm_config(4, 8, True)))


def test_missing_key_is_named(tmp_path: Path) -> None:
    state = dict(create_model("tiny").state_dict())
    del state["maps_transform.3.scale"]
    with pytest.raises(RITMImportError, match=r"missing key\(s\) \['maps_transform.3.scale'\]"):
        load_ritm_checkpoint(save_ritm(tmp_path, "a.pth", state, ritm_config(4, 8, True)))


def test_shape_mismatch_is_named(tmp_path: Path) -> None:
    state = dict(create_model("tiny").state_dict())
    with pytest.raises(RITMImportError, match=r"feature_extractor.transition1.0.0.weight has shape \(4, 256, 3, 3\), expected \(5, 256, 3, 3\)"):
        # width 5 in the config, width-4 weights in the file
        load_ritm_checkpoint(save_ritm(tmp_path, "a.pth", state, ritm_config(5, 8, True)))


@pytest.mark.parametrize("param,value", [("use_rgb_conv", True), ("use_disks", False), ("with_prev_mask", False), ("binary_prev_mask", True)])
def test_unsupported_ritm_params_are_refused(tmp_path: Path, param: str, value: object) -> None:
    state = create_model("tiny").state_dict()
    with pytest.raises(RITMImportError, match=param):
        load_ritm_checkpoint(save_ritm(tmp_path, "a.pth", state, ritm_config(4, 8, True, **{param: value})))


def test_not_a_ritm_file(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    torch.save({"model": {}}, path)
    with pytest.raises(RITMImportError, match="expected a dict with 'state_dict' and 'config'"):
        load_ritm_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(RITMImportError, match="cannot be read"):
        load_ritm_checkpoint(path)
    with pytest.raises(RITMImportError, match="no such file"):
        load_ritm_checkpoint(tmp_path / "absent.pth")


def test_ritm_file_given_where_edgeclick_checkpoint_expected(tiny_ritm: tuple[Path, torch.nn.Module]) -> None:
    with pytest.raises(CheckpointError, match="edgeclick import-ritm"):
        load_checkpoint(tiny_ritm[0])


def test_points_conversion() -> None:
    # RITM: (y, x, index); first half positive, second half negative; (-1, -1, -1) padding.
    points = torch.tensor([[[4.0, 7.0, 0], [-1, -1, -1], [9.0, 2.0, 1], [-1, -1, -1]]])
    clicks = ritm_points_to_clicks(points)
    assert clicks.tolist() == [[[7.0, 4.0, 1.0], [-1.0, -1.0, -1.0], [2.0, 9.0, 0.0], [-1.0, -1.0, -1.0]]]


def test_cli_import(tmp_path: Path, tiny_ritm: tuple[Path, torch.nn.Module], capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "out.pt"
    assert cli_main(["import-ritm", str(tiny_ritm[0]), str(dst)]) == 0
    assert dst.is_file()
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {}, "config": {"class": "isegm.model.is_deeplab_model.DeeplabModel", "params": {}}}, bad)
    assert cli_main(["import-ritm", str(bad), str(tmp_path / "never.pt")]) == 2
    assert "DeeplabModel" in capsys.readouterr().err
    assert not (tmp_path / "never.pt").exists()


@pytest.mark.skipif(not FIXTURE.is_file(), reason="RITM reference fixture not generated")
def test_logits_equal_ritm_reference_outputs(tmp_path: Path) -> None:
    """Outputs computed by RITM's own code (isegm HRNetModel, width 4, ocr 8, small) on stored inputs."""
    fixture = torch.load(FIXTURE, weights_only=True)
    path = save_ritm(tmp_path, "ritm.pth", fixture["state_dict"], fixture["config"])
    model = load_ritm_checkpoint(path)
    for case in fixture["cases"]:
        with torch.no_grad():
            out = model(case["image"], ritm_points_to_clicks(case["points"]), case["prev_mask"])
        # The fixture holds one CPU's rounding: 0.0 on that AVX-512 path, up to 4.7e-5 with oneDNN on AVX2 (logits
        # ≤ 2), so the contract's fp32 tolerance: one conv's weights ×1.01 already moves them by ≥ 4.7e-3.
        tolerance = contract.TOLERANCES["fp32"].max_abs_logit
        torch.testing.assert_close(out[contract.LOGITS], case["instances"], rtol=0, atol=tolerance)
        torch.testing.assert_close(out[AUX_LOGITS], case["instances_aux"], rtol=0, atol=tolerance)
