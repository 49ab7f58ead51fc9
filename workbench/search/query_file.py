"""The queries of a batch ``wb query --queries SOURCE``.

Two formats, told apart by the first non-blank line:

- BEIR ``queries.jsonl``: one ``{"_id" (or "id"), "text"}`` object a line; the id is the object's;
- plain text: one query a line; the id is the line's number in the file (1-based, blank lines
  counted), so an answer can be traced back to its line. Blank lines are skipped.

``SOURCE`` ``-`` reads standard input. An unreadable file, text that is not UTF-8, a malformed JSON
line or a source without one query is an ``InputError`` naming the file (and line).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import InputError


@dataclass(frozen=True)
class QueryLine:
    """One query of the batch and the id its answers carry (``query_id`` in JSON, qid in TREC)."""

    query_id: str
    text: str


def _read_text(source: str) -> tuple[str, str]:
    """(the text, a name for errors) of a path or ``-`` (stdin)."""
    if source == "-":
        try:
            return sys.stdin.read(), "<stdin>"
        except UnicodeDecodeError as exc:
            raise InputError(f"<stdin>: not valid UTF-8 ({exc.reason})") from exc
    path = Path(source).expanduser()
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 ({exc.reason})") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_queries(source: str) -> list[QueryLine]:
    """Every query of ``source`` in file order (contract: module docstring)."""
    text, name = _read_text(source)
    lines = text.splitlines()
    first = next((line.lstrip() for line in lines if line.strip()), "")
    if first.startswith("{"):
        from workbench.eval.dataset import jsonl_rows

        queries = [QueryLine(qid, row["text"]) for qid, row in jsonl_rows(lines, name, ("_id", "id"), "query", True)
                   if row["text"].strip()]
    else:
        queries = [QueryLine(str(number), line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]
    if not queries:
        raise InputError(f"{name}: no queries (one a line, or BEIR queries.jsonl)")
    return queries
