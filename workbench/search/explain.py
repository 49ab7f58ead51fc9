"""Why did this chunk match? Engine-side explanations used by the TUI's result preview.

Everything here answers one (query, chunk) pair with the models the index was built with:

- ``document_view``: the chunk placed back in its document (the document text stitched from its
  chunks' character offsets) so a preview can show the chunk in context;
- ``query_words`` / ``find_terms``: literal query words and where terms occur in a text;
- ``sparse_explanation``: the query's learned-sparse vector (SPLADE), each term flagged as literal
  (one of the query's own word pieces) or an expansion, and the terms shared with the chunk with
  their contribution ``q_w * d_w`` to the sparse score;
- ``colbert_matches``: for every query token, the chunk token with the largest dot product
  (MaxSim's argmax), its similarity, and where that token sits in the chunk text.

All functions take an open ``Searcher`` and load its encoders on first use; none writes anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from workbench.encoders.templates import resolve_instruction

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    "a an and are as at be by for from how i in into is it its of on or that the this to was what when "
    "where which who why will with do does can my me".split()
)


# -- the chunk in its document ------------------------------------------------------------
@dataclass
class DocumentView:
    """A document rebuilt from its chunks, and where one chunk lies in it."""

    doc_id: str
    title: str
    path: str
    text: str
    chunk_id: str
    chunk_start: int  # character span of the chunk within ``text``
    chunk_end: int
    chunk_ordinal: int  # 0-based position of the chunk among the document's chunks
    n_chunks: int


def catalog_row(catalog, chunk_id: str) -> int:
    """The catalog row of ``chunk_id`` (KeyError if the index does not hold it)."""
    try:
        return catalog.chunk_ids.index(chunk_id)
    except ValueError:
        raise KeyError(chunk_id) from None


def document_view(catalog, chunk_id: str) -> DocumentView:
    """Stitch the document of ``chunk_id`` from its chunks (``text[start:end]`` is each chunk)."""
    row = catalog_row(catalog, chunk_id)
    doc_id = catalog.doc_ids[row]
    rows = [i for i, d in enumerate(catalog.doc_ids) if d == doc_id]
    rows.sort(key=lambda i: (int(catalog.char_start[i]), int(catalog.char_end[i])))
    text = ""
    for i in rows:
        start, chunk = int(catalog.char_start[i]), catalog.texts[i]
        if start >= len(text):
            text += " " * (start - len(text)) + chunk
        else:
            overlap = len(text) - start
            if overlap < len(chunk):
                text += chunk[overlap:]
    start = int(catalog.char_start[row])
    return DocumentView(
        doc_id=doc_id,
        title=catalog.titles[row],
        path=catalog.paths[row],
        text=text,
        chunk_id=chunk_id,
        chunk_start=start,
        chunk_end=start + len(catalog.texts[row]),
        chunk_ordinal=rows.index(row),
        n_chunks=len(rows),
    )


# -- literal terms ------------------------------------------------------------------------
def query_words(text: str) -> list[str]:
    """The query's content words, lower-cased, in order, without duplicates or stopwords."""
    seen: list[str] = []
    for w in _WORD.findall(text.lower()):
        if len(w) >= 2 and w not in STOPWORDS and w not in seen:
            seen.append(w)
    return seen


