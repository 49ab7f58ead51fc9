"""``wb train <kind>`` and ``wb train resume`` (trainers/): validate the options, write the run
folder, train."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from workbench.cli.common import (WorkspaceOpt, _err_console, _plain, _refuse_empty_instruction, _run_model_overrides,
                                  _workspace)
from workbench.cli.run_launch import _launcher_command, _run_training
from workbench.errors import UsageError, WbError


train_app = typer.Typer(help="Fine-tune models; each run is a folder under <workspace>/runs/NAME.")


def _resolve_base(base: str, ws) -> str:
    from workbench.models.cache import resolve_model_path

    if base == "dense":
        base = ws.config().models.dense
    if base.startswith("runs/"):
        return _run_model_overrides(ws, {"dense": base})["dense"]
    return resolve_model_path(base)


# Options that several `wb train <kind>` commands share: declared once, so their flags and help agree.
OutOpt = Annotated[Optional[str], typer.Option("--out", help="Run name (folder under <workspace>/runs).")]
EpochsOpt = Annotated[Optional[float], typer.Option("--epochs")]
MaxStepsOpt = Annotated[Optional[int], typer.Option("--max-steps", help="Optimizer steps (overrides --epochs; 0: from --epochs).")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size")]
GroupBatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Groups per step.")]
LrOpt = Annotated[Optional[float], typer.Option("--lr")]
EncoderLrOpt = Annotated[Optional[float], typer.Option("--lr", help="Encoder learning rate.")]
GroupSizeOpt = Annotated[
    Optional[int], typer.Option("--group-size", help="Passages per query: 1 positive + N-1 hard negatives.")
]
NegativesOpt = Annotated[
    Optional[int], typer.Option("--negatives", help="Hard negatives per query (besides in-batch ones).")
]
QueryMaxLengthOpt = Annotated[Optional[int], typer.Option(
    "--query-max-length", help="Query tokens read in training (a ColBERT run also serves queries at this length).")]
PassageMaxLengthOpt = Annotated[Optional[int], typer.Option(
    "--passage-max-length", help="Passage tokens read in training (a trained ColBERT or joint model also serves at this "
                                 "length: a longer index chunk is cut to it, so match the index's chunk length).")]
MixedPrecisionOpt = Annotated[
    Optional[str], typer.Option("--mixed-precision", help="auto (bf16 on GPU or a CPU with native bf16), no, bf16, fp16.")
]
EvalEveryOpt = Annotated[Optional[int], typer.Option("--eval-every", help="With --eval-data: evaluate every N steps and at the end (0: only at the end).")]
# the --data help every trainer shares before its own formats
MULTI_DATA = ("Repeat for a multi-task run (one task per dataset; per-dataset instructions: a data list in "
              "--config, see the README). ")
KeepBestOpt = Annotated[Optional[bool], typer.Option("--keep-best/--no-keep-best", help="With --eval-data and --eval-every: the run's model is the best-evaluated step's, not the last step's.")]
SaveEveryOpt = Annotated[Optional[int], typer.Option("--save-every", help="Checkpoint every N steps.")]
DetachOpt = Annotated[bool, typer.Option("--detach", help="Train in the background; print the run name and return.")]
ResumeOpt = Annotated[
    Optional[str],
    typer.Option("--resume", help="Continue the run NAME from its latest checkpoint (same as `wb train resume NAME`)."),
]


@train_app.command("embedder")
def train_embedder_cmd(
    data: Annotated[Optional[list[str]], typer.Option("--data", metavar="PATH", help=MULTI_DATA + "FlagEmbedding jsonl, BEIR folder, sentence-transformers file, or 'unsupervised'.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="'dense' (the workspace's dense model), a built-in name, a folder, runs/NAME or a HF id.")] = None,
    out: OutOpt = None,
    corpus: Annotated[Optional[str], typer.Option("--corpus", help="Passages for --data unsupervised (BEIR corpus.jsonl or folder).")] = None,
    lora: Annotated[Optional[bool], typer.Option("--lora/--no-lora", help="Train LoRA adapters (merged into the final model).")] = None,
    epochs: EpochsOpt = None,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help="infonce, jointlh, summarglh, lsepair, rand1lh, or kl (distillation from teacher scores: wb mine --teacher).")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature")] = None,
    negatives: NegativesOpt = None,
    distill: Annotated[Optional[float], typer.Option("--distill", help="Weight of KL distillation from the data's teacher scores (pos_scores/neg_scores, e.g. from `wb mine --teacher`); 0 = off. --loss kl distills only.")] = None,
    instruction: Annotated[Optional[str], typer.Option("--instruction", help="Query instruction (preset name or text) for rows without a prompt.")] = None,
    query_max_length: QueryMaxLengthOpt = None,
    passage_max_length: Annotated[Optional[int], typer.Option("--passage-max-length", help="Passage tokens read in training.")] = None,
    mixed_precision: MixedPrecisionOpt = None,
    task_sampling: Annotated[Optional[str], typer.Option("--task-sampling", help="With several datasets: which task the next batch comes from: proportional (to its size), uniform, or temperature (size^(1/2)).")] = None,
    eval_data: Annotated[Optional[str], typer.Option("--eval-data", help="BEIR folder evaluated during training (nDCG@10).")] = None,
    eval_every: EvalEveryOpt = None,
    keep_best: KeepBestOpt = None,
    save_every: SaveEveryOpt = None,
    config: Annotated[Optional[str], typer.Option("--config", help="run.toml with any EmbedderConfig key (options given here win).")] = None,
    detach: DetachOpt = False,
    resume: ResumeOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Fine-tune a bi-encoder (encoder or decoder LLM, optionally LoRA) with a contrastive loss."""
    from trainers.config import EmbedderConfig

    _refuse_empty_instruction(instruction, "--instruction")

    def resolve(values: dict) -> None:
        from workbench.encoders.templates import resolve_instruction

        if values.get("instruction"):
            values["instruction"] = resolve_instruction(values["instruction"])
        if isinstance(values.get("data"), list):  # [[data]] tables: each instruction may be a preset too
            values["data"] = [{**item, "instruction": resolve_instruction(item["instruction"])}
                              if isinstance(item, dict) and item.get("instruction") else item
                              for item in values["data"]]

    given = {
        "data": data, "base": base, "name": out, "corpus": corpus, "lora": lora, "epochs": epochs,
        "max_steps": max_steps, "batch_size": batch_size, "lr": lr, "loss": loss, "temperature": temperature,
        "negatives_per_query": negatives, "distill_weight": distill, "instruction": instruction, "eval_data": eval_data,
        "eval_every": eval_every, "keep_best": keep_best, "save_every": save_every, "task_sampling": task_sampling,
        "mixed_precision": mixed_precision, "query_max_length": query_max_length, "passage_max_length": passage_max_length,
    }
    _train_cmd(EmbedderConfig, given, config=config, detach=detach, resume=resume, workspace=workspace,
               path_keys=("data", "corpus", "eval_data"), literal=("unsupervised",), finish=resolve)


