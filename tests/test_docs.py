"""README.md and docs/: every relative link and anchor resolves, and the README's deploy summary quotes the
generated deploy table (docs/deploy.md) as it stands."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _unfenced(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def links(text: str) -> list[str]:
    """Link and image targets outside code, where brackets are not links."""
    return LINK.findall(re.sub(r"`[^`\n]*`", "", _unfenced(text)))


def anchors(text: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces → '-', repeats numbered -1, -2, …"""
    seen: Counter[str] = Counter()
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", _unfenced(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return out


def test_slugs_follow_github() -> None:
    assert anchors("# Export and targets\n## What is verified, and how\n## `--x` × y\n## A\n## A\n") == {
        "export-and-targets", "what-is-verified-and-how", "--x--y", "a", "a-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for link in links(page.read_text()):
        if re.match(r"[a-z]+:", link):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and anchor not in anchors(target.read_text()):
            broken.append(f"{link} (no heading #{anchor} in {target.name})")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_readme_links_every_page() -> None:
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in links((ROOT / "README.md").read_text())}
    assert not [p.name for p in PAGES[1:] if p not in linked]


def _rows(markdown: str) -> dict[tuple[str, str], list[str]]:
    """Table rows keyed by their first two cells (configuration, precision)."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 2 and not set(cells[0]) <= set("-: "):
            rows[(cells[0], cells[1])] = cells
    return rows


def test_readme_deploy_summary_quotes_the_deploy_table() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    block = deploy[deploy.index("<!-- deploy-table:start -->"):deploy.index("<!-- deploy-table:end -->")]
    table = _rows(block)
    session = list(table[("configuration", "precision")]).index("session 1 image + 5 clicks ms")
    readme = (ROOT / "README.md").read_text()
    # The summary table: from the section's start to its recommendation (tables after it quote other runs).
    section = readme[readme.index("## Which configuration to deploy"):readme.index("**Recommendation.**")]
    summary = _rows(section)
    del summary[("configuration", "precision")]
    assert len(summary) >= 4
    wrong = {key: (row[2], table.get(key, ["?"] * (session + 1))[session])
             for key, row in summary.items() if table.get(key, [None] * (session + 1))[session] != row[2]}
    assert not wrong, f"README summary (session ms) vs docs/deploy.md: {wrong}"
