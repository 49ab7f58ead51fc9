"""Fine-tune a cross-encoder reranker inside a run folder: ``trainers.loop.train_run(run)``.

Model: ``AutoModelForSequenceClassification(base, num_labels=1)``. The base may be any BERT-like
encoder (the workspace's dense model by default; the classification head then starts random) or
a cross-encoder already. Each pair is tokenized exactly as the serving
:class:`~workbench.encoders.rerankers.CrossEncoderReranker` does (query cut to half of
``max_length`` tokens, passage truncated, ``tokenize_pairs``), so the logit trained is the score
served. Serving truncates at 512 tokens, not at the ``max_length`` trained with (see
``CrossEncoderReranker``): the head scores longer passages than it trained on.

Groups: per example one positive (drawn at random) first, then ``group_size - 1`` of its hard
negatives (drawn without replacement). An example with too few hard negatives is topped up with
the positives of the other examples of the micro-batch (in-batch negatives); what is still missing
is padding, masked out of the loss. One left with no negative at all (alone in its micro-batch)
draws one of the data's other positives (``negative_pool``). The draws come from the loop's per-step ``Random``, so a
resumed run makes the same ones.

A new head (the base is a plain encoder: every layer of the classifier outside the encoder, and
the pooler, :func:`head_parameters`) trains with ``head_lr`` (1e-3), the encoder with ``lr``.

Losses (``trainers.losses``): ``listwise`` (softmax cross entropy over the group, the default),
``pairwise`` (RankNet), ``pointwise`` (binary cross entropy).

Residual training (``residual`` = w > 0, after CLEAR, Gao et al. 2021): the loss ranks ``logit +
w * s`` where s is each passage's first-stage score from the data (``wb mine --first-stage-scores``:
min-max over the retrieved top; in-batch negatives 0). Groups the first stage already orders well
give little gradient, so the cross-encoder learns what the first stage misses: the complement that
serving's interpolation ``a * first stage + (1 - a) * reranker`` adds to it. The logit saved and
served is the cross-encoder's alone.

The final folder (``run.model_dir``) is a plain Hugging Face ``*ForSequenceClassification``
folder (config, weights, tokenizer) plus ``wb_model.json`` ``{"kind": "cross-encoder", ...}``;
``wb query -p hybrid+rerank --model reranker=runs/NAME`` serves it (``load_reranker``).

The run protocol (status, events, checkpoints, stop, exact resume) is :mod:`trainers.loop`.
Evaluation (``eval_data``: a FlagEmbedding jsonl of held-out groups) reports the mean reciprocal
rank of the best positive among each query's positives and negatives (``mrr``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import InputError, ModelError, UsageError, first_line

from .backbone import enable_checkpointing, fast_attention, padded
from .config import RerankerConfig
from .eval_set import inference
from .loop import Trainer, log
from .runs import staged_folder

__all__ = ["Groups", "RerankerTrainer", "build_groups", "eval_groups", "group_mrr", "head_parameters",
           "negative_pool"]


@dataclass(frozen=True)
class Groups:
    """One micro-batch's groups: ``passages[i]`` (positive first), ``masks[i]`` (real / padding) and
    ``scores[i]``: each passage's score from the example (``positive_scores``/``negative_scores``;
    0.0 for in-batch negatives and padding, and for every passage of an example without scores)."""

    passages: list[list[str]]
    masks: list[list[bool]]
    scores: list[list[float]]


def negative_pool(examples: list) -> list[str]:
    """Every positive passage of the training data, once: where an example that has no hard
    negative and meets no other example in its micro-batch draws one (``build_groups``). InputError
    (before any run starts) when such an example could draw none: the data holds no other passage."""
    pool = list(dict.fromkeys(p for ex in examples for p in ex.positives))
    for ex in examples:
        if not ex.negatives and not set(pool) - set(ex.positives):
            raise InputError(f"a reranker needs a negative for every query, and the query {ex.query[:60]!r} has no "
                             "negative and the data no other passage to draw one from: mine negatives with `wb mine`")
    return pool


def build_groups(examples: list, group_size: int, rng: random.Random, pool: list[str] | None = None) -> Groups:
    """Per example ``group_size`` passages (positive first), a real/padding mask and their scores
    (module docstring). The draws are by position, so the texts drawn do not depend on scores.
    An example left without any negative (none of its own, no other example in the micro-batch)
    draws one from ``pool`` (``negative_pool``: the data's positives), so every group ranks something."""
    want = group_size - 1
    chosen = [rng.choice(range(len(ex.positives))) for ex in examples]  # the same draw as choice(positives)
    chosen_pos = [ex.positives[i] for ex, i in zip(examples, chosen)]
    groups, masks, scores = [], [], []
    for i, ex in enumerate(examples):
        n_neg = len(ex.negatives)
        picks = rng.sample(range(n_neg), want) if n_neg >= want else list(range(n_neg))
        negs = [ex.negatives[j] for j in picks]
        pos_score = ex.positive_scores[chosen[i]] if ex.positive_scores else 0.0
        neg_scores = [ex.negative_scores[j] for j in picks] if ex.negative_scores else [0.0] * len(picks)
        if len(negs) < want:  # in-batch: the other examples' positives, not this one's own
            own = set(ex.positives)
            others = [p for j, p in enumerate(chosen_pos) if j != i and p not in own and p not in negs]
            others = list(dict.fromkeys(others))
            rng.shuffle(others)
            extra = others[: want - len(negs)]
            negs += extra
            neg_scores += [0.0] * len(extra)
        if not negs and pool:  # alone in its micro-batch, no negatives of its own: one from the data
            own = set(ex.positives)
            negs, neg_scores = [rng.choice([p for p in pool if p not in own])], [0.0]  # negative_pool: never empty
        real = 1 + len(negs)
        pad = group_size - real
        groups.append([chosen_pos[i], *negs] + [chosen_pos[i]] * pad)
        masks.append([True] * real + [False] * pad)
        scores.append([pos_score, *neg_scores] + [0.0] * pad)
    return Groups(groups, masks, scores)


def eval_groups(eval_data: str) -> tuple[list[tuple[str, str]], list[tuple[int, int, int]]] | None:
    """The held-out (query, candidate) pairs of ``eval_data`` (examples with negatives; positives
    first) and per query ``(first pair, positives, candidates)``; None (logged) when none has negatives."""
    from .data import read_examples

    path = Path(eval_data)
    if not path.exists():
        raise InputError(f"eval data not found: {path}")
    examples = [ex for ex in read_examples(str(path)) if ex.negatives]
    if not examples:
        log(f"eval skipped: no example with negatives in {path}")
        return None
    pairs, spans = [], []
    for ex in examples:
        cands = list(ex.positives) + list(ex.negatives)
        spans.append((len(pairs), len(ex.positives), len(cands)))
        pairs.extend((ex.query, c) for c in cands)
    return pairs, spans


def group_mrr(scores, spans: list[tuple[int, int, int]]) -> float:
    """Mean over queries of 1 / rank of the best-scored positive among its candidates (ties count against)."""
    total = 0.0
    for start, n_pos, n in spans:
        s = scores[start : start + n]
        best = max(s[:n_pos])
        total += 1.0 / (1 + sum(1 for v in s[n_pos:] if v >= best))
    return total / len(spans)


def head_parameters(model) -> list:
    """The trainable parameters of a ``*ForSequenceClassification`` model's head: every one outside
    its encoder (``model.base_model``: BERT's ``classifier``, DistilBERT's ``pre_classifier`` +
    ``classifier``, ModernBERT's ``head`` + ``classifier``, RoBERTa's ``classifier.dense`` +
    ``out_proj``, a decoder's ``score``), plus the encoder's ``pooler`` (BERT's tanh dense over
    [CLS], which only the head reads). ModelError when there is none (the model's encoder cannot be
    told from it)."""
    encoder = model.base_model
    pooler = getattr(encoder, "pooler", None)
    pooled = {id(p) for p in pooler.parameters()} if pooler is not None else set()
    inside = {id(p) for p in encoder.parameters()} - pooled
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in inside]
    if not head:
        raise ModelError(f"cannot tell the classification head of {type(model).__name__} from its encoder")
    return head


