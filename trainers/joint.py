"""BGE-M3-style joint training inside a run folder: one encoder, three retrieval heads trained together.

Model (:func:`JointModel`): the base encoder (BERT-like; the workspace's dense model by default, or a
joint run's folder to continue it) and two heads over its last-layer states ``h_1..h_L`` of a text
with token ids ``t_1..t_L``:

* dense: ``pool(h)`` with the base's pooling (its sentence-transformers files; MiniLM: mean),
  L2-normalised when the base normalises; score ``S_dense(q, d) = q . d``;
* sparse: ``sparse_linear`` (hidden -> 1): token weight ``w_i = relu(sparse_linear(h_i))``, 0 at
  special tokens; a term's weight is the max over its occurrences;
  ``S_sparse(q, d) = sum_{v in q and d} q_v d_v``;
* ColBERT: ``colbert_linear`` (hidden -> ``colbert_dim``, the hidden size by default, orthogonal
  weight and zero bias, so training starts at the zero-shot MaxSim over the base's tokens):
  ``c_i = normalize(colbert_linear(h_i))`` over every token; in training
  ``S_colbert(q, d) = (1/|q|) sum_i max_j q_i . d_j`` (the mean over query tokens keeps it on the
  dense score's scale; serving uses the sum, a per-query factor that changes no ranking).

The head functions are :mod:`workbench.encoders.joint`'s (``token_weights``, ``sparse_matrix``,
``colbert_vectors``), the ones the serving ``JointEncoder`` runs, so the vectors served are the
vectors trained. Queries and documents are the raw texts (no markers, no template): one forward
pass gives all three.

Loss per micro-batch of B examples (one positive each, ``negatives_per_query`` hard negatives when
every example has some): every mode m scores every query against every positive and hard negative
of the batch, ``S_m [B, B + B·N]``; with τ = ``temperature``, k = (a, b, c) = (``dense_weight``,
``sparse_weight``, ``colbert_weight``) and w = ``distill_weight``:

.. math::
    CE_m = \\mathrm{InfoNCE}(S_m / τ),\\qquad
    E = e_d S_{dense} + e_s S_{sparse} + e_c S_{colbert}\\ \\text{(detached)},\\\\
    KL_m = \\frac{1}{B}\\sum_i \\mathrm{KL}\\big(\\mathrm{softmax}(E_i/τ)\\,\\|\\,
           \\mathrm{softmax}(S_{m,i}/τ)\\big),\\qquad
    L = \\sum_m k_m\\,(CE_m + w\\,KL_m)

(e = ``ensemble_dense/sparse/colbert``, BGE-M3's 1 / 0.3 / 1: self-distillation from the ensemble
into each mode, :func:`self_distillation`).

A candidate whose text is one of the query's own positives (another example's positive or hard
negative) is no negative: its column is left out of every CE_m (``-inf``) and of both softmaxes of
every KL_m (``candidate_mask``), :func:`~trainers.losses.one_positive_targets`.

Sparse-collapse guard. The known failure: the relu head goes dead (every pre-activation < 0), its
weights are all 0, the sparse scores are all 0, and no gradient ever reaches the head again. Two
parts: (1) the head's bias starts at ``sparse_bias_init`` (0.5: every token starts with a positive
weight, the sparse score starts as a term-overlap count); (2) a floor: when the batch's mean number
of non-zero query terms falls below ``sparse_min_terms`` (decided over every rank), the head's bias
is lifted to at least ``max(sparse_bias_init, 0.1)`` (an optimizer moves a dead bias back by about
one learning rate a step: far too slow), and that step's loss gets
``sparse_guard_weight · mean(relu(0.1 - z))`` over the pre-activations z of every non-special token
of the batch (queries and passages): a gradient that flows where the relu passes none and pushes
the tokens still dead back above 0. Each ``step`` event logs ``q_nnz`` / ``d_nnz`` (mean non-zero terms of
the queries' / passages' sparse vectors), ``sparse_guard`` (1 when the penalty was on), the three
CE terms and the three KL terms.

The final folder: the encoder in sentence-transformers layout (``--model dense=runs/NAME`` reads it
as an embedder run), ``sparse_linear.pt``, ``colbert_linear.pt`` (``nn.Linear`` state dicts, BGE-M3's
names) and ``wb_model.json`` ``{"kind": "joint", ...}``. ``wb index --model joint=runs/NAME`` (or
``dense=/sparse=/colbert=`` separately) builds a variant whose columns come from it. Evaluation
(``eval_data``: a BEIR folder): nDCG@10 of each mode and of the ensemble score E (the metric), by
exact scoring of the whole corpus.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from workbench.encoders.layout import position_limit
from workbench.errors import UsageError

from .config import JointConfig
from .loop import Trainer, log
from .runs import staged_folder

__all__ = ["GUARD_MARGIN", "JointModel", "JointTrainer", "MODES", "ensemble_scores", "self_distillation"]

MODES = ("dense", "sparse", "colbert")
GUARD_MARGIN = 0.1  # the guard pushes dead pre-activations up to this


def ensemble_scores(scores: dict, weights: dict):
    """``sum_m weights[m] * scores[m]`` over the three modes (BGE-M3's dense + 0.3 sparse + colbert)."""
    return sum(float(weights[m]) * scores[m] for m in MODES)


def self_distillation(scores: dict, teacher, temperature: float, candidate_mask=None) -> dict:
    """Per mode m: ``KL(softmax(teacher/τ) || softmax(scores[m]/τ))``, averaged over the queries
    (rows); the teacher is detached (no gradient flows into the ensemble). ``candidate_mask``
    (``[B, C]`` bool, False at a row's false negatives) leaves those columns out of both softmaxes."""
    from .losses import KLDistillationLoss

    kl = KLDistillationLoss(temperature=temperature, teacher_temperature=temperature)
    return {m: kl(scores[m], teacher.detach(), candidate_mask) for m in MODES}


def JointModel(encoder, *, colbert_dim: int, pooling: str, normalize: bool, special_ids: list[int],  # noqa: N802
               sparse_bias_init: float):
    """``encoder`` + ``sparse_linear`` (hidden -> 1, bias ``sparse_bias_init``) + ``colbert_linear``
    (hidden -> colbert_dim, orthogonal weight, zero bias). ``forward(input_ids, attention_mask)``
    returns ``(dense [B, H], pre [B, L], weights [B, L], colbert [B, L, dim])``."""
    import torch

    from workbench.encoders.joint import colbert_vectors, token_weights

    from .backbone import pool

    class _Joint(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            hidden = int(encoder.config.hidden_size)
            self.sparse_linear = torch.nn.Linear(hidden, 1)
            torch.nn.init.constant_(self.sparse_linear.bias, float(sparse_bias_init))
            self.colbert_linear = torch.nn.Linear(hidden, colbert_dim)
            torch.nn.init.orthogonal_(self.colbert_linear.weight)
            torch.nn.init.zeros_(self.colbert_linear.bias)
            self.pooling, self.normalize = pooling, normalize
            self.special_ids = list(special_ids)

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            dense = pool(hidden, attention_mask, self.pooling)
            if self.normalize:
                dense = torch.nn.functional.normalize(dense.float(), dim=-1)
            pre, weights = token_weights(hidden, input_ids, attention_mask, self.sparse_linear, self.special_ids)
            return dense, pre, weights, colbert_vectors(hidden, self.colbert_linear)

    return _Joint()


class _Encoded:
    """One side of a batch: dense [B, H], sparse [B, V], colbert [B, L, dim], mask [B, L], and the
    sparse pre-activations of the non-special tokens (for the guard)."""

    def __init__(self, dense, sparse, colbert, mask, live_pre) -> None:
        self.dense, self.sparse, self.colbert, self.mask, self.live_pre = dense, sparse, colbert, mask, live_pre


class JointTrainer(Trainer):
    """The joint model's parts of the loop (see the module docstring)."""

    def __init__(self, cfg: JointConfig) -> None:
        super().__init__(cfg)
        for key in ("dense_weight", "sparse_weight", "colbert_weight", "distill_weight", "sparse_min_terms",
                    "sparse_guard_weight"):
            if getattr(cfg, key) < 0:
                raise UsageError(f"{key} must be >= 0, not {getattr(cfg, key)}")
        if cfg.dense_weight + cfg.sparse_weight + cfg.colbert_weight <= 0:
            raise UsageError("at least one of dense_weight, sparse_weight, colbert_weight must be > 0")
        if not cfg.temperature > 0:
            raise UsageError(f"temperature must be > 0, not {cfg.temperature}")
        if cfg.colbert_dim < 0:
            raise UsageError(f"colbert_dim must be >= 0 (0: the hidden size), not {cfg.colbert_dim}")
        if cfg.pooling not in ("auto", "mean", "cls"):
            raise UsageError(f"pooling must be auto, mean or cls, not {cfg.pooling!r}")
        self.mode_weights = {"dense": cfg.dense_weight, "sparse": cfg.sparse_weight, "colbert": cfg.colbert_weight}
        self.ensemble = {"dense": cfg.ensemble_dense, "sparse": cfg.ensemble_sparse, "colbert": cfg.ensemble_colbert}
        self._eval: dict = {}

    def examples(self):
        from .data import read_datasets

        return read_datasets(self.cfg.data, split=self.cfg.split, instruction=None)

    def build(self):
        import torch

        from workbench.encoders.joint import COLBERT_HEAD, SPARSE_HEAD, read_joint_meta

        from .backbone import load_backbone
        from .losses import JointLHLoss

        cfg = self.cfg
        cfg.check_base()  # a decoder base
        encoder, tokenizer, pooling, normalize, _kind = load_backbone(
            cfg.base, cfg.pooling, gradient_checkpointing=cfg.gradient_checkpointing)
        self.tokenizer, self.pooling, self.normalize = tokenizer, pooling, normalize
        hidden = int(encoder.config.hidden_size)
        prior = read_joint_meta(cfg.base)  # continuing a joint run: its heads too
        dim = cfg.colbert_dim or (int(prior["colbert_dim"]) if prior else hidden)
        limit = position_limit(encoder.config, 512)
        self.q_len, self.d_len = min(cfg.query_max_length, limit), min(cfg.passage_max_length, limit)
        self.vocab_size = int(encoder.config.vocab_size)
        self.special_ids = sorted(int(i) for i in tokenizer.all_special_ids if i is not None)
        self.contrastive = JointLHLoss()
        model = JointModel(encoder, colbert_dim=dim, pooling=pooling, normalize=normalize,
                           special_ids=self.special_ids, sparse_bias_init=cfg.sparse_bias_init)
        if prior is not None:
            for name, layer in ((SPARSE_HEAD, model.sparse_linear), (COLBERT_HEAD, model.colbert_linear)):
                state = torch.load(str(Path(cfg.base) / name), map_location="cpu", weights_only=True)
                if tuple(state["weight"].shape) != tuple(layer.weight.shape):
                    raise UsageError(f"{name} in {cfg.base} has shape {tuple(state['weight'].shape)}, "
                                     f"not {tuple(layer.weight.shape)} (colbert_dim {dim})")
                layer.load_state_dict(state)
            log(f"heads loaded from the joint model {cfg.base}")
        self.colbert_dim = dim
        return model

    def describe(self) -> dict:
        return {"kind": "joint", "pooling": self.pooling, "colbert_dim": self.colbert_dim}

    def param_groups(self, model) -> list:
        heads = [p for m in (model.sparse_linear, model.colbert_linear) for p in m.parameters() if p.requires_grad]
        body = [p for p in model.encoder.parameters() if p.requires_grad]
        return [{"params": body, "lr": self.cfg.lr}, {"params": heads, "lr": self.cfg.head_lr}]

    def encode(self, model, texts: list[str], max_length: int, device) -> _Encoded:
        """The three representations of ``texts`` (with gradients when the model trains)."""
        import torch

        from workbench.encoders.joint import sparse_matrix

        from .backbone import tokenize

        batch = tokenize(self.tokenizer, list(texts), max_length, "mean")
        input_ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        dense, pre, weights, colbert = model(input_ids, mask)
        special = torch.tensor(self.special_ids, device=device, dtype=input_ids.dtype)
        live = mask.bool() & ~torch.isin(input_ids, special)
        return _Encoded(dense.float(), sparse_matrix(input_ids, weights.float(), self.vocab_size), colbert.float(),
                        mask, pre[live].float())

    def scores(self, q: _Encoded, d: _Encoded) -> dict:
        """``{mode: [Bq, Bd]}`` training scores (ColBERT: MaxSim / query tokens)."""
        from .colbert import maxsim_matrix

        colbert = maxsim_matrix(q.colbert, q.mask, d.colbert, d.mask) / q.mask.sum(dim=1, keepdim=True).float()
        return {"dense": q.dense @ d.dense.T, "sparse": q.sparse @ d.sparse.T, "colbert": colbert}

    def compute_loss(self, model, exs, rng: random.Random, device, accelerator):
        import torch

        from .data.batching import draw_negatives
        from .losses import one_positive_targets

        cfg = self.cfg
        passages = [ex.positives[rng.randrange(len(ex.positives))] for ex in exs]
        # each example brings its own hard negatives (one without any leaves the others theirs)
        neg_idx = draw_negatives(exs, cfg.negatives_per_query, rng)
        passages.extend(ex.negatives[j] for ex, js in zip(exs, neg_idx) for j in js)
        with accelerator.autocast():
            q = self.encode(model, [ex.query for ex in exs], self.q_len, device)
            d = self.encode(model, passages, self.d_len, device)
        scores = self.scores(q, d)  # [B, B + the hard negatives] each
        target, clash = one_positive_targets(passages, [ex.positives for ex in exs], [ex.query for ex in exs],
                                             scores["dense"].device)
        ce = {m: self.contrastive((scores[m] / cfg.temperature).masked_fill(clash, float("-inf")), target)
              for m in MODES}
        loss = sum(self.mode_weights[m] * ce[m] for m in MODES)
        kl = {}
        if cfg.distill_weight > 0:
            kl = self_distillation(scores, ensemble_scores(scores, self.ensemble), cfg.temperature, ~clash)
            loss = loss + cfg.distill_weight * sum(self.mode_weights[m] * kl[m] for m in MODES)
        q_nnz = float((q.sparse > 0).sum(dim=1).float().mean())
        d_nnz = float((d.sparse > 0).sum(dim=1).float().mean())
        guard = cfg.sparse_min_terms > 0 and q_nnz < cfg.sparse_min_terms
        if cfg.sparse_min_terms > 0 and accelerator.num_processes > 1:  # every rank lifts the bias alike
            flag = torch.tensor([1.0 if guard else 0.0], device=device)
            guard = bool(accelerator.reduce(flag, "max").item() > 0)
        if guard:
            live = torch.cat([q.live_pre, d.live_pre])
            if live.numel():
                loss = loss + cfg.sparse_guard_weight * torch.relu(GUARD_MARGIN - live).mean()
            # the bias is not saved for backward (d loss / d bias = sum of the output grads): lifting it
            # now is safe, and the next step's tokens start above 0 again
            head = accelerator.unwrap_model(model).sparse_linear
            with torch.no_grad():
                head.bias.clamp_(min=max(cfg.sparse_bias_init, GUARD_MARGIN))
        # sparse_guard: the share of the step's micro-batches the guard lifted
        self.record_metrics({"q_nnz": q_nnz, "d_nnz": d_nnz, "sparse_guard": int(guard),
                             **{f"{m}_loss": float(ce[m].detach()) for m in MODES},
                             **{f"kl_{m}": float(kl[m].detach()) for m in kl}})
        return loss, int(q.mask.sum() + d.mask.sum())

    def eval_details(self) -> dict:
        return dict(self._eval)

    def evaluate(self, model, device) -> float | None:
        import torch

        from .eval_set import inference, load_eval_set, ndcg_at_10

        data = load_eval_set(self.cfg.eval_data, self.cfg.eval_split)
        if data is None:
            return None
        queries, documents = data.query_texts(), data.documents()
        all_scores = {m: torch.zeros((len(queries), len(documents))) for m in MODES}
        with inference(model):
            q_parts = [self.encode(model, queries[s : s + 16], self.q_len, device) for s in range(0, len(queries), 16)]
            for s in range(0, len(documents), 32):
                d = self.encode(model, documents[s : s + 32], self.d_len, device)
                row = 0
                for q in q_parts:
                    part = self.scores(q, d)
                    for m in MODES:
                        all_scores[m][row : row + q.dense.shape[0], s : s + d.dense.shape[0]] = part[m].cpu()
                    row += q.dense.shape[0]
        all_scores["fused"] = ensemble_scores(all_scores, self.ensemble)
        results = {name: ndcg_at_10(matrix, data) for name, matrix in all_scores.items()}
        self._eval = {f"ndcg@10_{name}": value for name, value in results.items()}
        log("eval ndcg@10 " + ", ".join(f"{name} {value:.4f}" for name, value in results.items()))
        return results["fused"]

    def save_final(self, model, out_dir: Path) -> None:
        import torch

        from workbench.encoders.joint import COLBERT_HEAD, JOINT_KIND, SPARSE_HEAD
        from workbench.encoders.templates import PLAIN

        from .backbone import save_final as save_encoder, set_served_length

        with staged_folder(out_dir) as tmp:
            save_encoder(model.encoder, self.tokenizer, self.cfg.base, tmp, pooling=self.pooling,
                         normalize=self.normalize, kind="encoder", max_length=self.d_len)
            set_served_length(tmp, self.d_len)  # a sentence-transformers base's own length otherwise
            for name, layer in ((SPARSE_HEAD, model.sparse_linear), (COLBERT_HEAD, model.colbert_linear)):
                torch.save({k: v.detach().float().cpu().contiguous() for k, v in layer.state_dict().items()}, tmp / name)
            (tmp / "wb_model.json").write_text(json.dumps({
                "kind": JOINT_KIND, "base": str(self.cfg.base), "pooling": self.pooling, "normalize": bool(self.normalize),
                "colbert_dim": self.colbert_dim, "special_ids": self.special_ids, "vocab_size": self.vocab_size,
                "query_max_length": self.q_len, "passage_max_length": self.d_len, "temperature": self.cfg.temperature,
                "ensemble": dict(self.ensemble),
                # it trained on bare texts, whatever prompts the base's sentence-transformers config has
                "templates": {"query": PLAIN.query, "document": PLAIN.document,
                              "instruction_format": PLAIN.instruction_format},
            }, indent=2))
