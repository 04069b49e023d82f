"""The format table and the export wrapper's argument checks, staging and failure handling (no real export)."""
from __future__ import annotations

import dataclasses
import json
from typing import ClassVar
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgeclick import contract
from edgeclick.cli import main
from edgeclick.export import formats, run
from edgeclick.export.formats import (
    FORMATS,
    ExportRequest,
    ExportResult,
    Format,
    MissingRequirement,
    check_request,
    resolve_options,
)
from edgeclick.export.options import FormatOptions
from edgeclick.manifest import MANIFEST_NAME, read_manifest
from edgeclick.model import LoRAConfig, create_model
from edgeclick.model.checkpoint import save_checkpoint
from edgeclick.model.split import model_graph_specs
from edgeclick.runtimes.artifact import graph_specs_from_manifest, open_backend

SIZE = (64, 96)


@pytest.fixture(scope="module")
def late_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(create_model("tiny", fusion="late"), tmp_path_factory.mktemp("ckpt") / "tiny_late.pt")


@dataclasses.dataclass(frozen=True)
class FakeOptions(FormatOptions):
    format_name: ClassVar[str] = "fake"
    level: int = 1
    fast: bool = False
    label: str = "x"


def _fake_format(name: str = "fake", *, dynamic: bool = True) -> Format:
    return Format(name=name, suffix=".fake", options_type=FakeOptions, precisions=("fp32",),
                  dynamic=dynamic, needs=("nothing",), exporter="tests.nowhere:export_fake")


def _writing_exporter(fail: BaseException | None = None, seen: dict | None = None):
    """An exporter that writes two files, then raises `fail` (if given) or returns them."""
    def exporter(request: ExportRequest) -> ExportResult:
        if seen is not None:
            seen.update(options=request.options, work_dir=request.work_dir, size=request.size)
        enc = request.work_dir / "encoder.fake"
        enc.write_bytes(b"encoder bytes")
        if fail is not None:
            raise fail
        dec = request.work_dir / "decoder.fake"
        dec.write_bytes(b"decoder bytes")
        return ExportResult(files={contract.ENCODER: enc, contract.DECODER: dec}, metadata={"tools": {"fake": "1.0"}},
                            validation={"passed": True})
    return exporter


# -- the table -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(FORMATS))
def test_table_entries_are_well_formed(name: str) -> None:
    fmt = FORMATS[name]
    assert fmt.name == name and fmt.suffix.startswith(".")
    module, sep, func = fmt.exporter.partition(":")
    assert sep and module.startswith("edgeclick.export.") and func.startswith("export_")
    assert set(fmt.precisions) <= set(formats.PRECISIONS) and "fp32" in fmt.precisions
    assert fmt.needs and isinstance(fmt.options, dict)
    assert resolve_options(fmt, None) == fmt.options  # defaults pass their own validation


def test_table_covers_the_issue_formats() -> None:
    assert {"onnx", "trt", "coreml"} <= set(FORMATS)
    assert FORMATS["onnx"].dynamic and FORMATS["onnx"].exporter == "edgeclick.export.onnx:export_onnx"