class RerankerTrainer(Trainer):
    """The cross-encoder's parts of the loop (see the module docstring)."""

    metric_name = "mrr"

    def __init__(self, cfg: RerankerConfig) -> None:
        super().__init__(cfg)
        from .losses import build_rerank_loss

        # the layer-wise and LLM rerankers share this class; only the cross-encoder's config has it
        # (validated by RerankerConfig.from_dict)
        self.residual = float(getattr(cfg, "residual", 0.0))
        if cfg.group_size < 2:
            raise UsageError(f"group_size must be at least 2 (a positive and a negative), not {cfg.group_size}")
        self.loss_fn = build_rerank_loss(cfg.loss)
        self.fallback_negatives: list[str] | None = None  # negative_pool(examples), set by examples()

    def examples(self):
        from .data import read_datasets

        examples = read_datasets(self.cfg.data, split=self.cfg.split, instruction=self.cfg.instruction or None)
        self.cfg.check_examples(examples)  # --residual's first-stage scores
        self.fallback_negatives = negative_pool(examples)
        return examples

    def build(self):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        cfg = self.cfg
        hf_config = cfg.check_base()  # a classifier with more than one label too
        archs = " ".join(getattr(hf_config, "architectures", None) or ())
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.base, trust_remote_code=False)
            model = AutoModelForSequenceClassification.from_pretrained(
                cfg.base, num_labels=1, dtype="float32", **fast_attention(hf_config), trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load base model '{cfg.base}': {first_line(exc)}") from exc
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        if cfg.gradient_checkpointing:
            enable_checkpointing(model)
        from workbench.encoders.layout import position_limit

        self.max_length = int(min(cfg.max_length, position_limit(model.config, cfg.max_length)))
        self.uses_token_types = "token_type_ids" in self.tokenizer.model_input_names
        self.kind = "cross-encoder" if "ForSequenceClassification" in archs else "encoder+new head"
        return model

    def describe(self) -> dict:
        return {"kind": self.kind, "loss_name": self.loss_fn.name, "group_size": self.cfg.group_size}

    def param_groups(self, model) -> list:
        """A new head (:func:`head_parameters`) trains with ``head_lr``, the encoder with ``lr``: the
        head starts with tiny random weights, and at an encoder's learning rate its logits stay near
        0 (the loss sits at log(group size)) for hundreds of steps. A cross-encoder base (its head
        trained already) trains whole with ``lr``."""
        if self.kind == "cross-encoder":
            return [p for p in model.parameters() if p.requires_grad]
        head = {id(p) for p in head_parameters(model)}
        trained = [p for p in model.parameters() if p.requires_grad]
        return [{"params": [p for p in trained if id(p) not in head], "lr": self.cfg.lr},
                {"params": [p for p in trained if id(p) in head], "lr": self.cfg.head_lr}]

    def _batch(self, pairs: list[tuple[str, str]], device):
        from workbench.encoders.rerankers import tokenize_pairs

        ids, types = tokenize_pairs(self.tokenizer, pairs, self.max_length, self.uses_token_types)
        input_ids, mask, token_types = padded(ids, int(self.tokenizer.pad_token_id or 0), types)
        batch = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
        if token_types is not None:
            batch["token_type_ids"] = token_types.to(device)
        return batch

    def compute_loss(self, model, exs, rng, device, accelerator):
        import torch

        drawn = build_groups(exs, self.cfg.group_size, rng, self.fallback_negatives)
        width = len(drawn.passages[0])
        pairs = [(ex.query, passage) for ex, group in zip(exs, drawn.passages) for passage in group]
        batch = self._batch(pairs, device)
        with accelerator.autocast():
            logits = model(**batch).logits
        scores = logits.float().reshape(len(exs), width)
        mask = torch.tensor(drawn.masks, dtype=torch.bool, device=scores.device)
        if self.residual:  # the loss ranks logit + w * first-stage score: learn what the first stage misses
            scores = scores + self.residual * torch.tensor(drawn.scores, dtype=scores.dtype, device=scores.device)
        return self.loss_fn(scores, mask), int(batch["attention_mask"].sum())

    def score_pairs(self, model, pairs: list[tuple[str, str]], device, batch_pairs: int = 32) -> list[float]:

        out: list[float] = []
        with inference(model):
            for i in range(0, len(pairs), batch_pairs):
                logits = model(**self._batch(pairs[i : i + batch_pairs], device)).logits
                out.extend(logits.float()[:, 0].tolist())
        return out

    def evaluate(self, model, device) -> float | None:
        """Mean reciprocal rank of the best positive among each held-out query's candidates."""
        groups = eval_groups(self.cfg.eval_data)
        if groups is None:
            return None
        pairs, spans = groups
        value = group_mrr(self.score_pairs(model, pairs, device), spans)
        log(f"eval mrr {value:.4f} ({len(spans)} queries)")
        return value

    def save_final(self, model, out_dir: Path) -> None:
        with staged_folder(out_dir) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
            self.tokenizer.save_pretrained(str(tmp))
            (tmp / "wb_model.json").write_text(json.dumps({
                "kind": "cross-encoder", "base": str(self.cfg.base), "loss": self.loss_fn.name,
                "group_size": self.cfg.group_size, "max_length": self.max_length, "residual": self.residual,
            }, indent=2))
