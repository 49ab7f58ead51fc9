"""BERT inference in numpy: a one-shot query encoded without importing torch.

Importing torch costs 1.4-1.8 s of a cold ``wb query`` on the 2-core machine, more than the rest of
the process together (issue #2's goal: cold <= 3 s). A query is one short text; its forward through
MiniLM (6 layers, 384 wide) or SPLADE-tiny is ~0.4 GFLOP, which numpy's BLAS does in a few ms. So a
one-shot query (``Searcher(backend="numpy")``, what ``wb query`` uses) runs the same checkpoints
here, from ``model.safetensors`` read as numpy arrays.

Contract: ``NumpyDenseEncoder.load`` (optionally with a ColBERT projection head),
``NumpyColbertEncoder.load`` (a trained ColBERT folder), ``NumpyJointEncoder.load`` (a joint folder)
and ``NumpySparseEncoder.load`` return None for anything this module does not reproduce (what
``bert_files.lean_config`` refuses, no safetensors file, a missing tensor, a head ``tensor_files``
cannot read, a decoder); the caller then uses the torch encoders (which refuse a checkpoint missing
weights: ``device.load_pretrained``). bf16 weights are widened to fp32
(exact; the torch dense encoder does the same where it computes in fp32). Outputs equal the torch encoders' in fp32 up to
summation order (pooled vectors within 1e-5, SPLADE weights within 2e-5: tested in
tests/test_numpy_bert.py). Each text runs alone (queries are few and short): no padding, no
attention mask. Inference only.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from workbench.encoders.bert_files import load_lean_tokenizer, normalise_keys, servable_config
from workbench.encoders.colbert import ColbertIds

# erf as a rational function on [-4, 4] (Eigen's float erf: within 5e-7 of math.erf; |erf| = 1 in
# fp32 beyond 4), so GELU needs no scipy (whose import costs more than this whole query path)
_ERF_P = tuple(np.float32(c) for c in (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                                       -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                                       -1.60960333262415e-02))
_ERF_Q = tuple(np.float32(c) for c in (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
                                       -7.37332916720468e-03, -1.42647390514189e-02))
_SQRT_HALF = np.float32(math.sqrt(0.5))


def erf(x: np.ndarray) -> np.ndarray:
    """The error function of a float32 array (float32)."""
    x = np.clip(x, -4.0, 4.0)
    x2 = x * x
    p = np.full_like(x, _ERF_P[0])
    for c in _ERF_P[1:]:
        p = p * x2 + c
    q = np.full_like(x, _ERF_Q[0])
    for c in _ERF_Q[1:]:
        q = q * x2 + c
    return x * p / q


def gelu(x: np.ndarray) -> np.ndarray:
    """BERT's "gelu": the exact (erf) GELU, ``x/2 * (1 + erf(x/sqrt 2))``."""
    return 0.5 * x * (1.0 + erf(x * _SQRT_HALF))


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(eps)) * weight + bias


class _Missing(KeyError):
    """A tensor the forward needs is absent, not float32, or has the wrong shape."""


