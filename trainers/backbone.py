"""The trainable encoder: load a base model (encoder or decoder LLM), pool with gradients, save.

* Encoders (BERT-like): mean or CLS pooling (``auto``: what the base's sentence-transformers
  files say, else mean); ``last`` pools the encoder's own last token ([SEP]), no EOS appended,
  as :class:`workbench.encoders.dense.DenseEncoder` serves it.
* Decoder LLMs (``*ForCausalLM`` bases): loaded as the bare transformer (no LM head), EOS
  appended to every input, pad = EOS, last-token pooling (as :class:`workbench.encoders.dense.DenseEncoder`).
* LoRA: peft ``LoraConfig(target_modules="all-linear", task_type=FEATURE_EXTRACTION)``.

:func:`save_final` writes a folder :class:`~workbench.encoders.dense.DenseEncoder` reads right:

* base with ``modules.json`` (sentence-transformers): its module files are copied (modules.json,
  sentence_bert_config.json, 1_Pooling/, 2_Normalize/, ...) and the weights + tokenizer are
  saved at the root;
* any other encoder: the weights + tokenizer, plus minimal sentence-transformers files written
  from the training pooling/normalize (so ``read_layout`` and sentence-transformers agree);
* a decoder: a plain Hugging Face folder whose ``config.json`` keeps the base's
  ``*ForCausalLM`` architecture name (``read_layout`` then says causal-lm / last / normalized).

Every folder also gets ``wb_model.json`` ``{"pooling", "normalize", "kind", "base"}``. With LoRA
the adapter is saved under ``adapter/`` and the merged weights at the root.

Imports torch / transformers / peft inside functions only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from workbench.encoders.layout import position_limit, read_layout
from workbench.errors import ModelError, UsageError, first_line

from .runs import staged_folder

__all__ = ["base_config", "encode", "fast_attention", "is_decoder_config", "load_backbone", "save_final", "tokenize"]

POOLINGS = ("auto", "mean", "cls", "last")
_ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def is_decoder_config(config: Any) -> bool:
    archs = " ".join(getattr(config, "architectures", None) or ())
    return "ForCausalLM" in archs or bool(getattr(config, "is_decoder", False) and "Bert" not in archs)


def base_config(base: str, models: str = "MODEL_MAPPING", what: str = "model"):
    """``base``'s transformers config, read as a trainer reads it but without its weights (config.json
    and, for a local folder, the presence of a tokenizer file: cheap enough to check before a run
    folder exists). ``models`` names the transformers mapping of the Auto class the trainer loads the
    base with (``MODEL_FOR_MASKED_LM_MAPPING`` for AutoModelForMaskedLM), ``what`` what that class
    makes ("masked-LM model"). ModelError, one line, for a folder with no config.json, a config
    transformers cannot read, a folder with no tokenizer, or a model type that class cannot build."""
    import transformers
    from transformers import AutoConfig

    from workbench.encoders.device import require_tokenizer

    folder = Path(base)
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise ModelError(f"cannot load base model '{base}': the folder has no config.json (it is not a model folder)")
    try:
        hf_config = AutoConfig.from_pretrained(base, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load base model '{base}': {first_line(exc)}") from exc
    require_tokenizer(base, "base model")
    if type(hf_config) not in getattr(transformers, models):
        raise ModelError(f"cannot load base model '{base}' as a {what}: transformers has none for its model type "
                         f"'{hf_config.model_type}'")
    return hf_config


def fast_attention(source) -> dict[str, float]:
    """``from_pretrained`` keyword arguments that turn off dropout on attention probabilities.

    ``source``: the base's already-loaded Hugging Face config, or the base (read here).
    With attention dropout, PyTorch's fused scaled-dot-product attention falls back to the plain
    kernel and a mask the size of every attention matrix is drawn each step: a MiniLM
    cross-encoder step (32 pairs x 256 tokens, bf16 on a 2-core CPU) takes 5.2-6.1 s with it and
    1.7 s without. Hidden-state dropout stays as the base has it, so fine-tuning keeps its
    regulariser. Empty when the config has no such field (decoder LLMs: 0 already) or cannot be
    read (the loader then reports the error).
    """
    hf_config = source
    if isinstance(source, (str, Path)):
        from transformers import AutoConfig

        try:
            hf_config = AutoConfig.from_pretrained(str(source), trust_remote_code=False)
        except (OSError, ValueError):
            return {}
    return {key: 0.0 for key in ("attention_probs_dropout_prob", "attention_dropout")
            if float(getattr(hf_config, key, 0.0) or 0.0) > 0.0}


def load_backbone(
    base: str,
    pooling: str = "auto",
    lora: bool = False,
    lora_r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    gradient_checkpointing: bool = False,
):
    """Load ``base`` for training; return ``(model, tokenizer, pooling, normalize, kind)``.

    ``kind`` is ``"encoder"`` or ``"decoder"``. Raises ModelError when the base cannot be loaded.
    """
    if pooling not in POOLINGS:
        raise UsageError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    from transformers import AutoModel, AutoTokenizer

    hf_config = base_config(base)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
        model = AutoModel.from_pretrained(base, dtype="float32", **fast_attention(hf_config), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load base model '{base}': {first_line(exc)}") from exc
    decoder = is_decoder_config(hf_config)
    kind = "decoder" if decoder else "encoder"
    layout = read_layout(base) if Path(base).is_dir() else None
    if layout is not None:
        layout.check("base model")
    # EOS appended to every input for decoders only, as DenseEncoder serves them; an encoder with
    # last-token pooling pools its own last token ([SEP] for BERT), as served too
    tokenizer._wb_append_eos = decoder  # type: ignore[attr-defined]
    if decoder:
        if tokenizer.eos_token_id is None:
            raise ModelError(f"decoder base '{base}' has no EOS token: cannot pool the last token")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        chosen = "last" if pooling == "auto" else pooling
        normalize = True
    else:
        if pooling != "auto":
            chosen = pooling
        elif layout is not None and layout.kind == "sentence-transformers":
            chosen = layout.pooling
        else:
            chosen = "mean"
        normalize = layout.normalize if layout is not None and layout.kind == "sentence-transformers" else True
    # the pooler head (BERT's tanh dense over [CLS]) is never used: we pool last_hidden_state. Frozen,
    # it keeps its weights and is saved as is, and data-parallel training sees no unused parameters.
    pooler = getattr(model, "pooler", None)
    if pooler is not None:
        for param in pooler.parameters():
            param.requires_grad_(False)
    # remember where the model came from (save_final needs the base's architectures)
    model._wb_base_architectures = list(getattr(hf_config, "architectures", None) or [])  # type: ignore[attr-defined]
    if gradient_checkpointing:
        enable_checkpointing(model)
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    if lora:
        from peft import LoraConfig, TaskType

        peft_config = LoraConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules="all-linear",
        )
        archs = model._wb_base_architectures  # type: ignore[attr-defined]
        model = with_lora(model, peft_config)
        model._wb_base_architectures = archs  # type: ignore[attr-defined]
    return model, tokenizer, chosen, normalize, kind


def enable_checkpointing(model) -> None:
    """Activation (gradient) checkpointing on ``model``, non-reentrant: transformers 5.2x names it
    ``activation_checkpointing_enable`` and deprecates the old name with a FutureWarning on every
    run; older releases have only ``gradient_checkpointing_enable``."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def with_lora(model, peft_config):
    """``peft.get_peft_model(model, peft_config)`` without the FutureWarning transformers raises when
    peft reads ``model.is_gradient_checkpointing`` (peft's own deprecated call, a line on stderr
    of every LoRA run with gradient checkpointing that its user can do nothing about)."""
    import warnings

    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, peft_config)


