"""The queries of a batch ``wb query --queries SOURCE``.

Two formats, told apart by the first non-blank line (a JSON object: JSON lines; else text):

- BEIR ``queries.jsonl``: one ``{"_id" (or "id"), "text"}`` object a line; the id is the object's;
- plain text: one query a line; the id is the line's number in the file (1-based, blank lines
  counted), so an answer can be traced back to its line. Blank lines are skipped.

``SOURCE`` ``-`` reads standard input (to its end, before any model loads). A leading UTF-8 BOM is
dropped. An ``InputError`` names the file (and line) for: an unreadable file, text that is not
UTF-8, a malformed JSON line, a query without text or with blank text, an id given twice, a text
line holding a tab (a TSV's columns would be searched as one query), or a source without a query.
"""

from __future__ import annotations

import json
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
            return sys.stdin.read().removeprefix("\ufeff"), "<stdin>"
        except UnicodeDecodeError as exc:
            raise InputError(f"<stdin>: not valid UTF-8 ({exc.reason})") from exc
    path = Path(source).expanduser()
    try:
        return path.read_text(encoding="utf-8-sig"), str(path)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 ({exc.reason})") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def read_queries(source: str) -> list[QueryLine]:
    """Every query of ``source`` in file order (contract: module docstring)."""
    text, name = _read_text(source)
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    queries: list[QueryLine] = []
    if first.lstrip().startswith("{") and _is_json_object(first):
        from workbench.eval.dataset import jsonl_rows

        seen: dict[str, int] = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            qid, row = next(jsonl_rows([line], name, ("_id", "id"), "query", True, first_line=number))
            if not row["text"].strip():
                raise InputError(f"{name}:{number}: query {qid!r} has a blank \"text\"")
            if qid in seen:
                raise InputError(f"{name}:{number}: the query id {qid!r} is given twice (first on line {seen[qid]})")
            seen[qid] = number
            queries.append(QueryLine(qid, row["text"]))
    else:
        for number, line in enumerate(lines, start=1):
            if "\t" in line:
                raise InputError(f"{name}:{number}: a tab in a query line (a TSV?): give one query a line "
                                 "(e.g. `cut -f2 FILE`), or BEIR queries.jsonl")
            if line.strip():
                queries.append(QueryLine(str(number), line.strip()))
    if not queries:
        raise InputError(f"{name}: no queries (one a line, or BEIR queries.jsonl)")
    return queries
