"""Split documents into overlapping token windows of the dense model's tokenizer.

Each chunk keeps its character span in the source text, so a preview can show it in place.
The title is not part of the chunk text; encoders see ``chunk_input_text(chunk)`` (title + text)
and the window leaves room for the title's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.types import Chunk, SourceDocument


@dataclass(frozen=True)
class ChunkingSettings:
    """Window size in model tokens (special and title tokens included) and the overlap between windows."""

    max_tokens: int = 256
    overlap: int = 32


def chunk_input_text(chunk: Chunk) -> str:
    """The text every encoder and BM25 sees for a chunk: its document title, then its text."""
    return f"{chunk.title} {chunk.text}".strip() if chunk.title else chunk.text


class Chunker:
    """Token-window chunker bound to one (fast) tokenizer."""

    def __init__(self, tokenizer, settings: ChunkingSettings) -> None:
        if settings.overlap >= settings.max_tokens // 2:
            raise ValueError("overlap must be less than half of max_tokens")
        self.tokenizer = tokenizer
        self.settings = settings
        self._special = tokenizer.num_special_tokens_to_add(pair=False)

    def chunk_many(self, docs: list[SourceDocument]) -> list[list[Chunk]]:
        """Chunks of each document, in order. A document with no tokens yields no chunks."""
        if not docs:
            return []
        enc = self.tokenizer(
            [d.text for d in docs], add_special_tokens=False, return_offsets_mapping=True, truncation=False
        )
        titles = self.tokenizer([d.title for d in docs], add_special_tokens=False)["input_ids"]
        return [
            self._windows(doc, enc["offset_mapping"][i], len(titles[i])) for i, doc in enumerate(docs)
        ]

    def _windows(self, doc: SourceDocument, offsets: list[tuple[int, int]], title_len: int) -> list[Chunk]:
        budget = self.settings.max_tokens - self._special - title_len
        budget = max(budget, self.settings.max_tokens // 2)
        step = budget - self.settings.overlap
        n = len(offsets)
        chunks: list[Chunk] = []
        start = 0
        while start < n:
            end = min(start + budget, n)
            c0, c1 = offsets[start][0], offsets[end - 1][1]
            ordinal = len(chunks)
            chunks.append(
                Chunk(
                    chunk_id=f"{doc.doc_id}#{ordinal}",
                    doc_id=doc.doc_id,
                    ordinal=ordinal,
                    path=doc.path,
                    title=doc.title,
                    text=doc.text[c0:c1],
                    char_start=c0,
                    char_end=c1,
                )
            )
            if end == n:
                break
            start += step
        return chunks