def padded(ids: list[list[int]], pad_id: int, extra: list[list[int]] | None = None):
    """Right-padded torch ``(input_ids, attention_mask, extra)`` (long; ``extra``, e.g. token type
    ids, padded with 0, None when not given): the encoders' ``pad_batch`` over every row."""
    import torch

    from workbench.encoders.batching import pad_batch

    input_ids, mask, other = pad_batch(ids, range(len(ids)), int(pad_id), extra)
    return (torch.from_numpy(input_ids), torch.from_numpy(mask),
            torch.from_numpy(other) if other is not None else None)


def tokenize(tokenizer, texts: list[str], max_length: int, pooling: str) -> dict:
    """Padded ``input_ids`` / ``attention_mask`` tensors (right padding). With last pooling, EOS is
    appended for a decoder's tokenizer (as :func:`load_backbone` marks it; serving appends it for
    decoders only), not for an encoder's, whose own last token ([SEP]) is pooled as served."""
    if pooling == "last" and getattr(tokenizer, "_wb_append_eos", True):
        enc = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max(1, max_length - 1))
        eos = tokenizer.eos_token_id
        ids = [list(x) + [eos] for x in enc["input_ids"]]
    else:
        enc = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_length)
        ids = [list(x) for x in enc["input_ids"]]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids, mask, _ = padded(ids, pad)
    return {"input_ids": input_ids, "attention_mask": mask}


