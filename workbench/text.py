"""Small text formatting shared by summaries, the CLI and the TUI (no imports: safe anywhere)."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 result``, ``2 results`` (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def file_lines(text: str) -> list[str]:
    """The lines of a text file as editors and ``wc -l`` count them: split at ``\\n`` only, a trailing
    ``\\r`` dropped (CRLF files). Not ``str.splitlines()``, which also splits at U+2028, U+0085, form
    feeds and other separators that a JSON string or a line of plain text may hold, and so cuts a
    valid jsonl row in two and shifts every later line number. A final newline adds one empty line."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
