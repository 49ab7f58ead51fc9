"""docs/ARCHITECTURE.md stays true: every module of the two packages is named on the page, and every
`*.py` path the page names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "ARCHITECTURE.md"


def _modules() -> list[Path]:
    return sorted(p for pkg in ("workbench", "trainers") for p in (ROOT / pkg).rglob("*.py")
                  if p.name != "__init__.py")


def test_every_module_is_named_on_the_page():
    text = PAGE.read_text(encoding="utf-8")
    unnamed = [str(p.relative_to(ROOT)) for p in _modules() if not re.search(rf"\b{re.escape(p.stem)}\b", text)]
    assert not unnamed, f"docs/ARCHITECTURE.md does not name: {unnamed}"


def test_every_path_the_page_names_exists():
    text = PAGE.read_text(encoding="utf-8")
    named = set(re.findall(r"\b((?:workbench|trainers|bench|tests)/[\w/]+\.py)\b", text))
    assert named, "the page names no module path"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"docs/ARCHITECTURE.md names paths that do not exist: {missing}"


def test_every_file_name_the_page_lists_exists():
    """Bare names in the module tree (``    snapshot.py   ...``) name real files too."""
    text = PAGE.read_text(encoding="utf-8")
    listed = set(re.findall(r"(?m)^\s+(\w+\.py)\b", text))
    assert listed, "the page lists no module"
    known = {p.name for d in ("workbench", "trainers", "bench", "tests") for p in (ROOT / d).rglob("*.py")}
    assert not sorted(listed - known), f"docs/ARCHITECTURE.md lists files that do not exist: {sorted(listed - known)}"
