"""Read what a model folder says about itself (sentence-transformers config, architecture).

Only JSON files are read here; nothing heavy is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelLayout:
    """What we need to know to run a folder as an encoder.

    ``kind`` is one of ``sentence-transformers``, ``mlm``, ``causal-lm``, ``cross-encoder``,
    ``encoder`` (a plain Hugging Face encoder). ``pooling`` is ``mean``, ``cls`` or ``last``.
    ``lowercase``: texts are lowercased (``str.lower``) before tokenizing, as sentence-transformers
    does when ``sentence_bert_config.json`` sets ``do_lower_case`` (whatever the tokenizer does).
    """

    path: str
    kind: str
    pooling: str
    normalize: bool
    max_length: int
    architectures: tuple[str, ...]
    problem: str = ""  # why wb cannot run this folder as sentence-transformers does ("" when it can)
    lowercase: bool = False
    # sentence-transformers' Pooling ``include_prompt: false``: the prompt's tokens (a query's
    # instruction prefix) are left out of mean pooling (``DenseEncoder.encode(prompt=...)``)
    exclude_prompt: bool = False

    def prepare(self, texts: list[str]) -> list[str]:
        """``texts`` as the tokenizer gets them: lowercased when ``lowercase``, else as they are."""
        return [t.lower() for t in texts] if self.lowercase else texts

    def check(self, what: str) -> None:
        """ModelError (one line) when the folder needs what wb does not run (``problem``)."""
        if self.problem:
            from workbench.errors import ModelError

            raise ModelError(f"cannot use {what} '{self.path}': {self.problem}")


def read_json(path: Path, kind: type = dict):
    """The JSON value in ``path`` when it is a ``kind`` (an object by default, ``list`` for
    ``modules.json``); an empty ``kind`` when the file is missing, unreadable or holds another type."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return kind()
    return data if isinstance(data, kind) else kind()


# position ids start at pad_token_id + 1 (transformers' create_position_ids_from_input_ids)
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text", "ibert",
                    "roberta-prelayernorm", "xlm-roberta-xl", "xmod")


def position_limit(config, default: int) -> int:
    """The most tokens a model reads: ``max_position_embeddings`` (``default`` when the config,
    a ``config.json`` dict or a transformers config, has none), less the ``pad_token_id + 1``
    positions a RoBERTa-style model never uses (its ids start past the padding id: 514 -> 512)."""
    get = config.get if isinstance(config, dict) else (lambda key: getattr(config, key, None))
    limit = int(get("max_position_embeddings") or default)
    if get("model_type") in OFFSET_POSITIONS and get("max_position_embeddings"):
        limit -= int(get("pad_token_id") if get("pad_token_id") is not None else 1) + 1
    return limit


def read_layout(path: str, default_max_length: int = 512) -> ModelLayout:
    """Inspect ``path`` (a local folder; a hub id gives a plain ``encoder`` guess)."""
    folder = Path(path)
    config = read_json(folder / "config.json")
    archs = tuple(config.get("architectures") or ())
    arch_text = " ".join(archs)
    max_pos = position_limit(config, default_max_length)
    modules = read_json(folder / "modules.json", list)
    if modules:
        st_cfg = read_json(folder / "sentence_bert_config.json")
        pooling_dir = next(
            (m.get("path") for m in modules if str(m.get("type", "")).endswith("Pooling")), None
        )
        pool_cfg = read_json(folder / pooling_dir / "config.json") if pooling_dir else {}
        pooling, problem = _pooling(pool_cfg)
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        others = [k for k in kinds if k not in _MODULES_RUN]
        if others and not problem:  # a Dense projection, ...: vectors would differ from the model's
            problem = (f"its sentence-transformers modules include {', '.join(others)}, which wb does not run "
                       f"(it runs {', '.join(sorted(_MODULES_RUN))})")
        # wb ranks dense vectors by cosine (the exact scan over unit vectors and LanceDB's index
        # alike): a model whose similarity is cosine (sentence-transformers' default) is served
        # normalised whether or not it has a Normalize module (without one, the exact scan ranked by
        # raw dot products and LanceDB by cosine: two orders for one model); a dot-product model
        # without Normalize would rank otherwise than it was trained to, so it is refused
        similarity = str(read_json(folder / "config_sentence_transformers.json").get("similarity_fn_name")
                         or "cosine").lower()
        if similarity not in ("cosine", "dot", "dot_product") and not problem:
            problem = f"its similarity ({similarity}) is not one wb ranks by (cosine)"
        elif similarity != "cosine" and "Normalize" not in kinds and not problem:
            problem = ("its similarity is the dot product of unnormalised vectors; wb ranks dense vectors by "
                       "cosine (a dot-product model would rank differently here)")
        normalize = True
        transformer_dir = next((m.get("path") for m in modules
                                if str(m.get("type", "")).endswith("Transformer") and m.get("path")), None)
        if transformer_dir and not (folder / "config.json").is_file() and not problem:  # sentence-transformers < 2's layout
            problem = (f"its Transformer module is in the subfolder {transformer_dir}/, which wb does not read: "
                       f"give that subfolder itself (it holds the model and its tokenizer)")
        # the sequence limit: sentence_bert_config's, else the tokenizer's (sentence-transformers 6
        # keeps it there), never past the model's positions
        tok_limit = read_json(folder / "tokenizer_config.json").get("model_max_length")
        limit = st_cfg.get("max_seq_length") or (tok_limit if isinstance(tok_limit, int) and tok_limit < 1_000_000
                                                 else None)
        max_length = min(int(limit or default_max_length), max_pos)
        return ModelLayout(path, "sentence-transformers", pooling, normalize, max_length, archs, problem,
                           lowercase=st_cfg.get("do_lower_case") is True,
                           exclude_prompt=pool_cfg.get("include_prompt") is False)
    if "ForCausalLM" in arch_text:
        return ModelLayout(path, "causal-lm", "last", True, min(max_pos, default_max_length), archs)
    if "ForMaskedLM" in arch_text:
        return ModelLayout(path, "mlm", "mean", True, min(max_pos, default_max_length), archs)
    if "ForSequenceClassification" in arch_text:
        return ModelLayout(path, "cross-encoder", "cls", False, min(max_pos, default_max_length), archs)
    return ModelLayout(path, "encoder", "mean", True, min(max_pos, default_max_length), archs)


_MODULES_RUN = {"Transformer", "Pooling", "Normalize"}  # sentence-transformers modules wb runs as they are


def _pooling(pool_cfg: dict) -> tuple[str, str]:
    """(pooling wb runs, problem) from a sentence-transformers Pooling config: the ``pooling_mode``
    string (or list of strings, several modes concatenated) of sentence-transformers 5+ or the
    ``pooling_mode_*`` flags of older ones (no config: mean). Modes wb does not run (max,
    mean_sqrt_len_tokens, weightedmean, several at once) are the problem, not silently mean."""
    names = {"cls": "cls", "cls_token": "cls", "lasttoken": "last", "mean": "mean", "mean_tokens": "mean"}
    mode = pool_cfg.get("pooling_mode")
    if isinstance(mode, str):
        modes = [mode]
    elif isinstance(mode, list):
        modes = [str(m) for m in mode]
    else:
        modes = [key[len("pooling_mode_"):] for key, on in pool_cfg.items()
                 if key.startswith("pooling_mode_") and on is True]
    if not modes:
        return "mean", ""
    if len(modes) == 1 and modes[0] in names:
        return names[modes[0]], ""
    return "mean", f"its pooling ({' + '.join(modes)}) is not one wb runs (mean, cls or last token)"
