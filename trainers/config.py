"""Training-run configuration: one typed dataclass, read from CLI options and/or a TOML file.

The resolved config is written into the run folder (``config.json``) and is all a resumed or
detached run needs.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

from workbench.encoders.yesno_prompt import (
    DEFAULT_ANSWERS,
    DEFAULT_INSTRUCTION,
    DEFAULT_MAX_LENGTH,
    DEFAULT_QUESTION,
)
from trainers.data.batching import SAMPLING
from workbench.config import type_mismatch
from workbench.errors import InputError, ModelError, UsageError


#: the loss names each kind of trainer accepts (checked before a run folder exists, so a detached
#: run never "starts" with a mistyped loss); trainers.losses' registries, tested to agree
LOSS_NAMES: dict[str, tuple[str, ...]] = {
    "retrieval": ("infonce", "jointlh", "summarglh", "lsepair", "rand1lh", "kl"),
    "rerank": ("listwise", "pairwise", "pointwise", "ranknet", "bce", "softmax", "ce"),
    "colbert": ("infonce", "contrastive"),
}


#: the losses that score every positive of an example (trainers.losses.MULTI_POSITIVE, tested to agree)
MULTI_POSITIVE_LOSSES = ("jointlh", "summarglh", "lsepair", "rand1lh")
UNSUPERVISED_MODES = ("cropping", "ict")


def loss_key(name: str) -> str:
    """A loss name as the registries key it: ``Sum-Marg_LH`` -> ``summarglh``."""
    return name.strip().lower().replace("-", "").replace("_", "")


def check_option_types(cls, data: dict) -> None:
    """UsageError for the first of ``data``'s options (``cls``'s fields; others are left to
    ``from_dict``) whose value is not of its field's type or out of its range: run before
    anything reads a value as a path, an instruction or a model name."""
    by_name = {f.name: f for f in fields(cls)}
    for key, value in data.items():
        if key in by_name:
            _check_option(key, value, str(by_name[key].type))


def _from_dict(cls, data: dict):
    """``cls(**data)`` without the ``trainer`` key; a key that is not one of ``cls``'s fields: UsageError.
    Fields missing from ``data`` take their defaults (a config.json from an older version still loads)."""
    data = {k: v for k, v in data.items() if k != "trainer"}
    by_name = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(by_name)
    if unknown:
        raise UsageError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    check_option_types(cls, data)
    names = LOSS_NAMES.get(getattr(cls, "LOSS_KIND", ""), ())
    if "loss" in data and names and loss_key(str(data["loss"])) not in names:
        raise UsageError(f"unknown loss {data['loss']!r} for the {cls.TRAINER} trainer: expected one of "
                         f"{', '.join(names)}")
    if data.get("task_sampling", "proportional") not in SAMPLING:
        raise UsageError(f"training option task_sampling must be one of {', '.join(SAMPLING)}, "
                         f"not {data['task_sampling']!r}")
    if data.get("keep_best") and not data.get("eval_data"):
        raise UsageError("--keep-best (keep_best) needs --eval-data (eval_data): the best model is the "
                         "best-evaluated one")
    if data.get("keep_best") and not data.get("eval_every"):
        raise UsageError("--keep-best (keep_best) needs --eval-every N (eval_every): evaluated only at the "
                         "end, the best model is the last one")
    if "data" in data:
        from trainers.data.datasets import dataset_specs

        dataset_specs(data["data"])  # a path or a list of datasets (UsageError naming what is wrong)
    return cls(**data)


# option -> (lowest, inclusive?): a value below is refused before the run folder exists
_LOWEST = {
    "lr": (0.0, False), "head_lr": (0.0, False), "epochs": (0.0, False), "temperature": (0.0, False),
    "teacher_temperature": (0.0, False), "batch_size": (1, True), "grad_accum": (1, True),
    "group_size": (2, True), "max_steps": (0, True), "save_every": (0, True), "eval_every": (0, True),
    "log_every": (1, True), "warmup_ratio": (0.0, True), "weight_decay": (0.0, True),
    "negatives_per_query": (0, True), "distill_weight": (0.0, True), "max_length": (8, True),
    "query_max_length": (4, True), "passage_max_length": (8, True),
    "seed": (0, True), "lora_r": (1, True), "lora_alpha": (1, True), "lora_dropout": (0.0, True),
    "kl_weight": (0.0, True), "lambda_q": (0.0, True), "lambda_d": (0.0, True), "flops_warmup_ratio": (0.0, True),
    "dim": (1, True), "pca_passages": (1, True), "colbert_dim": (0, True), "distill_temperature": (0.0, False),
    "cutoff_keep": (0.0, False), "default_cutoff": (0, True), "sparse_min_terms": (0.0, True),
    "sparse_guard_weight": (0.0, True), "dense_weight": (0.0, True), "sparse_weight": (0.0, True),
    "colbert_weight": (0.0, True),
}
#: the most optimizer steps a run (and a step interval) may name: a billion is beyond any run, and a
#: typo's 10**23 would start a run that warms its lr up over those steps and learns nothing
MOST_STEPS = 10**9
MOST_EPOCHS = 10**6
# option -> (highest, inclusive?): a value above is refused too
_HIGHEST = {
    "seed": (2**32 - 1, True), "lora_dropout": (1.0, False), "warmup_ratio": (1.0, True),
    "flops_warmup_ratio": (1.0, True), "cutoff_keep": (1.0, True),
    "max_steps": (MOST_STEPS, True), "eval_every": (MOST_STEPS, True), "save_every": (MOST_STEPS, True),
    "log_every": (MOST_STEPS, True), "epochs": (MOST_EPOCHS, True),
}


def option_highest(key: str) -> tuple[float, bool] | None:
    """``(highest, inclusive?)`` of option ``key`` (a config field), None when it has no upper bound:
    the launch form checks its boxes against the bounds `wb train` refuses."""
    return _HIGHEST.get(key)


PRECISIONS = ("auto", "no", "bf16", "fp16")
# config field -> `wb train` flag where the names differ (the rest: --key-name)
FLAG_OF_FIELD = {"name": "--out", "negatives_per_query": "--negatives", "distill_weight": "--distill"}


# options a run.toml sets but `wb train` has no flag for (tests/test_trainer_data.py checks the list)
TOML_ONLY = frozenset({
    "answers", "cross_device_negatives", "cutoff_keep", "document_marker", "ensemble_colbert", "ensemble_dense",
    "ensemble_sparse", "eval_split", "flops_warmup_ratio", "grad_accum", "gradient_checkpointing", "log_every",
    "lora_alpha", "lora_dropout", "pca_passages", "pooling", "query_marker", "query_template", "question",
    "sparse_bias_init", "sparse_guard_weight", "sparse_min_terms", "teacher_temperature", "unsupervised",
    "warmup_ratio", "weight_decay",
})


def option_name(key: str) -> str:
    """``negatives_per_query`` -> ``negatives_per_query (--negatives)``: a run.toml key and its flag
    (the key alone when `wb train` has no flag for it)."""
    if key in TOML_ONLY:
        return key
    return f"{key} ({FLAG_OF_FIELD.get(key, '--' + key.replace('_', '-'))})"


def _check_option(key: str, value, annotation: str) -> None:
    """UsageError naming ``key`` when ``value`` is not of its field's type or below its lowest value."""
    wanted = type_mismatch(value, annotation)
    if wanted:
        raise UsageError(f"training option {option_name(key)} must be {wanted}, not {value!r}")
    if key in _LOWEST and isinstance(value, (int, float)) and not isinstance(value, bool):
        lowest, inclusive = _LOWEST[key]
        if value < lowest or (value == lowest and not inclusive):
            raise UsageError(f"training option {option_name(key)} must be {'at least' if inclusive else 'more than'} "
                             f"{lowest}, not {value!r}")
    if key in _HIGHEST and isinstance(value, (int, float)) and not isinstance(value, bool):
        highest, inclusive = _HIGHEST[key]
        if value > highest or (value == highest and not inclusive) or value != value:  # NaN too
            raise UsageError(f"training option {option_name(key)} must be {'at most' if inclusive else 'less than'} "
                             f"{highest}, not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"training option {option_name(key)} must be a finite number, not {value!r}")
    if key == "mixed_precision" and value not in PRECISIONS:  # checked before a detached run starts
        raise UsageError(f"training option {option_name(key)} must be {', '.join(PRECISIONS)}, not {value!r}")


class RunConfig:
    """What every run config shares: ``TRAINER``, the ``trainer`` key of its config.json (the key
    ``trainers.loop.trainer_for`` dispatches on), ``to_json`` and ``from_dict``. A mixin, not a dataclass:
    it adds no fields, so each config's field order and defaults are its own."""

    TRAINER: ClassVar[str]
    #: what eval_data must be (trainers.data.eval_data): a BEIR folder, or held-out groups for rerankers
    EVAL_FORMAT: ClassVar[str] = "beir"
    #: the transformers mapping of the Auto class the trainer loads its base with, and what it makes
    BASE_MODELS: ClassVar[tuple[str, str]] = ("MODEL_MAPPING", "model")
    #: a decoder base is refused (the trainer pools or scores an encoder's token states)
    ENCODER_ONLY: ClassVar[bool] = False

    def check_eval_data(self) -> None:
        """InputError when ``eval_data`` is set but is not this trainer's eval format (checked before
        the run folder is written, and again before the first step)."""
        from trainers.data.eval_data import check_eval_data

        check_eval_data(getattr(self, "eval_data", None), self.EVAL_FORMAT, getattr(self, "eval_split", "test"))

    def check_options(self) -> None:
        """UsageError, one line, for options this trainer would refuse only once running (checked
        before the run folder exists, so a detached run never "starts" and then fails on them)."""

    def check_examples(self, examples) -> None:
        """UsageError for training examples (read before the run folder exists) this run cannot
        train on."""

    def read_examples(self):
        """The run's training examples as :meth:`check_examples` checks them before the run folder
        exists (InputError, one line, for data that cannot be read); the trainer reads them again,
        with their instructions."""
        from trainers.data import read_datasets

        return read_datasets(self.data, split=getattr(self, "split", "train"))

    def check_base(self):
        """The base's transformers config, read without its weights (``trainers.backbone.base_config``),
        once its kind is checked (:meth:`base_problem`): ModelError, one line, for a base this trainer
        cannot load. `wb train` checks it before the run folder exists; the trainer's ``build`` too."""
        from trainers.backbone import base_config
        from workbench.models.cache import resolve_model_path

        hf_config = base_config(resolve_model_path(str(self.base)), *self.BASE_MODELS)
        problem = self.base_problem(hf_config)
        if problem:
            raise ModelError(f"base '{self.base}' {problem}")
        return hf_config

    def base_problem(self, hf_config) -> str | None:
        """Why a base of config ``hf_config`` cannot train here (said after "base 'NAME'"), or None:
        a decoder when :attr:`ENCODER_ONLY`."""
        from trainers.backbone import is_decoder_config

        if self.ENCODER_ONLY and is_decoder_config(hf_config):
            return f"is a decoder: the {self.TRAINER} trainer needs a BERT-like encoder base"
        return None

    def to_json(self) -> str:
        """The run's config.json: ``{"trainer": TRAINER, <every field>}``."""
        return json.dumps({"trainer": self.TRAINER, **asdict(self)}, indent=2)

    @classmethod
    def from_dict(cls, data: dict):
        """The config from a config.json / TOML / CLI dict (see :func:`_from_dict`)."""
        return _from_dict(cls, data)


@dataclass
class EmbedderConfig(RunConfig):
    """Fine-tuning a bi-encoder (encoder or decoder LLM) with a contrastive loss."""

    TRAINER: ClassVar[str] = "embedder"
    LOSS_KIND: ClassVar[str] = "retrieval"

    data: str | list  # FlagEmbedding jsonl | BEIR folder | sentence-transformers pairs | "unsupervised"
    base: str  # resolved model folder or Hugging Face id
    name: str  # run name (folder under <workspace>/runs)
    split: str = "train"
    corpus: str | None = None  # passages for --data unsupervised (BEIR corpus.jsonl or folder)
    unsupervised: str = "cropping"  # cropping | ict
    loss: str = "infonce"
    temperature: float = 0.05
    epochs: float = 1.0
    max_steps: int = 0  # 0: derived from epochs
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 3e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    negatives_per_query: int = 1
    cross_device_negatives: bool = True  # under data parallel: every rank's passages are negatives (InfoNCE)
    distill_weight: float = 0.0  # > 0: add w * KL(teacher || student) over (positive, negatives); needs pos/neg_scores
    teacher_temperature: float = 1.0  # the teacher scores are divided by this before the softmax
    query_max_length: int = 64
    passage_max_length: int = 256
    pooling: str = "auto"  # auto | mean | cls | last
    query_template: str = "auto"
    instruction: str = ""
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"  # auto (bf16 on GPU or a bf16-capable CPU, else none) | bf16 | fp16 | no
    seed: int = 42
    save_every: int = 100
    log_every: int = 1
    eval_data: str | None = None  # a BEIR folder evaluated during training
    eval_split: str = "test"
    eval_every: int = 0
    keep_best: bool = False  # with eval data: the model kept is the best-evaluated one, not the last
    task_sampling: str = "proportional"


    @classmethod
    def from_dict(cls, data: dict) -> "EmbedderConfig":
        cfg = _from_dict(cls, data)
        if cfg.query_template != "auto":  # trained and served with it (wb_model.json): a typo fails now
            from workbench.encoders.templates import template_problem

            problem = template_problem(cfg.query_template, ("instruction", "text"))
            if problem:
                raise UsageError(f"training option {option_name('query_template')} {problem}")
        return cfg

    def distill_weight_used(self) -> float:
        """The KL weight the run trains with: ``loss = "kl"`` distills only (weight 1 unless set)."""
        if loss_key(self.loss) == "kl" and self.distill_weight <= 0:
            return 1.0
        return self.distill_weight

    def check_base(self):
        """:meth:`RunConfig.check_base`, and a base whose pooling leaves its prompt's tokens out
        (sentence-transformers ``include_prompt: false``) refused: this trainer pools every token,
        so the model it saved would not pool as its base did (serving such a base runs: it is
        training it that is not built)."""
        hf_config = super().check_base()
        from workbench.encoders.layout import read_layout
        from workbench.models.cache import resolve_model_path

        path = resolve_model_path(str(self.base))
        if Path(path).is_dir() and read_layout(path).exclude_prompt:
            raise ModelError(f"base '{self.base}' leaves its prompt's tokens out of its pooling (include_prompt: "
                             f"false); the embedder trainer pools every token, so it cannot train it as it serves")
        return hf_config

    def check_options(self) -> None:
        """The pooling, the unsupervised mode and corpus, and distillation's loss and negatives
        (see :meth:`RunConfig.check_options`)."""
        from trainers.backbone import POOLINGS

        if self.pooling not in POOLINGS:
            raise UsageError(f"training option pooling must be one of {', '.join(POOLINGS)}, not {self.pooling!r}")
        distill = self.distill_weight_used() > 0
        if self.data == "unsupervised":
            if self.unsupervised not in UNSUPERVISED_MODES:
                raise UsageError(f"training option unsupervised must be 'cropping' or 'ict', not {self.unsupervised!r}")
            if not self.corpus:
                raise UsageError("--data unsupervised needs --corpus (corpus in a run.toml): a BEIR corpus.jsonl "
                                 "or its folder")
            if distill:
                raise UsageError("distillation needs the teacher scores of labelled rows (`wb mine --teacher`); "
                                 "--data unsupervised has none")
        elif self.corpus:  # it would be ignored: a run that trains on something else than asked
            raise UsageError("--corpus is the passages of --data unsupervised; with labelled --data it is not read "
                             "(leave it out, or use --data unsupervised)")
        if distill and loss_key(self.loss) in MULTI_POSITIVE_LOSSES:
            raise UsageError(f"distillation goes with the infonce loss (one positive a query), not with '{self.loss}'")
        if distill and self.negatives_per_query < 1:
            raise UsageError("distillation scores a query's positive against its hard negatives: "
                             "set negatives_per_query (--negatives) >= 1")

    def read_examples(self):
        """``--data unsupervised``: the pairs drawn from ``corpus`` (``trainers.embedder``), else the
        labelled data (see :meth:`RunConfig.read_examples`)."""
        if self.data != "unsupervised":
            return super().read_examples()
        from trainers.embedder import embedder_examples

        return embedder_examples(self)[0]

    def check_examples(self, examples) -> None:
        """Distillation needs teacher scores and negatives in every row."""
        if self.distill_weight_used() <= 0:
            return
        lacking = sum(1 for ex in examples if not ex.negatives or ex.positive_scores is None
                      or ex.negative_scores is None)
        if lacking:
            raise UsageError(f"distillation needs teacher scores (pos_scores and neg_scores) and negatives in "
                             f"every row; {lacking} of {len(examples)} examples lack them: write them with "
                             "`wb mine --teacher reranker` (or runs/NAME of a trained reranker)")


@dataclass
class RerankerConfig(RunConfig):
    """Fine-tuning a cross-encoder reranker on groups (query, positive, hard negatives)."""

    TRAINER: ClassVar[str] = "reranker"
    LOSS_KIND: ClassVar[str] = "rerank"
    EVAL_FORMAT: ClassVar[str] = "groups"
    BASE_MODELS: ClassVar[tuple[str, str]] = ("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING", "sequence classifier")

    data: str | list  # FlagEmbedding jsonl (as `wb mine` writes) | BEIR folder | sentence-transformers file
    base: str  # resolved model folder or Hugging Face id (a BERT-like encoder or a cross-encoder)
    name: str
    split: str = "train"
    loss: str = "listwise"  # listwise | pairwise | pointwise
    residual: float = 0.0  # w > 0: the loss ranks logit + w * the data's first-stage score (wb mine --first-stage-scores)
    group_size: int = 8  # 1 positive + group_size - 1 negatives per query
    epochs: float = 1.0
    max_steps: int = 0
    batch_size: int = 8  # groups per micro-batch
    grad_accum: int = 1
    lr: float = 3e-5
    head_lr: float = 1e-3  # a new classification head (and the pooler) train faster; a cross-encoder base: lr
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 256  # query + passage tokens
    instruction: str = ""  # unused by cross-encoders; kept so readers' prompts are accepted
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"
    seed: int = 42
    save_every: int = 100
    log_every: int = 1
    eval_data: str | None = None  # FlagEmbedding jsonl of held-out groups: MRR of the positive
    eval_every: int = 0
    keep_best: bool = False  # with eval data: the model kept is the best-evaluated one, not the last
    task_sampling: str = "proportional"

    @classmethod
    def from_dict(cls, data: dict) -> "RerankerConfig":
        cfg = _from_dict(cls, data)
        if cfg.residual < 0:
            raise UsageError(f"residual must be >= 0 (0 = off), not {cfg.residual}")
        return cfg

    def base_problem(self, hf_config) -> str | None:
        """A classifier base must give one logit (see :meth:`RunConfig.base_problem`)."""
        archs = " ".join(getattr(hf_config, "architectures", None) or ())
        if "ForSequenceClassification" in archs and int(getattr(hf_config, "num_labels", 1)) != 1:
            return (f"is a classifier with {hf_config.num_labels} labels: the reranker trainer needs one logit "
                    "(num_labels=1) or a plain encoder")
        return None

    def check_examples(self, examples) -> None:
        """``residual`` reads every example's first-stage scores, min-max scaled into [0, 1]."""
        if not self.residual:
            return
        if not all(ex.has_scores for ex in examples):
            raise InputError(f"--residual needs every example's first-stage scores (pos_scores/neg_scores): "
                             f"mine {self.data} with `wb mine --first-stage-scores`")
        outside = [s for ex in examples for s in (*ex.positive_scores, *(ex.negative_scores or ())) if not 0 <= s <= 1]
        if outside:  # e.g. a reranker's logits from `wb mine --teacher`
            raise InputError(f"--residual reads pos_scores/neg_scores as min-max first-stage scores in [0, 1], but "
                             f"{self.data} has {len(outside)} outside it (e.g. {outside[0]:g}): mine it with "
                             "`wb mine --first-stage-scores`")


@dataclass
class LlmRerankerConfig(RunConfig):
    """Fine-tuning a causal LM as a yes/no reranker: score = logit(yes) - logit(no) after the prompt."""

    TRAINER: ClassVar[str] = "llm-reranker"
    LOSS_KIND: ClassVar[str] = "rerank"
    EVAL_FORMAT: ClassVar[str] = "groups"
    BASE_MODELS: ClassVar[tuple[str, str]] = ("MODEL_FOR_CAUSAL_LM_MAPPING", "causal LM")

    data: str | list  # FlagEmbedding jsonl (as `wb mine` writes) | BEIR folder | sentence-transformers file
    base: str  # a *ForCausalLM folder or HF id (the built-in smollm2-135m-instruct by default)
    name: str
    split: str = "train"
    loss: str = "listwise"  # listwise | pairwise | pointwise (over the yes/no logit differences)
    group_size: int = 8  # 1 positive + group_size - 1 negatives per query
    epochs: float = 1.0
    max_steps: int = 0
    batch_size: int = 4  # groups per micro-batch (batch_size * group_size prompts)
    grad_accum: int = 1
    lr: float = 1e-4  # LoRA; a full fine-tune (lora = false) wants ~1e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = DEFAULT_MAX_LENGTH  # prompt tokens; only the passage is cut (as served)
    instruction: str = DEFAULT_INSTRUCTION  # the system turn (as LLMYesNoReranker serves it)
    question: str = DEFAULT_QUESTION  # the closing line of the user turn
    answers: tuple[str, str] = DEFAULT_ANSWERS  # positive and negative answer words (one token each)
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"
    seed: int = 42
    save_every: int = 100
    log_every: int = 1
    eval_data: str | None = None  # FlagEmbedding jsonl of held-out groups: MRR of the positive
    eval_every: int = 0
    keep_best: bool = False  # with eval data: the model kept is the best-evaluated one, not the last
    task_sampling: str = "proportional"

    @classmethod
    def from_dict(cls, data: dict) -> "LlmRerankerConfig":
        cfg = _from_dict(cls, data)
        answers = cfg.answers
        if isinstance(answers, str) or len(answers) != 2 or not all(isinstance(a, str) and a.strip() for a in answers):
            raise UsageError(f"answers must be two words (positive, negative), not {answers!r}")
        if answers[0].strip() == answers[1].strip():
            raise UsageError(f"answers must be two different words (positive, negative), not {answers!r}: "
                             "the score is their logits' difference")
        cfg.answers = (answers[0], answers[1])
        return cfg

    def base_problem(self, hf_config) -> str | None:
        """The base must be a causal LM (see :meth:`RunConfig.base_problem`)."""
        from trainers.backbone import is_decoder_config

        if not is_decoder_config(hf_config):
            archs = ", ".join(getattr(hf_config, "architectures", None) or ()) or "no architecture"
            return f"is not a causal LM ({archs}): the LLM reranker needs a *ForCausalLM model"
        return None


@dataclass
class ColbertConfig(RunConfig):
    """Training a ColBERT head (encoder + linear projection, MaxSim) with a contrastive loss."""

    TRAINER: ClassVar[str] = "colbert"
    ENCODER_ONLY: ClassVar[bool] = True
    LOSS_KIND: ClassVar[str] = "colbert"

    data: str | list
    base: str
    name: str
    split: str = "train"
    dim: int = 128  # projection size (no bias)
    projection_init: str = "orthogonal"  # orthogonal (random orthonormal rows) | pca (top principal directions) | identity (dim = hidden)
    pca_passages: int = 256  # training passages (+ their queries) whose token states give the PCA
    loss: str = "infonce"  # infonce (in-batch + hard negatives over MaxSim scores); + kl with teacher scores
    temperature: float = 1.0  # MaxSim sums over query tokens are already on a wide scale
    kl_weight: float = 0.0  # > 0: add KL distillation from the examples' teacher scores
    negatives_per_query: int = 1
    epochs: float = 1.0
    max_steps: int = 0
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 3e-5
    head_lr: float = 1e-4  # the projection is a fresh layer: a larger learning rate
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    query_max_length: int = 32
    passage_max_length: int = 256
    query_marker: str = "[Q] "
    document_marker: str = "[D] "
    instruction: str = ""
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"
    seed: int = 42
    save_every: int = 100
    log_every: int = 1
    eval_data: str | None = None  # a BEIR folder: nDCG@10 of exact MaxSim
    eval_split: str = "test"
    eval_every: int = 0
    keep_best: bool = False  # with eval data: the model kept is the best-evaluated one, not the last
    task_sampling: str = "proportional"

    def check_options(self) -> None:
        """Distillation needs hard negatives to rank (see :meth:`RunConfig.check_options`)."""
        if self.kl_weight > 0 and self.negatives_per_query < 1:
            raise UsageError("kl_weight > 0 distills the teacher's ranking of a query's positive and hard negatives: "
                             "set negatives_per_query (--negatives) >= 1")

    def check_examples(self, examples) -> None:
        """Distillation needs the teacher scores of every row."""
        if self.kl_weight > 0 and not all(ex.has_scores for ex in examples):
            raise UsageError("kl_weight > 0 needs teacher scores (pos_scores / neg_scores) on every example")


@dataclass
class SpladeConfig(RunConfig):
    """Fine-tuning a SPLADE model (masked-LM head, log1p(relu), max pooling) with FLOPS regularisation."""

    TRAINER: ClassVar[str] = "splade"
    BASE_MODELS: ClassVar[tuple[str, str]] = ("MODEL_FOR_MASKED_LM_MAPPING", "masked-LM model")

    data: str | list
    base: str  # a *ForMaskedLM folder or id (the workspace's sparse model by default)
    name: str
    split: str = "train"
    temperature: float = 1.0  # divides the sparse dot products in the softmax
    negatives_per_query: int = 1
    lambda_q: float = 3e-4  # FLOPS weight on the queries' vectors
    lambda_d: float = 1e-4  # FLOPS weight on the documents' vectors
    flops_warmup_ratio: float = 0.3  # the lambdas grow quadratically over this share of the steps
    epochs: float = 1.0
    max_steps: int = 0
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    query_max_length: int = 64
    passage_max_length: int = 256
    instruction: str = ""
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"
    seed: int = 42
    save_every: int = 100
    log_every: int = 1
    eval_data: str | None = None  # a BEIR folder: nDCG@10 of the exact sparse dot product
    eval_split: str = "test"
    eval_every: int = 0
    keep_best: bool = False  # with eval data: the model kept is the best-evaluated one, not the last
    task_sampling: str = "proportional"


@dataclass
class LayerwiseConfig(RunConfig):
    """A layer-wise cross-encoder: one score head per layer, self-distilled from the last (trainers/layerwise.py)."""

    TRAINER: ClassVar[str] = "layerwise"
    LOSS_KIND: ClassVar[str] = "rerank"
    EVAL_FORMAT: ClassVar[str] = "groups"
    ENCODER_ONLY: ClassVar[bool] = True

    data: str | list  # as RerankerConfig
    base: str  # a BERT-like encoder (AutoModel); the workspace's dense model by default
    name: str
    split: str = "train"
    layers: list[int] | None = None  # layers that get a head (1-based: after l layers); None = 2..last
    distill_weight: float = 1.0  # w in sum_l CE_l + w * sum_{l < last} KL(last || l)
    distill_temperature: float = 1.0  # divides both score vectors of the KL
    default_cutoff: int = 0  # served layer; 0 = chosen from eval_data (smallest within cutoff_keep) else the last
    cutoff_keep: float = 0.98  # share of the last layer's eval MRR the chosen default cutoff must keep
    loss: str = "listwise"  # per-layer loss: listwise | pairwise | pointwise
    group_size: int = 8
    epochs: float = 1.0
    max_steps: int = 0
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 3e-5
    head_lr: float = 1e-3  # the new per-layer heads
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 256
    instruction: str = ""
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"
    seed: int = 42
    save_every: int = 100
    log_every: int = 1
    eval_data: str | None = None  # FlagEmbedding jsonl of held-out groups: MRR at every scored layer
    eval_every: int = 0
    keep_best: bool = False  # with eval data: the model kept is the best-evaluated one, not the last
    task_sampling: str = "proportional"


@dataclass
class JointConfig(RunConfig):
    """BGE-M3-style joint training: one encoder, dense + sparse + ColBERT heads, self-distillation
    from their ensemble (trainers/joint.py)."""

    TRAINER: ClassVar[str] = "joint"
    ENCODER_ONLY: ClassVar[bool] = True

    data: str | list
    base: str  # a BERT-like encoder (the workspace's dense model by default) or a joint run's folder
    name: str
    split: str = "train"
    pooling: str = "auto"  # dense pooling: auto (the base's sentence-transformers pooling, else mean) | mean | cls
    dense_weight: float = 1.0  # a: the dense InfoNCE term (and its self-distillation term)
    sparse_weight: float = 0.1  # b: the sparse terms (BGE-M3: 0.1)
    colbert_weight: float = 1.0  # c: the ColBERT terms
    distill_weight: float = 1.0  # w in L = sum_m k_m (CE_m + w KL(ensemble || m)); 0 = no self-distillation
    ensemble_dense: float = 1.0  # the ensemble (teacher) score: e_d S_dense + e_s S_sparse + e_c S_colbert
    ensemble_sparse: float = 0.3
    ensemble_colbert: float = 1.0
    temperature: float = 0.05  # divides every mode's scores (and the ensemble's) in the softmaxes
    colbert_dim: int = 0  # ColBERT vector size; 0 = the encoder's hidden size (orthogonal init = zero-shot MaxSim)
    negatives_per_query: int = 1
    sparse_bias_init: float = 0.5  # the sparse head's bias at start: every token starts with a positive weight
    sparse_min_terms: float = 1.0  # collapse guard: below this mean of non-zero query terms, add the penalty; 0 = off
    sparse_guard_weight: float = 1.0  # weight of the guard's penalty mean(relu(0.1 - pre-activation))
    epochs: float = 1.0
    max_steps: int = 0
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 3e-5  # the encoder
    head_lr: float = 1e-4  # the sparse and ColBERT heads (fresh layers)
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    query_max_length: int = 64
    passage_max_length: int = 256
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"
    seed: int = 42
    save_every: int = 100
    log_every: int = 1
    eval_data: str | None = None  # a BEIR folder: nDCG@10 of each mode and of the ensemble (the metric)
    eval_split: str = "test"
    eval_every: int = 0
    keep_best: bool = False  # with eval data: the model kept is the best-evaluated one, not the last
    task_sampling: str = "proportional"

    def check_options(self) -> None:
        """The dense pooling (see :meth:`RunConfig.check_options`)."""
        if self.pooling not in ("auto", "mean", "cls"):
            raise UsageError(f"training option pooling must be auto, mean or cls, not {self.pooling!r}")


def read_toml(path: str | Path) -> dict:
    """Options from a run.toml: flat keys, or under ``[train]`` (then keys outside it, such as
    ``[[data]]`` tables, count too; a key set in both places is refused)."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"no such config file: {path}") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"--config {path} is a folder: give a run.toml file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the config file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from exc
    train = raw.pop("train", None)
    if train is None:
        return raw
    if not isinstance(train, dict):
        raise UsageError(f"{path}: `train` must be a table ([train]), not {train!r}")
    both = sorted(set(train) & set(raw))
    if both:
        raise UsageError(f"{path}: {', '.join(both)} set both in [train] and outside it: keep one")
    return {**raw, **train}
