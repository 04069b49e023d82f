"""docs/layout.md's Layout block names every file of the package folders (so a new module gets its line)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("edgeclick", "edgeclick/model", "edgeclick/data", "edgeclick/weights", "train", "export", "runtimes",
           "calibration", "web", "web/js")


def test_layout_lists_every_file() -> None:
    page = (ROOT / "docs" / "layout.md").read_text()
    layout = re.search(r"^# Layout\n\n```\n(.*?)```", page, re.S)
    assert layout, "docs/layout.md does not start with the Layout block"
    names = set(re.findall(r"[\w.-]+\.(?:py|sh|mk|json|js|html|css)", layout.group(1)))
    missing = [f"{folder}/{p.name}" for folder in FOLDERS for p in sorted((ROOT / folder).iterdir())
               if p.is_file() and not p.name.startswith(".") and p.name not in names]
    assert not missing, f"docs/layout.md does not list: {missing}"
