"""Model roles and what fills each: built-in offline defaults, Hugging Face ids or local folders.

Roles:
- ``dense``: a bi-encoder. Its last-layer token states double as zero-shot ColBERT vectors.
- ``colbert``: ``zero-shot`` (MaxSim over the dense model's token states) or a trained head folder.
- ``sparse``: a SPLADE / masked-LM model.
- ``reranker``: ``maxsim`` (zero-shot late interaction over the dense model's token states),
  ``llm`` (SmolLM2-135M-Instruct pointwise yes/no, zero-shot), or a cross-encoder folder/id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from workbench.config import ModelsConfig

ROLES = ("dense", "colbert", "sparse", "reranker")
ZERO_SHOT_COLBERT = "zero-shot"
MAXSIM_RERANKER = "maxsim"
LLM_RERANKER = "llm"
LLM_RERANKER_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class RoleModel:
    """What fills one role. ``path`` is None for the zero-shot stand-ins that reuse the dense model."""

    role: str
    name: str
    path: str | None
    label: str
    zero_shot: bool


def _resolve(name: str) -> str:
    from workbench.models.cache import resolve_model_path

    return resolve_model_path(name)


def resolve_role(role: str, models: ModelsConfig, *, check_installed: bool = True) -> RoleModel:
    """Resolve one role of ``models`` (raises ModelError for an uninstalled built-in)."""
    resolve = _resolve if check_installed else (lambda n: n)
    name = getattr(models, role)
    if role == "dense":
        return RoleModel(role, name, resolve(name), name, False)
    if role == "sparse":
        return RoleModel(role, name, resolve(name), name, False)
    if role == "colbert":
        if name == ZERO_SHOT_COLBERT:
            return RoleModel(role, name, None, f"maxsim over {models.dense} tokens (zero-shot)", True)
        return RoleModel(role, name, resolve(name), f"{_short(name)} (trained ColBERT)", False)
    if role == "reranker":
        if name == MAXSIM_RERANKER:
            if models.colbert != ZERO_SHOT_COLBERT:  # MaxSim over the index's trained ColBERT vectors
                return RoleModel(role, name, None, f"maxsim over {_short(models.colbert)} (trained ColBERT)", False)
            return RoleModel(role, name, None, f"maxsim over {models.dense} tokens (zero-shot)", True)
        if name == LLM_RERANKER:
            return RoleModel(
                role, name, resolve(LLM_RERANKER_MODEL), f"{LLM_RERANKER_MODEL} yes/no (zero-shot)", True
            )
        return RoleModel(role, name, resolve(name), _short(name), False)
    raise ValueError(role)


def _short(value: str) -> str:
    """``.../runs/NAME/model`` -> ``runs/NAME``; other values unchanged."""
    path = Path(value)
    if path.name == "model" and path.parent.parent.name == "runs":
        return f"runs/{path.parent.name}"
    return value


def model_labels(models: ModelsConfig) -> dict[str, str]:
    """role -> display label (with "zero-shot" where it applies); never raises."""
    return {role: resolve_role(role, models, check_installed=False).label for role in ROLES}


def fingerprint(path: str | None) -> str:
    """A cheap identity of a model folder: names, sizes and mtimes of its files (or the id itself)."""
    if path is None:
        return "none"
    folder = Path(path)
    if not folder.is_dir():
        return f"id:{path}"
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file() and not f.name.startswith("."):
            st = f.stat()
            h.update(f"{f.relative_to(folder)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]
