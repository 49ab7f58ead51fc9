"""Typed records that cross module boundaries (reader -> chunker -> stores -> search -> CLI/TUI)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceDocument:
    """One document as read from disk or from a BEIR ``corpus.jsonl``.

    ``doc_id`` is stable across runs: the path relative to the indexed root (posix form)
    for files, the ``_id`` for BEIR rows. ``content_hash`` changes iff the document's
    title or text changes; the indexer re-encodes exactly the documents whose hash changed.
    """

    doc_id: str
    path: str
    title: str
    text: str
    content_hash: str


@dataclass(frozen=True)
class SkippedFile:
    """A file the reader refused, with a short human reason ("binary", "empty", ...)."""

    path: str
    reason: str


@dataclass(frozen=True)
class Chunk:
    """A span of a document's text, the unit that every store indexes.

    ``text[char_start:char_end]`` of the source document equals ``text`` here.
    ``chunk_id`` is ``f"{doc_id}#{ordinal}"``.
    """

    chunk_id: str
    doc_id: str
    ordinal: int
    path: str
    title: str
    text: str
    char_start: int
    char_end: int


@dataclass
class Hit:
    """One ranked result. ``scores``/``ranks`` hold each contributing mode's score and 1-based rank."""

    rank: int
    doc_id: str
    chunk_id: str
    path: str
    title: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    snippet: str = ""
