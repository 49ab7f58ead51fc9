"""Model roles and what fills each: built-in offline defaults, Hugging Face ids or local folders.

Roles:
- ``dense``: a bi-encoder. Its last-layer token states double as zero-shot ColBERT vectors.
- ``colbert``: ``zero-shot`` (MaxSim over the dense model's token states) or a trained head folder.
- A joint model folder (``wb train joint``) may fill dense, sparse and colbert at once; labelled
  ``runs/NAME (trained joint)`` in each role it fills.
- ``sparse``: a SPLADE / masked-LM model.
- ``reranker``: ``maxsim`` (zero-shot late interaction over the dense model's token states),
  ``llm`` (SmolLM2-135M-Instruct pointwise yes/no, zero-shot), or a cross-encoder folder/id, or a
  causal-LM folder (``wb train llm-reranker`` runs are labelled ``runs/NAME (trained LLM yes/no)``).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from workbench.config import ModelsConfig
from workbench.errors import ModelError

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
    if role in ("dense", "sparse"):
        path = resolve(name)
        if check_installed:
            check_model_kind(role, name, path)
        return RoleModel(role, name, path, _joint_label(name, path) or _trained_label(name) or _short(name), False)
    if role == "colbert":
        if name == ZERO_SHOT_COLBERT:
            return RoleModel(role, name, None, f"maxsim over {_short(models.dense)} tokens (zero-shot)", True)
        path = resolve(name)
        if check_installed:
            check_model_kind(role, name, path)
        return RoleModel(role, name, path, _colbert_label(name, path), False)
    if role == "reranker":
        if name == MAXSIM_RERANKER:
            if models.colbert != ZERO_SHOT_COLBERT:  # MaxSim over the index's trained ColBERT vectors
                return RoleModel(role, name, None, f"maxsim over {_colbert_label(models.colbert, models.colbert)}", False)
            return RoleModel(role, name, None, f"maxsim over {_short(models.dense)} tokens (zero-shot)", True)
        if name in (LLM_RERANKER, LLM_RERANKER_MODEL):  # the built-in SmolLM2, by its role name or its own
            return RoleModel(
                role, name, resolve(LLM_RERANKER_MODEL), f"{LLM_RERANKER_MODEL} yes/no (zero-shot)", True
            )
        path = resolve(name)
        if check_installed:
            check_model_files(role, name, path)
        return RoleModel(role, name, path, _reranker_label(name), False)
    raise ValueError(role)


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def check_model_files(role: str, name: str, path: str) -> None:
    """ModelError when the local folder ``path`` (``FOLDER@L`` read as FOLDER) holds no model: no
    ``config.json`` (an empty folder, a wrong path), or no weights file (``WEIGHT_FILES``). A folder
    that says it is something else (``modules.json`` only: sentence-transformers < 2, whose loader
    says what to give; ``colbert_head.pt`` only: a projection over the dense tokens) and a hub id are
    left to the loader. Only file names are checked: a weights file that lacks tensors is refused when
    the model loads (``device.load_pretrained``)."""
    import re

    folder = Path(re.sub(r"@\d+$", "", path) if not Path(path).is_dir() else path)
    if not folder.is_dir() or (folder / "modules.json").is_file() or (folder / "colbert_head.pt").is_file():
        return
    shown = _short(name)
    if not (folder / "config.json").is_file():
        if (folder / "adapter_config.json").is_file():  # peft's LoRA adapter: weights to add to a base
            merged = folder.parent if (folder.parent / "config.json").is_file() else None
            raise ModelError(f"{shown} cannot fill the {role} role: it is a LoRA adapter, not a model; "
                             + (f"the merged model is its parent folder {_short(str(merged))}" if merged else
                                "merge it into its base (peft's merge_and_unload, then save_pretrained) and give "
                                "that folder"))
        raise ModelError(f"{shown} cannot fill the {role} role: the folder holds no model (no config.json)")
    if not any((folder / weights).is_file() for weights in WEIGHT_FILES):
        raise ModelError(f"{shown} cannot fill the {role} role: the folder has no weights file "
                         f"({' or '.join(WEIGHT_FILES[::2])})")


def check_model_kind(role: str, name: str, path: str) -> None:
    """ModelError when the local folder ``path`` cannot fill ``role``: it holds no model
    (:func:`check_model_files`), or colbert is not given a trained ColBERT (or joint) folder, sparse
    a masked-LM (or joint) model, dense a cross-encoder. A hub id or a folder without config.json
    (after that check) is left to the loader."""
    import json

    from workbench.encoders.colbert import is_colbert_folder
    from workbench.encoders.joint import is_joint_folder

    check_model_files(role, name, path)
    folder = Path(path)
    if is_joint_folder(folder) or not (folder / "config.json").is_file():
        return
    try:
        archs = json.loads((folder / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError):
        return
    shown = _short(name)
    if role == "colbert" and not is_colbert_folder(folder):
        raise ModelError(f"{shown} cannot fill the colbert role: it is not a trained ColBERT folder "
                         "(`wb train colbert` makes one; `zero-shot` uses the dense model's token states)")
    if role == "sparse" and not any(a.endswith("ForMaskedLM") for a in archs):
        kind = archs[0] if archs else "no masked-LM head"
        raise ModelError(f"{shown} cannot fill the sparse role: it is not a masked-LM (SPLADE) model ({kind})")
    if role == "dense" and any(a.endswith("ForSequenceClassification") for a in archs):
        raise ModelError(f"{shown} cannot fill the dense role: it is a cross-encoder ({archs[0]}); "
                         "use it as reranker=")


def _colbert_label(name: str, path: str | None) -> str:
    """The colbert role's label for a model: ``runs/NAME (trained joint)`` for a joint folder,
    ``... (trained ColBERT)`` for a trained ColBERT folder (``wb_colbert.json``) or a projection head
    (``colbert_head.pt``), else the bare name (a model that cannot fill the role is said so apart,
    never labelled as trained)."""
    from workbench.encoders.colbert import COLBERT_HEAD, is_colbert_folder

    joint = _joint_label(name, path)
    if joint:
        return joint
    for folder in {_local(p) for p in (path, name) if p}:
        if is_colbert_folder(folder) or (Path(folder) / COLBERT_HEAD).is_file():
            return f"{_short(name)} (trained ColBERT)"
    return _short(name)


def _joint_label(name: str, path: str | None) -> str | None:
    """``runs/NAME (trained joint)`` when the folder is a joint model (``trainers.joint``: one encoder
    with dense, sparse and ColBERT heads), else None."""
    from workbench.encoders.joint import is_joint_folder

    return f"{_short(name)} (trained joint)" if is_joint_folder(path) or is_joint_folder(_local(name)) else None


def _reranker_label(name: str) -> str:
    """``_short(name)``, plus " (trained LLM yes/no)" for a `wb train llm-reranker` folder (its
    wb_model.json), or what another run's trainer made (:func:`_trained_label`)."""
    from workbench.encoders.yesno_prompt import read_llm_reranker_meta

    label = _short(name)
    if read_llm_reranker_meta(_local(name)):
        return f"{label} (trained LLM yes/no)"
    return _trained_label(name) or label


