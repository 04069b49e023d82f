"""The one export wrapper every format goes through: check, stage, export, time, manifest, publish atomically.

    paths = export("model.pt", "onnx", size=(640, 960), precision="fp16")
    paths = export("model.pt", "all")     # every format; raises ExportIncomplete naming what failed

Each artifact is built in a staging directory next to its destination (`out_root/.<name>.staging-*`) and
published (`edgeclick.io.publish_dir`) only after the exporter and its validation succeeded; on any failure the staging
directory is removed and an existing artifact of the same name is left untouched. One exception: an
exporter that raises MissingRequirement after writing what it could (e.g. TensorRT-ready ONNX without
TensorRT) gets those files published under a manifest marked `"complete": false`.
"""
from __future__ import annotations

import copy
import logging
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeclick import contract
from edgeclick.io import publish_dir, sha256_file, staging_dir, write_error
from edgeclick.manifest import MANIFEST_NAME, build_manifest, write_manifest

from .formats import (
    ALL,
    ExportRequest,
    ExportResult,
    ExportValidationError,
    Format,
    MissingRequirement,
    check_request,
    formats_for,
    load_exporter,
    resolve_options,
)

__all__ = ["ExportIncomplete", "ExportValidationError", "MissingRequirement", "artifact_name", "export", "export_format"]

log = logging.getLogger("edgeclick.export")


@dataclass(frozen=True)
class Failure:
    format: str
    error: BaseException

    @property
    def missing_requirement(self) -> bool:
        return isinstance(self.error, MissingRequirement)


class ExportIncomplete(RuntimeError):
    """`target="all"`: some formats failed. `artifacts` lists what was written, `failures` what was not."""

    def __init__(self, artifacts: list[Path], failures: list[Failure]) -> None:
        self.artifacts = artifacts
        self.failures = failures
        lines = [f"  {f.format}: {'missing requirement: ' if f.missing_requirement else ''}{f.error}" for f in failures]
        done = [f"  {p}" for p in artifacts] or ["  (none)"]
        super().__init__("export incomplete; failed formats:\n" + "\n".join(lines) + "\nwritten:\n" + "\n".join(done))

    @property
    def only_missing_requirements(self) -> bool:
        return all(f.missing_requirement for f in self.failures)


def artifact_name(checkpoint: Path, fusion: str, size: tuple[int, int], precision: str, fmt: str, dynamic: bool = False) -> str:
    """Default artifact directory name: "<ckpt stem>-<fusion>-<H>x<W>[-dynamic]-<precision>-<format>"."""
    dyn = "-dynamic" if dynamic else ""  # a dynamic export must not overwrite the static one of the same size
    return f"{Path(checkpoint).stem}-{fusion}-{size[0]}x{size[1]}{dyn}-{precision}-{fmt}"


def export(checkpoint: str | Path, target: str, *, size: tuple[int, int] = contract.DEFAULT_SIZE, fusion: str | None = None,
           precision: str = "fp32", dynamic: bool = False, options: dict[str, Any] | None = None,
           out_root: str | Path = Path("artifacts"), name: str | None = None) -> list[Path]:
    """Export `checkpoint` to one format (`target` a FORMATS key) or every format (`target="all"`).

    size: model input (H, W), multiples of 32. fusion: None (the checkpoint's) or the checkpoint's own
    mode — another one is refused, since one fusion mode's weights cannot serve the other.
    options: format options (validated against the table; with "all", each must be accepted by some
    format and goes to the formats that accept it). Returns the artifact directories written.
    Raises ValueError for bad arguments (before any work), MissingRequirement / ExportValidationError
    from a single-format export, ExportIncomplete when some formats of "all" failed.
    """
    from edgeclick.model.checkpoint import load_checkpoint

    checkpoint = Path(checkpoint)
    contract.check_size(*size)
    formats = formats_for(target)
    if target == ALL:  # "all" = every format that serves this precision / shape mode (executorch: static fp32)
        skipped = [f.name for f in formats if precision not in f.precisions or (dynamic and not f.dynamic)]
        if skipped:
            log.info("all: skipping %s (no %s%s export)", ", ".join(skipped), precision, " dynamic" if dynamic else "")
        formats = [f for f in formats if f.name not in skipped]
    per_format = _split_options(formats, options or {}, all_formats=target == ALL)
    for fmt in formats:
        check_request(fmt, precision, dynamic)
    model = load_checkpoint(checkpoint)
    if fusion is not None and fusion != model.config.fusion:
        raise ValueError(f"{checkpoint} holds a {model.config.fusion!r}-fusion model; its weights cannot serve "
                         f"fusion {fusion!r} (the two modes have different layers). Drop --fusion or export a "
                         f"{fusion!r}-fusion checkpoint")
    ckpt_sha = sha256_file(checkpoint)
    out_root = Path(out_root)
    written: list[Path] = []
    failures: list[Failure] = []
    for fmt in formats:
        default = artifact_name(checkpoint, model.config.fusion, size, precision, fmt.name, dynamic)
        art_name = default if name is None else (f"{name}-{fmt.name}" if target == ALL else name)
        # Each format of "all" gets its own copy: an exporter may patch modules while tracing.
        fmt_model = copy.deepcopy(model) if len(formats) > 1 else model
        try:
            written.append(export_format(fmt, checkpoint, fmt_model, ckpt_sha, size=size, precision=precision, dynamic=dynamic,
                                         options=per_format[fmt.name], out_root=out_root, name=art_name))
        except Exception as exc:  # "all" goes on past any format's failure and reports them together
            if target != ALL:
                raise
            log.error("%s: %s", fmt.name, exc)
            failures.append(Failure(fmt.name, exc))
    if failures:
        raise ExportIncomplete(written, failures)
    return written


