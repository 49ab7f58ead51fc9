"""The queries of a batch ``wb query --queries SOURCE``.

Three formats:

- BEIR ``queries.jsonl`` (a ``.jsonl`` file, or the first non-blank line is a JSON object): one ``{"_id" (or "id"),
  "text"}`` object a line; the id is the object's;
- tab-separated (a ``.tsv`` file): with a header naming a ``query``/``text``/``question``
  column (and an ``id``/``qid``/``query_id``/``_id`` column, or the query column first; other
  columns are ignored), as ``sample_corpora/python-docs.queries.tsv``; ``id<TAB>...`` as a header
  names the id and the query column; without a header, ``id<TAB>text`` (MS MARCO's layout),
  exactly two fields a line;
- plain text: one query a line.

Without an id column a query's id is its line's number in the file (1-based, blank lines counted),
so an answer can be traced back to its line. Blank lines are skipped.

``SOURCE`` ``-`` reads standard input (to its end, before any model loads). A leading UTF-8 BOM is
dropped. An ``InputError`` names the file (and line) for: an unreadable file, text that is not
UTF-8, a malformed JSON line, a query without text or with blank text, an id given twice, a TSV
line without the text column, a plain text line holding a tab (a TSV's columns would be searched
as one query), a JSON id that is a lone surrogate escape (``"\\ud800"``), or a source without a
query. A lone surrogate in a JSON query's text is replaced by U+FFFD, as the corpus reader does.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import InputError
from workbench.text import file_lines


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
    lines = file_lines(text)
    first = next((line for line in lines if line.strip()), "")
    if (first.lstrip().startswith("{") and _is_json_object(first)) or name.lower().endswith(".jsonl"):
        rows = _jsonl_rows(lines, name)  # (a .jsonl whose first line is broken says so, not read as text)
    elif name.lower().endswith(".tsv"):
        rows = _tsv_rows(lines, name)
    else:
        rows = _text_rows(lines, name)
    queries: list[QueryLine] = []
    seen: dict[str, int] = {}
    for number, qid, query in rows:
        if qid in seen:
            raise InputError(f"{name}:{number}: the query id {qid!r} is given twice (first on line {seen[qid]})")
        seen[qid] = number
        queries.append(QueryLine(qid, query))
    if not queries:
        raise InputError(f"{name}: no queries (one a line, BEIR queries.jsonl, or a .tsv)")
    return queries


# Each format's rows: (line number, query id, query text), blank lines skipped.
def _jsonl_rows(lines: list[str], name: str):
    from workbench.eval.dataset import jsonl_rows

    for number, line in enumerate(lines, start=1):
        if line.strip():
            qid, row = next(jsonl_rows([line], name, ("_id", "id"), "query", True, first_line=number))
            if not row["text"].strip():
                raise InputError(f"{name}:{number}: query {qid!r} has a blank \"text\"")
            yield number, qid, row["text"]


def _text_rows(lines: list[str], name: str):
    for number, line in enumerate(lines, start=1):
        if "\t" in line:
            raise InputError(f"{name}:{number}: a tab in a query line: a TSV file must be named *.tsv "
                             "(id<TAB>text, or a header naming a query column); else one query a line")
        if line.strip():
            yield number, str(number), line.strip()


_TEXT_COLUMNS = ("query", "text", "question", "query_text", "querytext", "query-text")
_ID_COLUMNS = ("id", "qid", "query_id", "query-id", "queryid", "_id")


def _tsv_layout(first: list[str]) -> tuple[int, int | None] | None:
    """(text column, id column) when the first row is a header, else None (``id<TAB>text``).

    A header names a query column and either an id column too or the query column first
    (``query<TAB>kind<TAB>...``), or it is ``id<TAB>anything``: so ``q1<TAB>Text``, a query
    whose text is a column name, stays data, and ``id<TAB>question`` is not searched."""
    header = [h.strip().lower() for h in first]
    ids = [i for i, h in enumerate(header) if h in _ID_COLUMNS]
    texts = [header.index(h) for h in _TEXT_COLUMNS if h in header]
    if texts and (ids or texts[0] == 0):
        return texts[0], (ids[0] if ids else None)
    if ids == [0] and len(header) == 2:
        return 1, 0
    return None


def _tsv_rows(lines: list[str], name: str):
    numbered = [(n, line.split("\t")) for n, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        return
    named = _tsv_layout(numbered[0][1])
    if named is not None:
        (text_col, id_col), rows, layout = named, numbered[1:], "the header names it"
    else:
        text_col, id_col, rows, layout = 1, 0, numbered, "id<TAB>text"
    for number, fields in rows:
        if named is None and len(fields) > 2:  # a tab inside the text, or another layout: not cut silently
            raise InputError(f"{name}:{number}: {len(fields)} tab-separated fields where id<TAB>text has 2 "
                             "(a header naming the query column lets other columns be)")
        if len(fields) <= max(text_col, id_col or 0) or not fields[text_col].strip():
            raise InputError(f"{name}:{number}: no query text in column {text_col + 1} ({layout})")
        if id_col is not None and not fields[id_col].strip():
            raise InputError(f"{name}:{number}: no query id in column {id_col + 1} ({layout})")
        yield number, (fields[id_col].strip() if id_col is not None else str(number)), fields[text_col].strip()