def pool(hidden, mask, pooling: str):
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = mask.sum(dim=1) - 1
        return hidden[range(hidden.shape[0]), last]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def encode(model, tokenizer, texts: list[str], max_length: int, pooling: str, normalize: bool, *,
           device=None, return_tokens: bool = False):
    """``[B, d]`` pooled embeddings of ``texts``, with gradients when the model is in train mode.

    ``return_tokens=True`` returns ``(embeddings, n_tokens)`` (non-padding tokens, for throughput).
    """
    import torch.nn.functional as F

    config = getattr(model, "config", None)
    if isinstance(getattr(config, "max_position_embeddings", None), int):
        max_length = min(max_length, position_limit(config, max_length))
    batch = tokenize(tokenizer, texts, max_length, pooling)
    if device is None:
        device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    hidden = model(**batch).last_hidden_state
    pooled = pool(hidden, batch["attention_mask"], pooling)
    if normalize:
        pooled = F.normalize(pooled.float(), dim=-1)
    if return_tokens:
        return pooled, int(batch["attention_mask"].sum())
    return pooled


def _write_st_files(out: Path, dim: int, pooling: str, normalize: bool, max_length: int) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (out / "2_Normalize").mkdir(exist_ok=True)
    (out / "modules.json").write_text(json.dumps(modules, indent=2))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_lasttoken": pooling == "last",
    }, indent=2))
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": False}, indent=2)
    )


def set_served_length(folder: str | Path, max_length: int) -> None:
    """Make a sentence-transformers folder serve ``max_length`` tokens: its
    ``sentence_bert_config.json`` ``max_seq_length`` (a base's copied file keeps the base's, e.g.
    MiniLM's 256, whatever length the run trained at); other keys kept."""
    path = Path(folder) / "sentence_bert_config.json"
    try:
        cfg = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        cfg = {}
    if not isinstance(cfg, dict):
        cfg = {}
    cfg["max_seq_length"] = int(max_length)
    cfg.setdefault("do_lower_case", False)
    path.write_text(json.dumps(cfg, indent=2))


def save_final(model, tokenizer, base: str, out_dir: str | Path, *, pooling: str = "mean",
               normalize: bool = True, kind: str = "encoder", max_length: int = 512, templates=None) -> Path:
    """Save the trained model in a folder the workbench can use (see the module docstring).

    ``templates`` (the PromptTemplates the queries trained with) go into ``wb_model.json``, which
    serving reads (:func:`workbench.encoders.templates.templates_for`)."""
    with staged_folder(out_dir) as tmp:
        archs = list(getattr(model, "_wb_base_architectures", None) or [])
        if hasattr(model, "merge_and_unload"):  # a peft model: adapter first, then merged weights
            model.save_pretrained(str(tmp / "adapter"))
            model = model.merge_and_unload()
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        base_dir = Path(base)
        if kind == "decoder":
            if archs:  # keep *ForCausalLM so read_layout says causal-lm / last-token pooling
                cfg_path = tmp / "config.json"
                cfg = json.loads(cfg_path.read_text())
                cfg["architectures"] = archs
                cfg_path.write_text(json.dumps(cfg, indent=2))
        elif base_dir.is_dir() and (base_dir / "modules.json").exists():
            for name in _ST_FILES:
                if (base_dir / name).exists():
                    shutil.copy(base_dir / name, tmp / name)
            try:
                modules = json.loads((base_dir / "modules.json").read_text())
            except ValueError:
                modules = []
            for module in modules:
                sub = module.get("path") or ""
                if sub and (base_dir / sub).is_dir():
                    shutil.copytree(base_dir / sub, tmp / sub, dirs_exist_ok=True)
                elif sub and str(module.get("type", "")).endswith("Normalize"):
                    (tmp / sub).mkdir(exist_ok=True)
            from workbench.encoders.layout import read_layout

            layout = read_layout(str(tmp))
            if (layout.pooling, layout.normalize) != (pooling, bool(normalize)):  # trained with another
                # pooling than the base's (--pooling): the served layout is the trained one
                dim = int(getattr(model.config, "hidden_size", 0) or 0)
                _write_st_files(tmp, dim, pooling, normalize, layout.max_length)
        else:
            dim = int(getattr(model.config, "hidden_size", 0) or 0)
            _write_st_files(tmp, dim, pooling, normalize, max_length)
        meta = {"pooling": pooling, "normalize": bool(normalize), "kind": kind, "base": str(base)}
        if templates is not None:
            meta["templates"] = {"query": templates.query, "document": templates.document,
                                 "instruction_format": templates.instruction_format}
        (tmp / "wb_model.json").write_text(json.dumps(meta, indent=2))
    return Path(out_dir)