def _train_cmd(config_cls, given: dict, *, config: Optional[str], detach: bool, resume: Optional[str],
               workspace: Optional[str], adjust: Optional[Callable[[dict, object], None]] = None,
               path_keys: tuple[str, ...] = ("data", "eval_data"), literal: tuple[str, ...] = (),
               finish: Optional[Callable[[dict], None]] = None) -> None:
    """The body every `wb train <kind>` command shares. ``--resume NAME``: continue that run (as `wb train
    resume NAME`). Else the options are --config's (a run.toml, any ``config_cls`` key) overlaid with
    ``given``, the command line's (None: not given); ``adjust(values, ws)`` then sets the trainer's own
    defaults, and :func:`_start_run` validates, writes the run folder and trains."""
    if config is not None and not config.strip():
        raise UsageError("--config is empty: give a run.toml file, or leave --config out")
    if resume:
        ignored = [k for k, v in given.items() if v is not None] + (["config"] if config else [])
        if ignored:
            raise UsageError(f"--resume {resume} continues the run with its own config.json, so the options "
                             f"given ({', '.join(ignored)}) would be ignored: drop them, or start a new run with --out")
        from trainers.runs import get_run

        try:
            trainer = get_run(_workspace(workspace).root, resume).read_config().get("trainer")
        except WbError:  # no readable config.json: `wb train resume` says what is wrong
            trainer = None
        if trainer and trainer != config_cls.TRAINER:
            raise UsageError(f"run '{resume}' is trained by `wb train {trainer}`, not `wb train {config_cls.TRAINER}`: "
                             f"`wb train resume {shlex.quote(resume)}{_workspace(workspace).flag}` continues it")
        return train_resume_cmd(resume, detach=detach, workspace=workspace)
    from trainers.config import read_toml

    ws = _workspace(workspace)
    values: dict = read_toml(config) if config else {}
    if config:  # a run.toml's relative paths are relative to the file, wherever `wb train` runs
        from trainers.data.datasets import with_paths

        here = Path(os.path.normpath(Path(config).expanduser().absolute())).parent
        for key in path_keys:
            if isinstance(values.get(key), (str, list)) and values[key]:
                values[key] = with_paths(values[key], lambda p: p if p in literal or Path(p).expanduser().is_absolute()
                                         else os.path.normpath(here / p))
        base = values.get("base")  # a name, a HF id, runs/NAME (the workspace's) or a folder beside the file
        if isinstance(base, str) and base and not base.startswith("runs/") and (here / base).exists():
            values["base"] = os.path.normpath(here / base)
    if given.get("data"):  # --data given once: a path; several times: a multi-task list
        given = {**given, "data": given["data"][0] if len(given["data"]) == 1 else list(given["data"])}
    values.update({k: v for k, v in given.items() if v is not None})
    if adjust is not None:
        adjust(values, ws)
    _start_run(ws, config_cls, values, path_keys, detach, literal=literal, finish=finish)


