"""Fine-tune a SPLADE model inside a run folder: ``trainers.loop.train_run(run)``.

Model: a masked-LM (``AutoModelForMaskedLM``; the workspace's sparse model, SPLADE-tiny, by
default). A text's vector is SPLADE's max pooling over its non-padding tokens t:
:math:`w_v = \\max_t \\log(1 + \\mathrm{relu}(\\mathrm{logit}_{t,v}))`, the same function
:class:`~workbench.encoders.sparse.SparseEncoder` serves (it computes
``log1p(relu(max_t logit))``, equal because log1p∘relu is monotonic). Queries and documents are
the raw texts (no template), truncated to ``query_max_length`` / ``passage_max_length``.

Loss per micro-batch of B examples (one positive each, ``negatives_per_query`` hard negatives
when every example has some): the dot products ``S [B, B + B·N]`` of every query with every
positive and hard negative of the batch, divided by ``temperature``, and a softmax cross entropy
whose target is the query's own positive (:class:`~trainers.losses.JointLHLoss` with a one-hot
mask; a candidate whose text is one of the query's own positives is masked out, as the
embedder masks it: :func:`~trainers.losses.one_positive_targets`), plus FLOPS regularisation
(:class:`~trainers.losses.FlopsRegularizer`) on the queries' and the documents' vectors separately: ``λq(t)·FLOPS(Q) + λd(t)·FLOPS(D)``, each λ growing
quadratically from 0 to its value over the first ``flops_warmup_ratio`` of the steps (as SPLADE).
Every ``step`` event reports the average non-zero terms of the batch's queries and documents
(``q_nnz``, ``d_nnz``) and the FLOPS terms.

The final folder is a plain ``*ForMaskedLM`` folder + ``wb_model.json``: ``wb index --model
sparse=runs/NAME`` builds a variant index with it. Evaluation (``eval_data``: a BEIR folder) is
nDCG@10 of the exact sparse dot product over the corpus.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from workbench.encoders.layout import position_limit
from workbench.errors import ModelError, UsageError, first_line

from .backbone import enable_checkpointing, fast_attention, padded
from .config import SpladeConfig
from .loop import Trainer, log
from .runs import staged_folder

__all__ = ["SpladeTrainer", "splade_vectors"]


def splade_vectors(logits, mask):
    """``[B, V]`` SPLADE weights from MLM ``logits [B, L, V]`` and ``mask [B, L]`` (1 = real token)."""
    import torch

    masked = logits.masked_fill(~mask.bool()[:, :, None], torch.finfo(logits.dtype).min)
    return torch.log1p(torch.relu(masked.max(dim=1).values))


class SpladeTrainer(Trainer):
    """SPLADE's parts of the loop (see the module docstring)."""

    def __init__(self, cfg: SpladeConfig) -> None:
        super().__init__(cfg)
        if cfg.lambda_q < 0 or cfg.lambda_d < 0:
            raise UsageError("lambda_q and lambda_d must be >= 0")

    def examples(self):
        from .data import read_datasets

        return read_datasets(self.cfg.data, split=self.cfg.split, instruction=None)

    def build(self):
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        from .losses import FlopsRegularizer, JointLHLoss

        cfg = self.cfg
        hf_config = cfg.check_base()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.base, trust_remote_code=False)
            model, loading = AutoModelForMaskedLM.from_pretrained(cfg.base, dtype="float32", output_loading_info=True,
                                                                  **fast_attention(hf_config), trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load masked-LM base '{cfg.base}': {first_line(exc)}") from exc
        head = [k for k in loading.get("missing_keys", ()) if k.startswith(("cls.", "lm_head", "vocab_"))]
        if head:  # e.g. a sentence-transformers bi-encoder: trainable, but said (the head starts random)
            from .loop import log

            log(f"the base '{cfg.base}' has no masked-LM head ({len(head)} of its weights start random): "
                "the vocabulary weights are learnt from scratch; a masked-LM checkpoint (splade-tiny, a BERT "
                "with its MLM head) starts from real term weights")
        if cfg.gradient_checkpointing:
            enable_checkpointing(model)
        limit = position_limit(model.config, 512)
        self.q_len, self.d_len = min(cfg.query_max_length, limit), min(cfg.passage_max_length, limit)
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.contrastive = JointLHLoss()
        self.flops = FlopsRegularizer()
        return model

    def describe(self) -> dict:
        return {"kind": "splade"}

    def encode(self, model, texts: list[str], max_length: int, device):
        ids = self.tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        input_ids, mask, _ = padded(ids, self.pad_id)
        input_ids, mask = input_ids.to(device), mask.to(device)
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        return splade_vectors(logits.float(), mask), int(mask.sum())

    def _lambda(self, value: float) -> float:
        warm = self.cfg.flops_warmup_ratio * max(1, self.total_steps)
        if warm <= 0:
            return value
        return value * min(1.0, (self.current_step + 1) / warm) ** 2

    def compute_loss(self, model, exs, rng: random.Random, device, accelerator):
        from .data.batching import draw_negatives
        from .losses import one_positive_targets

        cfg = self.cfg
        passages = [rng.choice(list(ex.positives)) for ex in exs]
        # each example brings its own hard negatives (one without any leaves the others theirs)
        neg_idx = draw_negatives(exs, cfg.negatives_per_query, rng)
        passages.extend(ex.negatives[j] for ex, js in zip(exs, neg_idx) for j in js)
        with accelerator.autocast():
            q, q_tok = self.encode(model, [ex.query for ex in exs], self.q_len, device)
            d, d_tok = self.encode(model, passages, self.d_len, device)
        q, d = q.float(), d.float()
        scores = q @ d.T
        target, clash = one_positive_targets(passages, [ex.positives for ex in exs], [ex.query for ex in exs],
                                             scores.device)
        ranking = self.contrastive((scores / cfg.temperature).masked_fill(clash, float("-inf")), target)
        flops_q, flops_d = self.flops(q), self.flops(d)
        loss = ranking + self._lambda(cfg.lambda_q) * flops_q + self._lambda(cfg.lambda_d) * flops_d
        self.record_metrics({
            "q_nnz": float((q > 0).sum(dim=1).float().mean()),
            "d_nnz": float((d > 0).sum(dim=1).float().mean()),
            "flops_q": float(flops_q.detach()),
            "flops_d": float(flops_d.detach()),
            "ranking_loss": float(ranking.detach()),
        })
        return loss, q_tok + d_tok

    def evaluate(self, model, device) -> float | None:
        import torch

        from .eval_set import inference, load_eval_set, ndcg_at_10

        data = load_eval_set(self.cfg.eval_data, self.cfg.eval_split)
        if data is None:
            return None
        queries, documents = data.query_texts(), data.documents()
        with inference(model):
            q = torch.cat([self.encode(model, queries[s : s + 64], self.q_len, device)[0].cpu()
                           for s in range(0, len(queries), 64)])
            scores = torch.zeros((len(queries), len(documents)))
            for s in range(0, len(documents), 32):
                d, _ = self.encode(model, documents[s : s + 32], self.d_len, device)
                scores[:, s : s + d.shape[0]] = q @ d.cpu().T
            value = ndcg_at_10(scores, data)
        log(f"eval ndcg@10 {value:.4f}")
        return value

    def save_final(self, model, out_dir: Path) -> None:
        with staged_folder(out_dir) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
            self.tokenizer.save_pretrained(str(tmp))
            # the lengths it trained at; serving cuts queries at query_max_length (workbench.encoders.sparse)
            (tmp / "wb_model.json").write_text(json.dumps({"kind": "splade", "base": str(self.cfg.base),
                                                            "max_length": self.d_len, "query_max_length": self.q_len,
                                                            "passage_max_length": self.d_len}, indent=2))
