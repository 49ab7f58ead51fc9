"""Train a ColBERT model inside a run folder: ``trainers.loop.train_run(run)``.

Model (:class:`ColbertModel`): the base encoder (BERT-like; the workspace's dense model by
default) and a linear projection of its last-layer token states to ``dim`` (128) without bias,
initialised with random orthonormal rows (``projection_init = "orthogonal"``: a random projection
keeps the base's token geometry, so training starts near the zero-shot MaxSim over its tokens) or
with the top principal directions of the base's normalised token states (``"pca"``), or, when
``dim`` equals the hidden size, with the identity (``"identity"``: the untrained model's token
vectors are the base's normalised token states, exactly the zero-shot MaxSim's). Measured on
60 held-out SciFact train queries (MRR of the positive among 1 + 7 mined negatives): zero-shot
384-d 0.882, orthogonal 128-d 0.874, PCA 128-d 0.860 (the top directions are the shared, least
discriminative ones), hence the default. Queries get the query
marker and documents the document marker after ``[CLS]`` (``[unused0]`` / ``[unused1]`` when the
vocabulary has them, as ColBERT); every token vector is L2-normalised; the score of a query and
a document is MaxSim: :math:`s(q, d) = \\sum_{i \\in q} \\max_{j \\in d} q_i \\cdot d_j`.
Inputs are built with :mod:`workbench.encoders.colbert` (``colbert_ids``), the serving code.

Loss, per micro-batch of B examples (one positive drawn per example, plus
``negatives_per_query`` hard negatives from each example that has some; one without brings none and
the others keep theirs): the score matrix ``S`` of every query against every positive and hard
negative of the batch,
divided by ``temperature``, and a softmax cross entropy whose target is the query's own positive
(:class:`~trainers.losses.JointLHLoss` with a one-hot mask: InfoNCE over a score matrix).
A candidate whose text is one of the query's own positives (another example's positive or hard
negative, pooled over the rows of the same query) is no negative: its column is masked
(:func:`~trainers.losses.one_positive_targets`, as the embedder masks it).
With ``kl_weight > 0`` and teacher scores in the data (``pos_scores`` / ``neg_scores``), add
``kl_weight`` x :class:`~trainers.losses.KLDistillationLoss` between the student's and the
teacher's scores over each query's own group (positive + its negatives), averaged over the
examples that brought negatives (each ``step`` event logs it as ``kl``); ``kl_weight > 0`` with
``negatives_per_query = 0`` (groups of the positive alone: a KL of 0) is refused before the run.

The projection (a fresh layer) trains with ``head_lr``, the encoder with ``lr``.

The final folder: the fine-tuned encoder (Hugging Face layout + tokenizer), ``colbert_head.pt``,
``wb_colbert.json`` (markers, lengths, dim) and ``wb_model.json``. ``wb index --model
colbert=runs/NAME`` builds a variant index with its vectors; ``wb query/eval --model`` or
``--compare colbert=runs/NAME`` use it. Evaluation (``eval_data``: a BEIR folder) is nDCG@10 of
exact MaxSim over the whole corpus (slow on CPU: every passage is encoded).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from workbench.encoders.layout import position_limit
from workbench.errors import ModelError, UsageError, first_line

from .backbone import enable_checkpointing, fast_attention, padded
from .config import ColbertConfig
from .eval_set import inference
from .loop import Trainer, log
from .runs import staged_folder

__all__ = ["ColbertModel", "ColbertTrainer", "maxsim_matrix"]


def _torch_module():
    import torch

    return torch


def maxsim_matrix(q, q_mask, d, d_mask):
    """``[Bq, Bd]`` MaxSim scores: ``q [Bq, Lq, h]`` and ``d [Bd, Ld, h]`` normalised vectors,
    masks 1 at real tokens. Padding document tokens never win a max; padding query tokens add 0."""
    torch = _torch_module()
    sim = torch.einsum("qih,djh->qdij", q, d)
    sim = sim.masked_fill(~d_mask.bool()[None, :, None, :], -1e4)
    best = sim.max(dim=-1).values  # [Bq, Bd, Lq]
    return (best * q_mask.to(best.dtype)[:, None, :]).sum(dim=-1)


def ColbertModel(encoder, dim: int):  # noqa: N802 - a factory returning an nn.Module
    """``encoder`` + ``projection`` (Linear hidden -> dim, no bias, random orthonormal rows)."""
    torch = _torch_module()

    class _Colbert(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            hidden = int(encoder.config.hidden_size)
            self.projection = torch.nn.Linear(hidden, dim, bias=False)
            torch.nn.init.orthogonal_(self.projection.weight)

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return torch.nn.functional.normalize(self.projection(hidden).float(), dim=-1)

    return _Colbert()


def marker_ids(tokenizer, query_marker: str, document_marker: str) -> tuple[int, int]:
    """The query and document marker token ids: ``[unused0]`` / ``[unused1]`` where the vocabulary has
    them (BERT), else the first token of ``query_marker`` / ``document_marker``. Two markers that come
    out as one token (a byte-level vocabulary cuts "[Q]" and "[D]" to the same "[") would let the model
    tell queries from documents by nothing: :class:`UsageError`, naming the config keys to set."""
    vocab = tokenizer.get_vocab()

    def first_token(preferred: str, text: str) -> int:
        if preferred in vocab:
            return int(vocab[preferred])
        ids = tokenizer(text.strip(), add_special_tokens=False)["input_ids"]
        if not ids:
            raise ModelError(f"cannot make a marker token from {text!r}")
        return int(ids[0])

    q, d = first_token("[unused0]", query_marker), first_token("[unused1]", document_marker)
    if q == d:
        token = tokenizer.convert_ids_to_tokens(q)
        raise UsageError(f"the query marker {query_marker.strip()!r} and the document marker {document_marker.strip()!r} "
                         f"both begin with the token {token!r} in this vocabulary: set query_marker and "
                         "document_marker to texts whose first tokens differ (e.g. \" Q\" and \" D\")")
    return q, d

class ColbertTrainer(Trainer):
    """ColBERT's parts of the loop (see the module docstring)."""

    def __init__(self, cfg: ColbertConfig) -> None:
        super().__init__(cfg)
        if cfg.dim < 1:
            raise UsageError(f"dim must be positive, not {cfg.dim}")
        if cfg.loss.strip().lower() not in ("infonce", "contrastive"):
            raise UsageError(f"the ColBERT trainer's loss is 'infonce' (+ kl_weight for distillation), not {cfg.loss!r}")
        cfg.check_options()  # as `wb train` checks before the run exists (a run started from the API too)

    def examples(self):
        from .data import read_datasets

        examples = read_datasets(self.cfg.data, split=self.cfg.split, instruction=None)
        self.cfg.check_examples(examples)
        self._examples = examples
        return examples

    def _pca_projection(self, model) -> None:
        """Set the projection to the top ``dim`` eigenvectors of the second-moment matrix of the
        base's L2-normalised token states (the first ``pca_passages`` training positives and their
        queries, with markers): the 128-d dot products then keep as much of the zero-shot MaxSim
        geometry as a linear map can, and training starts near the zero-shot model."""
        import torch

        exs = list(getattr(self, "_examples", []))[: self.cfg.pca_passages]
        if not exs:
            return
        hidden = int(model.encoder.config.hidden_size)
        moment = torch.zeros((hidden, hidden), dtype=torch.float64)
        count = 0
        with inference(model):
            for start in range(0, len(exs), 16):
                part = exs[start : start + 16]
                for texts, query in (([ex.query for ex in part], True), ([ex.positives[0] for ex in part], False)):
                    ids = self._ids(texts, self.q_marker if query else self.d_marker, self.q_len if query else self.d_len)
                    input_ids, mask = self._batch(ids, torch.device("cpu"))
                    states = model.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
                    rows = torch.nn.functional.normalize(states[mask.bool()].double(), dim=-1)
                    moment += rows.T @ rows
                    count += rows.shape[0]
        _values, vectors = torch.linalg.eigh(moment / max(1, count))  # ascending
        top = vectors[:, -self.cfg.dim :].flip(1).T.contiguous()  # [dim, hidden], orthonormal rows
        model.projection.weight.data.copy_(top.to(model.projection.weight.dtype))
        log(f"projection initialised from the top {self.cfg.dim} principal directions of {count} token states")

    def build(self):
        from transformers import AutoModel, AutoTokenizer

        from .losses import JointLHLoss, KLDistillationLoss

        cfg = self.cfg
        hf_config = cfg.check_base()  # a decoder base too
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.base, trust_remote_code=False)
            encoder = AutoModel.from_pretrained(cfg.base, dtype="float32", **fast_attention(hf_config), trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load base model '{cfg.base}': {first_line(exc)}") from exc
        if cfg.gradient_checkpointing:
            enable_checkpointing(encoder)
        self.q_marker, self.d_marker = marker_ids(self.tokenizer, cfg.query_marker, cfg.document_marker)
        limit = position_limit(encoder.config, 512)
        self.q_len = min(cfg.query_max_length, limit)
        self.d_len = min(cfg.passage_max_length, limit)
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.contrastive = JointLHLoss()
        self.kl = KLDistillationLoss(temperature=cfg.temperature) if cfg.kl_weight > 0 else None
        model = ColbertModel(encoder, cfg.dim)
        if cfg.projection_init == "pca":
            if cfg.dim > int(encoder.config.hidden_size):
                raise UsageError(f"dim {cfg.dim} is larger than the encoder's {encoder.config.hidden_size}: "
                                 "use projection_init = 'orthogonal'")
            self._pca_projection(model)
        elif cfg.projection_init == "identity":
            hidden = int(encoder.config.hidden_size)
            if cfg.dim != hidden:
                raise UsageError(f"projection_init 'identity' needs dim = the encoder's hidden size ({hidden}), not {cfg.dim}")
            import torch

            with torch.no_grad():
                model.projection.weight.copy_(torch.eye(hidden, dtype=model.projection.weight.dtype))
        elif cfg.projection_init != "orthogonal":
            raise UsageError(f"projection_init must be 'orthogonal', 'pca' or 'identity', not {cfg.projection_init!r}")
        return model

    def describe(self) -> dict:
        return {"kind": "colbert", "dim": self.cfg.dim}

    def param_groups(self, model) -> list:
        head = [p for p in model.projection.parameters() if p.requires_grad]
        body = [p for p in model.encoder.parameters() if p.requires_grad]
        return [{"params": body, "lr": self.cfg.lr}, {"params": head, "lr": self.cfg.head_lr}]

    def _ids(self, texts: list[str], marker: int, max_length: int) -> list[list[int]]:
        from workbench.encoders.colbert import colbert_ids

        raw = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [colbert_ids(list(ids), marker, max_length) for ids in raw]

    def _batch(self, ids: list[list[int]], device):
        input_ids, mask, _ = padded(ids, self.pad_id)
        return input_ids.to(device), mask.to(device)

    def encode(self, model, texts: list[str], query: bool, device):
        ids = self._ids(texts, self.q_marker if query else self.d_marker, self.q_len if query else self.d_len)
        input_ids, mask = self._batch(ids, device)
        return model(input_ids, mask), mask

    def compute_loss(self, model, exs, rng: random.Random, device, accelerator):
        from .data.batching import draw_negatives
        from .losses import one_positive_targets

        cfg = self.cfg
        pos_idx = [rng.randrange(len(ex.positives)) for ex in exs]
        neg_idx = draw_negatives(exs, cfg.negatives_per_query, rng)
        passages = [ex.positives[i] for ex, i in zip(exs, pos_idx)]
        passages.extend(ex.negatives[j] for ex, js in zip(exs, neg_idx) for j in js)
        with accelerator.autocast():
            q, q_mask = self.encode(model, [ex.query for ex in exs], True, device)
            d, d_mask = self.encode(model, passages, False, device)
        scores = maxsim_matrix(q.float(), q_mask, d.float(), d_mask)  # [B, B + the hard negatives]
        target, clash = one_positive_targets(passages, [ex.positives for ex in exs], [ex.query for ex in exs],
                                             scores.device)
        loss = self.contrastive((scores / cfg.temperature).masked_fill(clash, float("-inf")), target)
        if self.kl is not None:
            kl = self._distillation(scores, exs, pos_idx, neg_idx)
            self.record_metrics({"kl": float(kl.detach())})
            loss = loss + cfg.kl_weight * kl
        return loss, int(q_mask.sum() + d_mask.sum())

    def _distillation(self, scores, exs, pos_idx: list[int], neg_idx: list[list[int]]):
        """KL(teacher || student) over each example's own group (its positive's column and its hard
        negatives' columns of ``scores``), averaged over the examples that brought negatives (one
        without has nothing to distil: it leaves the mean, the others keep their term); 0 when none
        did."""
        import torch

        b = len(exs)
        starts = [b + sum(len(js) for js in neg_idx[:i]) for i in range(b)]
        rows = [i for i in range(b) if neg_idx[i]]  # each with exactly negatives_per_query of them
        if not rows:
            return scores.new_zeros(())
        cols = torch.tensor([[i] + [starts[i] + k for k in range(len(neg_idx[i]))] for i in rows],
                            device=scores.device)
        student = scores[torch.tensor(rows, device=scores.device)].gather(1, cols)
        teacher = torch.tensor([[exs[i].positive_scores[pos_idx[i]]] + [exs[i].negative_scores[j] for j in neg_idx[i]]
                                for i in rows], dtype=student.dtype, device=student.device)
        return self.kl(student, teacher)

    def evaluate(self, model, device) -> float | None:
        import torch

        from .eval_set import load_eval_set, ndcg_at_10

        data = load_eval_set(self.cfg.eval_data, self.cfg.eval_split)
        if data is None:
            return None
        queries, documents = data.query_texts(), data.documents()
        with inference(model):
            q, q_mask = self.encode(model, queries, True, device)
            scores = torch.zeros((len(queries), len(documents)))
            for s in range(0, len(documents), 32):
                d, d_mask = self.encode(model, documents[s : s + 32], False, device)
                scores[:, s : s + d.shape[0]] = maxsim_matrix(q, q_mask, d, d_mask).cpu()
            value = ndcg_at_10(scores, data)
        log(f"eval ndcg@10 {value:.4f}")
        return value

    def save_final(self, model, out_dir: Path) -> None:
        import torch

        from workbench.encoders.colbert import COLBERT_HEAD, COLBERT_META

        with staged_folder(out_dir) as tmp:
            model.encoder.save_pretrained(str(tmp), safe_serialization=True)
            self.tokenizer.save_pretrained(str(tmp))
            torch.save({"weight": model.projection.weight.detach().float().cpu().contiguous()}, tmp / COLBERT_HEAD)
            (tmp / COLBERT_META).write_text(json.dumps({
                "dim": self.cfg.dim, "query_marker_id": self.q_marker, "document_marker_id": self.d_marker,
                "query_max_length": self.q_len, "document_max_length": self.d_len, "query_augmentation": False,
                "mask_token_id": self.tokenizer.mask_token_id,
            }, indent=2))
            (tmp / "wb_model.json").write_text(json.dumps({"kind": "colbert", "base": str(self.cfg.base),
                                                            "dim": self.cfg.dim}, indent=2))
