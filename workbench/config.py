"""``wb.toml``: the workspace configuration, parsed with ``tomllib`` into typed dataclasses.

Unknown sections or keys are errors (a typo must not be silently ignored).
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from workbench.errors import UsageError

MODES = ("dense", "colbert", "sparse", "bm25")

DEFAULT_TOML = """\
# wb workspace configuration. Every role accepts a built-in name (see `wb models`),
# a Hugging Face id or a local folder.
[models]
dense = "all-MiniLM-L6-v2"   # bi-encoder; its token states also give zero-shot ColBERT
colbert = "zero-shot"        # "zero-shot" = MaxSim over the dense model's token states, or a trained head
sparse = "splade-tiny"       # SPLADE / masked-LM model
reranker = "maxsim"          # "maxsim" (zero-shot), "llm" (SmolLM2 yes/no), or a cross-encoder folder

[index]
chunk_tokens = 256
chunk_overlap = 32
exclude = []                 # names or relative paths not to index, glob patterns: ["node_modules", "drafts/*"]
max_file_mb = 20.0           # larger files are skipped (said in the summary); a BEIR corpus.jsonl never is

# [fusion] and [rerank] defaults were chosen on SciFact's train split (809 queries, nDCG@10) with
# `wb eval DATASET --tune`; see bench/results/fusion_tuning.json.
[fusion]
method = "weighted"          # "weighted" (normalised score sum) or "rrf"
normalization = "min-max"
depth = 100                  # candidates taken from each mode before fusion
rrf_k = 60                   # used by method = "rrf"
complete = false             # true: score every candidate in every mode (dense, sparse, colbert) before fusing

[fusion.weights]
dense = 1.0
colbert = 2.0
sparse = 1.0
bm25 = 1.0

