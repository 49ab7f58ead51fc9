"""Tantivy index of chunks: BM25 over title + text (English stemmer) and bit-plane sparse postings.

Contract:
- one Tantivy document per chunk with ``chunk_key`` (fast i64), ``doc_id`` (raw, for deletes),
  ``bm25`` (en_stem text) and ``sparse`` (bit-plane tokens, see ``sparse_quant``);
- ``sparse_planes`` in the folder records how many bit planes the stored documents may use, written
  (durably) before any document needing more is added, so it is never smaller than what a committed
  document needs; a crash may leave it larger (extra clauses match nothing: harmless). No file
  (an index written before the count was recorded, levels clipped to 8 bits) reads as 8 planes;
- one writer at a time (the workspace lock guarantees it); ``commit`` makes a batch durable, and a
  killed writer loses only uncommitted documents;
- a deleted document stays in its segment (and in BM25's document counts and average length) until
  the segment is rewritten: ``deleted_docs`` says how many there are, ``rewrite`` replaces every
  document in one commit (the old segments drop out whole), so the statistics equal a fresh build's;
- searches return (chunk_keys, scores) arrays, best first;
- a BM25 query is a disjunction of its terms: a token the tokenizer splits (``itertools.groupby``,
  ``snake_case``, ``x2.5``) counts as its separate terms, never as a phrase.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import numpy as np

from workbench.errors import IndexingError, WorkspaceError
from workbench.store.sparse_quant import BITS, bitplane_clauses, bitplane_tokens

PLANES_FILE = "sparse_planes"

_QUERY_SYNTAX = re.compile(r'[+\-&|!(){}\[\]^"~*?:\\/<>=\']')


@cache
def _splitter():
    """Tantivy's ``simple`` tokenizer: the splitting ``en_stem`` does before lowercasing and stemming."""
    import tantivy

    return tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).build()


def bm25_query_text(text: str) -> str:
    """``text`` as the query parser should see it: syntax characters dropped and every word split
    where the ``en_stem`` tokenizer splits it, so ``itertools.groupby`` reads ``itertools groupby``.

    The parser turns a word that tokenizes into several terms into a phrase query (``heapq.heappush``
    would match only that exact sequence); split first, each part is an ordinary OR'ed term. The text
    is lowercased (``en_stem`` lowercases too, so scores are unchanged), so ``AND``, ``OR`` and ``NOT``
    are words, not operators.
    """
    cleaned = _QUERY_SYNTAX.sub(" ", text.lower())
    return " ".join(_splitter().analyze(cleaned)) if cleaned.strip() else ""


