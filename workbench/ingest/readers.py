"""Read documents from disk: plain text, Markdown, reStructuredText, HTML, PDF and BEIR corpora.

Entry points
------------
``iter_sources(root, max_file_bytes=20_000_000)``
    Yields ``SourceDocument`` for every document read and ``SkippedFile`` for every
    file refused, in a deterministic order. Never raises for a bad file; raises
    ``InputError`` only when ``root`` does not exist (or is neither a file nor a folder).

``count_candidate_files(root)``
    How many items ``iter_sources`` will try (files, or lines of a BEIR corpus), for a
    progress bar. Cheap: it walks the tree and counts lines, it parses nothing.

What ``root`` can be
--------------------
* a folder containing ``corpus.jsonl`` at its top: a BEIR dataset. Only
  ``corpus.jsonl`` is read (queries and qrels are not documents); ``doc_id`` is the
  row's ``_id`` exactly, so BEIR qrels match.
* any other folder: walked recursively, entries sorted by name at every level.
  Hidden names (starting with ``.``, e.g. a ``.wb`` workspace) and files with
  unsupported extensions are skipped silently (the latter counted by extension when asked:
  ``not_read``); a folder holding a ``wb.toml`` (a
  workspace with another name) is skipped with that reason. Supported: ``.txt .md .markdown .rst
  .html .htm .pdf`` (case-insensitive) and files named exactly ``corpus.jsonl``. A
  ``corpus.jsonl`` below the top is read as a BEIR corpus whose ids are prefixed
  with its folder (``"sub/dir/<_id>"``) so that two datasets cannot collide.
  Symlinks to files are followed (the document keeps the link's path), and a file the
  walk reaches again (through a link, or a hard link) is ``"already read as <rel>"``, the
  name met first in sorted order; symlinks to
  folders are followed unless they lead back to a folder on the current path, the indexed
  folder's own parents included (``"symlink loop"``: a link to ``..``, ``/`` or ``~`` contains the
  indexed folder, and nothing outside it is read through one), or to a folder already walked
  (``"already read as <rel>"``).
* a single supported file: read on its own, ``doc_id`` is its file name. A single
  file ending in ``.jsonl`` (whatever its name) is read as a BEIR corpus; a single
  file of another type yields ``SkippedFile(path, "unsupported file type .ext")``.

Records
-------
For files: ``doc_id`` is the path relative to ``root`` in posix form; ``path`` is the
absolute path (symlinks not resolved); ``title`` is the first Markdown level-1
heading (``# X``, a setext ``X\\n===`` heading, or a front-matter ``title:``, a YAML block
scalar's lines joined), the reStructuredText title (a line underlined with ``=``, ``-``,
``~``, ...), the HTML ``<title>`` (never one inside ``<svg>``, ``<math>`` or ``<template>``) or
first ``<h1>``, or the PDF metadata title, else the file stem (always
the stem for ``.txt``). ``text`` is:

* ``.txt .md .markdown .rst``: the file's text exactly as decoded (strict UTF-8, a
  leading BOM dropped, or UTF-32 or UTF-16 with its BOM; line endings untouched; a Markdown file's
  YAML front matter turned into spaces), so character offsets point into it (an HTML file that is not UTF-8 is read in the charset its
  ``<meta>`` declares);
* HTML: the visible text of the main content (``<main>``, else ``[role=main]``, else
  the only ``<article>``, else ``<body>``), with script/style/nav/header/footer and
  similar removed, whitespace collapsed, block elements separated by ``"\\n"``
  (list items, rows, ``<br>``, ``<div>``) or ``"\\n\\n"`` (paragraphs, headings, ...);
* PDF: the pypdf text of every page, pages joined with ``"\\n\\n"``.

``content_hash`` is ``sha256((title + "\\x00" + text).encode("utf-8")).hexdigest()``.

Skip reasons (``SkippedFile.reason``)
-------------------------------------
``"empty"`` (0 bytes, or only whitespace after extraction), ``"no words to index"`` (no
letter or digit: zero-width characters, punctuation), ``"binary"`` (a NUL byte anywhere in a
text-type file without a UTF-32 or UTF-16 BOM, or a NUL character in its UTF-16/32 text), ``"invalid UTF-8"`` (for
HTML: also not its declared charset, said), ``"unreadable: <strerror>"``,
``"too large (<size> > <limit> limit)"``, ``"unparseable PDF: <reason>"``,
``"no text in PDF"``, ``"symlink loop"``, ``"broken symlink"``, ``"not a regular
file"``, ``"already read as <rel>"``, a name that is not valid UTF-8 or holds a control
character (a folder so named is skipped whole; the path shown escapes such characters). For BEIR rows the path is ``"<corpus path>:<line>"``
and the reasons are ``"malformed JSON: <msg>"``, ``"missing _id"``, ``"missing
text"``, ``"_id is not valid Unicode (...)"``, ``"_id holds a control character (...)"``,
``"duplicate _id <id> (line N replaces it)"`` (on the earlier row: the last row of an ``_id``
is kept, as BEIR's loader keeps it), ``"invalid UTF-8"`` and ``"empty"`` (empty title and
empty text; a row with a title and empty text is kept).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workbench.errors import InputError, UsageError
from workbench.types import SkippedFile, SourceDocument

__all__ = [
    "SUPPORTED_SUFFIXES",
    "BEIR_CORPUS_NAME",
    "iter_sources",
    "reads",
    "count_candidate_files",
    "content_hash",
    "corpus_documents",
    "corpus_passages",
]

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
PDF_SUFFIXES = frozenset({".pdf"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
BEIR_CORPUS_NAME = "corpus.jsonl"

_Item = SourceDocument | SkippedFile


# --------------------------------------------------------------------------- public API


def content_hash(title: str, text: str) -> str:
    """The ``content_hash`` of a document: sha256 hex of ``title + "\\x00" + text`` in UTF-8."""
    return hashlib.sha256((title + "\x00" + text).encode("utf-8")).hexdigest()


def iter_sources(root: Path | str, *, max_file_bytes: int = 20_000_000, exclude: tuple[str, ...] = (),
                 not_read: dict[str, int] | None = None) -> Iterator[_Item]:
    """Yield every document under ``root`` (see the module docstring for the full contract).

    ``root`` is checked at call time, not at the first ``next()``: a missing root raises
    ``InputError("no such file or folder: <root>")`` right away. Files larger than
    ``max_file_bytes`` are skipped as ``"too large (...)"`` (a BEIR corpus file is never
    size-limited: it is streamed line by line). Every other problem is reported as a
    ``SkippedFile``; iteration never raises for a bad file. A file or folder whose name or path
    relative to ``root`` matches a glob of ``exclude`` (fnmatch, case-sensitive) is left out
    silently, as hidden names are (a folder is not walked). Files of a type wb does not read
    (``.docx``, ``.py``, no extension) yield nothing; when ``not_read`` is given, each is counted
    in it by its lower-cased extension (``""`` for none) as the walk passes it.
    """
    if max_file_bytes <= 0:
        raise UsageError(f"max_file_bytes must be positive, got {max_file_bytes}")
    root = _check_root(root)
    return _iter_sources(root, max_file_bytes, _patterns(exclude), not_read)


def reads(root: Path, path: Path, exclude: tuple[str, ...] = ()) -> bool:
    """Whether ``iter_sources(root)`` reads ``path``, a file or folder strictly inside ``root``.

    Both are absolute, resolved paths (compared by their parts, not re-resolved). True when the walk
    of ``root`` reaches ``path``: no hidden name on the way, a file with a supported name, any folder.
    A BEIR folder (``corpus.jsonl`` at its top) reads only that file; a file root reads nothing else.
    A ``path`` that no longer exists counts as read when its name could be (its documents are gone
    either way). A path ``exclude`` leaves out is not read. Used to keep indexed roots from
    overlapping (``index.indexer``).
    """
    if path == root or not path.is_relative_to(root) or not root.is_dir():
        return False
    if _top_level_corpus(root) is not None:
        return path == root / BEIR_CORPUS_NAME
    if any(part.startswith(".") for part in path.relative_to(root).parts):
        return False
    if exclude and excluded_path(path.relative_to(root).as_posix(), _patterns(exclude)):
        return False
    return path.is_dir() or _is_candidate_name(path.name) or (not path.exists() and not path.suffix)


def corpus_documents(path: Path | str, *, file_name_titles: bool = True) -> dict[str, tuple[str, str]]:
    """doc_id -> ``(title, text)`` of a BEIR corpus (file or folder), for training and mining.

    Reads through ``iter_sources``; a malformed row or one whose ``_id`` cannot name a document is
    an InputError naming it (training data must not be silently thinned), while empty rows are
    skipped (and an ``_id`` given twice keeps its last row). With ``file_name_titles=False`` a file's
    title that is its file name (the stem the reader falls back to: a ``.txt`` file, a Markdown file
    without a heading) is given as ``""``; a BEIR row's title is always its own.
    """
    out: dict[str, tuple[str, str]] = {}
    for item in iter_sources(path):
        if isinstance(item, SkippedFile):
            if item.reason.startswith(("malformed", "missing", "_id ")):
                raise InputError(f"{item.path}: {item.reason}")
            continue
        title = item.title
        if not file_name_titles and not item.path.endswith(".jsonl") and title == Path(item.path).stem:
            title = ""
        out[item.doc_id] = (title, item.text)
    return out


def corpus_passages(path: Path | str) -> dict[str, str]:
    """doc_id -> ``"title text"`` of a BEIR corpus (``corpus_documents``'s rows joined)."""
    return {doc_id: f"{title} {text}".strip() for doc_id, (title, text) in corpus_documents(path).items()}


def count_candidate_files(root: Path | str) -> int:
    """Number of items ``iter_sources(root)`` will try, for a progress bar.

    For a folder: the files (and refused entries such as loops or broken links) that
    the walk reaches, plus, for a nested ``corpus.jsonl``, its line count. For a BEIR
    corpus: its number of lines (blank lines included, so it can exceed the number of
    records by the number of blank lines). No file is opened except corpus files,
    which are only scanned for newlines. Raises ``InputError`` for a missing root.
    """
    root = _check_root(root)
    corpus = _top_level_corpus(root)
    if corpus is not None:
        return _count_lines(corpus)
    if root.is_file():
        return 1
    total = 0
    for kind, path, _rel, _extra in _walk(root):
        if kind != "other":
            total += _count_lines(Path(path)) if kind == "beir" else 1
    return total


# --------------------------------------------------------------------------- dispatch


def _check_root(root: Path | str) -> Path:
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise InputError(f"no such file or folder: {root}")
    if not (root.is_dir() or root.is_file()):
        raise InputError(f"not a regular file or folder: {root}")
    return root


def is_beir_corpus(root: Path) -> bool:
    """Whether ``root`` is read as a BEIR corpus (a ``.jsonl`` file, or a folder with ``corpus.jsonl``)."""
    return _top_level_corpus(root) is not None


def _top_level_corpus(root: Path) -> Path | None:
    """The BEIR corpus file that ``root`` designates, or None for a plain folder/file."""
    if root.is_dir():
        corpus = root / BEIR_CORPUS_NAME
        return corpus if corpus.is_file() else None
    if root.suffix.lower() == ".jsonl":
        return root
    return None


def _iter_sources(root: Path, max_file_bytes: int, exclude: tuple[str, ...] = (),
                  not_read: dict[str, int] | None = None) -> Iterator[_Item]:
    try:
        str(root).encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{printable_path(str(root))}: the path is not valid UTF-8 (rename it)") from None
    corpus = _top_level_corpus(root)
    if corpus is not None:
        yield from _read_beir(corpus, id_prefix="")
        return
    if root.is_file():
        suffix = root.suffix.lower()
        problem = _name_problem(root.name)
        if problem:
            yield SkippedFile(printable_path(str(root)), problem)
            return
        if suffix not in SUPPORTED_SUFFIXES:
            yield SkippedFile(str(root), f"unsupported file type {suffix or '(no extension)'}")
            return
        try:
            size = root.stat().st_size
        except OSError as exc:
            yield SkippedFile(str(root), _unreadable(exc))
            return
        yield _read_file(root, root.name, size, max_file_bytes)
        return
    for kind, path, rel, extra in _walk(root, exclude):
        if kind == "other":
            if not_read is not None:
                not_read[extra] = not_read.get(extra, 0) + 1
        elif kind == "skip":
            yield SkippedFile(path, extra)
        elif kind == "beir":
            yield from _read_beir(Path(path), id_prefix=rel)
        else:
            yield _read_file(Path(path), rel, extra, max_file_bytes)


# --------------------------------------------------------------------------- folder walk


WORKSPACE_MARKER = "wb.toml"  # a folder holding it is a wb workspace: never read as documents


def _walk(root: Path, exclude: tuple[str, ...] = ()) -> Iterator[tuple[str, str, str, Any]]:
    """Depth-first, name-sorted walk of ``root``.

    Yields ``(kind, abs_path, rel, extra)`` where kind is ``"doc"`` (extra = size in
    bytes), ``"beir"`` (a nested ``corpus.jsonl``; rel = its folder, used as id prefix;
    extra unused), ``"skip"`` (extra = reason) or ``"other"`` (a regular file of a type wb
    does not read; extra = its lower-cased extension, ``""`` for none). Hidden names, and those
    the ``exclude`` globs (:func:`_patterns`) match, are dropped here.
    """
    visited: dict[str, str] = {}
    read_files: dict[tuple[int, int], str] = {}  # (device, inode) -> rel: one file reached twice (a symlink) is read once
    # The root's own parents count as "on the current path": a link to one of them (``..``, ``/``, ``~``)
    # contains the root, so following it would walk everything beside and above the indexed folder.
    outer = frozenset(str(p) for p in Path(os.path.realpath(root)).parents)
    # Stack items: ("dir", path, rel, ancestors) or a finished tuple to yield.
    stack: list[tuple[Any, ...]] = [("dir", str(root), "", outer)]
    while stack:
        item = stack.pop()
        if item[0] == "doc":
            kind, path, rel, (size, file_key) = item
            if file_key in read_files:
                yield ("skip", path, rel, f"already read as {read_files[file_key]}")
            else:
                read_files[file_key] = rel
                yield (kind, path, rel, size)
            continue
        if item[0] != "dir":
            yield item  # type: ignore[misc]
            continue
        _, dir_path, dir_rel, ancestors = item
        real = os.path.realpath(dir_path)
        if real in ancestors:
            yield ("skip", dir_path, dir_rel, "symlink loop")
            continue
        if real in visited:
            yield ("skip", dir_path, dir_rel, f"already read as {visited[real] or '.'}")
            continue
        visited[real] = dir_rel
        if dir_rel and os.path.isfile(os.path.join(dir_path, WORKSPACE_MARKER)):
            yield ("skip", dir_path, dir_rel, "a wb workspace (its index, runs and logs are not documents)")
            continue
        try:
            with os.scandir(dir_path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield ("skip", dir_path, dir_rel, _unreadable(exc))
            continue
        children: list[tuple[Any, ...]] = []
        inner_ancestors = ancestors | {real}
        for entry in entries:
            child = _classify(entry, dir_rel, inner_ancestors, exclude)
            if child is not None:
                children.append(child)
        stack.extend(reversed(children))


def _patterns(exclude) -> tuple[str, ...]:
    """``[index] exclude`` globs as the walk matches them: trimmed, a trailing ``/`` and a leading
    ``./`` dropped, empty ones left out."""
    cleaned = (p.strip().rstrip("/").removeprefix("./") for p in exclude)
    return tuple(p for p in cleaned if p)


def _excluded(name: str, rel: str, patterns: tuple[str, ...]) -> bool:
    """Whether a glob of ``patterns`` (:func:`_patterns`) matches the entry: one without ``/``
    (``node_modules``, ``*.min.html``) its name at any depth, one with ``/`` (``drafts/*``) its path
    relative to the indexed folder."""
    from fnmatch import fnmatchcase

    return any(fnmatchcase(rel, p) if "/" in p else fnmatchcase(name, p) for p in patterns)


def excluded_path(rel: str, patterns: tuple[str, ...]) -> bool:
    """Whether the walk leaves out the relative path ``rel`` (posix) or a folder on its way."""
    parts = rel.split("/")
    return any(_excluded(parts[i], "/".join(parts[: i + 1]), patterns) for i in range(len(parts)))


def _is_candidate_name(name: str) -> bool:
    if name == BEIR_CORPUS_NAME:
        return True
    return os.path.splitext(name)[1].lower() in SUPPORTED_SUFFIXES


def _suffix(name: str) -> str:
    """A file name's extension as counted in ``not_read``: lower-cased, ``""`` for none."""
    return os.path.splitext(name)[1].lower()


def _name_problem(name: str) -> str | None:
    """Why a file or folder name cannot become (part of) a document id, or None: a name that is not
    valid UTF-8 (Python keeps its bytes as surrogates, which no store, JSON or terminal takes) or
    that holds a control character (a newline or tab would split TREC, TSV and console lines)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "name not valid UTF-8 (rename it)"
    if any(_breaks_lines(c) for c in name):
        return "name with a control character, e.g. a newline (rename it)"
    return None


def _breaks_lines(c: str) -> bool:
    """A control character, or one that ``str.splitlines`` breaks a line at (NEL, LS, PS)."""
    return ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029"


def printable_path(path: str) -> str:
    """``path`` safe to print and to write as UTF-8: undecodable bytes shown as ``\\xe9``, control
    characters escaped."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(repr(c)[1:-1] if _breaks_lines(c) else c for c in text)


def _classify(entry: os.DirEntry[str], dir_rel: str, ancestors: frozenset[str],
              exclude: tuple[str, ...] = ()) -> tuple[Any, ...] | None:
    name = entry.name
    if name.startswith("."):
        return None
    rel = f"{dir_rel}/{name}" if dir_rel else name
    if exclude and _excluded(name, rel, exclude):
        return None
    path = entry.path
    problem = _name_problem(name)
    if problem is not None:
        try:
            shown = entry.is_dir() or _is_candidate_name(name)
        except OSError:
            shown = _is_candidate_name(name)
        return ("skip", printable_path(path), printable_path(rel), problem) if shown else None
    try:
        is_link = entry.is_symlink()
    except OSError:
        is_link = False
    candidate = _is_candidate_name(name)
    if not is_link:
        # d_type tells dir/file without a stat call; stat only candidate files.
        try:
            if entry.is_dir(follow_symlinks=False):
                return ("dir", path, rel, ancestors)
        except OSError as exc:
            return ("skip", path, rel, _unreadable(exc))
        if not candidate:
            try:
                regular = entry.is_file(follow_symlinks=False)
            except OSError:
                regular = False
            return ("other", path, rel, _suffix(name)) if regular else None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if is_link and (candidate or not os.path.splitext(name)[1]):
            return ("skip", path, rel, "broken symlink")
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return ("skip", path, rel, "symlink loop")
        return ("skip", path, rel, _unreadable(exc))
    if stat.S_ISDIR(st.st_mode):
        return ("dir", path, rel, ancestors)
    if not candidate:
        return ("other", path, rel, _suffix(name)) if stat.S_ISREG(st.st_mode) else None
    if not stat.S_ISREG(st.st_mode):
        return ("skip", path, rel, "not a regular file")
    if name == BEIR_CORPUS_NAME:
        return ("beir", path, dir_rel, None)
    return ("doc", path, rel, (st.st_size, (st.st_dev, st.st_ino)))  # _walk yields the size alone


# --------------------------------------------------------------------------- single files


def _unreadable(exc: OSError) -> str:
    return f"unreadable: {exc.strerror or exc}"


def _fmt_size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    if n >= 1_000:
        return f"{n / 1_000:.1f} KB"
    return f"{n} bytes"


def _too_large(size: int, limit: int) -> str:
    return f"too large ({_fmt_size(size)} > {_fmt_size(limit)} limit)"


_CHARSET_RE = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


_UTF32_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")  # checked before UTF-16's: FF FE starts both
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _decode(data: bytes, suffix: str) -> tuple[str | None, str]:
    """The text of a file's bytes, or None and the skip reason: UTF-32, else UTF-16, with a
    byte-order mark; else ``"binary"`` for a NUL byte anywhere in the file (a NUL character in the
    decoded UTF-16/32 text too: a binary file that happens to start like a BOM); UTF-8 (a BOM
    dropped); an HTML file that is not UTF-8 in the charset its ``<meta>`` declares."""
    for boms, codec in ((_UTF32_BOMS, "utf-32"), (_UTF16_BOMS, "utf-16")):
        if data[: len(boms[0])] in boms:
            try:
                text = data.decode(codec)
            except UnicodeDecodeError:
                return None, f"invalid {codec.upper()}"
            return (None, "binary") if "\x00" in text else (text, "")
    if b"\x00" in data:  # the whole file, not a first block: a NUL in the middle of a log is binary too
        return None, "binary"
    try:
        return data.decode("utf-8-sig"), ""
    except UnicodeDecodeError:
        pass
    declared = _CHARSET_RE.search(data[:4096]) if suffix in HTML_SUFFIXES else None
    if declared is None:
        return None, "invalid UTF-8"
    charset = declared.group(1).decode("ascii", "replace")
    try:
        return data.decode(charset), ""
    except LookupError:
        return None, f"invalid UTF-8, and its declared charset {charset!r} is unknown"
    except UnicodeDecodeError:
        return None, f"neither UTF-8 nor its declared charset {charset!r}"


def _read_file(path: Path, doc_id: str, size: int, max_file_bytes: int) -> _Item:
    spath = str(path)
    if size > max_file_bytes:
        return SkippedFile(spath, _too_large(size, max_file_bytes))
    if size == 0:
        return SkippedFile(spath, "empty")
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        return _read_pdf(path, doc_id, max_file_bytes)
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_file_bytes + 1)
    except OSError as exc:
        return SkippedFile(spath, _unreadable(exc))
    if len(data) > max_file_bytes:  # grew since stat
        return SkippedFile(spath, _too_large(len(data), max_file_bytes))
    if not data:
        return SkippedFile(spath, "empty")
    raw, problem = _decode(data, suffix)
    if raw is None:
        return SkippedFile(spath, problem)
    stem = path.stem
    if suffix in HTML_SUFFIXES:
        title, text = _extract_html(raw)
        title = title or stem
    else:
        text = raw
        if suffix in (".md", ".markdown"):
            title = _markdown_title(raw) or stem
            text = _blank_front_matter(raw)
        elif suffix == ".rst":
            title = _rst_title(raw) or stem
        else:
            title = stem
    if not text.strip():
        return SkippedFile(spath, "empty")
    if not any(ch.isalnum() for ch in text):  # zero-width spaces, only punctuation: it would be indexed as
        return SkippedFile(spath, "no words to index")  # its title alone, which is the file's name
    return SourceDocument(doc_id=doc_id, path=spath, title=title, text=text, content_hash=content_hash(title, text))


# --------------------------------------------------------------------------- titles

_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX_H1_RE = re.compile(r"^ {0,3}#[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_H1_RE = re.compile(r"^ {0,3}=+[ \t]*$")
_FRONT_TITLE_RE = re.compile(r"""^title:[ \t]*(.*?)[ \t]*$""")
_BLOCK_SCALAR_RE = re.compile(r"""^[>|](?:[+-]?[1-9]?|[1-9][+-])(?:[ \t]+#.*)?$""")  # > | >- |+ >2 ... (a comment after)
_RST_ADORN_RE = re.compile(r"""^([=\-~^"'`*+#:._])\1+[ \t]*$""")
_TITLE_SCAN_LINES = 2000


def _markdown_title(text: str) -> str | None:
    """Front-matter ``title:`` (a block scalar, ``title: >`` or ``|`` and indented lines, joined
    into one line), else the first level-1 heading (ATX ``# X`` or setext ``X\\n===``).

    Headings inside fenced code blocks are ignored; only the first 2000 lines are scanned.
    """
    lines = text.splitlines()[:_TITLE_SCAN_LINES]
    start = 0
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                block = lines[1:i]
                for k, fm in enumerate(block):
                    m = _FRONT_TITLE_RE.match(fm)
                    if m and _BLOCK_SCALAR_RE.match(m.group(1)):
                        joined = _block_scalar(block[k + 1:])
                        if joined:
                            return joined
                    elif m and m.group(1).strip("\"' "):
                        return m.group(1).strip().strip("\"'").strip()
                start = i + 1
                break
    fence: str | None = None
    prev = ""
    for line in lines[start:]:
        m = _FENCE_RE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            prev = ""
            continue
        if m:
            fence = m.group(1)
            prev = ""
            continue
        m = _ATX_H1_RE.match(line)
        if m and m.group(1).strip():
            return m.group(1).strip()
        if _SETEXT_H1_RE.match(line) and prev.strip() and not prev.lstrip().startswith(("#", ">", "-", "*")):
            return prev.strip()
        prev = line
    return None


def _block_scalar(lines: list[str]) -> str:
    """The text of a YAML block scalar (``title: >`` or ``title: |`` and the indented lines after it)
    as a one-line title: its lines joined with single spaces (a title has no line breaks, folded or
    literal); ``""`` when no indented line follows."""
    parts: list[str] = []
    for line in lines:
        if line.strip() and not line[:1].isspace():  # the next key: the block ended
            break
        parts.append(line.strip())
    return " ".join(" ".join(parts).split())


def _blank_front_matter(text: str) -> str:
    """``text`` with a leading YAML front-matter block (``---`` ... ``---``/``...``) turned into
    spaces, its line breaks kept: its keys stay out of chunks, snippets and BM25, and every
    character offset still points where it did in the file."""
    if not text.startswith("---"):
        return text
    lines = text.splitlines(keepends=True)
    if lines[0].strip() != "---":
        return text
    end = 0
    for i, line in enumerate(lines[1:_TITLE_SCAN_LINES], start=1):
        if line.strip() in ("---", "..."):
            end = sum(len(x) for x in lines[: i + 1])
            break
    if not end:
        return text
    return re.sub(r"[^\r\n]", " ", text[:end]) + text[end:]


def _rst_title(text: str) -> str | None:
    """The first line followed by an adornment line (``===``, ``---``, ``~~~``, ...) at least as long.

    An over-and-underlined title (``====\\nTitle\\n====``) is found the same way. An
    underline shorter than the title is accepted from 3 characters on (docutils warns
    but accepts it).
    """
    lines = text.splitlines()[:_TITLE_SCAN_LINES]
    for i in range(len(lines) - 1):
        title = lines[i].strip()
        if not title or _RST_ADORN_RE.match(title):
            continue
        overlined = i > 0 and _RST_ADORN_RE.match(lines[i - 1].rstrip()) is not None
        if lines[i][:1].isspace() and not overlined:  # indented text is a block quote, not a title
            continue
        under = lines[i + 1].rstrip()
        if _RST_ADORN_RE.match(under) and len(under) >= max(2, min(len(title), 3)):
            return title
    return None


# --------------------------------------------------------------------------- HTML

_DROP_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "nav",
    "header",
    "footer",
    "head",
    "svg",
    "iframe",
    "object",
    "canvas",
)
# Boundary strength: 2 -> blank line between blocks, 1 -> single newline.
_BLOCK_BREAK = {
    **{t: 2 for t in ("p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "ul", "ol", "dl", "table",
                      "section", "article", "main", "aside", "figure", "hr", "form", "fieldset", "address",
                      "details", "body", "html")},
    **{t: 1 for t in ("div", "li", "dt", "dd", "tr", "br", "figcaption", "caption", "summary", "thead",
                      "tbody", "tfoot", "option", "legend", "center")},
}


def _collapse(s: str) -> str:
    return " ".join(s.split())


def _extract_html(raw: str) -> tuple[str, str]:
    """Return ``(title, visible text)`` of an HTML document; title may be ``""``."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(raw, "lxml")
    container = soup.find("main") or soup.find(attrs={"role": "main"})
    if container is None:
        articles = soup.find_all("article", limit=2)
        container = articles[0] if len(articles) == 1 else (soup.body or soup)
    title = ""
    head_title = _document_title(soup)
    if head_title is not None:
        title = _collapse(head_title.get_text())
    if not title:
        h1 = container.find("h1") or soup.find("h1")
        if h1 is not None:
            title = _collapse(h1.get_text())
    for tag in container.find_all(_DROP_TAGS):
        tag.decompose()
    for tag in container.find_all(attrs={"hidden": True}):
        tag.decompose()
    return title, _visible_text(container)


_FOREIGN_TITLE_PARENTS = frozenset({"svg", "math", "template"})


def _document_title(soup: Any) -> Any:
    """The document's ``<title>`` element, or None: the first one that is not inside ``<svg>``,
    ``<math>`` or ``<template>`` (an inline icon's ``<svg><title>`` names the icon, not the page)."""
    for tag in soup.find_all("title"):
        if not any(parent.name in _FOREIGN_TITLE_PARENTS for parent in tag.parents):
            return tag
    return None


def _visible_text(container: Any) -> str:
    from bs4.element import (
        CData,
        Comment,
        Declaration,
        Doctype,
        NavigableString,
        ProcessingInstruction,
        Script,
        Stylesheet,
        Tag,
        TemplateString,
    )

    skip_strings = (Comment, Declaration, Doctype, ProcessingInstruction, Script, Stylesheet, TemplateString)
    blocks: list[str] = []
    seps: list[int] = []
    buf: list[str] = []
    pending = 0

    def flush() -> None:
        nonlocal pending
        text = _collapse("".join(buf))
        buf.clear()
        if text:
            blocks.append(text)
            seps.append(pending)
            pending = 0

    def emit_raw(text: str) -> None:
        nonlocal pending
        text = text.strip("\r\n")
        if text.strip():
            blocks.append(text.rstrip())
            seps.append(pending)
            pending = 0

    def brk(strength: int) -> None:
        nonlocal pending
        flush()
        pending = max(pending, strength)

    # Iterative walk: (node, closing) pairs; closing entries mark the end of a block tag.
    stack: list[tuple[Any, bool]] = [(container, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            brk(_BLOCK_BREAK[node.name])
            continue
        if isinstance(node, NavigableString):
            if isinstance(node, CData) or not isinstance(node, skip_strings):
                buf.append(str(node))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name
        strength = _BLOCK_BREAK.get(name)
        if name == "pre":
            brk(2)
            emit_raw(node.get_text())
            brk(2)
            continue
        if name in ("td", "th"):
            buf.append(" ")
        if strength is None:
            stack.extend((child, False) for child in reversed(node.contents))
            continue
        brk(strength)
        if name in ("br", "hr"):
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))
    flush()
    out: list[str] = []
    for i, (sep, block) in enumerate(zip(seps, blocks)):
        if i:
            out.append("\n\n" if sep >= 2 else "\n")
        out.append(block)
    return "".join(out)


# --------------------------------------------------------------------------- PDF


def _short(exc: BaseException, limit: int = 80) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def _read_pdf(path: Path, doc_id: str, max_file_bytes: int) -> _Item:
    spath = str(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        return SkippedFile(spath, _unreadable(exc))
    with fh:
        try:
            import logging

            from pypdf import PdfReader

            logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings are the skip reason, not stderr lines
            reader = PdfReader(fh)
            if reader.is_encrypted:
                try:
                    ok = reader.decrypt("")
                except Exception:  # noqa: BLE001 - pypdf raises many types
                    ok = 0
                if not ok:
                    return SkippedFile(spath, "unparseable PDF: encrypted")
            pages = [page.extract_text() or "" for page in reader.pages]
        except OSError as exc:
            return SkippedFile(spath, _unreadable(exc))
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types
            return SkippedFile(spath, f"unparseable PDF: {_short(exc)}")
        title = ""
        try:
            meta = reader.metadata
            if meta is not None and isinstance(meta.title, str):
                title = _collapse(meta.title)
        except Exception:  # noqa: BLE001 - broken metadata is not fatal
            title = ""
    text = "\n\n".join(pages)
    if not text.strip():
        return SkippedFile(spath, "no text in PDF")
    title = title or path.stem
    return SourceDocument(doc_id=doc_id, path=spath, title=title, text=text, content_hash=content_hash(title, text))


# --------------------------------------------------------------------------- BEIR

_SURROGATES_RE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(s: str) -> str:
    """Replace lone surrogates (possible in JSON ``\\ud800`` escapes) by U+FFFD so the text encodes as
    UTF-8: what every JSON-lines reader does with a document's or a query's text."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES_RE.sub("\ufffd", s)
    return s


def _read_beir(corpus: Path, *, id_prefix: str) -> Iterator[_Item]:
    """Read a BEIR ``corpus.jsonl``: one ``{"_id", "title"?, "text"}`` object per line.

    ``doc_id`` is ``_id`` (an integer ``_id`` becomes its decimal string), prefixed with
    ``id_prefix + "/"`` when the corpus sits below the walked root. Blank lines are ignored. An
    ``_id`` that is not valid Unicode (a lone surrogate escape, ``"\\ud800"``) or holds a control
    character (a tab or line break would split TREC and TSV lines) skips its row. An ``_id`` given
    twice keeps its last row, as BEIR's own loader does (the qrels were judged against it): the
    earlier row is skipped as ``"duplicate _id <id> (line N replaces it)"``. Items come in line
    order once the whole file is read.
    """
    yield from _beir_rows(corpus, id_prefix)


def _id_problem(raw_id: str) -> str | None:
    """Why a BEIR ``_id`` cannot name a document, or None (``_name_problem``'s rule for file names)."""
    try:
        raw_id.encode("utf-8")
    except UnicodeEncodeError:
        return "_id is not valid Unicode (a lone surrogate)"
    if any(_breaks_lines(c) for c in raw_id):
        return (f"_id holds a control character ({printable_path(raw_id)}): a tab or line break would split "
                "TREC and TSV lines")
    return None


def _beir_rows(corpus: Path, id_prefix: str) -> list[_Item]:
    """``_read_beir``'s items, as a list (a later row with an ``_id`` seen replaces the earlier)."""
    spath = str(corpus)
    items: list[_Item] = []
    at: dict[str, tuple[int, int]] = {}  # _id -> (its item's index, its line)
    try:
        fh = open(corpus, "rb")
    except OSError as exc:
        return [SkippedFile(spath, _unreadable(exc))]
    with fh:
        lineno = 0
        while True:
            try:
                line = fh.readline()
            except OSError as exc:
                items.append(SkippedFile(spath, _unreadable(exc)))
                return items
            if not line:
                return items
            lineno += 1
            if not line.strip():
                continue
            where = f"{spath}:{lineno}"
            try:
                row = json.loads(line.rstrip(b"\r\n"))  # an error at the line's end gets its column, not 1
            except UnicodeDecodeError:
                items.append(SkippedFile(where, "invalid UTF-8"))
                continue
            except json.JSONDecodeError as exc:
                items.append(SkippedFile(where, f"malformed JSON: {exc.msg} at column {exc.colno}"))
                continue
            except ValueError as exc:
                items.append(SkippedFile(where, f"malformed JSON: {_short(exc)}"))
                continue
            if not isinstance(row, dict):
                items.append(SkippedFile(where, f"malformed JSON: expected an object, got {type(row).__name__}"))
                continue
            raw_id = row.get("_id")
            if raw_id is None or raw_id == "":
                items.append(SkippedFile(where, "missing _id"))
                continue
            if isinstance(raw_id, int) and not isinstance(raw_id, bool):
                raw_id = str(raw_id)
            if not isinstance(raw_id, str):
                items.append(SkippedFile(where, "malformed JSON: _id is not a string"))
                continue
            problem = _id_problem(raw_id)
            if problem:
                items.append(SkippedFile(where, problem))
                continue
            text = row.get("text")
            if text is None:
                items.append(SkippedFile(where, "missing text"))
                continue
            title = row.get("title")
            if title is None:
                title = ""
            if not isinstance(text, str) or not isinstance(title, str):
                field = "text" if not isinstance(text, str) else "title"
                items.append(SkippedFile(where, f"malformed JSON: {field} is not a string"))
                continue
            if raw_id in at:  # the later row wins, as in BEIR's loader
                index, first = at[raw_id]
                items[index] = SkippedFile(f"{spath}:{first}", f"duplicate _id {raw_id} (line {lineno} replaces it)")
            at[raw_id] = (len(items), lineno)
            if not text.strip() and not title.strip():
                items.append(SkippedFile(where, "empty"))
                continue
            text, title = without_lone_surrogates(text), without_lone_surrogates(title)
            doc_id = f"{id_prefix}/{raw_id}" if id_prefix else raw_id
            items.append(SourceDocument(
                doc_id=doc_id, path=spath, title=title, text=text, content_hash=content_hash(title, text)
            ))


def _count_lines(path: Path) -> int:
    """Number of lines in ``path`` (a last line without newline counts); 1 if unreadable (one skip)."""
    n = 0
    last = b"\n"
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                n += block.count(b"\n")
                last = block[-1:]
    except OSError:
        return 1
    return n + (0 if last == b"\n" else 1)
