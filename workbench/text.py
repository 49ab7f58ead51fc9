"""Small text formatting shared by summaries, the CLI and the TUI (no imports: safe anywhere)."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 result``, ``2 results`` (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
