"""The documents: they stay inside the repository, their links lead somewhere, and every
generated section has its generator (docs/gen.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OUTSIDE = re.compile(r"\.\./shared|shared/|scenario-format\.md|ksm-reference\.md")


def test_nothing_points_outside_the_repository():
    files = [*DOCS, *(p for d in ("engine", "ksmtui", "scenarios", "tests", "docs")
                      for p in (ROOT / d).rglob("*.py"))]
    found = [f"{f.relative_to(ROOT)}: {m.group()}" for f in files if f.name != "test_docs.py"
             for m in [OUTSIDE.search(f.read_text())] if m]
    assert found == []


def test_every_relative_link_leads_to_a_file():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in target and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []


def test_every_generated_section_has_a_place_and_a_generator():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen
    finally:
        sys.path.pop(0)
    markers = set()
    for doc in DOCS:
        text = doc.read_text()
        opened = re.findall(r"<!-- gen:([\w-]+) -->", text)
        assert opened == re.findall(r"<!-- /gen:([\w-]+) -->", text), doc.name
        markers.update(opened)
    assert markers == set(gen.SECTIONS)
