"""`manifest.json`: what an artifact directory holds, where it came from, and how it was checked.

    {"name", "format", "complete", "missing", "contract": {"version", "hash"}, "model": ModelConfig.to_dict(),
     "checkpoint": {"path", "sha256"}, "size": [H, W], "dynamic", "precision",
     "files": {role: {"path" (relative), "sha256", "bytes"}}, "tools", "metadata", "validation",
     "options", "export_seconds", "created"}

"model" is the exported model's config, including `click_radius`, the disk radius its decoder draws (the
model's own, e.g. read from a RITM file); "contract" names the I/O contract, which covers only what every
model shares (names, shapes, click rows and labels, preprocessing, tolerances and gates).

It lives in the core because both sides read it: export and calibration write it, runtimes open it.
`read_manifest` is what every runtime opens first: it refuses a missing or corrupt manifest, a listed
file that is missing or whose sha256 differs, and an artifact built for another I/O contract.
Directory-shaped files (a CoreML .mlpackage) are hashed over their sorted relative paths and contents.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeclick import contract
from edgeclick.io import sha256_file, write_json_atomic

if TYPE_CHECKING:  # the config module drags in torch via edgeclick.model; runtimes need not
    from edgeclick.model.config import ModelConfig

MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """A manifest that is missing, unreadable, or disagrees with the files next to it."""


@dataclass(frozen=True)
class FileEntry:
    """One file (or directory bundle) of an artifact: path relative to the artifact dir, sha256, size in bytes."""

    path: str
    sha256: str
    bytes: int


@dataclass
class Manifest:
    """A parsed manifest.json; `root` is the artifact directory it was read from."""

    root: Path
    name: str
    format: str
    complete: bool
    missing: str | None
    contract_version: str
    contract_hash: str
    model: dict[str, Any]
    checkpoint: dict[str, Any]
    size: tuple[int, int]
    dynamic: bool
    precision: str
    files: dict[str, FileEntry]
    tools: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    export_seconds: float | None = None
    created: str | None = None

    def path(self, role: str) -> Path:
        """Absolute path of the file playing `role` (e.g. contract.ENCODER)."""
        if role not in self.files:
            raise ManifestError(f"{self.root}: artifact has no {role!r} file (roles: {sorted(self.files)})")
        return self.root / self.files[role].path

    def model_config(self) -> "ModelConfig":
        from edgeclick.model.config import ModelConfig

        return ModelConfig.from_dict(self.model)


def hash_path(path: Path) -> tuple[str, int]:
    """(sha256, bytes) of a file, or of a directory bundle (sorted relative paths and file contents)."""
    if path.is_file():
        return sha256_file(path), path.stat().st_size
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    digest, total = hashlib.sha256(), 0
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(item.relative_to(path).as_posix().encode() + b"\0")
        digest.update(bytes.fromhex(sha256_file(item)))
        total += item.stat().st_size
    return digest.hexdigest(), total


def file_entries(root: Path, files: dict[str, Path]) -> dict[str, FileEntry]:
    """Entries for `files` (role → path inside `root`), hashed now."""
    entries = {}
    for role, path in files.items():
        path = Path(path)
        rel = path.resolve().relative_to(root.resolve()) if path.is_absolute() else path
        digest, size = hash_path(root / rel)
        entries[role] = FileEntry(rel.as_posix(), digest, size)
    return entries


def build_manifest(root: Path, *, name: str, format: str, model_config: "ModelConfig", checkpoint: Path,
                   checkpoint_sha256: str, size: tuple[int, int], dynamic: bool, precision: str,
                   files: dict[str, Path], tools: dict[str, Any], metadata: dict[str, Any], validation: dict[str, Any],
                   options: dict[str, Any], export_seconds: float, complete: bool = True,
                   missing: str | None = None) -> Manifest:
    """A Manifest for the artifact being staged in `root` (files hashed as they are now)."""
    return Manifest(
        root=root, name=name, format=format, complete=complete, missing=missing,
        contract_version=contract.CONTRACT_VERSION, contract_hash=contract.contract_hash(),
        model=model_config.to_dict(), checkpoint={"path": str(checkpoint), "sha256": checkpoint_sha256},
        size=(int(size[0]), int(size[1])), dynamic=dynamic, precision=precision, files=file_entries(root, files),
        tools=tools, metadata=metadata, validation=validation, options=options,
        export_seconds=round(export_seconds, 3), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def manifest_dict(manifest: Manifest) -> dict[str, Any]:
    """The JSON form (keys in reading order)."""
    return {
        "name": manifest.name,
        "format": manifest.format,
        "complete": manifest.complete,
        "missing": manifest.missing,
        "contract": {"version": manifest.contract_version, "hash": manifest.contract_hash},
        "model": manifest.model,
        "checkpoint": manifest.checkpoint,
        "size": list(manifest.size),
        "dynamic": manifest.dynamic,
        "precision": manifest.precision,
        "files": {role: {"path": e.path, "sha256": e.sha256, "bytes": e.bytes} for role, e in manifest.files.items()},
        "tools": manifest.tools,
        "metadata": manifest.metadata,
        "validation": manifest.validation,
        "options": manifest.options,
        "export_seconds": manifest.export_seconds,
        "created": manifest.created,
    }


def write_manifest(manifest: Manifest) -> Path:
    """Write `manifest.root/manifest.json` atomically."""
    return write_json_atomic(manifest.root / MANIFEST_NAME, manifest_dict(manifest))


def read_manifest(artifact_dir: str | Path, *, verify_files: bool = True) -> Manifest:
    """Parse and check `artifact_dir/manifest.json`.

    Raises ManifestError for a missing/corrupt manifest or a listed file that is missing or whose sha256
    differs (verify_files), and contract.ContractMismatch for another contract's artifact.
    """
    root = Path(artifact_dir)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{root}: no {MANIFEST_NAME}; not an edgeclick artifact (export one with `edgeclick export`)")
    try:
        data = json.loads(path.read_text())
        manifest = Manifest(
            root=root, name=data["name"], format=data["format"], complete=bool(data.get("complete", True)),
            missing=data.get("missing"), contract_version=data["contract"]["version"], contract_hash=data["contract"]["hash"],
            model=data["model"], checkpoint=data["checkpoint"], size=(int(data["size"][0]), int(data["size"][1])),
            dynamic=bool(data["dynamic"]), precision=data["precision"],
            files={role: FileEntry(e["path"], e["sha256"], int(e["bytes"])) for role, e in data["files"].items()},
            tools=data.get("tools", {}), metadata=data.get("metadata", {}), validation=data.get("validation", {}),
            options=data.get("options", {}), export_seconds=data.get("export_seconds"), created=data.get("created"),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise ManifestError(f"{path}: corrupt manifest ({type(exc).__name__}: {exc}); re-export the artifact") from exc
    contract.check_contract(manifest.contract_hash, f"artifact {root}")
    if verify_files:
        for role, entry in manifest.files.items():
            file = root / entry.path
            if not file.resolve().is_relative_to(root.resolve()):
                raise ManifestError(f"{root}: {role} file {entry.path} lies outside the artifact directory")
            if not file.exists():
                raise ManifestError(f"{root}: {role} file {entry.path} is missing; re-export the artifact")
            digest, _ = hash_path(file)
            if digest != entry.sha256:
                raise ManifestError(f"{root}: {role} file {entry.path} has sha256 {digest[:12]}…, the manifest says "
                                    f"{entry.sha256[:12]}…; the file was modified or corrupted, re-export the artifact")
    return manifest
