"""Links between the README and docs/ lead somewhere: every relative link's file exists, and
its ``#anchor`` is one of that file's headings (as GitHub makes anchors from headings)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.M)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.

    >>> anchor("The embedded cluster: worker processes or threads")
    'the-embedded-cluster-worker-processes-or-threads'
    >>> anchor("A round trip's timeline (2026-12-04)")
    'a-round-trips-timeline-2026-12-04'
    """
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _prose(path: Path) -> str:
    """A Markdown file's text without its code blocks."""
    return re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def anchors(path: Path) -> set[str]:
    return {anchor(h) for h in HEADING.findall(_prose(path))}


def links(path: Path) -> list[str]:
    """The relative links of a Markdown file (not web addresses, not code blocks).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.md"
    >>> text = "[a](docs/b.md#c) [w](https://x.org) ![i](img/p.png)"
    >>> _ = p.write_text(text + "\\n```\\n[n](no)\\n```")
    >>> links(p)
    ['docs/b.md#c', 'img/p.png']
    """
    return [t for t in LINK.findall(_prose(path)) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_every_relative_link_leads_to_a_file_and_heading(doc: Path) -> None:
    found = links(doc)
    broken = []
    for target in found:
        file, _, frag = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{target}: no file {file}")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{frag} in {dest.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def test_the_readme_links_to_the_docs() -> None:
    targets = links(ROOT / "README.md")
    assert any(t.startswith("docs/performance.md") for t in targets)
    assert any(t.startswith("docs/reliability.md") for t in targets)
