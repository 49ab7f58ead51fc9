"""A trained ColBERT model: its own encoder + a linear projection, query/document markers.

A folder written by ``trainers.colbert`` holds the fine-tuned encoder (Hugging Face layout), the
projection ``colbert_head.pt`` (``{"weight": [dim, hidden]}``, no bias) and ``wb_colbert.json``::

    {"dim": 128, "query_marker_id": 1, "document_marker_id": 2,
     "query_max_length": 32, "document_max_length": 300, "query_augmentation": false}

Inputs are the raw query / chunk text (no dense prompt template). Token ids are the tokenizer's
``[CLS] body [SEP]`` with the marker inserted after ``[CLS]`` and the body cut so the whole fits
the max length (:func:`colbert_ids`); with ``query_augmentation`` a query is padded to
``query_max_length`` with ``[MASK]`` tokens that are attended to and kept (ColBERT's query
augmentation). Every token of the result gives one L2-normalised ``dim`` vector (float16).
The trainer builds its inputs with the same functions, so the vectors served are the ones trained.

:func:`is_colbert_folder` tells a full trained ColBERT folder (``wb_colbert.json``) from a
projection-only head applied to the dense model's tokens (``colbert_head.pt`` alone, handled by
:class:`~workbench.encoders.dense.DenseEncoder`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from workbench.encoders.batching import length_sorted_batches, pad_batch
from workbench.encoders.device import batch_token_budget
from workbench.encoders.layout import position_limit
from workbench.errors import ModelError

__all__ = ["ColbertEncoder", "ColbertIds", "augment_query", "colbert_ids", "is_colbert_folder", "COLBERT_META", "COLBERT_HEAD"]

COLBERT_META = "wb_colbert.json"
COLBERT_HEAD = "colbert_head.pt"


def is_colbert_folder(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / COLBERT_META).is_file()


def colbert_ids(ids: list[int], marker: int, max_length: int) -> list[int]:
    """``[CLS] marker body [SEP]`` from a tokenizer's untruncated ``[CLS] body [SEP]``, at most
    ``max_length`` ids (the body is cut)."""
    if len(ids) < 2:
        raise ValueError("expected [CLS] ... [SEP] token ids")
    body = ids[1:-1][: max(0, max_length - 3)]
    return [ids[0], marker, *body, ids[-1]]


def augment_query(ids: list[int], mask_id: int, max_length: int) -> list[int]:
    """ColBERT's query augmentation: pad with ``[MASK]`` up to ``max_length`` (attended to)."""
    return ids + [mask_id] * max(0, max_length - len(ids))


def read_meta(path: str | Path) -> dict:
    try:
        meta = json.loads((Path(path) / COLBERT_META).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {COLBERT_META} in '{path}': {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{COLBERT_META} in '{path}' is not a JSON object")
    for key in ("dim", "query_marker_id", "document_marker_id", "query_max_length", "document_max_length"):
        if key not in meta:
            raise ModelError(f"{COLBERT_META} in '{path}' lacks '{key}'")
    return meta


class ColbertIds:
    """The token ids a trained ColBERT folder's encoders feed their model (shared by the torch
    ``ColbertEncoder`` and the numpy one): reads ``meta``, ``encoder.tokenize`` (untruncated
    ``[CLS] body [SEP]``), ``query_max_length``, ``document_max_length``, ``augment``, ``mask_id``."""

    def query_ids(self, texts: list[str]) -> list[list[int]]:
        q = int(self.meta["query_marker_id"])
        out = [colbert_ids(ids, q, self.query_max_length) for ids in self.encoder.tokenize(texts)]
        if self.augment:
            out = [augment_query(ids, int(self.mask_id), self.query_max_length) for ids in out]
        return out

    def document_ids(self, texts: list[str]) -> list[list[int]]:
        d = int(self.meta["document_marker_id"])
        return [colbert_ids(ids, d, self.document_max_length) for ids in self.encoder.tokenize(texts)]


class ColbertEncoder(ColbertIds):
    """Query and document token vectors of a trained ColBERT folder (see the module docstring)."""

    def __init__(self, path: str, *, device: str | None = None, max_batch_tokens: int | None = None) -> None:
        import torch

        from workbench.encoders.dense import DenseEncoder

        self.path = str(path)
        self.meta = read_meta(path)
        # the encoder and its tokenizer (lean BERT when possible); tokenization is untruncated here
        # and cut by colbert_ids
        self.encoder = DenseEncoder(self.path, device=device, max_length=1 << 20)
        self.device = self.encoder.device
        self.dtype = self.encoder.dtype
        head = Path(path) / COLBERT_HEAD
        try:
            state = torch.load(str(head), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"cannot load the ColBERT projection {head}: {exc}") from exc
        weight = state["weight"]
        self.projection = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.projection.load_state_dict({"weight": weight})
        self.query_projection = copy.deepcopy(self.projection).to(self.device).eval()  # float32: queries
        self.projection = self.projection.to(self.device, self.dtype).eval()
        self.dim = int(weight.shape[0])
        if self.dim != int(self.meta["dim"]):
            raise ModelError(f"'{path}': projection has {self.dim} outputs, {COLBERT_META} says {self.meta['dim']}")
        self.max_batch_tokens = max_batch_tokens or batch_token_budget(self.device)
        limit = position_limit(self.encoder.model.config, 512)
        self.query_max_length = min(int(self.meta["query_max_length"]), limit)
        self.document_max_length = min(int(self.meta["document_max_length"]), limit)
        self.augment = bool(self.meta.get("query_augmentation", False))
        self.mask_id = self.meta.get("mask_token_id")
        lean = getattr(self.encoder, "_lean_tokenizer", None)
        self.pad_id = int((lean.pad_token_id if lean is not None else self.encoder.tokenizer.pad_token_id) or 0)
        if self.augment and self.mask_id is None:
            raise ModelError(f"{COLBERT_META} in '{path}' asks for query augmentation without mask_token_id")

    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        """Through the encoder's float32 ``query_model`` (as the numpy backend), with a float32
        projection, whatever dtype documents run in."""
        return self._encode(self.query_ids(texts), queries=True)

    def encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        return self._encode(self.document_ids(texts))

    def _encode(self, ids: list[list[int]], max_batch: int = 256, queries: bool = False) -> list[np.ndarray]:
        """[n_tokens, dim] float16 L2-normalised vectors per input, input order."""
        import torch

        out: list[np.ndarray | None] = [None] * len(ids)
        if not ids:
            return []
        pad_id = self.pad_id
        lengths = [len(x) for x in ids]
        model, projection, dtype = self.encoder.model, self.projection, self.dtype
        if queries:
            model = self.encoder.query_model()[0]
            if model is not self.encoder.model:
                projection, dtype = self.query_projection, torch.float32
        with torch.inference_mode():
            for batch in length_sorted_batches(lengths, max_tokens=self.max_batch_tokens, max_batch=max_batch):
                padded, padded_mask, _ = pad_batch(ids, batch, pad_id)
                input_ids, mask = torch.from_numpy(padded), torch.from_numpy(padded_mask)
                hidden = model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state
                tok = projection(hidden.to(dtype))
                tok = torch.nn.functional.normalize(tok.float(), dim=-1).to(torch.float16).cpu().numpy()
                for row, i in enumerate(batch):
                    out[i] = tok[row, : lengths[i]]
        return out  # type: ignore[return-value]
