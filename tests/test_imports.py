"""Import rules between edgeclick's packages, read from the source (every import statement, also those inside
functions and under TYPE_CHECKING):

- the core (`edgeclick/`) imports none of the user's folders (train/, export/, runtimes/, calibration/);
- runtimes/ never imports export/ (export may use runtimes to validate what it wrote), so the two form no cycle;
- export/ and runtimes/ import neither calibration/ nor train/;
- no module imports another package's private (underscore) names.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder → the package it installs as (pyproject's package-dir)
FOLDERS = {"edgeclick": "edgeclick", "train": "edgeclick.train", "export": "edgeclick.export",
           "runtimes": "edgeclick.runtimes", "calibration": "edgeclick.calibration"}
USER = ("edgeclick.train", "edgeclick.export", "edgeclick.runtimes", "edgeclick.calibration")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "edgeclick": USER,
    "edgeclick.runtimes": ("edgeclick.export", "edgeclick.calibration", "edgeclick.train"),
    "edgeclick.export": ("edgeclick.calibration", "edgeclick.train"),
}


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [FOLDERS[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(module: str) -> str:
    """The package a module belongs to for these rules: a user folder's, else the core."""
    return next((p for p in USER if module == p or module.startswith(p + ".")), "edgeclick")


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every import statement in `path`."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base, [alias.name for alias in node.names]))
    return found


SOURCES = sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def test_sources_found() -> None:
    assert len(SOURCES) > 100 and any(p.name == "contract.py" for p in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_import_rules(path: Path) -> None:
    own = _package(_module(path))
    problems = []
    for line, target, names in _imports(path):
        if not target.startswith("edgeclick"):
            continue
        for banned in FORBIDDEN.get(own, ()):
            if target == banned or target.startswith(banned + "."):
                problems.append(f"line {line}: {own} imports {target}")
        if _package(target) != own or (own == "edgeclick" and target.split(".")[:2] != _module(path).split(".")[:2]):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                problems.append(f"line {line}: private name(s) {private} from {target}")
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_package_apis_resolve() -> None:
    """Each package's __init__ names its API (the "In Python" example of docs/command-line.md)."""
    import edgeclick.export as export_pkg
    import edgeclick.runtimes as runtimes_pkg
    from edgeclick.evaluate import evaluate
    from edgeclick.model import LoRAConfig, create_model

    for package in (export_pkg, runtimes_pkg):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
    from edgeclick.export import export
    from edgeclick.runtimes import Session, open_backend, open_session

    assert callable(export) and callable(open_backend) and callable(open_session) and callable(evaluate)
    assert isinstance(Session, type) and callable(create_model) and LoRAConfig().rank > 0
    with pytest.raises(AttributeError):
        runtimes_pkg.no_such_name  # noqa: B018
