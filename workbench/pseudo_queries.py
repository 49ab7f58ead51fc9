"""Pseudo-queries: training queries made from a corpus that has none (``wb mine --pseudo KIND``).

A reranker or retriever for a new domain needs (query, relevant passage) pairs; a corpus alone
has titles and abstracts. Two kinds, each a query cut out of one document, whose positive is that
document *without* the cut-out words (so the pair is not solved by copying):

``titles``
    query = the document's title; positive = its text alone, without the line that shows the
    title (``strip_title``: a Markdown ``# Title`` or setext heading, a reStructuredText title with
    its adornment, or a first line that is the title, as an HTML ``<h1>`` or a PDF's first line
    is). Negatives are written the same way, so that "has a title" says nothing about relevance.
    Skipped: documents without a title (a file's name is not one: the caller passes ``""`` for a
    title that only falls back to it), documents whose text is empty once the title line is
    removed, and every document whose title another document shares (compared without case and
    extra white space): one such query would be the other's negative.
``conclusions``
    query = the last sentence of the text (in scientific abstracts usually the conclusion, the
    sentence closest to a claim), with a leading label removed: ``Conclusion(s)``,
    ``Interpretation(s)`` or ``Significance`` (or two joined by ``/``) followed by ``:`` or ``.``,
    or written in capitals (``CONCLUSIONS We found ...``); a sentence that merely begins with one of
    those words keeps it. Positive = title + the text without that sentence; negatives are whole
    documents. Used when the text has at least four sentences and the last one has 8 to 45 words
    (the inverse cloze task of Lee et al. 2019, restricted to the closing sentence).

Sentences are split at ``.``, ``!`` or ``?`` followed by white space and a capital letter.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from workbench.errors import UsageError

__all__ = ["KINDS", "SKIP_NO_CONCLUSION", "SKIP_SHARED_TITLE", "SKIP_UNTITLED", "PseudoQuery", "check_kind",
           "make_pseudo_queries", "negative_text", "split_sentences", "strip_title"]

KINDS = ("titles", "conclusions")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_LABEL_WORD = r"(?:conclusions?|interpretations?|significance)"
_CAPS_WORD = r"(?:CONCLUSIONS?|INTERPRETATIONS?|SIGNIFICANCE)"
# a label needs its ":" or "." ("Significance of these findings ..." is a sentence), unless in capitals
_LABEL = re.compile(rf"^(?:(?i:{_LABEL_WORD}(?:\s*/\s*{_LABEL_WORD})?)\s*[:.]"
                    rf"|{_CAPS_WORD}(?:\s*/\s*{_CAPS_WORD})?(?=\s))\s*")
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_ADORNMENT = re.compile(r"""^[ \t]*([=\-~^"'`*+#:._])\1+[ \t]*$""")
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


def _same_title(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def strip_title(title: str, text: str) -> str:
    """``text`` (stripped) without the first line that shows ``title``: an ATX heading (``# Title``,
    any level) or an underlined line (setext ``===``/``---``, a reStructuredText adornment, with its
    overline) whose words are the title's, or a first non-blank line that is the title. Compared
    without case and extra white space; other mentions of the title's words are kept."""
    if not title.strip():
        return text.strip()
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    for i, line in enumerate(lines):
        if not line.strip() or _ADORNMENT.match(line):
            continue
        heading = _ATX_HEADING.match(line)
        underlined = i + 1 < len(lines) and _ADORNMENT.match(lines[i + 1]) is not None
        if heading and _same_title(heading.group(1), title):
            drop = {i}
        elif (underlined or i == first) and _same_title(line, title):
            drop = {i, i + 1} if underlined else {i}
            if underlined and i > 0 and _ADORNMENT.match(lines[i - 1]):
                drop.add(i - 1)  # an over-and-underlined title
        else:
            continue
        after = max(drop) + 1
        if after < len(lines) and not lines[after].strip() and (min(drop) == 0 or not lines[min(drop) - 1].strip()):
            drop.add(after)  # the blank line that set the heading apart goes with it
        return "\n".join(line for j, line in enumerate(lines) if j not in drop).strip()
    return text.strip()


def _title_query(doc_id: str, title: str, text: str) -> PseudoQuery | None:
    if not title.strip():
        return None
    positive = strip_title(title, text)
    if not positive:
        return None
    return PseudoQuery(f"t:{doc_id}", title.strip(), doc_id, positive)


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


SKIP_UNTITLED = "without a title of their own (a file name is none) or any text besides it"
SKIP_SHARED_TITLE = "sharing their title with another document"
SKIP_NO_CONCLUSION = "without 4 sentences, the last of 8 to 45 words"


def make_pseudo_queries(kind: str, documents: Iterable[tuple[str, str, str]],
                        skipped: Counter | None = None) -> list[PseudoQuery]:
    """Pseudo-queries of ``kind`` for ``(doc_id, title, text)`` documents, in document order;
    documents the kind cannot use are skipped (module docstring), each counted in ``skipped`` (when
    given) under its reason: ``SKIP_UNTITLED`` (no title, or no text once it is removed),
    ``SKIP_SHARED_TITLE`` (titles), ``SKIP_NO_CONCLUSION`` (conclusions). UsageError for an
    unknown kind."""
    check_kind(kind)
    counts = skipped if skipped is not None else Counter()
    if kind == "conclusions":
        return _made(documents, _conclusion_query, SKIP_NO_CONCLUSION, counts)
    titled = _made(documents, _title_query, SKIP_UNTITLED, counts)
    # a title shared by several documents: each one's query would have the others as negatives
    seen = Counter(" ".join(q.text.split()).casefold() for q in titled)
    made = [q for q in titled if seen[" ".join(q.text.split()).casefold()] == 1]
    if len(made) < len(titled):
        counts[SKIP_SHARED_TITLE] += len(titled) - len(made)
    return made


def negative_text(kind: str, title: str, text: str) -> str:
    """How a negative document is written for ``kind``: ``titles`` drops the title line
    (``strip_title``, as from the positive), ``conclusions`` keeps title + text."""
    return strip_title(title, text) if kind == "titles" else f"{title} {text}".strip()


def _made(documents, make, reason: str, counts: Counter) -> list[PseudoQuery]:
    """``make(doc_id, title, text)`` for each document, in order; each None counted under ``reason``."""
    made = []
    for doc in documents:
        q = make(*doc)
        if q is None:
            counts[reason] += 1
        else:
            made.append(q)
    return made