[rerank]
depth = 50                   # first-stage results the +rerank pipelines rerank
interpolation = 0.75         # final = (1-a) * reranker + a * first stage (both min-max normalised)
"""


@dataclass(frozen=True)
class ModelsConfig:
    dense: str = "all-MiniLM-L6-v2"
    colbert: str = "zero-shot"
    sparse: str = "splade-tiny"
    reranker: str = "maxsim"
    dense_query_template: str | None = None
    dense_document_template: str | None = None


@dataclass(frozen=True)
class IndexConfig:
    chunk_tokens: int = 256
    chunk_overlap: int = 32
    # glob patterns (fnmatch) matched against each file or folder name and its path relative to the
    # indexed folder: a match is not read (a folder not walked); changing them re-reads, never rebuilds
    exclude: tuple[str, ...] = ()
    max_file_mb: float = 20.0
    sparse_step: float = 0.02
    colbert_exact_max_tokens: int = 400_000
    colbert_candidates: int = 300  # the colbert pipeline alone scores the dense top-N + the BM25 top-depth
    # Inside a fused pipeline ColBERT scores exactly the union of the other modes' top
    # hybrid_colbert_depth each (0: their whole lists) plus the dense top hybrid_colbert_extra.
    # SciFact train (809 queries), hybrid nDCG@10 / candidates / ColBERT stage p50 on the AVX2
    # 2-core machine: whole lists + dense 150 75.09 / 260 / 33.4 ms; whole lists 75.08 / 219 / 27.8;
    # top 50 74.97 / 109 / 14.8; top 30 74.83 / 65 / 9.9; top 10 74.74 / 21 / 4.5 (R@100 95.1-95.4)
    hybrid_colbert_depth: int = 50
    hybrid_colbert_extra: int = 0
    # above this many chunks `wb index` builds LanceDB's ANN index on the dense vectors and dense
    # retrieval runs through it (IVF-HNSW over 8-bit vectors; its dense_ann_refine x depth best
    # candidates rescored exactly from the snapshot): bench/bench_dense_ann.py against the exact scan
    dense_exact_max_rows: int = 200_000
    dense_ann_refine: int = 2
    # one IVF partition per this many chunks; `wb index` retrains the index (LanceDB folds later rows
    # into the partitions it was trained with) once the table calls for twice its partitions
    dense_ann_partition_rows: int = 100_000


@dataclass(frozen=True)
class FusionConfig:
    method: str = "weighted"
    normalization: str = "min-max"
    depth: int = 100
    rrf_k: int = 60
    # score every fused candidate exactly in each of dense, sparse and ColBERT (not only those in
    # that mode's own top `depth`): a joint model's modes fused as BGE-M3 fuses them
    complete: bool = False
    weights: dict[str, float] = field(default_factory=lambda: {"dense": 1.0, "colbert": 2.0, "sparse": 1.0, "bm25": 1.0})


@dataclass(frozen=True)
class RerankConfig:
    depth: int = 50
    interpolation: float = 0.75  # final = (1-a) * reranker + a * first-stage (both min-max normalised)


@dataclass(frozen=True)
class WorkspaceConfig:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)

    def with_models(self, overrides: dict[str, str]) -> "WorkspaceConfig":
        """A copy with some roles replaced (``--model dense=runs/NAME``)."""
        from dataclasses import replace

        for role in overrides:
            check_role(role)
        return replace(self, models=replace(self.models, **overrides))


def check_role(role: str, *, joint: bool = False) -> None:
    """UsageError for a ``ROLE=NAME`` role that is none of the model roles (``joint`` too, where a
    joint model may fill dense, sparse and colbert at once)."""
    if role not in ("dense", "colbert", "sparse", "reranker") + (("joint",) if joint else ()):
        raise UsageError(f"unknown model role '{role}' (roles: dense, colbert, sparse, reranker; "
                         "joint=NAME fills dense, colbert and sparse from one joint model)")


_TYPE_CHECKS = {  # a field's annotation (a string: postponed annotations) -> (check, what the user must write)
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "tuple[str, ...]": (lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
                        "a list of strings"),
}


def type_mismatch(value, annotation: str) -> str | None:
    """What ``value`` should have been ("an integer", "a number", ...) when it does not fit a dataclass
    field annotated ``annotation`` (``X | None`` also takes None), else None. Shared by wb.toml and
    the training options (trainers/config.py)."""
    if annotation.endswith("| None"):
        if value is None:
            return None
        annotation = annotation.removesuffix("| None").strip()
    check = _TYPE_CHECKS.get(annotation)
    return check[1] if check and not check[0](value) else None


# (section, key) -> (lowest allowed value, highest or None): values outside are refused in one line
MAX_FUSION_WEIGHT = 1e6  # weights are relative; a bound keeps a weighted sum of scores finite
_RANGES = {
    ("index", "chunk_tokens"): (16, None), ("index", "chunk_overlap"): (0, None),
    ("index", "sparse_step"): (1e-6, None), ("index", "colbert_exact_max_tokens"): (0, None),
    ("index", "colbert_candidates"): (1, None), ("index", "hybrid_colbert_extra"): (0, None),
    ("index", "hybrid_colbert_depth"): (0, None),
    ("index", "dense_exact_max_rows"): (0, None), ("index", "dense_ann_refine"): (1, 100), ("index", "dense_ann_partition_rows"): (1, None),
    ("index", "max_file_mb"): (1e-6, None),
    ("fusion", "depth"): (1, None), ("fusion", "rrf_k"): (1, None),
    ("rerank", "depth"): (1, None), ("rerank", "interpolation"): (0.0, 1.0),
}


def _build(cls, data: dict, section: str):
    """``cls(**data)`` after checking every key is known, of its field's type and in its range."""
    by_name = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(by_name)
    if unknown:
        raise UsageError(f"wb.toml: unknown key(s) in [{section}]: {', '.join(sorted(unknown))}")
    for key, value in data.items():
        wanted = type_mismatch(value, str(by_name[key].type))
        if wanted:
            raise UsageError(f"wb.toml: [{section}] {key} must be {wanted}, not {value!r}")
        if isinstance(value, float) and not math.isfinite(value):  # nan passes every range check
            raise UsageError(f"wb.toml: [{section}] {key} must be a finite number, not {value!r}")
        lo, hi = _RANGES.get((section, key), (None, None))
        if lo is not None and (value < lo or (hi is not None and value > hi)):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise UsageError(f"wb.toml: [{section}] {key} must be {bound}, not {value!r}")
    data = {k: tuple(v) if str(by_name[k].type).startswith("tuple") else v for k, v in data.items()}  # TOML arrays
    try:
        return cls(**data)
    except TypeError as exc:
        raise UsageError(f"wb.toml: bad [{section}]: {exc}") from exc


