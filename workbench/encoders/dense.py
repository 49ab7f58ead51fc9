"""Dense and ColBERT token vectors from ONE forward pass of a transformer.

``DenseEncoder.encode`` returns, for every input, the pooled sentence vector (mean, CLS or
last-token pooling, L2-normalised when the model says so) and, when asked, the L2-normalised
last-layer token vectors used for zero-shot MaxSim (ColBERT) scoring. Optionally a trained
ColBERT projection head maps token states to a smaller dimension.

Queries (``encode(..., queries=True)``) of a BERT model that lean_bert runs are encoded in float32
whatever ``pick_dtype`` gives documents: then the numpy backend (`wb query`, always float32) and
torch (`wb eval`, `wb query --queries`, the TUI) answer a query alike (within 1e-5) on a CPU or GPU
that encodes documents in bf16. A query is a few tokens, so the cost is small (see ``encode``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from workbench.encoders.batching import length_sorted_batches, pad_batch
from workbench.encoders.device import auto_tokenizer, batch_token_budget, load_pretrained, pick_device, pick_dtype
from workbench.encoders.layout import ModelLayout, read_layout


@dataclass
class DenseOutput:
    """``dense[i]`` is input i's pooled vector; ``tokens[i]`` its [n_tokens, d] float16 matrix."""

    dense: np.ndarray
    tokens: list[np.ndarray] | None


