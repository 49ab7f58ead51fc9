"""A joint (BGE-M3-style) model: ONE encoder forward pass gives the dense vector, the learned-sparse
term weights and the ColBERT token vectors of a text.

A folder written by ``trainers.joint`` holds:

* the fine-tuned encoder + tokenizer in sentence-transformers layout (``modules.json``, pooling,
  normalize), so ``--model dense=runs/NAME`` alone reads it as any embedder run;
* ``sparse_linear.pt`` — ``{"weight": [1, hidden], "bias": [1]}`` (BGE-M3's file name and format);
* ``colbert_linear.pt`` — ``{"weight": [dim, hidden], "bias": [dim]}``;
* ``wb_model.json`` — ``{"kind": "joint", "pooling", "normalize", "colbert_dim", "special_ids",
  "vocab_size", ...}``.

Contract, for a text with token ids ``t_1..t_L`` (``[CLS] ... [SEP]``, the encoder's tokenizer, no
template of its own) and last-layer states ``h_1..h_L``:

* dense: ``pool(h)`` with the folder's pooling (mean / CLS), L2-normalised when it says so;
* sparse: token weight ``w_i = relu(sparse_linear(h_i))``, 0 at special tokens (``special_ids``:
  ``[CLS] [SEP] [PAD] [UNK] [MASK]``); term v's weight is ``max_{i: t_i = v} w_i``; the terms with a
  positive weight, ids ascending (:class:`~workbench.encoders.sparse.SparseVector`, the format the
  Tantivy store quantizes); the score of two texts is ``sum_v q_v d_v``;
* ColBERT: ``c_i = normalize(colbert_linear(h_i))`` for every token (float16 ``[L, dim]``), scored
  with MaxSim ``sum_i max_j q_i . d_j``.

Lengths: queries (``queries=True``) are cut at ``wb_model.json``'s ``query_max_length``, documents at
its ``passage_max_length``, the lengths the trainer read them at (:func:`served_lengths`; a folder
without them: the encoder's own max length for both).

The heads run in float32 over the encoder's states. The same functions (:func:`token_weights`,
:func:`sparse_matrix`, :func:`colbert_vectors`) build the trainer's vectors, so what is served is
what was trained. Queries (``queries=True``: the searcher's dense, ColBERT and sparse query calls) run
through the encoder's ``DenseEncoder.query_model``, float32 for a BERT checkpoint even where documents
run in bf16, as every other query encoder does. :class:`JointEncoder` computes all three for a list of
texts in one pass and keeps the last list's result, so the indexer / searcher asking the dense, ColBERT and sparse roles in turn
for the same texts runs the encoder once (:meth:`JointEncoder.dense_view`, ``colbert_view``,
``sparse_view`` expose it with the interfaces of ``DenseEncoder``, ``ColbertEncoder`` and
``SparseEncoder``). BERT checkpoints load through ``lean_bert`` (no transformers import at query
time); anything else falls back to transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import ModelError

__all__ = [
    "JOINT_KIND", "SPARSE_HEAD", "COLBERT_HEAD", "JointEncoder", "JointOutput", "colbert_vectors",
    "is_joint_folder", "read_joint_meta", "served_lengths", "sparse_matrix", "token_weights",
]

JOINT_KIND = "joint"
SPARSE_HEAD = "sparse_linear.pt"
COLBERT_HEAD = "colbert_linear.pt"


def read_joint_meta(path: str | Path | None) -> dict | None:
    """``wb_model.json`` of a joint folder, or None for anything else (never raises)."""
    if path is None:
        return None
    from workbench.encoders.layout import read_json

    meta = read_json(Path(path) / "wb_model.json")
    return meta if meta.get("kind") == JOINT_KIND else None


def is_joint_folder(path: str | Path | None) -> bool:
    return read_joint_meta(path) is not None


def served_lengths(meta: dict, default: int) -> tuple[int, int]:
    """``(query, passage)`` max lengths in tokens a joint folder is served at: ``meta``'s (its
    ``wb_model.json``) ``query_max_length`` / ``passage_max_length``, what it trained with (the trainer
    caps them at the encoder's positions), ``default`` for one it lacks."""
    return int(meta.get("query_max_length") or default), int(meta.get("passage_max_length") or default)


# -- the head functions shared by the trainer and the server --------------------------------------
def token_weights(hidden, input_ids, mask, sparse_linear, special_ids):
    """``(pre [B, L], weights [B, L])``: the sparse head's pre-activation and ``relu`` of it, 0 at
    padding and special tokens. ``hidden [B, L, H]`` (cast to the head's dtype)."""
    import torch

    pre = sparse_linear(hidden.to(sparse_linear.weight.dtype)).squeeze(-1)
    keep = mask.bool()
    if len(special_ids):
        special = torch.as_tensor(list(special_ids), device=input_ids.device, dtype=input_ids.dtype)
        keep = keep & ~torch.isin(input_ids, special)
    return pre, torch.relu(pre) * keep.to(pre.dtype)


def sparse_matrix(input_ids, weights, vocab_size: int):
    """``[B, vocab_size]`` term weights: each term id's max token weight (``weights >= 0``)."""
    import torch

    out = torch.zeros((weights.shape[0], vocab_size), dtype=weights.dtype, device=weights.device)
    return out.scatter_reduce(1, input_ids, weights, reduce="amax", include_self=True)


def colbert_vectors(hidden, colbert_linear):
    """``[B, L, dim]`` L2-normalised token vectors (float32)."""
    import torch

    return torch.nn.functional.normalize(colbert_linear(hidden.to(colbert_linear.weight.dtype)).float(), dim=-1)


@dataclass
class JointOutput:
    """Per input: ``dense[i]``, ``colbert[i]`` ([n_tokens, dim] float16), ``sparse[i]`` (SparseVector)
    and, when asked, ``hidden_tokens[i]`` (normalised encoder states: zero-shot MaxSim vectors)."""

    dense: np.ndarray
    colbert: list
    sparse: list
    hidden_tokens: list | None = None


class JointEncoder:
    """Dense, sparse and ColBERT outputs of a joint folder from one forward pass (module docstring)."""

    def __init__(self, path: str, *, device: str | None = None, max_batch_tokens: int | None = None) -> None:
        import torch

        from workbench.encoders.dense import DenseEncoder

        meta = read_joint_meta(path)
        if meta is None:
            raise ModelError(f"'{path}' is not a joint model folder (wb_model.json kind 'joint')")
        from workbench.encoders.layout import read_layout

        self.path = str(path)
        self.meta = meta
        self.query_max_length, self.passage_max_length = served_lengths(meta, read_layout(self.path).max_length)
        # the encoder, its tokenizer, pooling and normalisation (lean BERT when possible), documents'
        # length
        self.base = DenseEncoder(self.path, device=device, max_length=self.passage_max_length,
                                 max_batch_tokens=max_batch_tokens)
        self.device = self.base.device
        self.sparse_linear = self._head(SPARSE_HEAD, torch)
        self.colbert_linear = self._head(COLBERT_HEAD, torch)
        hidden = int(self.base.dim)
        if self.sparse_linear.in_features != hidden or self.sparse_linear.out_features != 1:
            raise ModelError(f"'{path}': {SPARSE_HEAD} is not a [1, {hidden}] projection")
        if self.colbert_linear.in_features != hidden:
            raise ModelError(f"'{path}': {COLBERT_HEAD} does not take {hidden}-d states")
        self.colbert_dim = int(self.colbert_linear.out_features)
        self.special_ids = [int(i) for i in meta.get("special_ids", [])]
        self.vocab_size = int(meta.get("vocab_size") or self.base.model.config.vocab_size)
        self.max_batch_tokens = self.base.max_batch_tokens
        self._memo: tuple | None = None  # (texts, queries, with_hidden, JointOutput) of the last call
        self._id_to_token = None

    def _head(self, name: str, torch):
        file = Path(self.path) / name
        try:
            state = torch.load(str(file), map_location="cpu", weights_only=True)
            weight = state["weight"]
            layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in state)
            layer.load_state_dict(state)
        except (OSError, RuntimeError, KeyError) as exc:
            raise ModelError(f"cannot load the joint model's {name} in '{self.path}': {exc}") from exc
        return layer.float().to(self.device).eval()

    @property
    def tokenizer(self):
        return self.base.tokenizer

    def term(self, term_id: int) -> str:
        """The vocabulary string of ``term_id`` (for display)."""
        if self._id_to_token is None:
            lean = getattr(self.base, "_lean_tokenizer", None)
            vocab = (lean or self.base.tokenizer).get_vocab()
            self._id_to_token = {i: t for t, i in vocab.items()}
        return self._id_to_token.get(int(term_id), f"[{term_id}]")

    def encode(self, texts: list[str], *, hidden_tokens: bool = False, max_batch: int = 256,
               queries: bool = False) -> JointOutput:
        """All outputs for ``texts`` (input order); the same list asked again (as queries again, or as
        documents again) is not re-encoded. ``queries``: cut at ``query_max_length`` and through the
        encoder's ``query_model``; documents at ``passage_max_length``."""
        import torch

        from workbench.encoders.batching import length_sorted_batches, pad_batch
        from workbench.encoders.sparse import SparseVector

        texts = list(texts)
        memo = self._memo
        if memo is not None and memo[0] == texts and memo[1] == queries and (memo[2] or not hidden_tokens):
            return memo[3]
        n = len(texts)
        dense = np.zeros((n, self.base.dim), dtype=np.float32)
        colbert: list = [None] * n
        sparse: list = [None] * n
        hidden_out: list | None = [None] * n if hidden_tokens else None
        if n:
            ids = self.base.tokenize(texts, self.query_max_length if queries else None)
            lean = getattr(self.base, "_lean_tokenizer", None)
            pad_id = (lean.pad_token_id if lean is not None else self.base.tokenizer.pad_token_id) or 0
            lengths = [len(x) for x in ids]
            model = self.base.query_model()[0] if queries else self.base.model
            with torch.inference_mode():
                for batch in length_sorted_batches(lengths, max_tokens=self.max_batch_tokens, max_batch=max_batch):
                    padded, padded_mask, _ = pad_batch(ids, batch, pad_id)
                    input_ids = torch.from_numpy(padded).to(self.device)
                    mask = torch.from_numpy(padded_mask).to(self.device)
                    hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                    pooled = self.base._pool(hidden, mask)  # the DenseEncoder's own pooling
                    if self.base.normalize:
                        pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
                    dense[batch] = pooled.float().cpu().numpy()
                    _pre, weights = token_weights(hidden, input_ids, mask, self.sparse_linear, self.special_ids)
                    terms = sparse_matrix(input_ids, weights, self.vocab_size)
                    tok = colbert_vectors(hidden, self.colbert_linear).to(torch.float16).cpu().numpy()
                    raw = (torch.nn.functional.normalize(hidden.float(), dim=-1).to(torch.float16).cpu().numpy()
                           if hidden_out is not None else None)
                    for row, i in enumerate(batch):
                        colbert[i] = tok[row, : lengths[i]]
                        nz = torch.nonzero(terms[row] > 0).squeeze(1)
                        sparse[i] = SparseVector(nz.cpu().numpy().astype(np.int32),
                                                 terms[row, nz].float().cpu().numpy().astype(np.float32))
                        if raw is not None:
                            hidden_out[i] = raw[row, : lengths[i]]
        out = JointOutput(dense, colbert, sparse, hidden_out)
        self._memo = (texts, queries, hidden_tokens, out)
        return out

    # -- the three roles' interfaces ------------------------------------------------------------------
    def dense_view(self) -> "_DenseView":
        return _DenseView(self)

    def colbert_view(self) -> "_ColbertView":
        return _ColbertView(self)

    def sparse_view(self) -> "_SparseView":
        return _SparseView(self)