def _existing_path(key: str, given, literal: tuple[str, ...]) -> str:
    """``given`` as an absolute path (a value in ``literal`` as it is); InputError when it does not exist."""
    if given in literal:
        return given
    path = Path(str(given)).expanduser()
    if not path.exists():
        from workbench.errors import InputError

        raise InputError(f"--{key.replace('_', '-')}: no such file or folder: {given}")
    return str(path.absolute())


def _start_run(ws, config_cls, values: dict, path_keys: tuple[str, ...], detach: bool, *,
               literal: tuple[str, ...] = (), finish: Optional[Callable[[dict], None]] = None) -> None:
    """Validate resolved options, write the run folder, train (foreground or detached).

    ``path_keys``: options naming a file or folder, made absolute (a missing one: InputError), but for a
    value in ``literal`` (``--data unsupervised``); ``finish(values)`` runs last, before ``config_cls``
    is built from them."""
    for key, flag in (("data", "--data"), ("base", "--base"), ("name", "--out")):
        if not values.get(key):
            raise UsageError(f"{flag} is required (or set `{key}` in --config)")
    from trainers.config import check_option_types

    check_option_types(config_cls, values)  # a run.toml's `eval_data = 7` fails here, before it is read as a path
    from trainers.runs import check_run_name

    name = check_run_name(str(values["name"]))
    values["base"] = _resolve_base(str(values["base"]), ws)
    from trainers.data.datasets import dataset_specs, with_paths

    if values.get("data") is not None and not isinstance(values["data"], str):
        dataset_specs(values["data"])  # a list of datasets: its shape is checked before its paths
    for key in path_keys:
        if values.get(key) and values[key] not in literal:
            values[key] = with_paths(values[key], lambda given, key=key: _existing_path(key, given, literal))
    if finish is not None:
        finish(values)
    try:
        cfg = config_cls.from_dict(values)
    except TypeError as exc:
        raise UsageError(f"bad training options: {exc}") from exc
    cfg.check_eval_data()  # a wrong --eval-data fails now, not after the training it would end
    if getattr(cfg, "eval_every", 0) and not getattr(cfg, "eval_data", None):  # new runs (an old one resumes)
        raise UsageError("--eval-every (eval_every) needs --eval-data (eval_data): there is nothing to evaluate on")
    cfg.check_options()  # what the trainer would refuse once running (pooling, distillation, ...)
    if detach:
        _launcher_command()  # a $WB_TRAIN_LAUNCHER that cannot start the run
    _warn_eval_overlap(cfg, _checked_training_queries(cfg))
    cfg.check_base()  # a folder that is no model, a base of the wrong kind: config.json only, no weights
    from trainers.runs import new_run

    ws.root.mkdir(parents=True, exist_ok=True)
    run = new_run(ws.root, name, cfg.to_json())
    _run_training(run, resume=False, detach=detach)