def parse_config(text: str) -> WorkspaceConfig:
    """Parse ``wb.toml`` text; missing sections take defaults."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"wb.toml is not valid TOML: {exc}") from exc
    unknown = set(raw) - {"models", "index", "fusion", "rerank"}
    if unknown:
        raise UsageError(f"wb.toml: unknown section(s): {', '.join(sorted(unknown))}")
    for section, value in raw.items():
        if not isinstance(value, dict):  # `index = "x"`: a key where a [section] belongs
            raise UsageError(f"wb.toml: {section} must be a [{section}] section, not {value!r}")
    if "weights" in raw.get("fusion", {}) and not isinstance(raw["fusion"]["weights"], dict):
        raise UsageError("wb.toml: [fusion] weights must be a [fusion.weights] section")
    if "dense_pooling" in raw.get("models", {}):
        raise UsageError("wb.toml: [models] dense_pooling was never used and is no longer read: remove it "
                         "(a model's pooling comes from its folder)")
    fusion_raw = dict(raw.get("fusion", {}))
    weights = dict(FusionConfig().weights)  # the tuned defaults; wb.toml overrides per mode
    for mode, value in dict(fusion_raw.pop("weights", {})).items():
        if mode not in MODES:
            raise UsageError(f"wb.toml: unknown mode '{mode}' in [fusion.weights] (modes: {', '.join(MODES)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise UsageError(f"wb.toml: [fusion.weights] {mode} must be a number >= 0, not {value!r}")
        if value > MAX_FUSION_WEIGHT:  # a sum of 1e308-weighted scores is inf: every fused score, no order
            raise UsageError(f"wb.toml: [fusion.weights] {mode} must be at most {MAX_FUSION_WEIGHT:g}, not {value!r} "
                             "(weights are relative: 2 and 1 fuse as 2000 and 1000 do)")
        weights[mode] = float(value)
    if not any(weights.values()):
        raise UsageError("wb.toml: [fusion.weights] are all 0: at least one mode needs a positive weight")
    fusion = _build(FusionConfig, {**fusion_raw, "weights": weights}, "fusion")
    if fusion.method not in ("weighted", "rrf"):
        raise UsageError(f"wb.toml: [fusion] method must be 'weighted' or 'rrf', not '{fusion.method}'")
    if fusion.normalization != "min-max":
        raise UsageError(f"wb.toml: [fusion] normalization must be 'min-max' (the only one implemented), "
                         f"not '{fusion.normalization}'")
    index = _build(IndexConfig, raw.get("index", {}), "index")
    if index.chunk_overlap >= index.chunk_tokens // 2:  # windows advance by chunk_tokens - overlap
        raise UsageError(f"wb.toml: [index] chunk_overlap ({index.chunk_overlap}) must be less than half of "
                         f"chunk_tokens ({index.chunk_tokens})")
    models = _build(ModelsConfig, raw.get("models", {}), "models")
    for role in ("dense", "colbert", "sparse", "reranker"):
        if not getattr(models, role).strip():  # "" would name the current folder
            raise UsageError(f"wb.toml: [models] {role} is empty: name a model (`wb models` lists them) or leave the key out")
    _check_template(models.dense_query_template, "dense_query_template", ("instruction", "text"))
    _check_template(models.dense_document_template, "dense_document_template", ("text",))
    return WorkspaceConfig(
        models=models,
        index=index,
        fusion=fusion,
        rerank=_build(RerankConfig, raw.get("rerank", {}), "rerank"),
    )


def _check_template(template: str | None, key: str, fields: tuple[str, ...]) -> None:
    """A ``[models]`` prompt template must hold ``{text}`` and no field but ``fields`` (``{{`` and
    ``}}`` write braces): a typo fails here, in one line, not at every query."""
    if template is None:
        return
    from workbench.encoders.templates import template_problem

    problem = template_problem(template, fields)
    if problem:
        raise UsageError(f"wb.toml: [models] {key} {problem}")


def load_config(path: Path) -> WorkspaceConfig:
    if not path.exists():
        return WorkspaceConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder, not a wb.toml file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start}): TOML files are UTF-8") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_config(text)


def _toml_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # JSON string escapes are valid TOML basic strings


def render_config(config: WorkspaceConfig, header: str = "") -> str:
    """``config`` as ``wb.toml`` text that :func:`parse_config` reads back to an equal config
    (keys whose value is None are left out: they mean "the model's own default")."""
    lines = [f"# {line}" for line in header.splitlines()]
    for section in ("models", "index", "fusion", "rerank"):
        obj = getattr(config, section)
        lines.append(f"\n[{section}]")
        nested: dict[str, dict] = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if value is None:
                continue
            if isinstance(value, dict):
                nested[f.name] = value
                continue
            lines.append(f"{f.name} = {_toml_value(value)}")
        for name, table in nested.items():
            lines.append(f"\n[{section}.{name}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines).lstrip("\n") + "\n"
