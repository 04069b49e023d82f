"""The registry of RITM's published checkpoints: names, files, URLs, sizes and NoC, as RITM's README gives them.

Source: the "Pretrained models" table of github.com/SamsungLabs/ritm_interactive_segmentation (README.md;
the links point at the saic-vul release v1.0, which GitHub redirects). RITM publishes no checksums and only
rounded sizes ("16.5 MB"), so an entry holds the size as printed and the byte window that rounding allows;
the exact size and sha256 are recorded at the first download (`cache.Record`) and checked from then on.
An entry may pin `size_bytes` / `sha256` when they are known (tests do; nobody has measured the real files).
"""
from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field

# The release every RITM checkpoint link of the README points at.
RITM_URL_BASE = "https://github.com/saic-vul/ritm_interactive_segmentation/releases/download/v1.0"
# Overrides the URL base (tests serve files from 127.0.0.1; a mirror serves the same file names).
URL_BASE_ENV = "EDGECLICK_WEIGHTS_URL_BASE"

# Policy, not a published fact: slack around a printed size (see WeightsEntry.size_window).
SIZE_MARGIN = 0.02

# Column order of RITM's table: dataset@IoU-threshold. Pascal VOC is reported at 85% only, COCO MVal at 90%.
NOC_COLUMNS: tuple[str, ...] = ("GrabCut@85", "GrabCut@90", "Berkeley@90", "SBD@85", "SBD@90", "DAVIS@85", "DAVIS@90",
                                "PascalVOC@85", "COCO_MVal@90")


def _noc(*values: float) -> dict[str, float]:
    """Published NoC values in RITM's column order → {column: value}."""
    assert len(values) == len(NOC_COLUMNS)
    return dict(zip(NOC_COLUMNS, values))


@dataclass(frozen=True)
class WeightsEntry:
    """One downloadable checkpoint and what is published about it."""

    name: str
    file_name: str
    model: str  # RITM's label in its table
    train_data: str
    published_size: str  # as RITM's README prints it, e.g. "16.5 MB"
    noc: dict[str, float] = field(default_factory=dict)
    size_bytes: int | None = None  # exact size, when known (RITM does not publish it)
    sha256: str | None = None  # pinned checksum, when known (RITM does not publish one)

    def url(self, base: str | None = None) -> str:
        """Download URL: `base` or $EDGECLICK_WEIGHTS_URL_BASE or RITM's release, then the file name."""
        base = base or os.environ.get(URL_BASE_ENV) or RITM_URL_BASE
        return f"{base.rstrip('/')}/{self.file_name}"

    def size_window(self) -> tuple[int, int]:
        """Smallest and largest byte count that fits what is published.

        With an exact `size_bytes`, that size. Otherwise the printed size, rounded as printed (half a unit
        of its last digit either side), read as decimal (10^6) or binary (2^20) megabytes — the README does
        not say which — widened by SIZE_MARGIN, because no printed size was compared with real bytes here.
        That still refuses an error page, a truncated file or another variant (they differ by 2× or more).
        """
        if self.size_bytes is not None:
            return self.size_bytes, self.size_bytes
        match = re.fullmatch(r"\s*([0-9]+(?:\.([0-9]+))?)\s*MB\s*", self.published_size)
        if match is None:
            raise ValueError(f"{self.name}: published size {self.published_size!r} is not 'N MB'")
        value, decimals = float(match.group(1)), len(match.group(2) or "")
        half = 0.5 * 10.0 ** -decimals
        return (math.floor((value - half) * 1e6 * (1 - SIZE_MARGIN)),
                math.ceil((value + half) * 2**20 * (1 + SIZE_MARGIN)))

    def noc_text(self) -> str:
        """'GrabCut@85 1.54 · GrabCut@90 1.68 · ...' (empty when none is published)."""
        return " · ".join(f"{k} {v:.2f}" for k, v in self.noc.items())


# name → entry. RITM's README also lists a COCO+LVIS HRNet18 *baseline* (coco_lvis_h18_baseline.pth); it is
# not registered: nothing here says it carries the iterative-mask input that `import-ritm` requires.
REGISTRY: dict[str, WeightsEntry] = {
    e.name: e
    for e in (
        WeightsEntry("ritm-hrnet18s", "coco_lvis_h18s_itermask.pth", "HRNet18s IT-M", "COCO+LVIS", "16.5 MB",
                     _noc(1.54, 1.68, 2.60, 4.04, 6.48, 4.70, 5.98, 2.57, 3.33)),
        WeightsEntry("ritm-hrnet18", "coco_lvis_h18_itermask.pth", "HRNet18 IT-M", "COCO+LVIS", "38.8 MB",
                     _noc(1.42, 1.54, 2.26, 3.80, 6.06, 4.36, 5.74, 2.28, 2.98)),
        WeightsEntry("ritm-hrnet32", "coco_lvis_h32_itermask.pth", "HRNet32 IT-M", "COCO+LVIS", "119 MB",
                     _noc(1.46, 1.56, 2.10, 3.59, 5.71, 4.11, 5.34, 2.57, 2.97)),
        WeightsEntry("ritm-hrnet18-sbd", "sbd_h18_itermask.pth", "HRNet18 IT-M", "SBD", "38.8 MB",
                     _noc(1.76, 2.04, 3.22, 3.39, 5.43, 4.94, 6.71, 2.51, 4.39)),
    )
}


class WeightsError(ValueError):
    """A weights name, download or cache problem; the message is one line naming the fix.

    A ValueError, so the CLI prints it as `edgeclick CMD: error: ...` and exits 2, as every other command.
    """


def known_names() -> str:
    """'ritm-hrnet18s, ritm-hrnet18, ...' for messages."""
    return ", ".join(REGISTRY)


def lookup(name: str) -> WeightsEntry:
    """The registered entry `name`, or a WeightsError listing the registered names."""
    entry = REGISTRY.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise WeightsError(f"{name!r} is not a registered weights name{hint}; known: {known_names()} (`edgeclick weights list`)")
    return entry
