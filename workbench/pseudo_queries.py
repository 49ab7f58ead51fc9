"""Pseudo-queries: training queries made from a corpus that has none (``wb mine --pseudo KIND``).

A reranker or retriever for a new domain needs (query, relevant passage) pairs; a corpus alone
has titles and abstracts. Two kinds, each a query cut out of one document, whose positive is that
document *without* the cut-out words (so the pair is not solved by copying):

``titles``
    query = the document's title; positive = its text alone. Negatives are written without their
    titles too, so that "has a title" says nothing about relevance. Documents without a title or
    whose text is empty are skipped.
``conclusions``
    query = the last sentence of the text (in scientific abstracts usually the conclusion, the
    sentence closest to a claim), with a leading ``Conclusion(s):`` / ``Interpretation:`` label
    removed; positive = title + the text without that sentence; negatives are whole documents.
    Used when the text has at least four sentences and the last one has 8 to 45 words (the
    inverse cloze task of Lee et al. 2019, restricted to the closing sentence).

Sentences are split at ``.``, ``!`` or ``?`` followed by white space and a capital letter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from workbench.errors import UsageError

__all__ = ["KINDS", "PseudoQuery", "check_kind", "make_pseudo_queries", "negative_text", "split_sentences"]

KINDS = ("titles", "conclusions")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_LABEL = re.compile(r"^(conclusions?|interpretation|significance)\s*[:.]?\s*", re.IGNORECASE)
MIN_SENTENCES = 4
QUERY_WORDS = (8, 45)


@dataclass(frozen=True)
class PseudoQuery:
    """One generated query: ``query_id`` = ``KIND[0]:`` + the document's id; ``positive`` is the
    passage text to train on (the document minus the query's words)."""

    query_id: str
    text: str
    doc_id: str
    positive: str


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (the module docstring's rule); empty text gives ``[]``."""
    text = text.strip()
    return [s for s in _SENTENCE_END.split(text) if s] if text else []


def _title_query(doc_id: str, title: str, text: str) -> PseudoQuery | None:
    if not title.strip() or not text.strip():
        return None
    return PseudoQuery(f"t:{doc_id}", title.strip(), doc_id, text.strip())


def _conclusion_query(doc_id: str, title: str, text: str) -> PseudoQuery | None:
    sentences = split_sentences(text)
    if len(sentences) < MIN_SENTENCES:
        return None
    last = _LABEL.sub("", sentences[-1]).strip()
    if not QUERY_WORDS[0] <= len(last.split()) <= QUERY_WORDS[1]:
        return None
    positive = f"{title.strip()} {' '.join(sentences[:-1])}".strip()
    return PseudoQuery(f"c:{doc_id}", last, doc_id, positive)


def check_kind(kind: str) -> None:
    """UsageError (one line) unless ``kind`` is one of ``KINDS``."""
    if kind not in KINDS:
        raise UsageError(f"unknown --pseudo kind '{kind}': use one of {', '.join(KINDS)}")


def make_pseudo_queries(kind: str, documents: Iterable[tuple[str, str, str]]) -> list[PseudoQuery]:
    """Pseudo-queries of ``kind`` for ``(doc_id, title, text)`` documents, in document order;
    documents the kind cannot use are skipped (module docstring). UsageError for an unknown kind."""
    check_kind(kind)
    make = {"titles": _title_query, "conclusions": _conclusion_query}[kind]
    return [q for q in (make(*doc) for doc in documents) if q is not None]


def negative_text(kind: str, title: str, text: str) -> str:
    """How a negative document is written for ``kind``: ``titles`` drops the title (as from the
    positive), ``conclusions`` keeps title + text."""
    return text.strip() if kind == "titles" else f"{title} {text}".strip()