def _split_options(formats: list[Format], options: dict[str, Any], *, all_formats: bool) -> dict[str, dict[str, Any]]:
    """Options per format, resolved against the table; unknown options are errors."""
    if not all_formats:
        return {formats[0].name: resolve_options(formats[0], options)}
    accepted = {key for fmt in formats for key in fmt.options}
    unknown = sorted(set(options) - accepted)
    if unknown:
        table = {fmt.name: sorted(fmt.options) for fmt in formats}
        raise ValueError(f"no format accepts option(s) {unknown}; accepted per format: {table}")
    return {fmt.name: resolve_options(fmt, {k: v for k, v in options.items() if k in fmt.options}) for fmt in formats}


def export_format(fmt: Format, checkpoint: Path, model: Any, checkpoint_sha256: str, *, size: tuple[int, int],
                  precision: str, dynamic: bool, options: dict[str, Any], out_root: Path, name: str) -> Path:
    """Export one format into `out_root/name` atomically; return that directory."""
    out_root = Path(out_root).resolve()  # exporters return work_dir-based paths; a relative root would be joined twice
    dest = out_root / name
    staging = staging_dir(dest)
    log.info("%s: exporting %s (%dx%d, %s%s) to %s", fmt.name, checkpoint, size[0], size[1], precision,
             ", dynamic" if dynamic else "", dest)
    start = time.perf_counter()
    try:
        request = ExportRequest(checkpoint=checkpoint, model=model, size=size, precision=precision, dynamic=dynamic,
                                options=options, work_dir=staging)
        missing: MissingRequirement | None = None
        try:
            result = load_exporter(fmt)(request)
        except MissingRequirement as exc:
            result = exc.result or ExportResult(files=_staged_files(staging))
            if not result.files:
                raise
            missing = exc
        seconds = time.perf_counter() - start
        manifest = build_manifest(
            staging, name=name, format=fmt.name, model_config=model.config, checkpoint=checkpoint,
            checkpoint_sha256=checkpoint_sha256, size=size, dynamic=dynamic, precision=precision, files=result.files,
            tools={**_base_tools(), **result.metadata.get("tools", {})}, metadata=result.metadata,
            validation=result.validation, options=options, export_seconds=seconds, complete=missing is None,
            missing=None if missing is None else str(missing),
        )
        write_manifest(manifest)
        publish_dir(staging, dest)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        named = write_error(dest, exc)  # a full disk while writing a graph: say which artifact, not just "File too large"
        if named is not None:
            raise named from exc
        raise
    total = sum(e.bytes for e in manifest.files.values())
    log.info("%s: wrote %s in %.1f s, %.1f MB (%s)", fmt.name, dest, seconds, total / 1e6,
             ", ".join(f"{role} {e.bytes / 1e6:.1f} MB" for role, e in manifest.files.items()))
    if missing is not None:
        missing.artifact = dest
        raise missing
    return dest


def _staged_files(staging: Path) -> dict[str, Path]:
    """Role → path for whatever an exporter left in `staging` (role = path relative to it)."""
    top = [p for p in sorted(staging.iterdir()) if p.name != MANIFEST_NAME and not p.name.startswith(".")]
    return {p.name: p for p in top}


def _base_tools() -> dict[str, str]:
    import numpy
    import torch

    from importlib.metadata import PackageNotFoundError, version

    try:
        edgeclick_version = version("edgeclick")
    except PackageNotFoundError:  # running from a source tree without an install
        edgeclick_version = "unknown"
    return {"python": platform.python_version(), "numpy": numpy.__version__, "torch": torch.__version__,
            "edgeclick": edgeclick_version}
