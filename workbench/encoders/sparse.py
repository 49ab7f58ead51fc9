"""SPLADE-style learned-sparse encoder, computed without materialising padded logits.

Contract: for each text, ``w[v] = log1p(relu(max_t logit[t, v]))`` over the text's non-padding
tokens t, where ``logit = MLMHead(h_t)``; this equals SPLADE's ``max_t log1p(relu(logit))``
because log1p∘relu is monotonic. Only terms with ``w[v] > min_weight`` are returned.

The cost of SPLADE on CPU is the vocabulary projection (hidden × 30k per token). The plain way
projects every position of a padded batch and then pools a [B, L, V] tensor. Here each batch is
length-sorted (little padding), the non-padding token states are gathered into one [N, H] matrix,
projected in blocks of rows by slices of vocabulary columns (a tile that stays in cache) in bf16
(float32 on a CPU without native bf16, see ``device.pick_dtype``), and reduced per text at once;
the terms that can be positive are then scored exactly in fp32. No [B, L, V] tensor exists.

Lengths: documents are read up to ``max_length`` tokens (the bundle passes ``max(256, chunk_tokens)``:
a whole chunk, even past the length a SPLADE run trained its passages at, since a cut would leave the
chunk's tail out of the index). Queries (``encode(..., queries=True)``) are cut at the length the
model trained its queries at: a SPLADE run folder's ``wb_model.json`` ``query_max_length``
(:func:`trained_query_length`; for a run saved before that key existed, its run folder's
``config.json``); any other model (a pretrained SPLADE) reads queries at ``max_length`` too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.encoders.batching import length_sorted_batches, pad_batch
from workbench.encoders.device import auto_tokenizer, batch_token_budget, load_pretrained, pick_device, pick_dtype
from workbench.encoders.layout import position_limit
from workbench.errors import ModelError


def trained_query_length(path: str) -> int | None:
    """The query length a SPLADE run folder trained at (``wb_model.json`` ``query_max_length``), or
    None for any other model (never raises)."""
    from pathlib import Path

    from workbench.encoders.layout import read_json

    meta = read_json(Path(path) / "wb_model.json")
    if meta.get("kind") != "splade":
        return None
    length = meta.get("query_max_length")
    if length is None:  # a run saved before the key existed: its run folder's config holds the setting
        run = read_json(Path(path).parent / "config.json")
        length = run.get("query_max_length") if run.get("trainer") == "splade" else None
    return int(length) if isinstance(length, int) and length > 0 else None


@dataclass
class SparseVector:
    """Term ids (ascending) and their positive weights."""

    ids: np.ndarray  # int32
    weights: np.ndarray  # float32

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.ids.tolist(), self.weights.tolist()))


class SparseEncoder:
    """A masked-LM checkpoint (BertForMaskedLM-like) used as a SPLADE encoder."""

    def __init__(
        self,
        path: str,
        *,
        device: str | None = None,
        max_length: int = 256,
        min_weight: float = 0.0,
        max_batch_tokens: int | None = None,
        rows_per_slice: int = 4096,
        candidate_margin: float = 1.0,
        vocab_slice: int = 1024,
    ) -> None:
        import torch

        from workbench.encoders.bert_files import load_lean_tokenizer
        from workbench.encoders.lean_bert import load_lean_bert

        self.path = path
        self.device = pick_device(device)
        self._tokenizer = None
        self._lean_tokenizer = None
        # BERT masked-LM checkpoints run without importing transformers (lean_bert.py; WB_LEAN=0 disables).
        # The encoder and the exact scores run in float32 whatever dtype the checkpoint is stored in
        # (a bf16 upload too): only the candidate projection below is low precision.
        self.model = load_lean_bert(path, mlm=True, dtype=torch.float32, device=self.device)
        if self.model is not None:  # never past the model's positions (a chunk is cut there, as by truncation)
            max_length = min(max_length, position_limit(self.model.config, max_length))
            self._lean_tokenizer = load_lean_tokenizer(path, max_length)
        if self.model is None or self._lean_tokenizer is None:
            self._load_tokenizer()
        if self.model is None:  # not a BERT lean_bert reproduces, or a tensor missing: transformers says which
            from transformers import AutoModelForMaskedLM

            self.model = load_pretrained(AutoModelForMaskedLM, path, "sparse model",
                                         dtype=torch.float32).to(self.device).eval()
        self.max_length = min(max_length, position_limit(self.model.config, max_length))
        query_length = trained_query_length(path) or self.max_length
        self.query_max_length = min(query_length, position_limit(self.model.config, query_length))
        self.min_weight = min_weight
        self.max_batch_tokens = max_batch_tokens or batch_token_budget(self.device)
        self.rows_per_slice = rows_per_slice
        self.vocab_size = int(self.model.config.vocab_size)
        head = self.model.get_output_embeddings()
        self._decoder_weight = head.weight  # [V, H]
        bias = getattr(head, "bias", None)
        self._decoder_bias = bias if bias is not None else torch.zeros(self.vocab_size, device=self.device)
        self._base, self._transform = _split_mlm(self.model)
        # Candidate search in a fast low-precision dtype, exact fp32 scores for the survivors.
        self._fast_dtype = pick_dtype(self.device)
        if self.device.type == "cuda":
            vocab_slice = self.vocab_size  # one projection: a GPU has the memory and wants big tiles
        weight_fast_t = self._decoder_weight.detach().to(self._fast_dtype).t()  # [H, V]
        bias_fast = self._decoder_bias.detach().to(self._fast_dtype)
        self._vocab_slices = [(start, weight_fast_t[:, start : start + vocab_slice].contiguous(),
                               bias_fast[start : start + vocab_slice])
                              for start in range(0, self.vocab_size, vocab_slice)]
        self.margin = candidate_margin
        self._id_to_token = None

    @property
    def tokenizer(self):
        """The transformers tokenizer (loaded on first use when the lean tokenizer serves encoding)."""
        if self._tokenizer is None:
            self._load_tokenizer()
        return self._tokenizer

    def _load_tokenizer(self) -> None:
        self._tokenizer = auto_tokenizer(self.path, "sparse model")

    def term(self, term_id: int) -> str:
        """The vocabulary string of ``term_id`` (for display: expansion terms in previews)."""
        if self._id_to_token is None:
            vocab = (self._lean_tokenizer or self.tokenizer).get_vocab()
            self._id_to_token = {i: t for t, i in vocab.items()}
        return self._id_to_token.get(int(term_id), f"[{term_id}]")

    def encode(self, texts: list[str], *, max_batch: int = 256, queries: bool = False) -> list[SparseVector]:
        """The sparse vectors of ``texts`` (input order), documents cut at ``max_length``, ``queries``
        at ``query_max_length`` (the module docstring; the encoder always runs in float32)."""
        import torch

        out: list[SparseVector | None] = [None] * len(texts)
        if not texts:
            return []
        lean_tok = self._lean_tokenizer
        length = self.query_max_length if queries else self.max_length
        if lean_tok is not None:
            ids, pad_id = lean_tok.ids(texts, length), lean_tok.pad_token_id or 0
        else:
            ids = self.tokenizer(texts, truncation=True, max_length=length)["input_ids"]
            pad_id = self.tokenizer.pad_token_id or 0
        lengths = [len(x) for x in ids]
        with torch.inference_mode():
            for batch in length_sorted_batches(lengths, max_tokens=self.max_batch_tokens, max_batch=max_batch):
                padded, padded_mask, _ = pad_batch(ids, batch, pad_id)
                input_ids, mask = torch.from_numpy(padded), torch.from_numpy(padded_mask).bool()
                hidden = self._base(
                    input_ids=input_ids.to(self.device), attention_mask=mask.long().to(self.device)
                ).last_hidden_state
                states = self._transform(hidden[mask.to(self.device)])  # [N, H]
                counts = mask.sum(dim=1).tolist()
                start_row, first = 0, 0
                for last in range(len(batch)):
                    end_row = start_row + sum(counts[first : last + 1])
                    if end_row - start_row < self.rows_per_slice and last + 1 < len(batch):
                        continue
                    block = states[start_row:end_row]
                    bounds = self._max_logits_fast(block, counts[first : last + 1])
                    offset = 0
                    for j, row in enumerate(range(first, last + 1)):
                        rows = block[offset : offset + counts[row]]
                        offset += counts[row]
                        out[batch[row]] = self._exact_terms(rows, bounds[j].float())
                    start_row, first = end_row, last + 1
        return out  # type: ignore[return-value]


    def _max_logits_fast(self, block, counts: list[int]):
        """``[len(counts), V]``: each text's max low-precision logit per term, where the texts' token
        states are consecutive rows of ``block``. The vocabulary is projected a slice of columns at a
        time and each slice is reduced at once, so the [rows, V] logits never leave the cache (3x
        faster on CPU than projecting the whole vocabulary, then reducing; the values are the same)."""
        import torch

        fast = block.to(self._fast_dtype)
        bounds = torch.empty((len(counts), self.vocab_size), dtype=self._fast_dtype, device=block.device)
        for start, weight, bias in self._vocab_slices:
            logits = torch.addmm(bias, fast, weight)
            offset = 0
            for j, count in enumerate(counts):
                bounds[j, start : start + weight.shape[1]] = logits[offset : offset + count].amax(dim=0)
                offset += count
        return bounds

    def _exact_terms(self, rows, bound) -> SparseVector:
        """Exact fp32 weights for every term whose low-precision max logit exceeds -margin.

        bf16 logits err by far less than ``margin`` (about 0.4% of |h|·|w|), so any term whose
        exact max logit is positive is among the candidates: the result equals full-precision SPLADE.
        """
        import torch

        cand = torch.nonzero(bound > -self.margin).squeeze(1)
        if cand.numel() == 0:
            return SparseVector(np.zeros(0, np.int32), np.zeros(0, np.float32))
        logits = torch.addmm(self._decoder_bias[cand], rows, self._decoder_weight[cand].t()).amax(dim=0)
        weights = torch.log1p(torch.relu(logits))
        keep = weights > self.min_weight
        return SparseVector(
            cand[keep].cpu().numpy().astype(np.int32), weights[keep].float().cpu().numpy().astype(np.float32)
        )


def _split_mlm(model):
    """Return (base encoder, head transform) of a masked-LM model.

    Supports BERT-style (``model.bert`` + ``cls.predictions.transform``), DistilBERT
    (``distilbert`` + ``vocab_transform/activation/vocab_layer_norm``) and RoBERTa-style
    (``roberta`` or ``mpnet`` + ``lm_head.dense/layer_norm``) layouts.
    """
    import torch

    if hasattr(model, "bert") and hasattr(model, "cls"):
        return model.bert, model.cls.predictions.transform
    if hasattr(model, "distilbert"):
        act = torch.nn.GELU()
        seq = torch.nn.Sequential(model.vocab_transform, act, model.vocab_layer_norm)
        return model.distilbert, seq
    base = getattr(model, "roberta", None) or getattr(model, "mpnet", None)  # MPNet's head is RoBERTa's
    if base is not None and hasattr(model, "lm_head"):
        seq = torch.nn.Sequential(model.lm_head.dense, torch.nn.GELU(), model.lm_head.layer_norm)
        return base, seq
    raise ModelError(f"unsupported masked-LM layout for SPLADE: {type(model).__name__}")