class _DenseView:
    """``DenseEncoder``'s interface (``encode(texts, tokens=...) -> DenseOutput``, ``tokenize``,
    ``tokenizer``, ``dim``...) over the joint encoder; ``tokens`` are the zero-shot (normalised
    encoder state) vectors, used when the ColBERT role is zero-shot."""

    def __init__(self, joint: JointEncoder) -> None:
        self._joint = joint

    def __getattr__(self, name):
        return getattr(self._joint.base, name)

    def encode(self, texts: list[str], *, tokens: bool = False, max_batch: int = 256, queries: bool = False,
               prompt: str = ""):
        """As ``DenseEncoder.encode``; ``queries`` run through the encoder's ``query_model``; a joint
        model pools every token (``prompt`` changes nothing)."""
        from workbench.encoders.dense import DenseOutput

        out = self._joint.encode(texts, hidden_tokens=tokens, max_batch=max_batch, queries=queries)
        return DenseOutput(out.dense, out.hidden_tokens if tokens else None)


class _ColbertView:
    """``ColbertEncoder``'s interface: queries and documents are encoded alike (no markers)."""

    def __init__(self, joint: JointEncoder) -> None:
        self._joint = joint
        self.dim = joint.colbert_dim
        self.path = joint.path

    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        return self._joint.encode(texts, queries=True).colbert

    def encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        return self._joint.encode(texts).colbert


class _SparseView:
    """``SparseEncoder``'s interface: ``encode(texts) -> [SparseVector]``, ``term``, ``tokenizer``."""

    def __init__(self, joint: JointEncoder) -> None:
        self._joint = joint
        self.path = joint.path
        self.vocab_size = joint.vocab_size

    @property
    def tokenizer(self):
        return self._joint.tokenizer

    def term(self, term_id: int) -> str:
        return self._joint.term(term_id)

    def encode(self, texts: list[str], *, max_batch: int = 256, queries: bool = False) -> list:
        return self._joint.encode(texts, max_batch=max_batch, queries=queries).sparse
