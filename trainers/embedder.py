"""Fine-tune a bi-encoder inside a run folder: ``train_embedder(run, resume=False)``.

One *step* is one optimizer step (``grad_accum`` micro-batches of ``batch_size`` examples each,
from :class:`~trainers.data.TaskBatchSampler`). Per micro-batch: the queries (instruction rendered
with the query template), one positive per example (drawn at random) and, when every example of the
batch has hard negatives, ``negatives_per_query`` of them each (drawn without replacement, with
replacement when an example has fewer); an example without hard negatives brings none and the
others keep theirs (the loss takes a mask of the real ones). A candidate passage equal to one of a
query's own positives (another example's positive or hard negative with the same text, rows of one
query) is masked out of its negatives; under data parallel the passages' text ids are gathered with
them, so this holds across ranks, and every rank runs the same collectives. The random
draws come from ``Random(f"{seed}|{step}|{micro}")``: a resumed run makes the same draws.

The run protocol (status, events, checkpoints, stop, exact resume, eval hook) is
:func:`trainers.loop.run_training`; this module supplies :class:`EmbedderTrainer`: the backbone,
``compute_loss`` for one micro-batch, the nDCG@10 evaluation and the final model
(:func:`trainers.backbone.save_final`, sentence-transformers layout).

Supported losses: ``infonce`` (q, p, negatives) and the multi-positive family (``jointlh``,
``summarglh``, ``lsepair``, ``rand1lh``: scores over every positive and hard negative of the batch,
mask = the example's own positives). Distillation: ``distill_weight`` w > 0 adds
``w * KL(teacher || student)`` over each query's (positive, hard negatives), the teacher being the
rows' ``pos_scores``/``neg_scores`` (``wb mine --teacher``) and the student the cosine scores divided
by ``temperature``; ``loss = "kl"`` trains on the distillation term alone.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Callable

from workbench.errors import InputError, UsageError

from .config import EmbedderConfig, loss_key
from .loop import KEEP_CHECKPOINTS, Trainer, log as _log, train_run
from .runs import RunFolder

__all__ = ["EmbedderTrainer", "embedder_examples", "train_embedder", "KEEP_CHECKPOINTS"]


# ------------------------------------------------------------------------------ data


def _read_passages(corpus: str | None) -> list[str]:
    if not corpus:
        raise UsageError("--data unsupervised needs --corpus (corpus in a run.toml): a BEIR corpus.jsonl or its folder")
    path = Path(corpus)
    if path.is_dir():
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise InputError(f"no corpus for unsupervised training: {path}")
    from workbench.ingest.readers import corpus_passages

    return [text for text in corpus_passages(path).values() if text]


def embedder_examples(cfg: EmbedderConfig):
    """``(examples, redraw)``: ``redraw(example, rng)`` gives an unsupervised example drawn again
    from its passage (fresh crops, another cloze sentence: every epoch sees new pairs, as Contriever
    and ORQA draw them); None for labelled data."""
    from .data import independent_cropping, inverse_cloze, read_datasets
    from .data.unsupervised import cloze_candidates, cloze_pair, crop_pair, split_sentences

    if cfg.data != "unsupervised":
        return read_datasets(cfg.data, split=cfg.split, instruction=cfg.instruction or None), None
    if cfg.unsupervised not in ("cropping", "ict"):
        raise UsageError(f"unsupervised must be 'cropping' or 'ict', not {cfg.unsupervised!r}")
    passages = _read_passages(cfg.corpus)
    sources: list[int] = []
    if cfg.unsupervised == "ict":
        examples = inverse_cloze(passages, seed=cfg.seed, instruction=cfg.instruction, sources=sources)
        split = {i: split_sentences(passages[i]) for i in set(sources)}
        long_enough = {i: cloze_candidates(sents) for i, sents in split.items()}

        def draw(i: int, rng: random.Random) -> tuple[str, str]:
            return cloze_pair(split[i], long_enough[i], rng)
    else:
        examples = independent_cropping(passages, seed=cfg.seed, instruction=cfg.instruction, sources=sources)
        words = {i: passages[i].split() for i in set(sources)}

        def draw(i: int, rng: random.Random) -> tuple[str, str]:
            return crop_pair(words[i], rng)
    source_of = {id(ex): i for ex, i in zip(examples, sources)}

    def redraw(ex, rng: random.Random):
        query, positive = draw(source_of[id(ex)], rng)
        return replace(ex, query=query, positives=(positive,))
    return examples, redraw


def _templates(cfg: EmbedderConfig, kind: str):
    """The templates the run trains, evaluates and records with: ``auto`` -> those serving uses for
    the base (:func:`~workbench.encoders.templates.templates_for`: a previous run's recorded
    templates, the base's sentence-transformers prompts such as e5's ``query: ``/``passage: ``, an
    e5 name, LLM style for decoders, else plain); a custom ``query_template`` replaces the query
    side only (passages keep the base's document template)."""
    from workbench.encoders.templates import PromptTemplates, templates_for

    path = cfg.base if Path(cfg.base).is_dir() else None
    served = templates_for(cfg.base, "causal-lm" if kind == "decoder" else "encoder", path)
    if cfg.query_template == "auto":
        return served
    return PromptTemplates(query=cfg.query_template, document=served.document)


def _eval_instruction(cfg: EmbedderConfig, examples) -> str:
    """The instruction the eval queries get: the one the training queries were rendered with. When
    every example carries the same one (the rows' ``prompt``, a dataset's or the run's instruction),
    that one; with several, the instruction of the task named as the eval folder when it has one,
    else the run's own when examples use it, else the most common; said in the run's log then."""
    counts: dict[str, int] = {}
    for ex in examples:
        counts[ex.instruction] = counts.get(ex.instruction, 0) + 1
    if len(counts) <= 1:
        return next(iter(counts), cfg.instruction)
    name = Path(cfg.eval_data).name if cfg.eval_data else ""
    by_task = {ex.instruction for ex in examples if ex.task == name}
    if len(by_task) == 1:
        chosen, why = by_task.pop(), f"that of task {name}, named as the eval data"
    elif cfg.instruction in counts:
        chosen, why = cfg.instruction, "the run's instruction"
    else:
        chosen = max(counts, key=lambda text: counts[text])
        why = f"the most common, {counts[chosen]} of {len(examples)} examples"
    if cfg.eval_data:
        _log(f"the training examples carry {len(counts)} instructions; eval queries use {chosen!r} ({why})")
    return chosen


# ------------------------------------------------------------------------------ training


def _padded_negatives(flat, ids, neg_idx: list[list[int]], n: int):
    """``(negatives [B, n, d] | None, mask [B, n] | None, ids [B, n] | None)`` from the micro-batch's
    hard negatives ``flat [M, d]`` (example by example, ``len(neg_idx[i])`` each, 0 or n): padded
    slots are zeros, id -1, mask False. None when no example brought any."""
    import torch

    if not flat.shape[0]:
        return None, None, None
    b = len(neg_idx)
    mask = torch.tensor([[k < len(js) for k in range(n)] for js in neg_idx], dtype=torch.bool, device=flat.device)
    slots = torch.nonzero(mask.reshape(-1)).squeeze(1)
    negatives = flat.new_zeros((b * n, flat.shape[1])).index_copy(0, slots, flat).reshape(b, n, -1)
    padded_ids = torch.full((b * n,), -1, dtype=torch.long, device=flat.device).index_copy(0, slots, ids)
    return negatives, mask, padded_ids.reshape(b, n)


class EmbedderTrainer(Trainer):
    """The bi-encoder's parts of the loop: backbone, contrastive loss, nDCG@10 eval, final folder."""

    def __init__(self, cfg: EmbedderConfig) -> None:
        super().__init__(cfg)
        self.eval_instruction = cfg.instruction  # set from the training data by examples()
        self.redraw = None  # set by examples(): unsupervised pairs are drawn again every step
        key = loss_key(cfg.loss)
        # loss "kl": distillation only; distill_weight > 0: contrastive + w * KL
        self.distill_only = key == "kl"
        self.distill_weight = 1.0 if self.distill_only and cfg.distill_weight <= 0 else cfg.distill_weight
        if self.distill_weight < 0:
            raise UsageError(f"distill_weight must be >= 0, not {cfg.distill_weight}")
        self.loss_key = "infonce" if self.distill_only else key
        cfg.check_options()  # as `wb train` checks before the run exists (a run started from the API too)

    def examples(self):
        examples, self.redraw = embedder_examples(self.cfg)
        self.eval_instruction = _eval_instruction(self.cfg, examples)
        self.cfg.check_examples(examples)
        return examples

    def build(self):
        from .backbone import load_backbone
        from .losses import MULTI_POSITIVE, build_loss

        cfg = self.cfg
        self.multi = self.loss_key in MULTI_POSITIVE  # distillation with one: refused by check_options
        self.kl_fn = (build_loss("kl", temperature=cfg.temperature, teacher_temperature=cfg.teacher_temperature)
                      if self.distill_weight > 0 else None)
        self.loss_fn = (build_loss(self.loss_key) if self.multi
                        else build_loss(self.loss_key, temperature=cfg.temperature))
        model, self.tokenizer, self.pooling, self.normalize, self.kind = load_backbone(
            cfg.base, cfg.pooling, cfg.lora, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.gradient_checkpointing
        )
        self.templates = _templates(cfg, self.kind)
        return model

    def describe(self) -> dict:
        return {"kind": self.kind, "pooling": self.pooling}

    def compute_loss(self, model, exs, rng, device, accelerator):
        from .backbone import encode
        from .data.batching import draw_negatives
        from .losses import own_ids, text_ids

        cfg, templates, tokenizer = self.cfg, self.templates, self.tokenizer
        pooling, normalize = self.pooling, self.normalize
        if self.redraw is not None:  # unsupervised: this step's own crops (or cloze sentences)
            exs = [self.redraw(ex, rng) for ex in exs]
        queries = [templates.render_query(ex.query, ex.instruction) for ex in exs]
        if self.multi:
            passages = [text for ex in exs for text in ex.positives]
            pos_idx = None
        else:
            pos_idx = [rng.randrange(len(ex.positives)) for ex in exs]  # the draws of rng.choice
            passages = [ex.positives[i] for ex, i in zip(exs, pos_idx)]
        neg_idx = draw_negatives(exs, cfg.negatives_per_query, rng)
        passages.extend(ex.negatives[j] for ex, js in zip(exs, neg_idx) for j in js)
        with accelerator.autocast():
            q, q_tok = encode(model, tokenizer, queries, cfg.query_max_length, pooling, normalize,
                              device=device, return_tokens=True)
            d, d_tok = encode(model, tokenizer, [templates.render_document(t) for t in passages],
                              cfg.passage_max_length, pooling, normalize, device=device, return_tokens=True)
        q, d = q.float(), d.float()
        own = own_ids([ex.positives for ex in exs], queries).to(q.device)
        ids = text_ids(passages, q.device)
        if self.multi:
            loss = self._multi_positive_loss(q, d, exs, ids, own, rng)
        else:
            loss = self._infonce_loss(q, d, exs, ids, pos_idx, neg_idx, own)
        return loss, q_tok + d_tok

    def _multi_positive_loss(self, q, d, exs, ids, own, rng):
        """The multi-positive loss over every passage of the micro-batch: mask = the example's own
        positives; a passage equal to one of its positives elsewhere is no negative (-inf)."""
        import torch

        from .losses import mask_false_negatives

        qn = torch.nn.functional.normalize(q, dim=-1)
        dn = torch.nn.functional.normalize(d, dim=-1)
        scores = qn @ dn.T / self.cfg.temperature
        mask = torch.zeros_like(scores, dtype=torch.bool)
        column = 0
        for i, ex in enumerate(exs):
            mask[i, column : column + len(ex.positives)] = True
            column += len(ex.positives)
        scores = mask_false_negatives(scores, mask, ids, own)
        if hasattr(self.loss_fn, "sample_positives"):  # rand1lh: its draws come from the step's rng,
            # which the loop restores on resume (the loss's own generator is not checkpointed)
            draws = torch.Generator(device="cpu").manual_seed(rng.getrandbits(63))
            return self.loss_fn(scores, mask, generator=draws)
        return self.loss_fn(scores, mask)

    def _infonce_loss(self, q, d, exs, ids, pos_idx, neg_idx, own):
        """InfoNCE (and the distillation term): each query's drawn positive against every positive
        and every hard negative there is (each example brings its own, however many), false
        negatives masked; ``negatives`` padded to ``[B, N, d]`` with a mask of the real ones."""
        import torch

        cfg, b = self.cfg, len(exs)
        negatives, neg_mask, neg_ids = _padded_negatives(d[b:], ids[b:], neg_idx, cfg.negatives_per_query)
        if self.distill_only:
            loss = q.new_zeros(())
        else:
            loss = self.loss_fn(q, d[:b], negatives, negative_mask=neg_mask, positive_ids=ids[:b],
                                negative_ids=neg_ids, own_ids=own, gather_across_devices=cfg.cross_device_negatives)
        if self.kl_fn is not None:  # every row has its negatives (checked in examples())
            # student: cosine of each query with its own positive and hard negatives; teacher: the
            # mined scores of the same passages
            qn = torch.nn.functional.normalize(q, dim=-1)
            cand = torch.cat([d[:b].unsqueeze(1), negatives], dim=1)
            student = torch.einsum("bd,bcd->bc", qn, torch.nn.functional.normalize(cand, dim=-1))
            teacher = torch.tensor([[ex.positive_scores[i]] + [ex.negative_scores[j] for j in js]
                                    for ex, i, js in zip(exs, pos_idx, neg_idx)],
                                   dtype=student.dtype, device=student.device)
            loss = loss + self.distill_weight * self.kl_fn(student, teacher)
        return loss

    def evaluate(self, model, device):
        return _evaluate(model, self.tokenizer, self.cfg, self.templates, self.pooling, self.normalize, device,
                         instruction=self.eval_instruction)

    def save_final(self, model, out_dir):
        from .backbone import save_final

        save_final(model, self.tokenizer, self.cfg.base, out_dir, pooling=self.pooling,
                   normalize=self.normalize, kind=self.kind, max_length=self.cfg.passage_max_length,
                   templates=self.templates)


def train_embedder(
    run: RunFolder,
    resume: bool = False,
    *,
    on_step: Callable[[int, RunFolder], None] | None = None,
) -> dict:
    """Train (or resume) the run; return its final status dict. See the module docstring.
    (:func:`trainers.loop.train_run`, which serves every trainer, under this trainer's name.)"""
    return train_run(run, resume, on_step=on_step)


def _evaluate(model, tokenizer, cfg: EmbedderConfig, templates, pooling, normalize, device, *,
              instruction: str | None = None) -> float | None:
    """nDCG@10 of exact cosine top-100 on ``cfg.eval_data`` (None when it cannot be evaluated:
    :func:`~trainers.eval_set.load_eval_set`): queries rendered with ``instruction`` (default
    ``cfg.instruction``; the trainer passes the one its training data used, :func:`_eval_instruction`),
    documents with the document template."""
    import torch

    from .backbone import encode
    from .eval_set import inference, load_eval_set, ndcg_at_10

    data = load_eval_set(cfg.eval_data, cfg.eval_split)
    if data is None:
        return None

    def enc(texts, max_length):
        out = [encode(model, tokenizer, texts[i : i + 64], max_length, pooling, normalize, device=device).float()
               for i in range(0, len(texts), 64)]
        return torch.nn.functional.normalize(torch.cat(out), dim=-1)

    instruction = cfg.instruction if instruction is None else instruction
    with inference(model):
        d = enc([templates.render_document(text) for text in data.documents()], cfg.passage_max_length)
        q = enc([templates.render_query(text, instruction) for text in data.query_texts()], cfg.query_max_length)
        value = ndcg_at_10(q @ d.T, data)
    _log(f"eval ndcg@10 {value:.4f}")
    return value