def find_terms(text: str, terms: list[str]) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, term) occurrences of ``terms`` in ``text``, case-insensitive.

    A term matches at a word start; it may continue inside the word (``rmtree`` in ``rmtree()``,
    ``cache`` in ``caches``), which is how word-piece terms appear in running text. Longer terms win.
    """
    spans: list[tuple[int, int, str]] = []
    taken = np.zeros(len(text) + 1, dtype=bool)
    low = text.lower()
    for term in sorted({t.lower() for t in terms if t}, key=len, reverse=True):
        pattern = re.compile(r"(?<!\w)" + re.escape(term))
        for m in pattern.finditer(low):
            a, b = m.span()
            if not taken[a:b].any():
                taken[a:b] = True
                spans.append((a, b, term))
    spans.sort()
    return spans


def _piece(token: str) -> str:
    return token[2:] if token.startswith("##") else token


# -- learned sparse -----------------------------------------------------------------------
@dataclass
class SparseTerm:
    term: str
    weight: float  # the query's weight for the term
    literal: bool  # the term is one of the query's own word pieces (else an expansion)
    doc_weight: float = 0.0  # the chunk's weight (0 when the chunk lacks the term)

    @property
    def contribution(self) -> float:
        return self.weight * self.doc_weight


@dataclass
class SparseExplanation:
    terms: list[SparseTerm]  # every query term, heaviest first
    score: float  # the exact dot product with the chunk (before index quantisation)

    @property
    def expansions(self) -> list[SparseTerm]:
        return [t for t in self.terms if not t.literal]

    @property
    def shared(self) -> list[SparseTerm]:
        """Terms that score, largest contribution first."""
        return sorted((t for t in self.terms if t.doc_weight > 0), key=lambda t: -t.contribution)


def sparse_explanation(searcher, query: str, chunk_id: str | None = None) -> SparseExplanation:
    """The query's SPLADE terms, and (given a chunk) each term's weight in that chunk."""
    sparse = searcher.bundle.sparse
    literal = {_piece(t).lower() for t in sparse.tokenizer.tokenize(query)}
    q = sparse.encode([query], queries=True)[0]  # as the searcher encodes it
    doc = {}
    if chunk_id is not None:
        doc = sparse.encode([_chunk_input(searcher.catalog, catalog_row(searcher.catalog, chunk_id))])[0].as_dict()
    terms = []
    for tid, w in sorted(zip(q.ids.tolist(), q.weights.tolist()), key=lambda kv: -kv[1]):
        name = sparse.term(tid)
        terms.append(SparseTerm(name, float(w), _piece(name).lower() in literal, float(doc.get(tid, 0.0))))
    return SparseExplanation(terms, float(sum(t.contribution for t in terms)))


def _chunk_input(catalog, row: int) -> str:
    """The text every encoder saw for a catalog row (see ``ingest.chunking.chunk_input_text``)."""
    title, text = catalog.titles[row], catalog.texts[row]
    return f"{title} {text}".strip() if title else text


# -- ColBERT ------------------------------------------------------------------------------
@dataclass
class TokenMatch:
    """One query token and the chunk token that MaxSim picked for it."""

    query_token: str
    query_index: int
    part: str  # "query", "instruction" or "special" (template text, [CLS], [SEP]...)
    doc_token: str
    doc_index: int
    score: float  # cosine similarity of the two token vectors
    doc_span: tuple[int, int] | None  # character span in the chunk text; None for title/special tokens


@dataclass
class ColbertExplanation:
    matches: list[TokenMatch] = field(default_factory=list)
    rendered_query: str = ""

    @property
    def score(self) -> float:
        """The MaxSim score: the sum over query tokens of their best similarity."""
        return float(sum(m.score for m in self.matches))


def _offsets(tokenizer, text: str, n: int) -> list[tuple[int, int] | None]:
    """Character offsets of the ``n`` tokens the encoder saw for ``text`` (None where unknown)."""
    try:
        enc = tokenizer(text, add_special_tokens=True, truncation=True, max_length=max(n, 1),
                        return_offsets_mapping=True)
        offs = [tuple(o) for o in enc["offset_mapping"]]
    except (NotImplementedError, ValueError, TypeError, KeyError):
        return [None] * n
    offs = offs[:n] + [None] * max(0, n - len(offs))
    return [None if o is None or o == (0, 0) else o for o in offs]


def colbert_matches(searcher, query: str, chunk_id: str, instruction: str | None = None) -> ColbertExplanation:
    """For each query token, the best-matching chunk token (argmax of the dot products), from the
    vectors the colbert mode scores: a trained ColBERT's own (raw query, no template or
    instruction, its marker tokens), else the dense model's token states (zero-shot)."""
    templates = searcher.settings.templates
    row = catalog_row(searcher.catalog, chunk_id)
    title, chunk_text = searcher.catalog.titles[row], searcher.catalog.texts[row]
    doc_input = _chunk_input(searcher.catalog, row)
    trained = searcher.bundle.colbert if searcher.bundle.colbert_is_trained else None
    if trained is not None:
        instr = ""  # (a trained ColBERT reads the bare query: searcher.encode_queries)
        rendered_q, rendered_d = query, doc_input
        q_tok = trained.encode_queries([query])[0].astype(np.float32)
        d_tok = trained.encode_documents([doc_input])[0].astype(np.float32)
        tokenizer, q_ids, d_ids, q_offs, d_offs = _trained_colbert_tokens(trained, query, doc_input,
                                                                          len(q_tok), len(d_tok))
    else:
        dense = searcher.bundle.dense
        instr = resolve_instruction(instruction)
        rendered_q = templates.render_query(query, instr)
        rendered_d = templates.render_document(doc_input)
        # the query as the searcher encodes it (fp32: queries=True), the chunk as the index did
        q_tok = dense.encode([rendered_q], tokens=True, queries=True).tokens[0].astype(np.float32)
        d_tok = dense.encode([rendered_d], tokens=True).tokens[0].astype(np.float32)
        # the ids of those vectors: a joint model's dense view cuts queries at its query length
        q_ids = dense.tokenize([rendered_q], len(q_tok))[0]
        d_ids = dense.tokenize([rendered_d], len(d_tok))[0]
        tokenizer = dense.tokenizer
        q_offs = _offsets(tokenizer, rendered_q, len(q_ids))
        d_offs = _offsets(tokenizer, rendered_d, len(d_ids))
    q_names = tokenizer.convert_ids_to_tokens(q_ids)
    d_names = tokenizer.convert_ids_to_tokens(d_ids)
    # where the user's query and the chunk text begin inside the rendered strings
    q_text_at = rendered_q.rfind(query) if query else len(rendered_q)
    text_at = rendered_d.find(doc_input) + (len(title) + 1 if title else 0)
    sims = q_tok @ d_tok.T  # [Q, D]
    best = sims.argmax(axis=1)
    matches = []
    for i in range(len(q_ids)):
        j = int(best[i])
        off = q_offs[i] if i < len(q_offs) else None
        if off is None:
            part = "special"
        elif off[0] >= q_text_at:
            part = "query"
        else:
            part = "instruction" if instr else "special"
        d_off = d_offs[j] if j < len(d_offs) else None
        span = None
        if d_off is not None and d_off[0] >= text_at:
            span = (d_off[0] - text_at, min(d_off[1] - text_at, len(chunk_text)))
        matches.append(TokenMatch(q_names[i], i, part, d_names[j], j, float(sims[i, j]), span))
    return ColbertExplanation(matches, rendered_q)