def _checked_training_queries(cfg) -> set[str]:
    """Every row of the run's data read and checked now (a malformed line, no usable example, rows
    without the teacher scores distillation or --residual needs, an unsupervised corpus with no
    usable passage: one line, before any run folder exists), not after a detached run said it
    started. Only the query texts (when eval data asks for the overlap warning) outlive the call: a
    foreground run reads the data again, so holding the examples would double the data in memory
    for the whole run."""
    examples = cfg.read_examples()
    cfg.check_examples(examples)
    return {ex.query for ex in examples} if getattr(cfg, "eval_data", None) else set()


def _warn_eval_overlap(cfg, train_queries: set[str]) -> None:
    """Say (not refuse) when the run's --eval-data asks queries it trains on: its in-training figure
    would be optimistic."""
    if not getattr(cfg, "eval_data", None):
        return
    from trainers.data.eval_data import eval_queries

    asked = eval_queries(cfg.eval_data, cfg.EVAL_FORMAT, getattr(cfg, "eval_split", "test"))
    shared = asked & train_queries
    if shared:
        _err_console().print(_plain(f"{len(shared)} of the {len(asked)} evaluation queries are training queries too: "
                             "the figures measured during training will be optimistic (hold them out)", style="yellow"),
                             highlight=False)


@train_app.command("reranker")
def train_reranker_cmd(
    data: Annotated[Optional[list[str]], typer.Option("--data", metavar="PATH", help=MULTI_DATA + "FlagEmbedding jsonl with hard negatives (as `wb mine` writes), BEIR folder or sentence-transformers file.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="'dense' (the workspace's dense model), a built-in name, a folder, runs/NAME or a HF id; a BERT-like encoder gets a new one-logit head.")] = None,
    out: OutOpt = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help="listwise (softmax CE over the group), pairwise (RankNet) or pointwise (BCE).")] = None,
    group_size: GroupSizeOpt = None,
    epochs: EpochsOpt = None,
    max_steps: MaxStepsOpt = None,
    batch_size: GroupBatchSizeOpt = None,
    lr: LrOpt = None,
    head_lr: Annotated[Optional[float], typer.Option("--head-lr", help="Learning rate of a new classification head (+ pooler).")] = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Tokens of query + passage.")] = None,
    residual: Annotated[Optional[float], typer.Option("--residual", help="Train as a complement to the first stage: the loss ranks logit + W x the data's first-stage score (`wb mine --first-stage-scores`); 0 = off.")] = None,
    mixed_precision: MixedPrecisionOpt = None,
    eval_data: Annotated[Optional[str], typer.Option("--eval-data", help="FlagEmbedding jsonl of held-out groups (MRR of the positive).")] = None,
    eval_every: EvalEveryOpt = None,
    keep_best: KeepBestOpt = None,
    save_every: SaveEveryOpt = None,
    config: Annotated[Optional[str], typer.Option("--config", help="run.toml with any RerankerConfig key (options given here win).")] = None,
    detach: DetachOpt = False,
    resume: ResumeOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Fine-tune a cross-encoder reranker (use it with --model reranker=runs/NAME and a +rerank pipeline)."""
    from trainers.config import RerankerConfig

    given = {
        "data": data, "base": base, "name": out, "loss": loss, "group_size": group_size, "epochs": epochs,
        "max_steps": max_steps, "batch_size": batch_size, "lr": lr, "head_lr": head_lr, "max_length": max_length,
        "residual": residual, "mixed_precision": mixed_precision, "eval_data": eval_data, "eval_every": eval_every, "keep_best": keep_best,
        "save_every": save_every,
    }
    _train_cmd(RerankerConfig, given, config=config, detach=detach, resume=resume, workspace=workspace)


@train_app.command("llm-reranker")
def train_llm_reranker_cmd(
    data: Annotated[Optional[list[str]], typer.Option("--data", metavar="PATH", help=MULTI_DATA + "FlagEmbedding jsonl with hard negatives (as `wb mine` writes), BEIR folder or sentence-transformers file.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="A causal LM: 'llm' (the built-in smollm2-135m-instruct, default), a built-in name, a folder, runs/NAME or a HF id.")] = None,
    out: OutOpt = None,
    lora: Annotated[Optional[bool], typer.Option("--lora/--no-lora", help="Train LoRA adapters on every linear projection (default) and merge them into the final model.")] = None,
    lora_r: Annotated[Optional[int], typer.Option("--lora-r", help="LoRA rank (alpha = 2 x rank unless set in --config).")] = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help="listwise (softmax CE over the group), pairwise (RankNet) or pointwise (BCE on P(yes)).")] = None,
    group_size: GroupSizeOpt = None,
    epochs: EpochsOpt = None,
    max_steps: MaxStepsOpt = None,
    batch_size: GroupBatchSizeOpt = None,
    lr: LrOpt = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Prompt tokens (only the passage is cut, as served).")] = None,
    mixed_precision: MixedPrecisionOpt = None,
    eval_data: Annotated[Optional[str], typer.Option("--eval-data", help="FlagEmbedding jsonl of held-out groups (MRR of the positive).")] = None,
    eval_every: EvalEveryOpt = None,
    keep_best: KeepBestOpt = None,
    save_every: SaveEveryOpt = None,
    config: Annotated[Optional[str], typer.Option("--config", help="run.toml with any LlmRerankerConfig key (instruction, question, answers, lora_alpha, ...; options given here win).")] = None,
    detach: DetachOpt = False,
    resume: ResumeOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Fine-tune a causal LM as a yes/no reranker (score = logit(Yes) - logit(No)); use it with --model reranker=runs/NAME."""
    from trainers.config import LlmRerankerConfig

    given = {
        "data": data, "base": base, "name": out, "lora": lora, "lora_r": lora_r, "loss": loss,
        "group_size": group_size, "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr,
        "max_length": max_length, "mixed_precision": mixed_precision, "eval_data": eval_data,
        "eval_every": eval_every, "keep_best": keep_best, "save_every": save_every,
    }

    def adjust(values: dict, _ws) -> None:
        from workbench.models.registry import LLM_RERANKER, LLM_RERANKER_MODEL

        if lora_r is not None and "lora_alpha" not in values:
            values["lora_alpha"] = 2 * lora_r
        if values.get("base", LLM_RERANKER) == LLM_RERANKER:
            values["base"] = LLM_RERANKER_MODEL

    _train_cmd(LlmRerankerConfig, given, config=config, detach=detach, resume=resume, workspace=workspace,
               adjust=adjust)


@train_app.command("colbert")
def train_colbert_cmd(
    data: Annotated[Optional[list[str]], typer.Option("--data", metavar="PATH", help=MULTI_DATA + "FlagEmbedding jsonl (hard negatives as `wb mine` writes), BEIR folder or sentence-transformers file.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="'dense' (the workspace's dense model), a built-in name, a folder, runs/NAME or a HF id (a BERT-like encoder).")] = None,
    out: OutOpt = None,
    dim: Annotated[Optional[int], typer.Option("--dim", help="Token vector size (the projection's outputs).")] = None,
    projection_init: Annotated[Optional[str], typer.Option("--projection-init", help="orthogonal (random orthonormal rows), pca (top principal directions of the base's tokens) or identity (dim = hidden size: starts at the zero-shot MaxSim).")] = None,
    negatives: NegativesOpt = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Divides the MaxSim scores in the softmax.")] = None,
    kl_weight: Annotated[Optional[float], typer.Option("--kl-weight", help="Weight of KL distillation from the data's teacher scores (0: off).")] = None,
    epochs: EpochsOpt = None,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: EncoderLrOpt = None,
    head_lr: Annotated[Optional[float], typer.Option("--head-lr", help="Projection learning rate.")] = None,
    query_max_length: QueryMaxLengthOpt = None,
    passage_max_length: PassageMaxLengthOpt = None,
    mixed_precision: MixedPrecisionOpt = None,
    eval_data: Annotated[Optional[str], typer.Option("--eval-data", help="BEIR folder evaluated during training (nDCG@10 of exact MaxSim; slow on CPU).")] = None,
    eval_every: EvalEveryOpt = None,
    keep_best: KeepBestOpt = None,
    save_every: SaveEveryOpt = None,
    config: Annotated[Optional[str], typer.Option("--config", help="run.toml with any ColbertConfig key (options given here win).")] = None,
    detach: DetachOpt = False,
    resume: ResumeOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train a ColBERT model (encoder + 128-d head, MaxSim); use it with --model colbert=runs/NAME."""
    from trainers.config import ColbertConfig

    given = {
        "data": data, "base": base, "name": out, "dim": dim, "projection_init": projection_init,
        "negatives_per_query": negatives,
        "temperature": temperature, "kl_weight": kl_weight, "epochs": epochs, "max_steps": max_steps,
        "batch_size": batch_size, "lr": lr, "head_lr": head_lr, "query_max_length": query_max_length,
        "passage_max_length": passage_max_length, "mixed_precision": mixed_precision,
        "eval_data": eval_data, "eval_every": eval_every, "keep_best": keep_best, "save_every": save_every,
    }
    _train_cmd(ColbertConfig, given, config=config, detach=detach, resume=resume, workspace=workspace)


@train_app.command("splade")
def train_splade_cmd(
    data: Annotated[Optional[list[str]], typer.Option("--data", metavar="PATH", help=MULTI_DATA + "FlagEmbedding jsonl (hard negatives as `wb mine` writes), BEIR folder or sentence-transformers file.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="'sparse' (the workspace's sparse model, the default), a built-in name, a folder, runs/NAME or a HF id (a masked LM).")] = None,
    out: OutOpt = None,
    negatives: NegativesOpt = None,
    lambda_q: Annotated[Optional[float], typer.Option("--lambda-q", help="FLOPS weight on query vectors.")] = None,
    lambda_d: Annotated[Optional[float], typer.Option("--lambda-d", help="FLOPS weight on document vectors.")] = None,
    epochs: EpochsOpt = None,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    passage_max_length: PassageMaxLengthOpt = None,
    mixed_precision: MixedPrecisionOpt = None,
    eval_data: Annotated[Optional[str], typer.Option("--eval-data", help="BEIR folder evaluated during training (nDCG@10).")] = None,
    eval_every: EvalEveryOpt = None,
    keep_best: KeepBestOpt = None,
    save_every: SaveEveryOpt = None,
    config: Annotated[Optional[str], typer.Option("--config", help="run.toml with any SpladeConfig key (options given here win).")] = None,
    detach: DetachOpt = False,
    resume: ResumeOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Fine-tune a SPLADE model (contrastive + FLOPS); use it with --model sparse=runs/NAME."""
    from trainers.config import SpladeConfig

    given = {
        "data": data, "base": base, "name": out, "negatives_per_query": negatives, "lambda_q": lambda_q,
        "lambda_d": lambda_d, "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr,
        "passage_max_length": passage_max_length, "mixed_precision": mixed_precision,
        "eval_data": eval_data, "eval_every": eval_every, "keep_best": keep_best, "save_every": save_every,
    }

    def adjust(values: dict, ws) -> None:
        if values.get("base", "sparse") == "sparse":  # the default: the workspace's sparse model
            values["base"] = ws.config().models.sparse

    _train_cmd(SpladeConfig, given, config=config, detach=detach, resume=resume, workspace=workspace,
               adjust=adjust)


@train_app.command("layerwise", short_help="Train a layer-wise cross-encoder (a score head per layer) that can exit early: --model reranker=runs/NAME\\[@L].")
def train_layerwise_cmd(
    data: Annotated[Optional[list[str]], typer.Option("--data", metavar="PATH", help=MULTI_DATA + "FlagEmbedding jsonl with hard negatives (as `wb mine` writes), BEIR folder or sentence-transformers file.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="'dense' (the workspace's dense model), a built-in name, a folder, runs/NAME or a HF id (a BERT-like encoder).")] = None,
    out: OutOpt = None,
    layers: Annotated[Optional[str], typer.Option("--layers", help="Layers that get a score head, e.g. 2,4,6 (default: 2 to the last).")] = None,
    distill_weight: Annotated[Optional[float], typer.Option("--distill-weight", help="Weight of KL(last layer || layer l) self-distillation (0: off).")] = None,
    distill_temperature: Annotated[Optional[float], typer.Option("--distill-temperature", help="Divides both score vectors of the KL.")] = None,
    default_cutoff: Annotated[Optional[int], typer.Option("--default-cutoff", help="Layer served by default (0: the smallest within 98% of the last layer's eval MRR, else the last).")] = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help="Per-layer loss: listwise, pairwise or pointwise.")] = None,
    group_size: GroupSizeOpt = None,
    epochs: EpochsOpt = None,
    max_steps: MaxStepsOpt = None,
    batch_size: GroupBatchSizeOpt = None,
    lr: LrOpt = None,
    head_lr: Annotated[Optional[float], typer.Option("--head-lr", help="Learning rate of the per-layer heads.")] = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Tokens of query + passage.")] = None,
    mixed_precision: MixedPrecisionOpt = None,
    eval_data: Annotated[Optional[str], typer.Option("--eval-data", help="FlagEmbedding jsonl of held-out groups (MRR at every layer; picks the default cutoff).")] = None,
    eval_every: Annotated[Optional[int], typer.Option("--eval-every", help="Evaluate every N steps (0: only at the end, for the cutoff).")] = None,
    keep_best: KeepBestOpt = None,
    save_every: SaveEveryOpt = None,
    config: Annotated[Optional[str], typer.Option("--config", help="run.toml with any LayerwiseConfig key (options given here win).")] = None,
    detach: DetachOpt = False,
    resume: ResumeOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train a layer-wise cross-encoder (a score head per layer, self-distilled from the last); serve it
    with --model reranker=runs/NAME (its default cutoff) or reranker=runs/NAME@L (exit after layer L)."""
    from trainers.config import LayerwiseConfig

    given = {
        "data": data, "base": base, "name": out, "layers": layers, "distill_weight": distill_weight,
        "distill_temperature": distill_temperature, "default_cutoff": default_cutoff, "loss": loss,
        "group_size": group_size, "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr,
        "head_lr": head_lr, "max_length": max_length, "mixed_precision": mixed_precision,
        "eval_data": eval_data, "eval_every": eval_every, "keep_best": keep_best, "save_every": save_every,
    }

    def adjust(values: dict, _ws) -> None:
        from trainers.layerwise import parse_layers

        values["layers"] = parse_layers(values.get("layers"))

    _train_cmd(LayerwiseConfig, given, config=config, detach=detach, resume=resume, workspace=workspace,
               adjust=adjust)


@train_app.command("joint", short_help="Train one encoder with dense, sparse and ColBERT heads (BGE-M3 style): --model joint=runs/NAME.")
def train_joint_cmd(
    data: Annotated[Optional[list[str]], typer.Option("--data", metavar="PATH", help=MULTI_DATA + "FlagEmbedding jsonl (hard negatives as `wb mine` writes), BEIR folder or sentence-transformers file.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="'dense' (the workspace's dense model, the default), a built-in name, a folder, runs/NAME (a joint run continues with its heads) or a HF id (a BERT-like encoder).")] = None,
    out: OutOpt = None,
    dense_weight: Annotated[Optional[float], typer.Option("--dense-weight", help="a in L = a*dense + b*sparse + c*colbert.")] = None,
    sparse_weight: Annotated[Optional[float], typer.Option("--sparse-weight", help="b (BGE-M3: 0.1).")] = None,
    colbert_weight: Annotated[Optional[float], typer.Option("--colbert-weight", help="c.")] = None,
    distill_weight: Annotated[Optional[float], typer.Option("--distill-weight", help="Weight of self-distillation KL(ensemble || mode) into each mode (0: off).")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Divides every mode's scores in the softmaxes.")] = None,
    colbert_dim: Annotated[Optional[int], typer.Option("--colbert-dim", help="ColBERT vector size (0: the encoder's hidden size, starting at zero-shot MaxSim).")] = None,
    negatives: NegativesOpt = None,
    epochs: EpochsOpt = None,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: EncoderLrOpt = None,
    head_lr: Annotated[Optional[float], typer.Option("--head-lr", help="Sparse and ColBERT heads' learning rate.")] = None,
    query_max_length: QueryMaxLengthOpt = None,
    passage_max_length: PassageMaxLengthOpt = None,
    mixed_precision: MixedPrecisionOpt = None,
    eval_data: Annotated[Optional[str], typer.Option("--eval-data", help="BEIR folder evaluated during training (nDCG@10 of each mode and of the ensemble; slow on CPU).")] = None,
    eval_every: EvalEveryOpt = None,
    keep_best: KeepBestOpt = None,
    save_every: SaveEveryOpt = None,
    config: Annotated[Optional[str], typer.Option("--config", help="run.toml with any JointConfig key (options given here win).")] = None,
    detach: DetachOpt = False,
    resume: ResumeOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train one encoder with dense, sparse and ColBERT heads together (BGE-M3 style, self-distilled);
    use it with --model joint=runs/NAME (or dense=/sparse=/colbert=runs/NAME)."""
    from trainers.config import JointConfig

    given = {
        "data": data, "base": base, "name": out, "dense_weight": dense_weight, "sparse_weight": sparse_weight,
        "colbert_weight": colbert_weight, "distill_weight": distill_weight, "temperature": temperature,
        "colbert_dim": colbert_dim, "negatives_per_query": negatives, "epochs": epochs, "max_steps": max_steps,
        "batch_size": batch_size, "lr": lr, "head_lr": head_lr, "query_max_length": query_max_length,
        "passage_max_length": passage_max_length, "mixed_precision": mixed_precision,
        "eval_data": eval_data, "eval_every": eval_every, "keep_best": keep_best, "save_every": save_every,
    }

    def adjust(values: dict, _ws) -> None:
        values.setdefault("base", "dense")  # the workspace's dense model

    _train_cmd(JointConfig, given, config=config, detach=detach, resume=resume, workspace=workspace,
               adjust=adjust)


@train_app.command("resume")
def train_resume_cmd(
    name: Annotated[str, typer.Argument(help="The run to continue.")],
    detach: Annotated[bool, typer.Option("--detach", help="Continue in the background.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Continue a stopped (or died) run from its latest checkpoint."""
    from trainers.runs import get_run

    ws = _workspace(workspace)
    run = get_run(ws.root, name)
    state = run.status().get("state")
    if state == "running":
        raise UsageError(f"run '{name}' is running (pid {run.status().get('pid')}): `wb runs stop {shlex.quote(name)}{ws.flag}` first")
    if state == "finished":
        raise UsageError(f"run '{name}' has finished: its model is in {run.model_dir}")
    if state == "unknown" and run.model_dir.is_dir():  # status.json lost: the model says it finished
        raise UsageError(f"run '{name}' has no readable status.json but a saved model ({run.model_dir}): resuming "
                         f"would train it again over that model; train a new run with another --out instead")
    _run_training(run, resume=True, detach=detach)
