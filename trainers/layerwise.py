r"""A layer-wise cross-encoder reranker with self-distillation, for early exit at serving time.

Model (:func:`LayerwiseModel`): a BERT-like encoder (``AutoModel``; the workspace's dense model
by default) and one linear head ``hidden -> 1`` per scored layer ``l`` (``cfg.layers``, 1-based:
the state after ``l`` transformer layers; default every layer from 2 to the last), applied to
that layer's ``[CLS]`` state: :math:`s^{(l)} = w_l \cdot h_l[\mathrm{CLS}] + b_l` with
``h_l = hidden_states[l]`` (``hidden_states[0]`` is the embedding output), read as the serving
:class:`~workbench.encoders.layerwise.LayerwiseReranker` reads it from an encoder cut after layer
``l`` (:func:`workbench.encoders.layerwise.cls_states`; a base whose layers it cannot find is
refused here, not when served). When the base is a
trained cross-encoder (a one-logit ``*ForSequenceClassification``, e.g. ``runs/NAME`` of ``wb
train reranker``), every head is instead its classifier, pooler included,
:math:`s^{(l)} = w_l \cdot \tanh(P_l h_l[\mathrm{CLS}] + p_l) + b_l`, started as a copy of it: the
last layer starts out scoring exactly as the cross-encoder, and the run teaches the earlier layers
to exit early (:func:`classifier_head`). Pairs are tokenized
with :func:`workbench.encoders.rerankers.tokenize_pairs`, as the serving
:class:`~workbench.encoders.layerwise.LayerwiseReranker` does.

Groups: as :mod:`trainers.reranker` (:func:`~trainers.reranker.build_groups`: one positive in
column 0, ``group_size - 1`` hard negatives, topped up in-batch, padding masked).

Loss (:func:`layerwise_loss`), with :math:`s^{(l)}_i` the scores of group ``i`` at layer ``l``,
:math:`L^*` the deepest scored layer (the teacher), ``w = distill_weight``, ``T = distill_temperature``:

.. math::
    \mathcal{L} = \sum_{l} \mathrm{CE}\big(s^{(l)}\big)
      + w \sum_{l < L^*} \frac{1}{B}\sum_i \mathrm{KL}\Big(
        \operatorname{softmax}\big(\operatorname{sg}(s^{(L^*)}_i)/T\big) \,\Big\|\,
        \operatorname{softmax}\big(s^{(l)}_i/T\big)\Big)

where CE is the configured reranker loss (``listwise``: softmax cross entropy with the positive
as target, :class:`~trainers.losses.ListwiseCELoss`), KL is
:class:`~trainers.losses.KLDistillationLoss` over each group's real candidates, and sg stops the
gradient: the last layer learns from the labels only, every earlier layer from the labels and
from the last layer's ranking (self-distillation, as BGE's layer-wise rerankers).

The heads train with ``head_lr``, the encoder with ``lr``; so does the last layer's head when it
is a copy of a cross-encoder base's classifier. The ``step`` events carry each layer's
CE (``loss_layer{l}``, averaged over the step's micro-batches).

Evaluation (``eval_data``: FlagEmbedding jsonl of held-out groups): MRR of the best positive at
every scored layer (the metric reported is the deepest layer's). The final folder: the encoder
(weights + tokenizer), ``layerwise_heads.safetensors`` and ``wb_model.json`` ``{"kind":
"layerwise-reranker", "layers", "default_cutoff", "max_length", ...}``. ``default_cutoff``:
``cfg.default_cutoff`` when set; else, with ``eval_data``, the smallest scored layer whose MRR is
at least ``cutoff_keep`` (0.98) of the deepest layer's; else the deepest layer.
``bench/bench_layerwise.py`` measures nDCG@10 and latency per cutoff on a BEIR test split and
can write its choice into ``wb_model.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.errors import ModelError, UsageError, first_line

from .backbone import enable_checkpointing, fast_attention
from .config import LayerwiseConfig
from .eval_set import inference
from .loop import log
from .reranker import RerankerTrainer, build_groups, eval_groups, group_mrr
from .runs import staged_folder

__all__ = ["LayerwiseModel", "LayerwiseTrainer", "layerwise_loss", "parse_layers"]


def parse_layers(value) -> list[int] | None:
    """``None``/``""`` -> None; ``"2,4,6"`` or ``[2, 4, 6]`` -> sorted unique ints (UsageError otherwise)."""
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        layers = sorted({int(str(x).strip()) for x in items if str(x).strip()})
    except ValueError as exc:
        raise UsageError(f"layers must be comma-separated layer numbers, not {value!r}") from exc
    return layers or None


def layerwise_loss(scores, mask, loss_fn, kl_fn, distill_weight: float):
    """The module docstring's loss for ``scores [B, G, K]`` (K scored layers, the deepest last) and
    ``mask [B, G]`` (False at padding). Returns ``(total, [loss at each layer])`` (tensors)."""
    per_layer = [loss_fn(scores[:, :, k], mask) for k in range(scores.shape[2])]
    total = sum(per_layer)
    if distill_weight > 0 and scores.shape[2] > 1:
        teacher = scores[:, :, -1].detach()
        for k in range(scores.shape[2] - 1):
            total = total + distill_weight * kl_fn(scores[:, :, k], teacher, mask)
    return total, per_layer


def classifier_head(model):
    """``(pool, out)`` Linear layers of a one-logit sequence classifier whose score is
    ``out(tanh(pool(h[CLS])))`` (BERT: ``pooler.dense`` + ``classifier``; RoBERTa-like:
    ``classifier.dense`` + ``classifier.out_proj``), or None for any other head shape."""
    import torch

    classifier = getattr(model, "classifier", None)
    pooler = getattr(model.base_model, "pooler", None)
    dense = getattr(pooler, "dense", None)
    activation = getattr(pooler, "activation", None)
    if isinstance(classifier, torch.nn.Linear) and isinstance(dense, torch.nn.Linear) and isinstance(activation, torch.nn.Tanh):
        return dense, classifier
    dense, out = getattr(classifier, "dense", None), getattr(classifier, "out_proj", None)
    if isinstance(dense, torch.nn.Linear) and isinstance(out, torch.nn.Linear) and type(classifier).__name__.startswith(("Roberta", "XLMRoberta", "Camembert")):
        return dense, out
    return None


def LayerwiseModel(encoder, layers: list[int], init_head=None):  # noqa: N802 - a factory returning an nn.Module
    """``encoder`` + ``heads[str(l)]`` per layer; ``forward`` -> float32 ``[N, len(layers)]``.

    Without ``init_head`` every head is a fresh ``Linear(hidden, 1)`` on the layer's [CLS] state.
    With ``init_head = (pool, out)`` (:func:`classifier_head` of a trained cross-encoder) every head
    is ``out(tanh(pool(h)))`` starting as a copy of that classifier, so the last layer scores
    exactly as the cross-encoder did and the earlier ones start from its head."""
    import copy

    import torch

    from workbench.encoders.layerwise import cls_states, find_layer_list

    class _PooledHead(torch.nn.Module):
        def __init__(self, pool, out) -> None:
            super().__init__()
            self.pool, self.out = copy.deepcopy(pool), copy.deepcopy(out)

        def forward(self, states):
            return self.out(torch.tanh(self.pool(states)))

    class _Layerwise(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.layers = list(layers)
            self.pooled = init_head is not None
            self.n_layers = int(encoder.config.num_hidden_layers)
            # a tuple, not a registered submodule (its layers are the encoder's); ModelError for an
            # encoder whose layers cannot be found, so such a base is refused before training
            self.layer_list = tuple(find_layer_list(encoder)[2])
            hidden = int(encoder.config.hidden_size)
            self.heads = torch.nn.ModuleDict({
                str(l): _PooledHead(*init_head) if init_head is not None else torch.nn.Linear(hidden, 1)
                for l in self.layers})

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids
            states = cls_states(self.encoder, self.layer_list, inputs, self.layers, self.n_layers)
            return torch.cat([self.heads[str(l)](cls).float() for l, cls in zip(self.layers, states)], dim=1)

    return _Layerwise()


class LayerwiseTrainer(RerankerTrainer):
    """The layer-wise reranker's parts of the loop (see the module docstring); data, groups and
    pair batches as :class:`~trainers.reranker.RerankerTrainer`."""

    metric_name = "mrr"

    def __init__(self, cfg: LayerwiseConfig) -> None:
        super().__init__(cfg)
        from .losses import KLDistillationLoss

        if cfg.distill_weight < 0:
            raise UsageError(f"distill_weight must be >= 0, not {cfg.distill_weight}")
        if not 0 < cfg.cutoff_keep <= 1:
            raise UsageError(f"cutoff_keep must be in (0, 1], not {cfg.cutoff_keep}")
        self.kl_fn = KLDistillationLoss(temperature=cfg.distill_temperature, teacher_temperature=cfg.distill_temperature)
        self.requested_layers = parse_layers(cfg.layers)
        self._eval_by_step: dict[int, dict[int, float]] = {}  # step (1-based) -> per-layer MRR evaluated there

    def build(self):
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        cfg = self.cfg
        init_head = None
        hf_config = cfg.check_base()  # a decoder base too
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.base, trust_remote_code=False)
            archs = " ".join(getattr(hf_config, "architectures", None) or ())
            if "ForSequenceClassification" in archs and int(getattr(hf_config, "num_labels", 1)) == 1:
                classifier = AutoModelForSequenceClassification.from_pretrained(
                    cfg.base, dtype="float32", **fast_attention(hf_config), trust_remote_code=False)
                init_head = classifier_head(classifier)
                encoder = classifier.base_model
            else:
                encoder = AutoModel.from_pretrained(cfg.base, dtype="float32", **fast_attention(hf_config), trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load base model '{cfg.base}': {first_line(exc)}") from exc
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        n_layers = int(encoder.config.num_hidden_layers)
        layers = self.requested_layers or (list(range(2, n_layers + 1)) if n_layers >= 2 else [n_layers])
        bad = [l for l in layers if not 1 <= l <= n_layers]
        if bad:
            raise UsageError(f"layers {bad} out of range: '{cfg.base}' has layers 1..{n_layers}")
        if cfg.default_cutoff and cfg.default_cutoff not in layers:
            raise UsageError(f"default_cutoff {cfg.default_cutoff} is not a scored layer ({layers})")
        self.layers = layers
        self.n_layers = n_layers
        pooler = getattr(encoder, "pooler", None)
        if pooler is not None:  # unused (the heads read [CLS] states): frozen, so no rank waits for its grads
            for param in pooler.parameters():
                param.requires_grad_(False)
        if cfg.gradient_checkpointing:
            enable_checkpointing(encoder)
        from workbench.encoders.layout import position_limit

        self.max_length = int(min(cfg.max_length, position_limit(encoder.config, cfg.max_length)))
        self.uses_token_types = "token_type_ids" in self.tokenizer.model_input_names
        self.kind = "layerwise-reranker"
        self.head_init = "cross-encoder" if init_head is not None else "new"
        if init_head is None and "ForSequenceClassification" in archs:
            log("the base's classifier head has an unknown shape: the per-layer heads start fresh")
        return LayerwiseModel(encoder, layers, init_head)

    def describe(self) -> dict:
        return {"kind": self.kind, "loss_name": self.loss_fn.name, "group_size": self.cfg.group_size,
                "layers": list(self.layers), "heads_from": self.head_init, "distill_weight": self.cfg.distill_weight}

    def param_groups(self, model) -> list:
        """The encoder trains with ``lr``, the heads with ``head_lr``, except the last layer's head
        when it was copied from a cross-encoder base: that one is the base's trained classifier on
        the very states it was trained on, so it trains with ``lr`` (as the reranker trainer trains
        a cross-encoder's head). The earlier copies score other layers' states and must adapt."""
        slow = [p for p in model.encoder.parameters() if p.requires_grad]
        fast = []
        for name, head in model.heads.items():
            copied_last = model.pooled and name == str(self.layers[-1])
            (slow if copied_last else fast).extend(head.parameters())
        return [{"params": slow, "lr": self.cfg.lr}] + ([{"params": fast, "lr": self.cfg.head_lr}] if fast else [])

    def compute_loss(self, model, exs, rng, device, accelerator):
        import torch

        drawn = build_groups(exs, self.cfg.group_size, rng, self.fallback_negatives)
        groups, masks = drawn.passages, drawn.masks
        width = len(groups[0])
        pairs = [(ex.query, passage) for ex, group in zip(exs, groups) for passage in group]
        batch = self._batch(pairs, device)
        with accelerator.autocast():
            scores = model(**batch)  # [B * G, K]
        scores = scores.float().reshape(len(exs), width, -1)
        mask = torch.tensor(masks, dtype=torch.bool, device=scores.device)
        total, per_layer = layerwise_loss(scores, mask, self.loss_fn, self.kl_fn, self.cfg.distill_weight)
        self.record_metrics({f"loss_layer{l}": float(x.detach()) for l, x in zip(self.layers, per_layer)})
        return total, int(batch["attention_mask"].sum())

    def score_layers(self, model, pairs: list[tuple[str, str]], device, batch_pairs: int = 32) -> list[list[float]]:
        """Per pair, the scores at every scored layer (``self.layers`` order)."""
        out: list[list[float]] = []
        with inference(model):
            for i in range(0, len(pairs), batch_pairs):
                out.extend(model(**self._batch(pairs[i : i + batch_pairs], device)).float().tolist())
        return out

    def layer_mrr(self, model, device) -> dict[int, float] | None:
        """MRR of the best positive among each held-out query's candidates, at every scored layer."""
        groups = eval_groups(self.cfg.eval_data)
        if groups is None:
            return None
        pairs, spans = groups
        scores = self.score_layers(model, pairs, device)
        result = {layer: group_mrr([row[k] for row in scores], spans) for k, layer in enumerate(self.layers)}
        log("eval mrr by layer " + ", ".join(f"{l}: {v:.4f}" for l, v in result.items()) + f" ({len(spans)} queries)")
        return result

    def evaluate(self, model, device) -> float | None:
        by_layer = self.layer_mrr(model, device)
        if by_layer is not None:
            self._eval_by_step[self.current_step + 1] = by_layer
        return None if by_layer is None else by_layer[self.layers[-1]]

    def choose_cutoff(self, by_layer: dict[int, float] | None) -> int:
        """``cfg.default_cutoff``; else the smallest layer within ``cutoff_keep`` of the deepest one's MRR."""
        if self.cfg.default_cutoff:
            return int(self.cfg.default_cutoff)
        if not by_layer:
            return self.layers[-1]
        full = by_layer[self.layers[-1]]
        return next(l for l in self.layers if by_layer[l] >= self.cfg.cutoff_keep * full)

    def save_final(self, model, out_dir: Path) -> None:
        from safetensors.torch import save_file

        from workbench.encoders.layerwise import HEADS_FILE, LAYERWISE_KIND, META_FILE

        by_layer = None
        if self.cfg.eval_data and not self.cfg.default_cutoff:
            # the saved weights' own evaluation (keep_best may save an earlier step's than the last)
            by_layer = self._eval_by_step.get(self.model_step) or self.layer_mrr(model, next(model.parameters()).device)
        cutoff = self.choose_cutoff(by_layer)
        with staged_folder(out_dir) as tmp:
            model.encoder.save_pretrained(str(tmp), safe_serialization=True)
            self.tokenizer.save_pretrained(str(tmp))
            tensors = {}
            for layer in self.layers:
                head = model.heads[str(layer)]
                parts = {"": head.out, "pool.": head.pool} if model.pooled else {"": head}
                for prefix, linear in parts.items():
                    tensors[f"{layer}.{prefix}weight"] = linear.weight.detach().float().cpu().contiguous()
                    tensors[f"{layer}.{prefix}bias"] = linear.bias.detach().float().cpu().contiguous()
            save_file(tensors, str(tmp / HEADS_FILE))
            (tmp / META_FILE).write_text(json.dumps({
                "kind": LAYERWISE_KIND, "base": str(self.cfg.base), "layers": list(self.layers),
                "head": "pooled" if model.pooled else "linear", "heads_from": self.head_init,
                "default_cutoff": cutoff, "num_hidden_layers": self.n_layers, "max_length": self.max_length,
                "loss": self.loss_fn.name, "group_size": self.cfg.group_size,
                "distill_weight": self.cfg.distill_weight, "distill_temperature": self.cfg.distill_temperature,
                "eval_mrr_by_layer": {str(l): v for l, v in by_layer.items()} if by_layer else None,
            }, indent=2))
        log(f"default cutoff layer {cutoff} of {self.layers}")