def test_importing_the_table_imports_no_conversion_tool() -> None:
    code = ("import sys, edgeclick.export.formats, edgeclick.export.run, edgeclick.export.cli; "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'onnxsim', 'coremltools', 'tensorrt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_unknown_option_is_an_error_naming_it_and_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"does not accept option\(s\) \['opsett'\].*opset \(default 17\)"):
        resolve_options(FORMATS["onnx"], {"opsett": 18})


def test_options_from_the_command_line_take_the_default_type() -> None:
    fmt = _fake_format()
    assert resolve_options(fmt, {"level": "3", "fast": "true", "label": "y"}) == {"level": 3, "fast": True, "label": "y"}
    assert resolve_options(fmt, {"fast": "off"})["fast"] is False
    with pytest.raises(ValueError, match="fast='maybe': expected a boolean"):
        resolve_options(fmt, {"fast": "maybe"})
    with pytest.raises(ValueError, match="level='high': expected int"):
        resolve_options(fmt, {"level": "high"})


def test_bad_precision_and_unsupported_dynamic_are_refused() -> None:
    with pytest.raises(ValueError, match=r"supports precisions \['fp32'\], not 'fp16'"):
        check_request(_fake_format(), "fp16", False)
    with pytest.raises(ValueError, match="does not support dynamic H/W"):
        check_request(_fake_format(dynamic=False), "fp32", True)
    check_request(_fake_format(dynamic=False), "fp32", False)
    for fmt in FORMATS.values():
        with pytest.raises(ValueError, match="precisions"):
            check_request(fmt, "int4", False)


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        formats.formats_for("tflite")
    assert formats.formats_for(formats.ALL) == list(FORMATS.values())


# -- the wrapper's checks, before any work ---------------------------------------------------------------

def test_wrapper_refuses_bad_arguments_before_writing(late_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FORMATS, "fake", _fake_format(dynamic=False))
    out = tmp_path / "artifacts"
    with pytest.raises(ValueError, match="accepted"):
        run.export(late_ckpt, "onnx", size=SIZE, options={"bogus": 1}, out_root=out)
    with pytest.raises(ValueError, match="precisions"):
        run.export(late_ckpt, "onnx", size=SIZE, precision="fp8", out_root=out)
    with pytest.raises(ValueError, match="dynamic"):
        run.export(late_ckpt, "fake", size=SIZE, dynamic=True, out_root=out)
    with pytest.raises(ValueError, match="multiple of 32"):
        run.export(late_ckpt, "onnx", size=(60, 96), out_root=out)
    assert not out.exists()


def test_fusion_mismatch_is_refused(late_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'late'-fusion model; its weights cannot serve fusion 'early'"):
        run.export(late_ckpt, "onnx", size=SIZE, fusion="early", out_root=tmp_path / "a")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_unmerged_lora_is_refused(tmp_path: Path) -> None:
    ckpt = save_checkpoint(create_model("tiny", fusion="late", lora=LoRAConfig(rank=2)), tmp_path / "lora.pt")
    with pytest.raises(ValueError, match="unmerged ConvLoRA.*merge"):
        run.export(ckpt, "onnx", size=SIZE, out_root=tmp_path / "a")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_default_artifact_name() -> None:
    assert run.artifact_name(Path("x/w18s.pt"), "late", (640, 960), "fp16", "onnx") == "w18s-late-640x960-fp16-onnx"
    assert run.artifact_name(Path("w18s.pt"), "late", (640, 960), "fp32", "onnx", dynamic=True) == "w18s-late-640x960-dynamic-fp32-onnx"


# -- staging, manifest, failures ---------------------------------------------------------------------------

def test_successful_export_is_published_with_a_verified_manifest(late_ckpt: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}
    monkeypatch.setitem(FORMATS, "fake", _fake_format())
    monkeypatch.setattr(run, "load_exporter", lambda fmt: _writing_exporter(seen=seen))
    out = tmp_path / "artifacts"
    [art] = run.export(late_ckpt, "fake", size=SIZE, options={"level": "2"}, out_root=out)
    assert art == out / "tiny_late-late-64x96-fp32-fake"
    assert seen["options"] == {"level": 2, "fast": False, "label": "x"} and seen["size"] == SIZE
    assert seen["work_dir"].parent == out and seen["work_dir"].name.startswith(".")  # staged next to the destination
    assert sorted(p.name for p in out.iterdir()) == [art.name]  # staging dir renamed away
    data = json.loads((art / MANIFEST_NAME).read_text())
    assert data["complete"] is True and data["format"] == "fake" and data["size"] == list(SIZE)
    assert data["contract"] == {"version": contract.CONTRACT_VERSION, "hash": contract.contract_hash()}
    assert data["checkpoint"]["sha256"] and data["model"]["fusion"] == "late"
    assert data["files"][contract.ENCODER] == {"path": "encoder.fake", "sha256": data["files"][contract.ENCODER]["sha256"], "bytes": 13}
    assert data["tools"]["fake"] == "1.0" and "torch" in data["tools"] and data["export_seconds"] >= 0
    manifest = read_manifest(art)
    assert manifest.path(contract.DECODER).read_bytes() == b"decoder bytes"


@pytest.mark.parametrize("error", [RuntimeError("boom midway"), KeyboardInterrupt()])
def test_failing_exporter_leaves_no_artifact_and_no_staging(late_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            error: BaseException) -> None:
    monkeypatch.setitem(FORMATS, "fake", _fake_format())
    monkeypatch.setattr(run, "load_exporter", lambda fmt: _writing_exporter(fail=error))
    out = tmp_path / "artifacts"
    with pytest.raises(type(error)):
        run.export(late_ckpt, "fake", size=SIZE, out_root=out)
    assert list(out.iterdir()) == []


def test_failed_reexport_keeps_the_previous_artifact(late_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FORMATS, "fake", _fake_format())
    out = tmp_path / "artifacts"
    monkeypatch.setattr(run, "load_exporter", lambda fmt: _writing_exporter())
    [art] = run.export(late_ckpt, "fake", size=SIZE, out_root=out)
    before = (art / MANIFEST_NAME).read_text()
    monkeypatch.setattr(run, "load_exporter", lambda fmt: _writing_exporter(fail=RuntimeError("second run fails")))
    with pytest.raises(RuntimeError, match="second run fails"):
        run.export(late_ckpt, "fake", size=SIZE, out_root=out)
    assert sorted(p.name for p in out.iterdir()) == [art.name]
    assert (art / MANIFEST_NAME).read_text() == before
    # and a successful re-export replaces it
    monkeypatch.setattr(run, "load_exporter", lambda fmt: _writing_exporter())
    run.export(late_ckpt, "fake", size=SIZE, out_root=out)
    assert sorted(p.name for p in out.iterdir()) == [art.name]
    assert json.loads((art / MANIFEST_NAME).read_text())["created"] is not None


def test_missing_requirement_keeps_written_files_in_an_incomplete_artifact(late_ckpt: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FORMATS, "fake", _fake_format())
    monkeypatch.setattr(run, "load_exporter", lambda fmt: _writing_exporter(fail=MissingRequirement("no FakeRT here")))
    out = tmp_path / "artifacts"
    with pytest.raises(MissingRequirement, match="no FakeRT") as info:
        run.export(late_ckpt, "fake", size=SIZE, out_root=out)
    art = info.value.artifact
    assert art is not None and art.parent == out and sorted(p.name for p in out.iterdir()) == [art.name]
    manifest = read_manifest(art)
    assert manifest.complete is False and "no FakeRT" in (manifest.missing or "")
    assert set(manifest.files) == {"encoder.fake"}  # what was written, nothing invented
    with pytest.raises(ValueError, match="incomplete"):
        open_backend(art)


def test_missing_requirement_without_files_leaves_nothing(late_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FORMATS, "fake", _fake_format())

    def exporter(request: ExportRequest) -> ExportResult:
        raise MissingRequirement("needs a FakeGPU")

    monkeypatch.setattr(run, "load_exporter", lambda fmt: exporter)
    out = tmp_path / "artifacts"
    with pytest.raises(MissingRequirement):
        run.export(late_ckpt, "fake", size=SIZE, out_root=out)
    assert list(out.iterdir()) == []


def test_all_continues_past_missing_requirements_and_reports(late_ckpt: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    table = {"good": _fake_format("good"), "absent": _fake_format("absent")}
    monkeypatch.setattr(formats, "FORMATS", table)

    def pick(fmt: Format):
        if fmt.name == "absent":
            def missing(request: ExportRequest) -> ExportResult:
                raise MissingRequirement("FakeRT is not installed")
            return missing
        return _writing_exporter()

    monkeypatch.setattr(run, "load_exporter", pick)
    out = tmp_path / "artifacts"
    with pytest.raises(run.ExportIncomplete) as info:
        run.export(late_ckpt, formats.ALL, size=SIZE, out_root=out)
    assert [p.name for p in info.value.artifacts] == ["tiny_late-late-64x96-fp32-good"]
    assert info.value.only_missing_requirements and "absent: missing requirement: FakeRT" in str(info.value)
    # the CLI exits 3 (missing requirement) and names both
    code = main(["export", "--target", "all", "--checkpoint", str(late_ckpt), "--size", "64x96", "--out", str(tmp_path / "cli")])
    captured = capsys.readouterr()
    assert code == 3 and "wrote" in captured.out and "FakeRT is not installed" in captured.err


def test_all_routes_options_to_the_formats_that_accept_them(late_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass(frozen=True)
    class A(FormatOptions):
        level: int = 1

    @dataclasses.dataclass(frozen=True)
    class B(FormatOptions):
        speed: float = 1.0

    a = Format("a", ".a", A, ("fp32",), True, ("x",), "m:f")
    b = Format("b", ".b", B, ("fp32",), True, ("x",), "m:f")
    split = run._split_options([a, b], {"level": "4"}, all_formats=True)
    assert split == {"a": {"level": 4}, "b": {"speed": 1.0}}
    with pytest.raises(ValueError, match=r"no format accepts option\(s\) \['colour'\]"):
        run._split_options([a, b], {"colour": "red"}, all_formats=True)


def test_cli_parses_options_and_exits_3_on_missing_requirement(late_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    seen: dict = {}
    monkeypatch.setitem(FORMATS, "fake", _fake_format())
    monkeypatch.setattr(run, "load_exporter", lambda fmt: _writing_exporter(seen=seen))
    args = ["export", "--target", "fake", "--checkpoint", str(late_ckpt), "--size", "64x96", "--out", str(tmp_path / "a")]
    assert main(args + ["--option", "level=7", "--option", "fast=yes", "--name", "mine"]) == 0
    assert seen["options"] == {"level": 7, "fast": True, "label": "x"} and (tmp_path / "a" / "mine" / MANIFEST_NAME).is_file()
    assert main(args + ["--option", "nope=1"]) == 2
    assert "does not accept option(s) ['nope']" in capsys.readouterr().err
    monkeypatch.setattr(run, "load_exporter", lambda fmt: _writing_exporter(fail=MissingRequirement("FakeRT absent")))
    assert main(args + ["--name", "partial"]) == 3
    err = capsys.readouterr().err
    assert "FakeRT absent" in err and "kept incomplete artifact" in err


@pytest.mark.parametrize("fusion", ["early", "late"])
@pytest.mark.parametrize("adapter", [None, "conv"])
def test_graph_specs_from_manifest_match_the_model(fusion: str, adapter: str | None, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_model("tiny", fusion=fusion, adapter=adapter)
    ckpt = save_checkpoint(model, tmp_path / "m.pt")
    monkeypatch.setitem(FORMATS, "fake", _fake_format())
    monkeypatch.setattr(run, "load_exporter", lambda fmt: _writing_exporter())
    [art] = run.export(ckpt, "fake", size=SIZE, out_root=tmp_path / "a")
    assert graph_specs_from_manifest(read_manifest(art)) == model_graph_specs(model)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_table_options_are_the_exporters_options(name: str) -> None:
    """The table lists the fields of the options class the exporter reads; the defaults pass its checks."""
    fmt = FORMATS[name]
    assert fmt.options == {f.name: f.default for f in dataclasses.fields(fmt.options_type)}
    fmt.options_type.from_dict(resolve_options(fmt, None))