def _schema():
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("chunk_key", stored=True, indexed=True, fast=True)
    builder.add_text_field("doc_id", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("bm25", stored=False, tokenizer_name="en_stem", index_option="position")
    builder.add_text_field("sparse", stored=False, tokenizer_name="whitespace", index_option="basic")
    return builder.build()


class TantivyChunkStore:
    """BM25 and learned-sparse postings for the workspace's chunks."""

    def __init__(self, folder: Path, sparse_step: float) -> None:
        self.folder = folder
        self.sparse_step = sparse_step
        self._index = None
        self._writer = None

    @property
    def index(self):
        if self._index is None:
            import tantivy

            if not (self.folder / "meta.json").exists():
                raise WorkspaceError("the workspace has no Tantivy index yet: run `wb index PATH` first")
            self._index = tantivy.Index(_schema(), path=str(self.folder), reuse=True)
        return self._index

    def sparse_planes(self) -> int:
        """The bit planes a sparse query must cover: the recorded count, ``BITS`` when none is."""
        try:
            planes = int(json.loads((self.folder / PLANES_FILE).read_text())["planes"])
        except FileNotFoundError:
            return BITS
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WorkspaceError(f"unreadable {self.folder / PLANES_FILE}: {exc}; run `wb index` again "
                                 "after deleting the Tantivy folder") from exc
        return max(planes, BITS)

    def _record_planes(self, planes: int) -> None:
        """Durably raise the recorded plane count to ``planes`` (write, fsync, rename, fsync folder)."""
        if planes <= self.sparse_planes():
            return
        from workbench.files import write_whole

        try:
            write_whole(self.folder / PLANES_FILE, json.dumps({"planes": planes}), durable=True)
        except OSError as exc:
            raise IndexingError(f"could not record the sparse bit-plane count: {exc}") from exc

    def exists(self) -> bool:
        """Whether the folder holds a Tantivy index (one that may still be empty)."""
        return (self.folder / "meta.json").exists()

    def num_docs(self) -> int:
        """How many chunk documents the index holds."""
        return self.index.searcher().num_docs

    def close(self) -> None:
        """Forget the open index and writer (uncommitted documents are lost); reopened on next use."""
        self._writer = None
        self._index = None

    def create_if_missing(self) -> None:
        import tantivy

        self.folder.mkdir(parents=True, exist_ok=True)
        self._index = tantivy.Index(_schema(), path=str(self.folder), reuse=True)

    # writing -----------------------------------------------------------------
    @property
    def writer(self):
        if self._writer is None:
            try:
                self._writer = self.index.writer(heap_size=64_000_000, num_threads=1)
            except ValueError as exc:
                raise IndexingError(f"the Tantivy index is locked by another writer: {exc}") from exc
        return self._writer

    def add(self, keys: list[int], doc_ids: list[str], texts: list[str], sparse: list[tuple]) -> None:
        """Queue chunk documents; ``sparse[i]`` is (ids, weights) arrays. Call ``commit`` after.

        The batch's largest bit-plane count is recorded before any of its documents is queued."""
        import tantivy

        encoded = [bitplane_tokens(ids, weights, self.sparse_step) for ids, weights in sparse]
        self._record_planes(max((planes for _, planes in encoded), default=0))
        for key, doc_id, text, (tokens, _) in zip(keys, doc_ids, texts, encoded):
            doc = tantivy.Document()
            doc.add_integer("chunk_key", key)
            doc.add_text("doc_id", doc_id)
            doc.add_text("bm25", text)
            doc.add_text("sparse", tokens)
            try:
                self.writer.add_document(doc)
            except (OSError, ValueError, RuntimeError) as exc:
                raise IndexingError(f"Tantivy add failed: {exc}") from exc

    def delete_docs(self, doc_ids: list[str]) -> None:
        for doc_id in doc_ids:
            try:
                self.writer.delete_documents_by_term("doc_id", doc_id)
            except (OSError, ValueError, RuntimeError) as exc:
                raise IndexingError(f"Tantivy delete failed: {exc}") from exc

    def commit(self) -> None:
        if self._writer is not None:
            try:
                self._writer.commit()
                self._writer.wait_merging_threads()
            except (OSError, ValueError, RuntimeError) as exc:  # a full disk: nothing committed, said in one line
                self._writer = None
                raise IndexingError(f"Tantivy commit failed: {exc}") from exc
            self._writer = None
            self.index.reload()

    def deleted_docs(self) -> int:
        """How many deleted documents the committed segments still hold (they count in BM25's
        statistics); an unreadable ``meta.json`` counts as one, so the caller rewrites."""
        try:
            segments = json.loads((self.folder / "meta.json").read_text())["segments"]
            return sum(int((seg.get("deletes") or {}).get("num_deleted_docs", 0)) for seg in segments)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return 1

    def rewrite(self, batches) -> int:
        """Replace every document by those of ``batches`` (``add``'s arguments as tuples) in one
        commit: a kill before it leaves the old index whole, after it the new one. Returns how many
        documents were written."""
        try:
            self.writer.delete_all_documents()
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexingError(f"Tantivy rewrite failed: {exc}") from exc
        written = 0
        try:
            for keys, doc_ids, texts, sparse in batches:
                self.add(keys, doc_ids, texts, sparse)
                written += len(keys)
        except BaseException:
            self._writer = None  # dropped uncommitted: the delete-all never reaches the index
            raise
        self.commit()
        return written

    def garbage_collect(self) -> None:
        try:
            w = self.writer
            w.garbage_collect_files()
            self._writer = None
        except IndexingError:
            pass

    # reading -----------------------------------------------------------------
    def _run(self, query, k: int, searcher=None) -> tuple[np.ndarray, np.ndarray]:
        searcher = searcher if searcher is not None else self.index.searcher()
        # never more than the index holds: Tantivy allocates the limit up front (-k 2**31 aborted)
        limit = max(1, min(int(k), searcher.num_docs))
        hits = searcher.search(query, limit=limit, count=False).hits
        if not hits:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        addrs = [addr for _, addr in hits]
        keys = np.asarray(searcher.fast_field_values("chunk_key", addrs), dtype=np.int64)
        scores = np.asarray([s for s, _ in hits], dtype=np.float32)
        return keys, scores

    def bm25_search(self, text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 (k1 1.2, b 0.75) over the stemmed title + text: every term OR'ed (``bm25_query_text``:
        query syntax characters are ignored, punctuation-joined words count as their parts)."""
        cleaned = bm25_query_text(text)
        if not cleaned:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        query, _errors = self.index.parse_query_lenient(cleaned, ["bm25"])
        return self._run(query, k)

    def sparse_search(self, ids: np.ndarray, weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by the quantized sparse dot product: within ``0.5 * sparse_step * sum(w_q > 0)`` of
        the float dot product for any finite document weight (see ``sparse_quant``). Ordinary weights
        (levels < 256) cost 8 clauses a query term; more only in an index that stored larger levels."""
        import tantivy

        # the searcher first, then the count: every document it sees was committed after its planes
        # were recorded, so the count read now covers them all
        searcher = self.index.searcher()
        clauses = bitplane_clauses(ids, weights, self.sparse_step, self.sparse_planes())
        if not clauses:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        schema = self.index.schema
        subqueries = [
            (
                tantivy.Occur.Should,
                tantivy.Query.const_score_query(tantivy.Query.term_query(schema, "sparse", token), score),
            )
            for token, score in clauses
        ]
        return self._run(tantivy.Query.boolean_query(subqueries), k, searcher)