class DenseEncoder:
    """A Hugging Face encoder or decoder used as a bi-encoder and a zero-shot ColBERT model.

    Inputs are already-rendered strings (templates are applied by the caller). Truncation is at
    ``max_length`` tokens. For decoder models the EOS token is appended and the last token pooled.
    """

    def __init__(
        self,
        path: str,
        *,
        device: str | None = None,
        max_length: int | None = None,
        pooling: str | None = None,
        colbert_head: str | None = None,
        max_batch_tokens: int | None = None,
    ) -> None:
        import torch

        self.path = path
        self.layout: ModelLayout = read_layout(path)
        self.layout.check("dense model")
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        self.pooling = pooling or self.layout.pooling
        self.normalize = self.layout.normalize
        self.max_length = int(max_length or self.layout.max_length)
        self.max_batch_tokens = max_batch_tokens or batch_token_budget(self.device)
        self.is_decoder = self.layout.kind == "causal-lm"
        self._tokenizer = None
        self._lean_tokenizer = None
        self.model = None
        if not self.is_decoder:
            # BERT checkpoints run without importing transformers (lean_bert.py; WB_LEAN=0 disables)
            from workbench.encoders.bert_files import load_lean_tokenizer
            from workbench.encoders.lean_bert import load_lean_bert

            self.model = load_lean_bert(path, dtype=self.dtype, device=self.device)
            if self.model is not None:
                self._lean_tokenizer = load_lean_tokenizer(path, self.max_length)
        if self.model is None or self._lean_tokenizer is None:
            self._load_tokenizer()
        self._lean = self.model is not None  # lean BERT: what the numpy backend also runs
        if self.model is None:  # not a BERT lean_bert reproduces, or a tensor missing: transformers says which
            from transformers import AutoModel

            model = load_pretrained(AutoModel, path, "dense model", dtype=self.dtype)
            self.model = model.to(self.device).eval()
        self.colbert_projection = None
        self._projection_fp32 = None
        self._query_model = None  # the float32 model for queries (``query_model``), loaded on first use
        if colbert_head:
            state = torch.load(colbert_head, map_location="cpu", weights_only=True)
            weight = state["weight"]
            proj = torch.nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in state)
            proj.load_state_dict(state)
            self._projection_fp32 = copy.deepcopy(proj).float().to(self.device).eval()
            self.colbert_projection = proj.to(self.device, self.dtype).eval()
        self.dim = int(self.model.config.hidden_size)
        self.colbert_dim = (
            int(self.colbert_projection.out_features) if self.colbert_projection is not None else self.dim
        )

    @property
    def tokenizer(self):
        """The transformers tokenizer (loaded on first use when the lean tokenizer serves encoding)."""
        if self._tokenizer is None:
            self._load_tokenizer()
        return self._tokenizer

    def _load_tokenizer(self) -> None:
        tok = auto_tokenizer(self.path, "dense model")
        if self.is_decoder and tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self._tokenizer = tok

    def tokenize(self, texts: list[str], max_length: int | None = None) -> list[list[int]]:
        """Token ids per text, truncated to ``max_length`` (default: the encoder's ``max_length``; with
        EOS for decoders); lowercased first when the folder says so (``ModelLayout.lowercase``)."""
        texts = self.layout.prepare(texts)
        length = int(max_length or self.max_length)
        if self._lean_tokenizer is not None:
            return self._lean_tokenizer.ids(texts, length)
        if self.is_decoder:
            enc = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=length - 1)
            eos = self.tokenizer.eos_token_id
            return [ids + [eos] for ids in enc["input_ids"]]
        enc = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=length)
        return list(enc["input_ids"])

    def query_model(self):
        """(model, ColBERT projection or None) that queries run through: float32 ones for a BERT
        model lean_bert runs (the numpy backend's precision; loaded once, on first use, from the
        checkpoint: ~90 MB more for MiniLM), else the documents' own (a model only torch serves:
        every query path runs it in one dtype already; no second copy of a large model)."""
        import torch

        if self.dtype == torch.float32 or not self._lean:
            return self.model, self.colbert_projection
        if self._query_model is None:
            from workbench.encoders.lean_bert import load_lean_bert

            self._query_model = load_lean_bert(self.path, dtype=torch.float32, device=self.device) or self.model
        return self._query_model, self._projection_fp32

    def prompt_tokens(self, prompt: str) -> int:
        """How many leading tokens of a text that begins with ``prompt`` are the prompt's, as
        sentence-transformers counts them for ``include_prompt: false``: the prompt tokenized alone,
        its leading special token ([CLS]) in, a trailing special token ([SEP], EOS) out."""
        if not prompt:
            return 0
        ids = self.tokenize([prompt])[0]
        return len(ids) - 1 if ids and ids[-1] in self._special_ids() else len(ids)

    def _special_ids(self) -> set[int]:
        if self._lean_tokenizer is not None:
            return self._lean_tokenizer.special_ids
        return {int(i) for i in self.tokenizer.all_special_ids if i is not None}

    def encode(self, texts: list[str], *, tokens: bool = False, max_batch: int = 256,
               queries: bool = False, prompt: str = "") -> DenseOutput:
        """Encode ``texts``; order of outputs follows the inputs. ``queries``: through
        ``query_model`` (float32 for a BERT model even where documents run in bf16). ``prompt``: the
        prefix every text begins with (a query's rendered instruction, a document template's head);
        a model whose layout excludes the prompt (``include_prompt: false``) mean-pools without its
        ``prompt_tokens`` leading tokens, as sentence-transformers' ``encode(prompt=...)``; others
        ignore it. ColBERT token vectors always keep every token.

        The price of float32 queries, measured (MiniLM, SciFact queries, 2 threads of an avx512_bf16
        CPU, load ~1.7): 300 in one call 7.0 ms/query against 3.5 in bf16; one at a time 11.4 ms
        against 6.8; vs the numpy backend max|d| 2.1e-7 (bf16: 3.1e-3, min cosine 0.99992)."""
        import torch

        n = len(texts)
        dense = np.zeros((n, self.dim), dtype=np.float32)
        token_out: list[np.ndarray | None] = [None] * n
        if n == 0:
            return DenseOutput(dense, [] if tokens else None)
        ids = self.tokenize(texts)
        lean_tok = self._lean_tokenizer
        pad_id = (lean_tok.pad_token_id if lean_tok is not None else self.tokenizer.pad_token_id) or 0
        lengths = [len(x) for x in ids]
        skip = self.prompt_tokens(prompt) if self.layout.exclude_prompt else 0
        model, projection = self.query_model() if queries else (self.model, self.colbert_projection)
        with torch.inference_mode():
            for batch in length_sorted_batches(lengths, max_tokens=self.max_batch_tokens, max_batch=max_batch):
                padded, padded_mask, _ = pad_batch(ids, batch, pad_id)
                input_ids = torch.from_numpy(padded).to(self.device)
                mask = torch.from_numpy(padded_mask).to(self.device)
                hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                pooled = self._pool(hidden, mask, skip)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
                dense[batch] = pooled.float().cpu().numpy()
                if tokens:
                    tok = hidden if projection is None else projection(hidden)
                    tok = torch.nn.functional.normalize(tok.float(), dim=-1).to(torch.float16).cpu().numpy()
                    for row, i in enumerate(batch):
                        token_out[i] = tok[row, : lengths[i]]
        return DenseOutput(dense, token_out if tokens else None)  # type: ignore[arg-type]

    def _pool(self, hidden, mask, skip: int = 0):
        """CLS, last-token or mean pooling over ``mask``; mean leaves the first ``skip`` positions out
        (the prompt's tokens; right padding, so they are every row's first ``skip``)."""
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "last":
            last = mask.sum(dim=1) - 1
            return hidden[range(hidden.shape[0]), last]
        if skip:
            mask = mask.clone()
            mask[:, :skip] = 0
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