def _take(state: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
    t = state.get(key)
    if t is None or t.dtype != np.dtype("<f4") or tuple(t.shape) != shape:
        raise _Missing(key)
    return t


def _read_state(folder: Path) -> dict | None:
    """``model.safetensors`` as numpy views of the memory-mapped file (``tensor_files``): pages are
    read when a forward touches them, so MiniLM's 47 MB word matrix costs only the rows a query
    looks up; bf16 is widened to float32."""
    from workbench.encoders.tensor_files import read_safetensors

    return read_safetensors(folder / "model.safetensors")


class _Layer:
    """One transformer block; weights are transposed views (``x @ W.T``), Q, K and V one matrix."""

    def __init__(self, cfg, state: dict, p: str) -> None:
        h, inter = cfg.hidden_size, cfg.intermediate_size
        a = p + "attention."
        qkv = [_take(state, f"{a}self.{n}.weight", (h, h)) for n in ("query", "key", "value")]
        self.qkv_w = np.concatenate(qkv, axis=0).T  # [h, 3h], a transposed view: BLAS reads it as stored
        self.qkv_b = np.concatenate([_take(state, f"{a}self.{n}.bias", (h,)) for n in ("query", "key", "value")])
        self.out_w = _take(state, a + "output.dense.weight", (h, h)).T
        self.out_b = _take(state, a + "output.dense.bias", (h,))
        self.ln1 = (_take(state, a + "output.LayerNorm.weight", (h,)), _take(state, a + "output.LayerNorm.bias", (h,)))
        self.in_w = _take(state, p + "intermediate.dense.weight", (inter, h)).T
        self.in_b = _take(state, p + "intermediate.dense.bias", (inter,))
        self.down_w = _take(state, p + "output.dense.weight", (h, inter)).T
        self.down_b = _take(state, p + "output.dense.bias", (h,))
        self.ln2 = (_take(state, p + "output.LayerNorm.weight", (h,)), _take(state, p + "output.LayerNorm.bias", (h,)))
        self.heads = cfg.num_attention_heads
        self.head_dim = h // self.heads
        self.scale = np.float32(self.head_dim ** -0.5)
        self.eps = float(cfg.layer_norm_eps)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, h = x.shape
        qkv = (x @ self.qkv_w + self.qkv_b).reshape(n, 3, self.heads, self.head_dim).transpose(1, 2, 0, 3)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [heads, n, head_dim]
        scores = (q @ k.transpose(0, 2, 1)) * self.scale
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        att = (scores @ v).transpose(1, 0, 2).reshape(n, h)
        x = layer_norm(att @ self.out_w + self.out_b + x, *self.ln1, self.eps)
        inner = gelu(x @ self.in_w + self.in_b)
        return layer_norm(inner @ self.down_w + self.down_b + x, *self.ln2, self.eps)


class NumpyBert:
    """BERT's encoder (no pooler): ``forward(ids)`` gives one text's last hidden states [n, hidden]."""

    def __init__(self, cfg, state: dict, prefix: str = "") -> None:
        h = cfg.hidden_size
        e = prefix + "embeddings."
        self.config = cfg
        self.word = _take(state, e + "word_embeddings.weight", (cfg.vocab_size, h))
        self.position = _take(state, e + "position_embeddings.weight", (cfg.max_position_embeddings, h))
        self.token_type = _take(state, e + "token_type_embeddings.weight", (cfg.type_vocab_size, h))
        self.ln = (_take(state, e + "LayerNorm.weight", (h,)), _take(state, e + "LayerNorm.bias", (h,)))
        self.eps = float(cfg.layer_norm_eps)
        self.layers = [_Layer(cfg, state, f"{prefix}encoder.layer.{i}.") for i in range(cfg.num_hidden_layers)]

    def forward(self, ids: list[int]) -> np.ndarray:
        idx = np.asarray(ids, dtype=np.int64)
        # transformers' order of additions: word + token type (all 0), then + position
        x = self.word[idx] + self.token_type[0]
        x = layer_norm(x + self.position[: len(idx)], *self.ln, self.eps)
        for layer in self.layers:
            x = layer(x)
        return x


def _load_bert(path: str | os.PathLike, mlm: bool):
    """(config, state, NumpyBert) for a folder this module runs, else None."""
    folder = Path(path)
    cfg = servable_config(folder, mlm)
    if cfg is None:
        return None
    state = _read_state(folder)
    if state is None:
        return None
    state = normalise_keys(state, mlm)
    try:
        return cfg, state, NumpyBert(cfg, state, "bert." if mlm else "")
    except _Missing:
        return None


def _projection(path: str | os.PathLike, hidden: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A ``torch.save``d linear head ``{"weight": [dim, hidden], "bias"?: [dim]}`` as float32 arrays."""
    from workbench.encoders.tensor_files import read_torch_state

    state = read_torch_state(path)
    if state is None or set(state) - {"weight", "bias"}:
        return None
    weight, bias = state.get("weight"), state.get("bias")
    if weight is None or weight.ndim != 2 or weight.shape[1] != hidden:
        return None
    if bias is not None and bias.shape != (weight.shape[0],):
        return None
    return weight.astype(np.float32), None if bias is None else bias.astype(np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))


def _token_vectors(hidden: np.ndarray, projection: tuple[np.ndarray, np.ndarray | None] | None) -> np.ndarray:
    """[n, dim] float16 ColBERT vectors: the states (or their ``projection`` (weight, bias)), L2-normalised."""
    if projection is not None:
        weight, bias = projection
        hidden = hidden @ weight.T if bias is None else hidden @ weight.T + bias
    return _unit_rows(hidden).astype(np.float16)


class _VocabTerms:
    """``term(id)``: a vocabulary entry's string (for display), from ``_lean_tokenizer``'s vocabulary."""

    _id_to_token: dict | None = None

    def term(self, term_id: int) -> str:
        if self._id_to_token is None:
            self._id_to_token = {i: t for t, i in self._lean_tokenizer.get_vocab().items()}
        return self._id_to_token.get(int(term_id), f"[{term_id}]")


class NumpyDenseEncoder:
    """``DenseEncoder``'s query API (``encode``, ``tokenize``, ``dim``, ``colbert_dim``) for a BERT
    bi-encoder with mean or CLS pooling; its ColBERT tokens are the normalised last-layer states
    (zero-shot) or, with ``colbert_head``, their normalised projection."""

    def __init__(self, path: str, bert: NumpyBert, tokenizer, pooling: str, normalize: bool, max_length: int,
                 projection: tuple[np.ndarray, np.ndarray | None] | None = None, *, lowercase: bool = False) -> None:
        self.path = path
        self.bert = bert
        self.lowercase = lowercase  # sentence_bert_config's do_lower_case (ModelLayout.lowercase)
        self._lean_tokenizer = tokenizer
        self._tokenizer = None
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        self.dim = int(bert.config.hidden_size)
        self.projection = projection
        self.colbert_dim = int(projection[0].shape[0]) if projection is not None else self.dim

    @classmethod
    def load(cls, path: str, *, max_length: int | None = None,
             colbert_head: str | None = None) -> NumpyDenseEncoder | None:
        """The numpy encoder for ``path`` (``colbert_head``: a projection's ``.pt`` file, as
        ``DenseEncoder`` takes it), or None where the torch ``DenseEncoder`` must serve it."""
        from workbench.encoders.layout import read_layout

        layout = read_layout(path)
        layout.check("dense model")
        if layout.kind == "causal-lm" or layout.pooling not in ("mean", "cls") or layout.exclude_prompt:
            return None  # (include_prompt: false: the torch encoder leaves the prompt out of its pooling)
        loaded = _load_bert(path, mlm=False)
        if loaded is None:
            return None
        # never past the model's positions (a longer input is cut there, as by truncation)
        length = min(int(max_length or layout.max_length), int(loaded[0].max_position_embeddings))
        tokenizer = load_lean_tokenizer(path, length)
        if tokenizer is None:
            return None
        projection = None
        if colbert_head is not None:
            projection = _projection(colbert_head, int(loaded[0].hidden_size))
            if projection is None:
                return None
        return cls(path, loaded[2], tokenizer, layout.pooling, layout.normalize, length, projection,
                   lowercase=layout.lowercase)

    @property
    def tokenizer(self):
        """The transformers tokenizer, as ``DenseEncoder.tokenizer`` (chunking, explanations): loaded
        on first use (it imports transformers; encoding uses the lean tokenizer)."""
        if self._tokenizer is None:
            from workbench.encoders.device import auto_tokenizer

            self._tokenizer = auto_tokenizer(self.path, "dense model")
        return self._tokenizer

    def tokenize(self, texts: list[str], max_length: int | None = None) -> list[list[int]]:
        """As ``DenseEncoder.tokenize``: truncated to ``max_length`` (default: the encoder's)."""
        return self._lean_tokenizer.ids([t.lower() for t in texts] if self.lowercase else texts, max_length)

    def encode(self, texts: list[str], *, tokens: bool = False, max_batch: int = 256, queries: bool = False,
               prompt: str = ""):
        """As ``DenseEncoder.encode``: pooled vectors [n, dim] float32 and, with ``tokens``, each
        text's L2-normalised token vectors as float16 (``queries`` changes nothing: always float32;
        ``prompt`` neither: ``load`` declines a model that leaves its prompt out of pooling)."""
        from workbench.encoders.dense import DenseOutput

        dense = np.zeros((len(texts), self.dim), dtype=np.float32)
        token_out: list[np.ndarray] = []
        for i, ids in enumerate(self.tokenize(texts)):
            hidden = self.bert.forward(ids)
            dense[i] = self.pooled(hidden)
            if tokens:
                token_out.append(self.token_vectors(hidden))
        return DenseOutput(dense, token_out if tokens else None)

    def pooled(self, hidden: np.ndarray) -> np.ndarray:
        """One text's sentence vector from its [n, hidden] states (the model's pooling, normalised
        when the model says so)."""
        pooled = hidden[0] if self.pooling == "cls" else hidden.mean(axis=0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12) if self.normalize else pooled

    def token_vectors(self, hidden: np.ndarray) -> np.ndarray:
        """[n, colbert_dim] float16: the (projected) states, L2-normalised."""
        return _token_vectors(hidden, self.projection)


class NumpyColbertEncoder(ColbertIds):
    """``ColbertEncoder``'s API (``encode_queries``, ``encode_documents``, ``dim``) for a trained
    ColBERT folder over a BERT encoder: ``[CLS] marker body [SEP]`` (query augmentation with
    ``[MASK]`` when the folder says so), every token's projected, normalised vector (float16)."""

    def __init__(self, path: str, encoder: NumpyDenseEncoder, meta: dict) -> None:
        limit = int(encoder.bert.config.max_position_embeddings)
        self.path = path
        self.encoder = encoder
        self.meta = meta
        self.dim = int(encoder.colbert_dim)
        self.query_max_length = min(int(meta["query_max_length"]), limit)
        self.document_max_length = min(int(meta["document_max_length"]), limit)
        self.augment = bool(meta.get("query_augmentation", False))
        self.mask_id = meta.get("mask_token_id")

    @classmethod
    def load(cls, path: str) -> NumpyColbertEncoder | None:
        """The numpy encoder for a trained ColBERT folder, or None where the torch one must serve it
        (including a folder the torch one refuses: it gives the error)."""
        from workbench.encoders.colbert import COLBERT_HEAD, read_meta
        from workbench.errors import ModelError

        try:
            meta = read_meta(path)
        except ModelError:
            return None
        if bool(meta.get("query_augmentation", False)) and meta.get("mask_token_id") is None:
            return None
        # untruncated here (cut by colbert_ids), as the torch ColbertEncoder tokenizes
        encoder = NumpyDenseEncoder.load(path, max_length=1 << 20, colbert_head=str(Path(path) / COLBERT_HEAD))
        if encoder is None or encoder.projection is None or encoder.projection[1] is not None:
            return None
        if encoder.colbert_dim != int(meta["dim"]):
            return None
        return cls(path, encoder, meta)

    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encoder.token_vectors(self.encoder.bert.forward(ids)) for ids in self.query_ids(texts)]

    def encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encoder.token_vectors(self.encoder.bert.forward(ids)) for ids in self.document_ids(texts)]


class NumpySparseEncoder(_VocabTerms):
    """``SparseEncoder``'s query API (``encode``, ``term``) for a BERT masked-LM SPLADE model: for each
    text ``w[v] = log1p(relu(max_t logit[t, v]))``, terms with ``w > min_weight``, all in fp32."""

    def __init__(self, path: str, bert: NumpyBert, state: dict, tokenizer, min_weight: float,
                 query_max_length: int | None = None) -> None:
        cfg = bert.config
        h = cfg.hidden_size
        p = "cls.predictions."
        self.path = path
        self.bert = bert
        self._lean_tokenizer = tokenizer
        self._tokenizer = None
        self.max_length = tokenizer.max_length
        self.query_max_length = query_max_length or tokenizer.max_length  # as SparseEncoder's
        self.min_weight = min_weight
        self.vocab_size = int(cfg.vocab_size)
        self.transform_w = _take(state, p + "transform.dense.weight", (h, h)).T
        self.transform_b = _take(state, p + "transform.dense.bias", (h,))
        self.transform_ln = (_take(state, p + "transform.LayerNorm.weight", (h,)),
                             _take(state, p + "transform.LayerNorm.bias", (h,)))
        bias_key = p + "bias" if p + "bias" in state else p + "decoder.bias"
        self.decoder_b = _take(state, bias_key, (cfg.vocab_size,))
        self.decoder_w = bert.word  # tied: [V, h]
        self.eps = float(cfg.layer_norm_eps)

    @classmethod
    def load(cls, path: str, *, max_length: int = 256, min_weight: float = 0.0) -> NumpySparseEncoder | None:
        """The numpy encoder for ``path``, or None where the torch ``SparseEncoder`` must serve it."""
        loaded = _load_bert(path, mlm=True)
        if loaded is None:
            return None
        from workbench.encoders.sparse import trained_query_length

        cfg, state, bert = loaded
        limit = int(cfg.max_position_embeddings)
        tokenizer = load_lean_tokenizer(path, min(max_length, limit))
        if tokenizer is None:
            return None
        query_length = trained_query_length(path)
        try:
            return cls(path, bert, state, tokenizer, min_weight, query_length and min(query_length, limit))
        except _Missing:
            return None

    @property
    def tokenizer(self):
        """The transformers tokenizer, as ``SparseEncoder.tokenizer``: loaded on first use."""
        if self._tokenizer is None:
            from workbench.encoders.device import auto_tokenizer

            self._tokenizer = auto_tokenizer(self.path, "sparse model")
        return self._tokenizer

    def encode(self, texts: list[str], *, max_batch: int = 256, queries: bool = False):
        """As ``SparseEncoder.encode``: documents cut at ``max_length``, ``queries`` at
        ``query_max_length`` (float32 always)."""
        from workbench.encoders.sparse import SparseVector

        out = []
        for ids in self._lean_tokenizer.ids(texts, self.query_max_length if queries else None):
            hidden = self.bert.forward(ids)
            states = layer_norm(gelu(hidden @ self.transform_w + self.transform_b), *self.transform_ln, self.eps)
            logits = (states @ self.decoder_w.T).max(axis=0) + self.decoder_b
            weights = np.log1p(np.maximum(logits, 0.0))
            keep = np.flatnonzero(weights > self.min_weight)
            out.append(SparseVector(keep.astype(np.int32), weights[keep].astype(np.float32)))
        return out


class NumpyJointEncoder(_VocabTerms):
    """``JointEncoder``'s API for a joint (BGE-M3-style) folder over a BERT encoder: from one forward
    of each text, the dense vector (the folder's pooling), the sparse terms (``relu`` of the token
    weight head, 0 at special tokens, max over a term's occurrences) and the ColBERT vectors; its
    ``dense_view`` / ``colbert_view`` / ``sparse_view`` are joint.py's, over this encoder."""

    def __init__(self, path: str, base: NumpyDenseEncoder, meta: dict, sparse_head, colbert_head,
                 query_max_length: int) -> None:
        self.path = path
        self.meta = meta
        self.base = base  # documents' length: passage_max_length
        self.query_max_length, self.passage_max_length = query_max_length, base.max_length
        self._lean_tokenizer = base._lean_tokenizer
        self.sparse_w, self.sparse_b = sparse_head
        self.colbert_head = colbert_head
        self.colbert_dim = int(colbert_head[0].shape[0])
        self.special_ids = np.array(sorted(int(i) for i in meta.get("special_ids", [])), dtype=np.int64)
        self.vocab_size = int(meta.get("vocab_size") or base.bert.config.vocab_size)
        self._memo: tuple | None = None

    @classmethod
    def load(cls, path: str) -> NumpyJointEncoder | None:
        """The numpy encoder for a joint folder, or None where the torch ``JointEncoder`` must serve
        it (including a folder it refuses: it gives the error)."""
        from workbench.encoders.joint import COLBERT_HEAD, SPARSE_HEAD, read_joint_meta, served_lengths
        from workbench.encoders.layout import read_layout

        meta = read_joint_meta(path)
        if meta is None:
            return None
        query_length, passage_length = served_lengths(meta, read_layout(path).max_length)
        base = NumpyDenseEncoder.load(path, max_length=passage_length)
        if base is None:
            return None
        sparse = _projection(Path(path) / SPARSE_HEAD, base.dim)
        colbert = _projection(Path(path) / COLBERT_HEAD, base.dim)
        if sparse is None or colbert is None or sparse[0].shape[0] != 1:
            return None
        zero = np.zeros(1, dtype=np.float32)
        return cls(path, base, meta, (sparse[0], zero if sparse[1] is None else sparse[1]), colbert,
                   min(query_length, int(base.bert.config.max_position_embeddings)))

    @property
    def tokenizer(self):
        return self.base.tokenizer

    def encode(self, texts: list[str], *, hidden_tokens: bool = False, max_batch: int = 256,
               queries: bool = False):
        """All outputs for ``texts`` (input order); the same list asked again in the same role is not
        re-encoded. As ``JointEncoder.encode``: ``queries`` are cut at ``query_max_length``, documents
        at ``passage_max_length`` (float32 always)."""
        from workbench.encoders.joint import JointOutput
        from workbench.encoders.sparse import SparseVector

        texts = list(texts)
        memo = self._memo
        if memo is not None and memo[0] == texts and memo[1] == queries and (memo[2] or not hidden_tokens):
            return memo[3]
        base = self.base
        dense = np.zeros((len(texts), base.dim), dtype=np.float32)
        colbert, sparse, hidden_out = [], [], [] if hidden_tokens else None
        for i, ids in enumerate(base.tokenize(texts, self.query_max_length if queries else None)):
            hidden = base.bert.forward(ids)
            dense[i] = base.pooled(hidden)
            colbert.append(_token_vectors(hidden, self.colbert_head))
            ids_arr = np.asarray(ids, dtype=np.int64)
            weights = np.maximum(hidden @ self.sparse_w[0] + self.sparse_b[0], 0.0)
            weights[np.isin(ids_arr, self.special_ids)] = 0.0
            terms = np.zeros(self.vocab_size, dtype=np.float32)
            np.maximum.at(terms, ids_arr, weights.astype(np.float32))
            nz = np.flatnonzero(terms > 0)
            sparse.append(SparseVector(nz.astype(np.int32), terms[nz]))
            if hidden_out is not None:
                hidden_out.append(_unit_rows(hidden).astype(np.float16))
        out = JointOutput(dense, colbert, sparse, hidden_out)
        self._memo = (texts, queries, hidden_tokens, out)
        return out

    def dense_view(self):
        from workbench.encoders.joint import _DenseView

        return _DenseView(self)

    def colbert_view(self):
        from workbench.encoders.joint import _ColbertView

        return _ColbertView(self)

    def sparse_view(self):
        from workbench.encoders.joint import _SparseView

        return _SparseView(self)
