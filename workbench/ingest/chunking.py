"""Split documents into overlapping token windows of the dense model's tokenizer.

Each chunk keeps its character span in the source text, so a preview can show it in place.
The title is not part of the chunk text; encoders see ``chunk_input_text(chunk)`` (title + text)
and the window leaves room for the title's tokens (a title is cut to a quarter of the window).
Windows start and end on word boundaries (never between two pieces of one word), unless a word
has more than ``_MOST_WORD_PIECES`` pieces.

The window is what the dense encoder is fed, counted whole: ``ChunkingSettings.document_template``
rendered around ``chunk_input_text(chunk)``, the tokenizer's special tokens, and an EOS the encoder
appends itself (``appends_eos``, a decoder model). Every chunk's input is tokenized again to check
it: where a window re-tokenizes longer than planned (byte-level BPE splitting a character across
two tokens, pieces merging at the title's edge), that document is cut again with a smaller window,
so no chunk is ever longer than ``max_tokens`` and no encoder truncates its end away.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.types import Chunk, SourceDocument


@dataclass(frozen=True)
class ChunkingSettings:
    """Window size in model tokens and the overlap between windows. The window counts everything the
    dense encoder is fed for a chunk: the special tokens, the title's, the ``document_template``'s
    (``str.format`` over ``{text}``, e.g. ``"passage: {text}"``), and the EOS a decoder encoder
    appends (``appends_eos``)."""

    max_tokens: int = 256
    overlap: int = 32
    document_template: str = "{text}"
    appends_eos: bool = False

    def render(self, text: str) -> str:
        """``text`` as the dense encoder is given it (the document template applied)."""
        return self.document_template.format(text=text)


def chunk_input_text(chunk: Chunk) -> str:
    """The text every encoder and BM25 sees for a chunk: its document title, then its text."""
    return input_text(chunk.title, chunk.text)


def input_text(title: str, text: str) -> str:
    """``chunk_input_text`` of a chunk with this (stored) ``title`` and ``text``."""
    return f"{title} {text}".strip() if title else text


GROUP_DOCS = 256  # documents ``Chunker.chunk_many`` tokenizes in one call


class Chunker:
    """Token-window chunker bound to one (fast) tokenizer."""

    def __init__(self, tokenizer, settings: ChunkingSettings) -> None:
        if settings.overlap >= settings.max_tokens // 2:
            raise ValueError("overlap must be less than half of max_tokens")
        self.tokenizer = tokenizer
        self.settings = settings
        # tokens of the input around the title and text: special tokens, the template's words, an EOS
        self._frame = self.input_tokens([""])[0]

    def input_tokens(self, texts: list[str]) -> list[int]:
        """How many tokens the dense encoder is fed for each of ``texts`` (``chunk_input_text``
        values), untruncated: the template rendered around it, special tokens, the appended EOS."""
        rendered = [self.settings.render(t) for t in texts]
        ids = self.tokenizer(rendered, add_special_tokens=True, truncation=False)["input_ids"]
        return [len(x) + int(self.settings.appends_eos) for x in ids]

    def chunk_many(self, docs: list[SourceDocument], group: int = GROUP_DOCS) -> list[list[Chunk]]:
        """Chunks of each document, in order. A document whose text has no tokens but whose title
        has some yields one chunk of its title alone (a title-only BEIR row stays findable); one
        with neither yields no chunks. A title longer than a quarter of the window is cut (in the
        chunks only, ending in "…") so the text always keeps most of the window. Every chunk's
        ``input_tokens`` is at most ``max_tokens`` (a document whose windows re-tokenize longer is
        cut again with a window shrunk by the excess).

        Tokenized ``group`` documents at a time: a document's chunks depend on it alone, so they
        are the same whatever the grouping, and memory holds one group's tokens and offsets (about
        125 KB a SciFact abstract) besides the chunks, not the whole corpus's."""
        out: list[list[Chunk]] = []
        step = max(1, group)
        for start in range(0, len(docs), step):
            out.extend(self._chunk_group(docs[start:start + step]))
        return out

    def _chunk_group(self, docs: list[SourceDocument]) -> list[list[Chunk]]:
        """``chunk_many`` of ``docs`` tokenized in one call each for the texts and the titles."""
        if not docs:
            return []
        enc = self._offsets([d.text for d in docs])
        titles = self._offsets([d.title for d in docs])
        out = [self._windows(doc, enc[i], titles[i]) for i, doc in enumerate(docs)]
        shrink = [0] * len(docs)
        todo = list(range(len(docs)))
        for _ in range(8):  # each round cuts again only the documents with a window over the limit
            over = [(i, excess) for i, excess in zip(todo, self._excess([out[i] for i in todo])) if excess > 0]
            if not over:
                break
            for i, excess in over:
                shrink[i] += excess
                out[i] = self._windows(docs[i], enc[i], titles[i], shrink=shrink[i])
            todo = [i for i, _ in over]
        return out

    def _offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """Each text's tokens as character spans, no special tokens (only the offsets are asked for)."""
        return self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                              return_attention_mask=False, return_token_type_ids=False)["offset_mapping"]

    def _excess(self, per_doc: list[list[Chunk]]) -> list[int]:
        """For each document's chunks: how many tokens its longest input is over ``max_tokens`` (0 when
        every chunk fits)."""
        flat = [chunk_input_text(c) for chunks in per_doc for c in chunks]
        counts = iter(self.input_tokens(flat)) if flat else iter(())
        limit = self.settings.max_tokens
        return [max([0] + [next(counts) - limit for _ in chunks]) for chunks in per_doc]

    def _windows(self, doc: SourceDocument, offsets: list[tuple[int, int]],
                 title_offsets: list[tuple[int, int]], shrink: int = 0) -> list[Chunk]:
        title, title_len = doc.title, len(title_offsets)
        title_cap = max(1, self.settings.max_tokens // 4)
        if title_len > title_cap:  # the "…" is counted: it is a token of its own in most vocabularies
            title = doc.title[: title_offsets[title_cap - 1][1]].rstrip() + "…"
            title_len = len(self.tokenizer(title, add_special_tokens=False)["input_ids"])
        budget = max(1, self.settings.max_tokens - self._frame - title_len - shrink)
        n = len(offsets)
        text = doc.text
        if n == 0:
            if not title_len:
                return []
            return [Chunk(chunk_id=f"{doc.doc_id}#0", doc_id=doc.doc_id, ordinal=0, path=doc.path,
                          title=title, text="", char_start=0, char_end=0)]
        chunks: list[Chunk] = []
        start = 0
        while start < n:
            end = min(start + budget, n)
            if end < n:  # end the window before a word the next window starts with, not inside it
                end = _word_start(text, offsets, end, floor=start + budget // 2)
            c0, c1 = offsets[start][0], offsets[end - 1][1]
            ordinal = len(chunks)
            chunks.append(
                Chunk(
                    chunk_id=f"{doc.doc_id}#{ordinal}",
                    doc_id=doc.doc_id,
                    ordinal=ordinal,
                    path=doc.path,
                    title=title,
                    text=text[c0:c1],
                    char_start=c0,
                    char_end=c1,
                )
            )
            if end == n:
                break
            # the next window overlaps this one by `overlap` tokens, moved back to a word's first token
            nxt = max(start + 1, end - self.settings.overlap)
            start = _word_start(text, offsets, nxt, floor=start + 1)
        return chunks


_MOST_WORD_PIECES = 8  # a "word" of more pieces (a URL, a long number) may be cut between them


def _continues_word(text: str, offsets: list[tuple[int, int]], i: int) -> bool:
    """Whether token ``i`` continues the word of token ``i - 1`` (no gap, letters or digits on
    both sides of the boundary: WordPiece's ``##`` pieces, BPE's inner pieces)."""
    at = offsets[i][0]
    return i > 0 and 0 < at < len(text) and offsets[i - 1][1] == at and text[at - 1].isalnum() and text[at].isalnum()


def _word_start(text: str, offsets: list[tuple[int, int]], i: int, floor: int) -> int:
    """The first token of the word holding token ``i``, no further back than ``floor`` or
    ``_MOST_WORD_PIECES`` tokens; ``i`` itself when the word starts earlier than that."""
    j = i
    while j > floor and i - j < _MOST_WORD_PIECES and _continues_word(text, offsets, j):
        j -= 1
    return j if j == i or not _continues_word(text, offsets, j) else i
