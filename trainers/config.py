"""Training-run configuration: one typed dataclass, read from CLI options and/or a TOML file.

The resolved config is written into the run folder (``config.json``) and is all a resumed or
detached run needs.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from workbench.errors import UsageError


@dataclass
class EmbedderConfig:
    """Fine-tuning a bi-encoder (encoder or decoder LLM) with a contrastive loss."""

    data: str  # FlagEmbedding jsonl | BEIR folder | sentence-transformers pairs | "unsupervised"
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
    mixed_precision: str = "auto"  # auto (bf16 on GPU, none on CPU) | bf16 | fp16 | no
    seed: int = 42
    save_every: int = 100
    log_every: int = 1
    eval_data: str | None = None  # a BEIR folder evaluated during training
    eval_split: str = "test"
    eval_every: int = 0
    task_sampling: str = "proportional"

    def to_json(self) -> str:
        return json.dumps({"trainer": "embedder", **asdict(self)}, indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "EmbedderConfig":
        data = {k: v for k, v in data.items() if k != "trainer"}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UsageError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def read_toml(path: str | Path) -> dict:
    """Options from a run.toml (flat keys, or under [train])."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"no such config file: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from exc
    return dict(raw.get("train", raw))
