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
    """

    path: str
    kind: str
    pooling: str
    normalize: bool
    max_length: int
    architectures: tuple[str, ...]


def read_json(path: Path, kind: type = dict):
    """The JSON value in ``path`` when it is a ``kind`` (an object by default, ``list`` for
    ``modules.json``); an empty ``kind`` when the file is missing, unreadable or holds another type."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return kind()
    return data if isinstance(data, kind) else kind()


def read_layout(path: str, default_max_length: int = 512) -> ModelLayout:
    """Inspect ``path`` (a local folder; a hub id gives a plain ``encoder`` guess)."""
    folder = Path(path)
    config = read_json(folder / "config.json")
    archs = tuple(config.get("architectures") or ())
    arch_text = " ".join(archs)
    max_pos = int(config.get("max_position_embeddings") or default_max_length)
    modules = read_json(folder / "modules.json", list)
    if modules:
        st_cfg = read_json(folder / "sentence_bert_config.json")
        pooling_dir = next(
            (m.get("path") for m in modules if str(m.get("type", "")).endswith("Pooling")), None
        )
        pool_cfg = read_json(folder / pooling_dir / "config.json") if pooling_dir else {}
        if pool_cfg.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif pool_cfg.get("pooling_mode_lasttoken"):
            pooling = "last"
        else:
            pooling = "mean"
        normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
        max_length = int(st_cfg.get("max_seq_length") or min(max_pos, default_max_length))
        return ModelLayout(path, "sentence-transformers", pooling, normalize, max_length, archs)
    if "ForCausalLM" in arch_text:
        return ModelLayout(path, "causal-lm", "last", True, min(max_pos, default_max_length), archs)
    if "ForMaskedLM" in arch_text:
        return ModelLayout(path, "mlm", "mean", True, min(max_pos, default_max_length), archs)
    if "ForSequenceClassification" in arch_text:
        return ModelLayout(path, "cross-encoder", "cls", False, min(max_pos, default_max_length), archs)
    return ModelLayout(path, "encoder", "mean", True, min(max_pos, default_max_length), archs)