def _trained_colbert_tokens(trained, query: str, doc_input: str, n_query: int, n_doc: int):
    """(tokenizer, query ids, document ids, their character offsets) of a trained ColBERT's inputs:
    ``[CLS] marker body [SEP]`` (query [MASK]s after) for a ColBERT folder, the plain tokens for
    a joint model's view; offsets are None for tokens the text does not hold."""
    if hasattr(trained, "query_ids"):  # ColbertEncoder / NumpyColbertEncoder: a marker after [CLS]
        tokenizer = trained.encoder.tokenizer
        q_ids, d_ids = trained.query_ids([query])[0], trained.document_ids([doc_input])[0]

        def offsets(text, n):
            plain = _offsets(tokenizer, text, n)
            return ([plain[0], None] + plain[1:])[:n]

        return tokenizer, q_ids, d_ids, offsets(query, n_query), offsets(doc_input, n_doc)
    tokenizer = trained._joint.tokenizer  # a joint model: queries and documents tokenized alike
    q_ids = tokenizer(query, truncation=True, max_length=n_query)["input_ids"]
    d_ids = tokenizer(doc_input, truncation=True, max_length=n_doc)["input_ids"]
    return tokenizer, q_ids, d_ids, _offsets(tokenizer, query, n_query), _offsets(tokenizer, doc_input, n_doc)


def rendered_query(searcher, query: str, instruction: str | None = None) -> str:
    """The exact string the dense/ColBERT encoder receives for ``query`` (instruction applied)."""
    return searcher.settings.templates.render_query(query, resolve_instruction(instruction))