TRAINED_KINDS = {"embedder": "dense", "reranker": "cross-encoder", "splade": "SPLADE", "layerwise": "layer-wise",
                 "colbert": "ColBERT", "joint": "joint", "llm-reranker": "LLM yes/no"}


def _trained_label(name: str) -> str | None:
    """``runs/NAME (trained cross-encoder)`` (dense, SPLADE, ...) for the model folder of a run, read
    from the run's config.json (a soup: its ingredients' trainer); None for anything else."""
    import json

    short = _short(name)
    if short == name or not short.startswith("runs/"):
        return None
    try:
        config = json.loads((Path(_local(name)).parent / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    trainer = config.get("trainer")
    soup = trainer == "soup"
    made_by = config.get("ingredient_trainer") if soup else trainer
    kind = TRAINED_KINDS.get(made_by) if isinstance(made_by, str) else None
    if kind is None:
        return None
    if not soup:
        return f"{short} (trained {kind})"
    noun = f"{kind}s" if kind in ("cross-encoder", "ColBERT") else f"{kind} models"  # never "denses"
    return f"{short} (soup of trained {noun})"


def _local(name: str) -> str:
    """``name`` with a leading ``~`` expanded (wb.toml keeps ``"~/runs/x/model"`` as written), so
    that the files a label reads are found; other names unchanged."""
    return os.path.expanduser(name) if name.startswith("~") else name


def _short(value: str) -> str:
    """``.../runs/NAME/model`` -> ``runs/NAME`` (``.../model@L`` -> ``runs/NAME@L``); other values unchanged."""
    path = Path(value)
    cutoff = path.name[len("model"):] if path.name.startswith("model@") and path.name[6:].isdigit() else ""
    if (path.name == "model" or cutoff) and path.parent.parent.name == "runs":
        return f"runs/{path.parent.name}{cutoff}"
    return value


def model_labels(models: ModelsConfig) -> dict[str, str]:
    """role -> display label (with "zero-shot" where it applies); never raises."""
    return {role: resolve_role(role, models, check_installed=False).label for role in ROLES}


def fingerprint(path: str | None) -> str:
    """A cheap identity of a model folder: names, sizes and mtimes of its files (or the id itself).

    Files with a hidden name are left out, as are entries that cannot be read; names that are not
    UTF-8 count by their bytes. The walk stops after ``FINGERPRINT_MAX_FILES`` files (a model folder
    holds a few dozen; a folder named by mistake, e.g. ``/``, must not be walked whole). The files
    are hashed in path order (by parts), so recorded fingerprints stay valid. Linked subfolders are
    walked (``1_Pooling -> ../pools/p1``: the model reads them), each real folder once (a link
    back up is no loop)."""
    if path is None:
        return "none"
    folder = Path(path)
    if not folder.is_dir():
        return f"id:{path}"
    entries: list[tuple[tuple[str, ...], str]] = []
    seen: set[tuple[int, int]] = set()
    _first_visit(str(folder), seen)
    for root, dirs, files in os.walk(folder, onerror=lambda _exc: None, followlinks=True):
        dirs[:] = [d for d in dirs if _first_visit(os.path.join(root, d), seen)]
        rel_root = Path(root).relative_to(folder)
        for name in files:
            if name.startswith("."):
                continue
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                rel = rel_root / name
                entries.append((rel.parts, f"{rel}:{st.st_size}:{int(st.st_mtime)}"))
                if len(entries) >= FINGERPRINT_MAX_FILES:
                    break
        if len(entries) >= FINGERPRINT_MAX_FILES:
            break
    h = hashlib.sha256()
    for _parts, line in sorted(entries):
        h.update(line.encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


FINGERPRINT_MAX_FILES = 10_000


def _first_visit(path: str, seen: set[tuple[int, int]]) -> bool:
    """True the first time the real folder at ``path`` (a link resolved) is met, recording it in
    ``seen``; False when met before or unreadable (the walk skips it)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True
